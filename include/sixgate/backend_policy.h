/* Where a backend may be. The map comes from a control panel that customers
 * feed, so a route must not reach sixgate itself (one ClientHello becomes a
 * chain of hops that fills the descriptor table), its admin endpoint, or the
 * host's private corners. The check is pure: the config loader gathers the
 * facts (the listeners, the admin address, this host's addresses) once per
 * load, and the same policy judges IP literals at load and every DNS answer
 * of a host-name backend when a connection uses it. */
#ifndef SIXGATE_BACKEND_POLICY_H
#define SIXGATE_BACKEND_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "sixgate/address.h"
#include "sixgate/cidr.h"

/* Why a backend address is refused; sg_backend_verdict_str() says it in English. */
enum sg_backend_verdict {
    SG_BACKEND_OK = 0,
    SG_BACKEND_LOOP,             /* one of sixgate's own listening sockets */
    SG_BACKEND_ADMIN,            /* the admin endpoint */
    SG_BACKEND_OUTSIDE_NETWORKS, /* backend_networks is set and holds no range for it */
    SG_BACKEND_UNSPECIFIED,      /* 0.0.0.0 or :: (no backend_networks) */
    SG_BACKEND_LOOPBACK,         /* 127.0.0.0/8, ::1 (no backend_networks) */
    SG_BACKEND_LINK_LOCAL,       /* 169.254.0.0/16, fe80::/10 (no backend_networks) */
    SG_BACKEND_MULTICAST,        /* 224.0.0.0/4, ff00::/8 (no backend_networks) */
};

/* The facts one configuration judges by. Every array is borrowed (the
 * snapshot's, normally) and must outlive the policy. */
struct sg_backend_policy {
    const struct sg_cidr_list *networks; /* backend_networks; NULL: the default refusals */
    const union sg_sockaddr *listen;     /* every listening socket, with its port */
    size_t nlisten;
    const union sg_sockaddr *admin;      /* the admin endpoint; NULL: none */
    const union sg_sockaddr *host;       /* this host's addresses (ports ignored) */
    size_t nhost;
};

/* Judges <addr> (AF_INET or AF_INET6, with the port it would be connected
 * on). An IPv4-mapped IPv6 address is judged as the IPv4 address it
 * carries. A loop and the admin address are refused whatever networks say;
 * a socket bound to a wildcard address (0.0.0.0 or ::) counts as every
 * address of this host of its family, loopback and unspecified included,
 * on its port. */
enum sg_backend_verdict sg_backend_check(const struct sg_backend_policy *p,
                                         const struct sockaddr *addr);

/* A short English phrase for a verdict, for diagnostics and logs. */
const char *sg_backend_verdict_str(enum sg_backend_verdict v);

/* Whether the verdict comes from the default refusals, which setting
 * backend_networks replaces (for a hint in messages). */
static inline bool sg_backend_verdict_is_default(enum sg_backend_verdict v)
{
    return v >= SG_BACKEND_UNSPECIFIED;
}

#endif
