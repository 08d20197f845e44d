/* The backend policy: see include/sixgate/backend_policy.h. */
#include "sixgate/backend_policy.h"

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* An address as judged: IPv4-mapped IPv6 unwrapped, so that
 * [::ffff:127.0.0.1] is loopback and equal to 127.0.0.1. */
struct ip {
    int family; /* AF_INET, AF_INET6; 0: neither */
    uint8_t b[16];
    uint16_t port;
};

static struct ip ip_of(const struct sockaddr *sa)
{
    struct ip ip = {0};
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        ip.family = AF_INET;
        memcpy(ip.b, &in->sin_addr, 4);
        ip.port = ntohs(in->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        ip.port = ntohs(in6->sin6_port);
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
            ip.family = AF_INET;
            memcpy(ip.b, in6->sin6_addr.s6_addr + 12, 4);
        } else {
            ip.family = AF_INET6;
            memcpy(ip.b, in6->sin6_addr.s6_addr, 16);
        }
    }
    return ip;
}

static bool same_ip(const struct ip *a, const struct ip *b)
{
    return a->family == b->family && memcmp(a->b, b->b, a->family == AF_INET ? 4 : 16) == 0;
}

static bool is_unspecified(const struct ip *a)
{
    static const uint8_t zero[16];
    return memcmp(a->b, zero, a->family == AF_INET ? 4 : 16) == 0;
}

static bool is_loopback(const struct ip *a)
{
    static const uint8_t one[16] = {[15] = 1};
    if (a->family == AF_INET)
        return a->b[0] == 127;
    return memcmp(a->b, one, 16) == 0;
}

static bool is_link_local(const struct ip *a)
{
    if (a->family == AF_INET)
        return a->b[0] == 169 && a->b[1] == 254;
    return a->b[0] == 0xfe && (a->b[1] & 0xc0) == 0x80;
}

static bool is_multicast(const struct ip *a)
{
    if (a->family == AF_INET)
        return (a->b[0] & 0xf0) == 224;
    return a->b[0] == 0xff;
}

/* Whether a connect to <a> reaches this host: loopback, unspecified (which
 * Linux connects to the host itself) or one of its addresses. */
static bool is_this_host(const struct sg_backend_policy *p, const struct ip *a)
{
    if (is_loopback(a) || is_unspecified(a))
        return true;
    for (size_t i = 0; i < p->nhost; i++) {
        struct ip h = ip_of(&p->host[i].sa);
        if (same_ip(&h, a))
            return true;
    }
    return false;
}

/* Whether a connect to <a> reaches the socket bound to <bound>. An IPv6
 * wildcard socket is IPv6-only (listener.c sets V6ONLY), so a wildcard
 * catches its own family only. */
static bool reaches(const struct sg_backend_policy *p, const union sg_sockaddr *bound,
                    const struct ip *a)
{
    struct ip s = ip_of(&bound->sa);
    if (s.family == 0 || s.port != a->port)
        return false;
    if (s.family != a->family)
        return false;
    if (is_unspecified(&s))
        return is_this_host(p, a);
    /* a specific address is reached by itself, and by a connect to 0.0.0.0
     * or :: when it is one of this host's */
    return same_ip(&s, a) || (is_unspecified(a) && is_this_host(p, &s));
}

enum sg_backend_verdict sg_backend_check(const struct sg_backend_policy *p,
                                         const struct sockaddr *addr)
{
    struct ip a = ip_of(addr);
    if (a.family == 0)
        return SG_BACKEND_UNSPECIFIED;
    for (size_t i = 0; i < p->nlisten; i++)
        if (reaches(p, &p->listen[i], &a))
            return SG_BACKEND_LOOP;
    if (p->admin != NULL && reaches(p, p->admin, &a))
        return SG_BACKEND_ADMIN;
    if (p->networks != NULL)
        return sg_cidr_list_match(p->networks, addr) ? SG_BACKEND_OK
                                                     : SG_BACKEND_OUTSIDE_NETWORKS;
    if (is_unspecified(&a))
        return SG_BACKEND_UNSPECIFIED;
    if (is_loopback(&a))
        return SG_BACKEND_LOOPBACK;
    if (is_link_local(&a))
        return SG_BACKEND_LINK_LOCAL;
    if (is_multicast(&a))
        return SG_BACKEND_MULTICAST;
    return SG_BACKEND_OK;
}

const char *sg_backend_verdict_str(enum sg_backend_verdict v)
{
    switch (v) {
    case SG_BACKEND_OK:
        return "allowed";
    case SG_BACKEND_LOOP:
        return "a loop to sixgate's own listener";
    case SG_BACKEND_ADMIN:
        return "the admin address";
    case SG_BACKEND_OUTSIDE_NETWORKS:
        return "outside backend_networks";
    case SG_BACKEND_UNSPECIFIED:
        return "unspecified address";
    case SG_BACKEND_LOOPBACK:
        return "loopback";
    case SG_BACKEND_LINK_LOCAL:
        return "link-local";
    case SG_BACKEND_MULTICAST:
        return "multicast";
    }
    return "?";
}
