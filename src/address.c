#include "sixgate/address.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

static bool parse_port(const char *s, size_t len, uint16_t *port)
{
    if (len == 0 || len > 5)
        return false;
    unsigned long v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v == 0 || v > 65535)
        return false;
    *port = (uint16_t)v;
    return true;
}

static bool parse_ip(const char *s, size_t len, int family, union sg_sockaddr *out)
{
    char text[INET6_ADDRSTRLEN + 1];
    if (len == 0 || len >= sizeof(text))
        return false;
    memcpy(text, s, len);
    text[len] = '\0';
    memset(out, 0, sizeof(*out));
    if (family == AF_INET6) {
        out->in6.sin6_family = AF_INET6;
        return inet_pton(AF_INET6, text, &out->in6.sin6_addr) == 1;
    }
    out->in.sin_family = AF_INET;
    return inet_pton(AF_INET, text, &out->in.sin_addr) == 1;
}

static bool looks_like_ipv4(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || s[i] == '.'))
            return false;
    }
    return len > 0;
}

enum sg_addr_status sg_addr_parse(const char *text, size_t len, unsigned flags,
                                  struct sg_addr *out)
{
    memset(out, 0, sizeof(*out));
    if (len == 0)
        return SG_ADDR_EMPTY;

    const char *host = text, *port = NULL;
    size_t host_len = len, port_len = 0;
    bool bracketed = false;
    if (text[0] == '[') {
        const char *close = memchr(text, ']', len);
        if (close == NULL)
            return SG_ADDR_BAD_IP;
        host = text + 1;
        host_len = (size_t)(close - text) - 1;
        size_t rest = len - (size_t)(close - text) - 1;
        if (rest > 0) {
            if (close[1] != ':')
                return SG_ADDR_BAD_PORT;
            port = close + 2;
            port_len = rest - 1;
        }
        bracketed = true;
    } else {
        const char *colon = memchr(text, ':', len);
        if (colon != NULL && memchr(colon + 1, ':', len - (size_t)(colon - text) - 1) == NULL) {
            host_len = (size_t)(colon - text);
            port = colon + 1;
            port_len = len - host_len - 1;
        } else if (colon != NULL) {
            bracketed = true; /* a bare IPv6 literal; it cannot carry a port */
        }
    }

    if (port != NULL && !parse_port(port, port_len, &out->port))
        return SG_ADDR_BAD_PORT;
    if (port == NULL && (flags & SG_ADDR_REQUIRE_PORT))
        return SG_ADDR_MISSING_PORT;

    if (bracketed) {
        if (!parse_ip(host, host_len, AF_INET6, &out->ip))
            return SG_ADDR_BAD_IP;
        out->kind = SG_ADDR_IP;
        sg_sockaddr_set_port(&out->ip, out->port);
        return SG_ADDR_OK;
    }
    if (looks_like_ipv4(host, host_len)) {
        if (!parse_ip(host, host_len, AF_INET, &out->ip))
            return SG_ADDR_BAD_IP;
        out->kind = SG_ADDR_IP;
        sg_sockaddr_set_port(&out->ip, out->port);
        return SG_ADDR_OK;
    }
    if (!(flags & SG_ADDR_ALLOW_HOSTNAME))
        return SG_ADDR_HOSTNAME_NOT_ALLOWED;
    if (sg_name_normalize(host, host_len, 0, &out->host) != SG_NAME_OK)
        return SG_ADDR_BAD_HOSTNAME;
    out->kind = SG_ADDR_HOSTNAME;
    return SG_ADDR_OK;
}

const char *sg_addr_status_str(enum sg_addr_status st)
{
    switch (st) {
    case SG_ADDR_OK:
        return "ok";
    case SG_ADDR_EMPTY:
        return "empty address";
    case SG_ADDR_BAD_PORT:
        return "invalid port (1 to 65535)";
    case SG_ADDR_MISSING_PORT:
        return "missing port (write \"[::]:443\" or \"0.0.0.0:443\")";
    case SG_ADDR_BAD_IP:
        return "invalid IP address";
    case SG_ADDR_BAD_HOSTNAME:
        return "invalid host name";
    case SG_ADDR_HOSTNAME_NOT_ALLOWED:
        return "an IP address is required here, not a host name";
    }
    return "unknown";
}

char *sg_sockaddr_format(const struct sockaddr *sa, char *buf, size_t cap)
{
    char ip[INET6_ADDRSTRLEN];
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof(ip));
        snprintf(buf, cap, "[%s]:%u", ip, ntohs(a->sin6_port));
    } else if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
        snprintf(buf, cap, "%s:%u", ip, ntohs(a->sin_port));
    } else {
        snprintf(buf, cap, "?");
    }
    return buf;
}

socklen_t sg_sockaddr_len(const struct sockaddr *sa)
{
    return sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
}

uint16_t sg_sockaddr_port(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    if (sa->sa_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)sa)->sin_port);
    return 0;
}

void sg_sockaddr_set_port(union sg_sockaddr *sa, uint16_t port)
{
    if (sa->sa.sa_family == AF_INET6)
        sa->in6.sin6_port = htons(port);
    else if (sa->sa.sa_family == AF_INET)
        sa->in.sin_port = htons(port);
}

bool sg_sockaddr_equal(const struct sockaddr *a, const struct sockaddr *b)
{
    if (a->sa_family != b->sa_family)
        return false;
    if (a->sa_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
        return x->sin6_port == y->sin6_port &&
               memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0 &&
               x->sin6_scope_id == y->sin6_scope_id;
    }
    if (a->sa_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    return false;
}

char *sg_sockaddr_format_ip(const struct sockaddr *sa, bool brackets, char *buf, size_t cap)
{
    char ip[INET6_ADDRSTRLEN];
    if (sa->sa_family == AF_INET6) {
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, ip, sizeof(ip));
        snprintf(buf, cap, brackets ? "[%s]" : "%s", ip);
    } else if (sa->sa_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, ip, sizeof(ip));
        snprintf(buf, cap, "%s", ip);
    } else {
        snprintf(buf, cap, "?");
    }
    return buf;
}
