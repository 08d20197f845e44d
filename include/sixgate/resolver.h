/* Resolving backends' host names to IPv6 addresses (AAAA), without ever
 * blocking a loop: getaddrinfo runs on libuv's thread pool. One resolver per
 * worker keeps answers for a while and lets every connection that asks for a
 * name while it is being looked up wait for that one lookup, so that a busy
 * site behind a host-name backend costs one lookup per <ttl>, not one per
 * connection. */
#ifndef SIXGATE_RESOLVER_H
#define SIXGATE_RESOLVER_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "sixgate/metrics.h"

#define SG_RESOLVE_MAX_ADDRS 4

struct sg_resolver;
struct sg_resolve_entry;
struct sg_resolve_waiter;

/* Called once for a waiter that was not cancelled: <status> 0 with 1 to
 * SG_RESOLVE_MAX_ADDRS addresses (ports set), or a libuv error. */
typedef void (*sg_resolve_cb)(struct sg_resolve_waiter *w, int status,
                              const struct sockaddr_in6 *addrs, size_t naddrs);

/* Embedded in whoever waits; owned by it. */
struct sg_resolve_waiter {
    struct sg_resolve_waiter *next, **pprev; /* on its entry's list while waiting */
    struct sg_resolve_entry *entry;
    sg_resolve_cb cb;
};

/* <ttl_ms>: how long an answer is used; <negative_ttl_ms>: a failure.
 * <stats> (borrowed, may be NULL) gets the counters. */
struct sg_resolver *sg_resolver_new(uv_loop_t *loop, uint64_t ttl_ms, uint64_t negative_ttl_ms,
                                    struct sg_dns_stats *stats);

/* Cancels every lookup and frees the resolver once they are done; waiters
 * get no callback. */
void sg_resolver_close(struct sg_resolver *r);

/* Changes the cache times (a reload); entries already cached keep theirs. */
void sg_resolver_set_ttl(struct sg_resolver *r, uint64_t ttl_ms, uint64_t negative_ttl_ms);

enum sg_resolve_now { SG_RESOLVE_DONE, SG_RESOLVE_PENDING };

/* Resolves <host>:<port>. A fresh cached answer is given at once: the
 * result is SG_RESOLVE_DONE with *status, addrs and *naddrs filled and no
 * callback. Otherwise SG_RESOLVE_PENDING: <w>->cb is called later, unless
 * sg_resolve_cancel(w) is called first. */
enum sg_resolve_now sg_resolve(struct sg_resolver *r, const char *host, uint16_t port,
                               struct sg_resolve_waiter *w, sg_resolve_cb cb, int *status,
                               struct sockaddr_in6 *addrs, size_t *naddrs);

/* Stops waiting; safe to call on a waiter that is not waiting. */
void sg_resolve_cancel(struct sg_resolve_waiter *w);

#endif
