#include "sixgate/client_limits.h"

#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "sixgate/siphash.h"

/* Shards, each a locked chained hash: a lock per accept and per close,
 * taken by at most the workers, held for a few instructions. */
#define SHARDS 16
#define BUCKETS 1024 /* per shard */

struct sg_client {
    struct sg_client *next;
    uint8_t key[16]; /* the masked address, IPv4 as ::ffff:a.b.c.d */
    uint32_t open, sniffing;
    uint64_t window; /* the second (now_ms / 1000) <started> counts */
    uint32_t started;
};

/* Buckets swept for idle clients at each admit, besides the client's own:
 * a shard is swept whole every BUCKETS / SWEEP admits, so clients that
 * come once (a scan of a million addresses) do not stay. */
#define SWEEP 4

struct shard {
    pthread_mutex_t lock;
    size_t n;
    size_t sweep; /* the next bucket to sweep */
    struct sg_client *buckets[BUCKETS];
};

struct sg_client_table {
    uint8_t hash_key[16];
    struct shard shards[SHARDS];
};

bool sg_client_limits_on(const struct sg_client_limits *l)
{
    return l->connections > 0 || l->sniffing > 0 || l->rate > 0;
}

const char *sg_client_verdict_str(enum sg_client_verdict v)
{
    switch (v) {
    case SG_CLIENT_OK:
        return "ok";
    case SG_CLIENT_TOO_MANY:
        return "too many connections from this client";
    case SG_CLIENT_TOO_MANY_SNIFFING:
        return "too many connections from this client not yet routed";
    case SG_CLIENT_TOO_FAST:
        return "too many new connections per second from this client";
    case SG_CLIENT_NO_MEMORY:
        return "out of memory for the client table";
    }
    return "?";
}

struct sg_client_table *sg_client_table_new(void)
{
    struct sg_client_table *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    if (getrandom(t->hash_key, sizeof(t->hash_key), 0) != (ssize_t)sizeof(t->hash_key)) {
        /* without the kernel's randomness the table still works; its
         * chains are only easier to lengthen on purpose */
        for (size_t i = 0; i < sizeof(t->hash_key); i++)
            t->hash_key[i] = (uint8_t)(i * 131u + 7u);
    }
    for (size_t i = 0; i < SHARDS; i++)
        pthread_mutex_init(&t->shards[i].lock, NULL);
    return t;
}

void sg_client_table_free(struct sg_client_table *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < SHARDS; i++) {
        for (size_t b = 0; b < BUCKETS; b++) {
            struct sg_client *c = t->shards[i].buckets[b];
            while (c != NULL) {
                struct sg_client *next = c->next;
                free(c);
                c = next;
            }
        }
        pthread_mutex_destroy(&t->shards[i].lock);
    }
    free(t);
}

/* The client an address belongs to: its first <prefix> bits. */
static void client_key(const struct sg_client_limits *l, const struct sockaddr *addr,
                       uint8_t key[16])
{
    memset(key, 0, 16);
    unsigned bits;
    if (addr->sa_family == AF_INET) {
        key[10] = key[11] = 0xff;
        memcpy(key + 12, &((const struct sockaddr_in *)addr)->sin_addr, 4);
        bits = 96 + (l->ipv4_prefix ? l->ipv4_prefix : 32);
    } else {
        const uint8_t *a = ((const struct sockaddr_in6 *)addr)->sin6_addr.s6_addr;
        memcpy(key, a, 16);
        bool mapped = memcmp(a, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) == 0;
        bits = mapped ? 96 + (l->ipv4_prefix ? l->ipv4_prefix : 32)
                      : (l->ipv6_prefix ? l->ipv6_prefix : 64);
    }
    for (unsigned i = 0; i < 16; i++) {
        unsigned keep = bits > 8 * i ? bits - 8 * i : 0;
        if (keep < 8)
            key[i] &= (uint8_t)(0xff00u >> keep);
    }
}

/* An entry with no open connection whose rate window is over holds
 * nothing worth keeping: it is freed when its bucket is walked. */
static bool idle(const struct sg_client *c, uint64_t second)
{
    return c->open == 0 && c->window != second;
}

static void sweep(struct shard *s, uint64_t second)
{
    for (unsigned k = 0; k < SWEEP; k++) {
        struct sg_client **pp = &s->buckets[s->sweep++ % BUCKETS];
        while (*pp != NULL) {
            struct sg_client *e = *pp;
            if (idle(e, second)) {
                *pp = e->next;
                s->n--;
                free(e);
            } else {
                pp = &e->next;
            }
        }
    }
}

enum sg_client_verdict sg_client_admit(struct sg_client_table *t, const struct sg_client_limits *l,
                                       const struct sockaddr *addr, bool sniffs, uint64_t now_ms,
                                       struct sg_client **out)
{
    uint8_t key[16];
    client_key(l, addr, key);
    uint64_t h = sg_siphash(t->hash_key, key, sizeof(key));
    struct shard *s = &t->shards[h % SHARDS];
    uint64_t second = now_ms / 1000;
    enum sg_client_verdict v = SG_CLIENT_OK;
    pthread_mutex_lock(&s->lock);
    sweep(s, second);
    struct sg_client **pp = &s->buckets[(h / SHARDS) % BUCKETS], *c = NULL;
    while (*pp != NULL) {
        struct sg_client *e = *pp;
        if (memcmp(e->key, key, 16) == 0) {
            c = e;
            pp = &e->next;
        } else if (idle(e, second)) {
            *pp = e->next;
            s->n--;
            free(e);
        } else {
            pp = &e->next;
        }
    }
    if (c == NULL) {
        if ((c = calloc(1, sizeof(*c))) == NULL) {
            v = SG_CLIENT_NO_MEMORY;
            goto out;
        }
        memcpy(c->key, key, 16);
        *pp = c;
        s->n++;
    }
    if (c->window != second) {
        c->window = second;
        c->started = 0;
    }
    if (l->rate > 0 && c->started >= l->rate)
        v = SG_CLIENT_TOO_FAST;
    else if (l->connections > 0 && c->open >= l->connections)
        v = SG_CLIENT_TOO_MANY;
    else if (sniffs && l->sniffing > 0 && c->sniffing >= l->sniffing)
        v = SG_CLIENT_TOO_MANY_SNIFFING;
    c->started++; /* a refused attempt counts against the rate too */
    if (v == SG_CLIENT_OK) {
        c->open++;
        c->sniffing += sniffs;
        *out = c;
    }
out:
    pthread_mutex_unlock(&s->lock);
    return v;
}

static struct shard *shard_of(struct sg_client_table *t, const struct sg_client *c)
{
    return &t->shards[sg_siphash(t->hash_key, c->key, sizeof(c->key)) % SHARDS];
}

void sg_client_routed(struct sg_client_table *t, struct sg_client *c)
{
    struct shard *s = shard_of(t, c);
    pthread_mutex_lock(&s->lock);
    if (c->sniffing > 0)
        c->sniffing--;
    pthread_mutex_unlock(&s->lock);
}

void sg_client_release(struct sg_client_table *t, struct sg_client *c, bool sniffing)
{
    struct shard *s = shard_of(t, c);
    pthread_mutex_lock(&s->lock);
    if (sniffing && c->sniffing > 0)
        c->sniffing--;
    if (c->open > 0)
        c->open--;
    pthread_mutex_unlock(&s->lock);
}

size_t sg_client_table_size(struct sg_client_table *t)
{
    size_t n = 0;
    for (size_t i = 0; i < SHARDS; i++) {
        pthread_mutex_lock(&t->shards[i].lock);
        n += t->shards[i].n;
        pthread_mutex_unlock(&t->shards[i].lock);
    }
    return n;
}
