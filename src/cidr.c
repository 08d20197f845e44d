#include "sixgate/cidr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

bool sg_cidr_parse(const char *text, size_t len, struct sg_cidr *out, const char **why)
{
    char buf[INET6_ADDRSTRLEN + 8];
    if (len == 0 || len >= sizeof(buf)) {
        *why = "invalid address range";
        return false;
    }
    memcpy(buf, text, len);
    buf[len] = '\0';
    memset(out, 0, sizeof(*out));
    char *slash = strchr(buf, '/');
    if (slash != NULL)
        *slash = '\0';
    if (inet_pton(AF_INET6, buf, out->addr) == 1) {
        out->family = AF_INET6;
        out->prefix = 128;
    } else if (inet_pton(AF_INET, buf, out->addr) == 1) {
        out->family = AF_INET;
        out->prefix = 32;
    } else {
        *why = "invalid IP address in range";
        return false;
    }
    if (slash != NULL) {
        const char *p = slash + 1;
        unsigned v = 0;
        if (*p == '\0' || strlen(p) > 3) {
            *why = "invalid prefix length";
            return false;
        }
        for (; *p; p++) {
            if (*p < '0' || *p > '9') {
                *why = "invalid prefix length";
                return false;
            }
            v = v * 10 + (unsigned)(*p - '0');
        }
        if (v > out->prefix) {
            *why = "prefix length too long for the address family";
            return false;
        }
        out->prefix = (uint8_t)v;
    }
    size_t bytes = out->family == AF_INET6 ? 16 : 4;
    for (size_t i = 0; i < bytes; i++) {
        unsigned keep = out->prefix >= (i + 1) * 8 ? 8 : out->prefix > i * 8 ? out->prefix - i * 8 : 0;
        uint8_t mask = (uint8_t)(keep ? 0xffu << (8 - keep) : 0);
        if (out->addr[i] & (uint8_t)~mask) {
            *why = "address has bits set past the prefix length";
            return false;
        }
    }
    return true;
}

bool sg_cidr_list_add(struct sg_cidr_list *l, const struct sg_cidr *c)
{
    struct sg_cidr *n = realloc(l->items, (l->n + 1) * sizeof(*n));
    if (n == NULL)
        return false;
    l->items = n;
    l->items[l->n++] = *c;
    return true;
}

void sg_cidr_list_free(struct sg_cidr_list *l)
{
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

static bool prefix_match(const uint8_t *a, const uint8_t *b, unsigned prefix)
{
    unsigned full = prefix / 8, rest = prefix % 8;
    if (memcmp(a, b, full) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xffu << (8 - rest));
    return (a[full] & mask) == (b[full] & mask);
}

bool sg_cidr_list_match(const struct sg_cidr_list *l, const struct sockaddr *sa)
{
    uint8_t addr[16];
    int family;
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
            family = AF_INET;
            memcpy(addr, in6->sin6_addr.s6_addr + 12, 4);
        } else {
            family = AF_INET6;
            memcpy(addr, in6->sin6_addr.s6_addr, 16);
        }
    } else if (sa->sa_family == AF_INET) {
        family = AF_INET;
        memcpy(addr, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else {
        return false;
    }
    for (size_t i = 0; i < l->n; i++) {
        if (l->items[i].family == family && prefix_match(addr, l->items[i].addr, l->items[i].prefix))
            return true;
    }
    return false;
}
