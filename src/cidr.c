#include "sixgate/cidr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

enum sg_cidr_status sg_cidr_parse(const char *text, size_t len, struct sg_cidr *out)
{
    char buf[INET6_ADDRSTRLEN + 8];
    if (len == 0 || len >= sizeof(buf))
        return SG_CIDR_BAD_RANGE;
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
        return SG_CIDR_BAD_IP;
    }
    if (slash != NULL) {
        const char *p = slash + 1;
        unsigned v = 0;
        if (*p == '\0' || strlen(p) > 3)
            return SG_CIDR_BAD_PREFIX;
        for (; *p; p++) {
            if (*p < '0' || *p > '9')
                return SG_CIDR_BAD_PREFIX;
            v = v * 10 + (unsigned)(*p - '0');
        }
        if (v > out->prefix)
            return SG_CIDR_PREFIX_TOO_LONG;
        out->prefix = (uint8_t)v;
    }
    size_t bytes = out->family == AF_INET6 ? 16 : 4;
    for (size_t i = 0; i < bytes; i++) {
        unsigned keep = out->prefix >= (i + 1) * 8 ? 8 : out->prefix > i * 8 ? out->prefix - i * 8 : 0;
        uint8_t mask = (uint8_t)(keep ? 0xffu << (8 - keep) : 0);
        if (out->addr[i] & (uint8_t)~mask)
            return SG_CIDR_HOST_BITS;
    }
    return SG_CIDR_OK;
}

const char *sg_cidr_status_str(enum sg_cidr_status st)
{
    switch (st) {
    case SG_CIDR_OK:
        return "ok";
    case SG_CIDR_BAD_RANGE:
        return "invalid address range";
    case SG_CIDR_BAD_IP:
        return "invalid IP address in range";
    case SG_CIDR_BAD_PREFIX:
        return "invalid prefix length";
    case SG_CIDR_PREFIX_TOO_LONG:
        return "prefix length too long for the address family";
    case SG_CIDR_HOST_BITS:
        return "address has bits set past the prefix length";
    }
    return "unknown";
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
