#include "sixgate/resolver.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sixgate/hostname.h"

/* Entries beyond this many are evicted, expired ones first. */
#define MAX_ENTRIES 4096
#define BUCKETS 1024

struct sg_resolve_entry {
    struct sg_resolve_entry *next; /* in its bucket */
    struct sg_resolver *r;
    char host[SG_NAME_MAX + 1];
    uint16_t port;
    uint64_t expires;        /* uv_now() milliseconds; 0 while the first lookup runs */
    int status;
    size_t naddrs;
    struct sockaddr_in6 addrs[SG_RESOLVE_MAX_ADDRS];
    bool looking_up;         /* a getaddrinfo is in flight */
    bool evicted;            /* out of the table; freed when its lookup ends */
    uv_getaddrinfo_t req;
    struct sg_resolve_waiter *waiters;
};

struct sg_resolver {
    uv_loop_t *loop;
    uint64_t ttl_ms, negative_ttl_ms;
    size_t nentries;
    size_t inflight;
    bool closing;
    struct sg_dns_stats *stats;
    struct sg_resolve_entry *buckets[BUCKETS];
};

static size_t bucket_of(const char *host, uint16_t port)
{
    uint32_t h = 2166136261u; /* FNV-1a: names here come from the operator's map */
    for (const char *p = host; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    h = (h ^ port) * 16777619u;
    return h % BUCKETS;
}

/* Adds one to the counter <field> of r->stats, when the resolver has stats. */
#define COUNT(r, field)                                                                            \
    do {                                                                                           \
        if ((r)->stats != NULL)                                                                    \
            sg_stat_add(&(r)->stats->field, 1);                                                    \
    } while (0)

struct sg_resolver *sg_resolver_new(uv_loop_t *loop, uint64_t ttl_ms, uint64_t negative_ttl_ms,
                                    struct sg_dns_stats *stats)
{
    struct sg_resolver *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->stats = stats;
    r->loop = loop;
    r->ttl_ms = ttl_ms;
    r->negative_ttl_ms = negative_ttl_ms;
    return r;
}

void sg_resolver_set_ttl(struct sg_resolver *r, uint64_t ttl_ms, uint64_t negative_ttl_ms)
{
    r->ttl_ms = ttl_ms;
    r->negative_ttl_ms = negative_ttl_ms;
}

static void maybe_free_resolver(struct sg_resolver *r)
{
    if (r->closing && r->inflight == 0 && r->nentries == 0)
        free(r);
}

static void unlink_entry(struct sg_resolve_entry *e)
{
    struct sg_resolve_entry **pp = &e->r->buckets[bucket_of(e->host, e->port)];
    while (*pp != NULL && *pp != e)
        pp = &(*pp)->next;
    if (*pp == e)
        *pp = e->next;
    e->evicted = true;
    e->r->nentries--;
}

/* Frees an evicted entry, or marks it to be freed when its lookup ends. */
static void drop_entry(struct sg_resolve_entry *e)
{
    unlink_entry(e);
    if (!e->looking_up)
        free(e);
}

/* Makes room: expired entries without waiters first, else any idle one. */
static void evict(struct sg_resolver *r)
{
    uint64_t now = uv_now(r->loop);
    struct sg_resolve_entry *victim = NULL;
    for (size_t b = 0; b < BUCKETS && victim == NULL; b++) {
        for (struct sg_resolve_entry *e = r->buckets[b]; e != NULL; e = e->next) {
            if (!e->looking_up && e->expires <= now) {
                victim = e;
                break;
            }
        }
    }
    for (size_t b = 0; b < BUCKETS && victim == NULL; b++) {
        for (struct sg_resolve_entry *e = r->buckets[b]; e != NULL; e = e->next) {
            if (!e->looking_up) {
                victim = e;
                break;
            }
        }
    }
    if (victim != NULL)
        drop_entry(victim);
}

static void lookup_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res);

static int start_lookup(struct sg_resolve_entry *e)
{
    char port[8];
    snprintf(port, sizeof(port), "%u", e->port);
    struct addrinfo hints = {.ai_family = AF_INET6, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV};
    e->req.data = e;
    int err = uv_getaddrinfo(e->r->loop, &e->req, lookup_cb, e->host, port, &hints);
    if (err == 0) {
        e->looking_up = true;
        e->r->inflight++;
        COUNT(e->r, lookups);
    }
    return err;
}

static void lookup_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct sg_resolve_entry *e = req->data;
    struct sg_resolver *r = e->r;
    e->looking_up = false;
    r->inflight--;
    e->naddrs = 0;
    for (struct addrinfo *ai = res; status == 0 && ai != NULL; ai = ai->ai_next) {
        if (ai->ai_family != AF_INET6 || e->naddrs == SG_RESOLVE_MAX_ADDRS)
            continue;
        memcpy(&e->addrs[e->naddrs++], ai->ai_addr, sizeof(e->addrs[0]));
    }
    if (res != NULL)
        uv_freeaddrinfo(res);
    if (status == 0 && e->naddrs == 0)
        status = UV_EAI_NODATA;
    e->status = status;
    if (status != 0 && status != UV_EAI_CANCELED)
        COUNT(r, failures);
    /* A cancelled lookup (a stop) is not an answer worth keeping. */
    e->expires = uv_now(r->loop) + (status == 0                   ? r->ttl_ms
                                    : status == UV_EAI_CANCELED   ? 0
                                                                  : r->negative_ttl_ms);
    struct sg_resolve_waiter *w = e->waiters;
    e->waiters = NULL;
    /* Detach them all first: a callback may start another resolve. */
    struct sg_resolve_waiter *list = w;
    for (; w != NULL; w = w->next) {
        w->pprev = NULL;
        w->entry = NULL;
    }
    /* A callback may start a resolve that evicts this very entry: hand out
     * a copy of the answer. */
    bool evicted = e->evicted;
    struct sockaddr_in6 addrs[SG_RESOLVE_MAX_ADDRS];
    size_t naddrs = e->naddrs;
    memcpy(addrs, e->addrs, naddrs * sizeof(addrs[0]));
    while (list != NULL) {
        struct sg_resolve_waiter *next = list->next;
        list->next = NULL;
        list->cb(list, status, addrs, naddrs);
        list = next;
    }
    if (evicted)
        free(e);
    maybe_free_resolver(r);
}

enum sg_resolve_now sg_resolve(struct sg_resolver *r, const char *host, uint16_t port,
                               struct sg_resolve_waiter *w, sg_resolve_cb cb, int *status,
                               struct sockaddr_in6 *addrs, size_t *naddrs)
{
    uint64_t now = uv_now(r->loop);
    size_t b = bucket_of(host, port);
    struct sg_resolve_entry *e;
    for (e = r->buckets[b]; e != NULL; e = e->next) {
        if (e->port == port && strcmp(e->host, host) == 0)
            break;
    }
    if (e != NULL && !e->looking_up && e->expires > now) {
        COUNT(r, hits);
        *status = e->status;
        *naddrs = e->naddrs;
        memcpy(addrs, e->addrs, e->naddrs * sizeof(addrs[0]));
        for (size_t i = 0; i < e->naddrs; i++)
            addrs[i].sin6_port = htons(port);
        return SG_RESOLVE_DONE;
    }
    if (e == NULL) {
        if (r->nentries >= MAX_ENTRIES)
            evict(r);
        e = calloc(1, sizeof(*e));
        if (e == NULL) {
            *status = UV_ENOMEM;
            *naddrs = 0;
            return SG_RESOLVE_DONE;
        }
        e->r = r;
        snprintf(e->host, sizeof(e->host), "%s", host);
        e->port = port;
        e->next = r->buckets[b];
        r->buckets[b] = e;
        r->nentries++;
    }
    if (e->looking_up) {
        COUNT(r, joined);
    } else {
        int err = start_lookup(e);
        if (err < 0) {
            *status = err;
            *naddrs = 0;
            return SG_RESOLVE_DONE;
        }
    }
    w->cb = cb;
    w->entry = e;
    w->next = e->waiters;
    w->pprev = &e->waiters;
    if (e->waiters != NULL)
        e->waiters->pprev = &w->next;
    e->waiters = w;
    return SG_RESOLVE_PENDING;
}

void sg_resolve_cancel(struct sg_resolve_waiter *w)
{
    if (w->pprev == NULL)
        return;
    *w->pprev = w->next;
    if (w->next != NULL)
        w->next->pprev = w->pprev;
    w->next = NULL;
    w->pprev = NULL;
    w->entry = NULL;
}

void sg_resolver_close(struct sg_resolver *r)
{
    if (r == NULL)
        return;
    r->closing = true;
    for (size_t b = 0; b < BUCKETS; b++) {
        struct sg_resolve_entry *e = r->buckets[b];
        while (e != NULL) {
            struct sg_resolve_entry *next = e->next;
            while (e->waiters != NULL)
                sg_resolve_cancel(e->waiters);
            if (e->looking_up)
                uv_cancel((uv_req_t *)&e->req);
            drop_entry(e);
            e = next;
        }
    }
    maybe_free_resolver(r);
}

