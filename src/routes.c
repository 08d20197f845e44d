#include "sixgate/routes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "sixgate/arena.h"
#include "sixgate/siphash.h"

/* One route. For a wildcard, <name> is the whole pattern ("*.example.org")
 * and the hash key is the part after "*.". */
struct entry {
    const char *name;
    uint32_t backend;
    uint8_t len;
    uint8_t wildcard;
};

/* Open addressing with linear probing. A slot holds the high 32 bits of the
 * key's hash (to skip most string compares) and the entry index plus one;
 * zero is an empty slot. The load factor stays at or below one half. */
struct table {
    uint64_t *slots;
    size_t mask;
    size_t used;
};

struct sg_routes {
    uint8_t key[16]; /* SipHash key, random per table */
    struct table exact, wild;
    struct entry *entries;
    size_t nentries, entries_cap;
    struct sg_backend *backends;
    size_t nbackends, backends_cap;
    struct table backend_index; /* while building: de-duplicates backends */
    bool has_fallback;
    struct sg_backend fallback;
    struct sg_arena arena; /* names and backend host names */
};

struct sg_routes_builder {
    struct sg_routes r;
};

static const char *entry_key(const struct entry *e, size_t *len)
{
    if (e->wildcard) {
        *len = e->len - 2u;
        return e->name + 2;
    }
    *len = e->len;
    return e->name;
}

static uint64_t hash_bytes(const struct sg_routes *r, const void *p, size_t len)
{
    return sg_siphash(r->key, p, len);
}

static bool table_init(struct table *t, size_t cap)
{
    t->slots = calloc(cap, sizeof(*t->slots));
    t->mask = cap - 1;
    t->used = 0;
    return t->slots != NULL;
}

static void table_put(struct table *t, uint64_t hash, uint32_t idx)
{
    size_t i = (size_t)hash & t->mask;
    while (t->slots[i] != 0)
        i = (i + 1) & t->mask;
    t->slots[i] = (hash & 0xffffffff00000000ULL) | ((uint64_t)idx + 1);
    t->used++;
}

static uint64_t backend_hash(const struct sg_routes *r, const struct sg_backend *b)
{
    /* The fields are hashed one by one: the struct has padding. */
    uint8_t buf[sizeof(b->ip) + 4 + SG_NAME_MAX];
    size_t n = 0;
    memcpy(buf, &b->ip, sizeof(b->ip));
    n += sizeof(b->ip);
    buf[n++] = (uint8_t)(b->port >> 8);
    buf[n++] = (uint8_t)b->port;
    buf[n++] = b->proxy_protocol;
    buf[n++] = b->host != NULL;
    if (b->host != NULL) {
        size_t hl = strlen(b->host);
        memcpy(buf + n, b->host, hl);
        n += hl;
    }
    return hash_bytes(r, buf, n);
}

static bool backend_equal(const struct sg_backend *a, const struct sg_backend *b)
{
    if (a->port != b->port || a->proxy_protocol != b->proxy_protocol)
        return false;
    if ((a->host == NULL) != (b->host == NULL))
        return false;
    if (a->host != NULL)
        return strcmp(a->host, b->host) == 0;
    return memcmp(&a->ip, &b->ip, sizeof(a->ip)) == 0;
}

static uint64_t entry_hash(const struct sg_routes *r, const struct entry *e)
{
    size_t len;
    const char *k = entry_key(e, &len);
    return hash_bytes(r, k, len);
}

/* Doubles a table, re-hashing from the entries (or backends). */
static bool table_grow(struct sg_routes *r, struct table *t, bool backends)
{
    struct table n;
    if (!table_init(&n, (t->mask + 1) * 2))
        return false;
    for (size_t i = 0; i <= t->mask; i++) {
        uint64_t s = t->slots[i];
        if (s == 0)
            continue;
        uint32_t idx = (uint32_t)(s & 0xffffffffu) - 1;
        uint64_t h = backends ? backend_hash(r, &r->backends[idx]) : entry_hash(r, &r->entries[idx]);
        table_put(&n, h, idx);
    }
    free(t->slots);
    *t = n;
    return true;
}

/* Finds <key> in <t>; returns the entry index or -1. */
static long table_find(const struct sg_routes *r, const struct table *t, const char *key,
                       size_t len, uint64_t hash)
{
    size_t i = (size_t)hash & t->mask;
    uint64_t tag = hash & 0xffffffff00000000ULL;
    for (;;) {
        uint64_t s = t->slots[i];
        if (s == 0)
            return -1;
        if ((s & 0xffffffff00000000ULL) == tag) {
            uint32_t idx = (uint32_t)(s & 0xffffffffu) - 1;
            size_t elen;
            const char *ek = entry_key(&r->entries[idx], &elen);
            if (elen == len && memcmp(ek, key, len) == 0)
                return (long)idx;
        }
        i = (i + 1) & t->mask;
    }
}

struct sg_routes_builder *sg_routes_builder_new(void)
{
    struct sg_routes_builder *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return NULL;
    struct sg_routes *r = &b->r;
    if (getrandom(r->key, sizeof(r->key), 0) != (ssize_t)sizeof(r->key)) {
        /* Without the kernel's randomness the table still works, but its
         * layout becomes predictable; mix in what varies. */
        uint64_t x = (uint64_t)(uintptr_t)b ^ (uint64_t)(uintptr_t)&x;
        memcpy(r->key, &x, sizeof(x));
    }
    sg_arena_init(&r->arena, 256 * 1024);
    if (!table_init(&r->exact, 16) || !table_init(&r->wild, 16) ||
        !table_init(&r->backend_index, 16)) {
        sg_routes_builder_free(b);
        return NULL;
    }
    return b;
}

/* Returns the index of an equal backend, adding it if it is new; -1 on OOM. */
static long intern_backend(struct sg_routes *r, const struct sg_backend *be)
{
    uint64_t h = backend_hash(r, be);
    struct table *t = &r->backend_index;
    uint64_t tag = h & 0xffffffff00000000ULL;
    for (size_t i = (size_t)h & t->mask;; i = (i + 1) & t->mask) {
        uint64_t s = t->slots[i];
        if (s == 0)
            break;
        uint32_t idx = (uint32_t)(s & 0xffffffffu) - 1;
        if ((s & 0xffffffff00000000ULL) == tag && backend_equal(&r->backends[idx], be))
            return idx;
    }
    if (r->nbackends == r->backends_cap) {
        size_t cap = r->backends_cap ? r->backends_cap * 2 : 64;
        struct sg_backend *nb = realloc(r->backends, cap * sizeof(*nb));
        if (nb == NULL)
            return -1;
        r->backends = nb;
        r->backends_cap = cap;
    }
    struct sg_backend *slot = &r->backends[r->nbackends];
    *slot = *be;
    if (be->host != NULL) {
        slot->host = sg_arena_strndup(&r->arena, be->host, strlen(be->host));
        if (slot->host == NULL)
            return -1;
    }
    if ((t->used + 1) * 2 > t->mask + 1 && !table_grow(r, t, true))
        return -1;
    table_put(t, h, (uint32_t)r->nbackends);
    return (long)r->nbackends++;
}

enum sg_routes_add sg_routes_builder_add(struct sg_routes_builder *b, const struct sg_name *name,
                                         const struct sg_backend *backend)
{
    struct sg_routes *r = &b->r;
    bool wildcard = sg_name_is_wildcard(name);
    struct table *t = wildcard ? &r->wild : &r->exact;
    const char *key = wildcard ? name->s + 2 : name->s;
    size_t klen = wildcard ? name->len - 2 : name->len;
    uint64_t h = hash_bytes(r, key, klen);
    if (table_find(r, t, key, klen, h) >= 0)
        return SG_ROUTES_DUPLICATE;
    if (r->nentries >= UINT32_MAX - 1)
        return SG_ROUTES_NOMEM;

    long bi = intern_backend(r, backend);
    if (bi < 0)
        return SG_ROUTES_NOMEM;
    if (r->nentries == r->entries_cap) {
        size_t cap = r->entries_cap ? r->entries_cap * 2 : 64;
        struct entry *ne = realloc(r->entries, cap * sizeof(*ne));
        if (ne == NULL)
            return SG_ROUTES_NOMEM;
        r->entries = ne;
        r->entries_cap = cap;
    }
    struct entry *e = &r->entries[r->nentries];
    e->name = sg_arena_strndup(&r->arena, name->s, name->len);
    if (e->name == NULL)
        return SG_ROUTES_NOMEM;
    e->len = (uint8_t)name->len;
    e->wildcard = wildcard;
    e->backend = (uint32_t)bi;
    if ((t->used + 1) * 2 > t->mask + 1 && !table_grow(r, t, false))
        return SG_ROUTES_NOMEM;
    table_put(t, h, (uint32_t)r->nentries);
    r->nentries++;
    return SG_ROUTES_ADDED;
}

bool sg_routes_builder_set_fallback(struct sg_routes_builder *b, const struct sg_backend *backend)
{
    struct sg_routes *r = &b->r;
    r->fallback = *backend;
    r->has_fallback = true;
    if (backend->host != NULL) {
        r->fallback.host = sg_arena_strndup(&r->arena, backend->host, strlen(backend->host));
        if (r->fallback.host == NULL)
            return false;
    }
    return true;
}

struct sg_routes *sg_routes_build(struct sg_routes_builder *b)
{
    struct sg_routes *r = &b->r;
    free(r->backend_index.slots);
    r->backend_index.slots = NULL;
    /* Give back what the doubling over-allocated: a million routes would
     * otherwise keep up to half a million unused entries. */
    if (r->nentries > 0 && r->nentries < r->entries_cap) {
        struct entry *ne = realloc(r->entries, r->nentries * sizeof(*ne));
        if (ne != NULL) {
            r->entries = ne;
            r->entries_cap = r->nentries;
        }
    }
    if (r->nbackends > 0 && r->nbackends < r->backends_cap) {
        struct sg_backend *nb = realloc(r->backends, r->nbackends * sizeof(*nb));
        if (nb != NULL) {
            r->backends = nb;
            r->backends_cap = r->nbackends;
        }
    }
    return r;
}

void sg_routes_builder_free(struct sg_routes_builder *b)
{
    if (b != NULL)
        sg_routes_free(&b->r);
}

void sg_routes_free(struct sg_routes *r)
{
    if (r == NULL)
        return;
    free(r->exact.slots);
    free(r->wild.slots);
    free(r->backend_index.slots);
    free(r->entries);
    free(r->backends);
    sg_arena_free(&r->arena);
    free(r); /* the builder and the table are the same allocation */
}

/* IPv6 literals, and dotted quads (a top-level label is never all digits),
 * are matched exactly only: "*.2.0.192" must not catch an address. */
static bool is_ip_literal(const struct sg_name *n)
{
    if (n->len > 0 && n->s[0] == '[')
        return true;
    size_t i = n->len;
    while (i > 0 && n->s[i - 1] != '.') {
        if (n->s[i - 1] < '0' || n->s[i - 1] > '9')
            return false;
        i--;
    }
    return i < n->len;
}

void sg_routes_lookup(const struct sg_routes *r, const struct sg_name *name,
                      struct sg_route_result *out)
{
    long idx = table_find(r, &r->exact, name->s, name->len, hash_bytes(r, name->s, name->len));
    if (idx >= 0) {
        out->match = SG_MATCH_EXACT;
        goto found;
    }
    if (r->wild.used > 0 && !is_ip_literal(name)) {
        /* Suffixes after each dot, longest first: the first hit is the most
         * specific wildcard. */
        for (size_t i = 0; i < name->len; i++) {
            if (name->s[i] != '.')
                continue;
            const char *suffix = name->s + i + 1;
            size_t slen = name->len - i - 1;
            idx = table_find(r, &r->wild, suffix, slen, hash_bytes(r, suffix, slen));
            if (idx >= 0) {
                out->match = SG_MATCH_WILDCARD;
                goto found;
            }
        }
    }
    if (r->has_fallback) {
        out->match = SG_MATCH_FALLBACK;
        out->backend = &r->fallback;
        out->pattern = NULL;
        return;
    }
    out->match = SG_MATCH_NONE;
    out->backend = NULL;
    out->pattern = NULL;
    return;

found:
    out->backend = &r->backends[r->entries[idx].backend];
    out->pattern = r->entries[idx].name;
}

size_t sg_routes_count(const struct sg_routes *r)
{
    return r->nentries;
}

size_t sg_routes_backends(const struct sg_routes *r)
{
    return r->nbackends;
}

bool sg_routes_has_fallback(const struct sg_routes *r)
{
    return r->has_fallback;
}

size_t sg_routes_memory(const struct sg_routes *r)
{
    return sizeof(*r) + r->arena.total + (r->exact.mask + 1 + r->wild.mask + 1) * sizeof(uint64_t) +
           r->entries_cap * sizeof(struct entry) + r->backends_cap * sizeof(struct sg_backend);
}

const char *sg_match_str(enum sg_match m)
{
    switch (m) {
    case SG_MATCH_NONE:
        return "none";
    case SG_MATCH_EXACT:
        return "exact";
    case SG_MATCH_WILDCARD:
        return "wildcard";
    case SG_MATCH_FALLBACK:
        return "fallback";
    }
    return "unknown";
}

void sg_backend_from_addr(struct sg_backend *out, const struct sg_addr *a, const char *host,
                          enum sg_proxy_protocol proxy_protocol)
{
    memset(out, 0, sizeof(*out));
    if (a->kind == SG_ADDR_IP)
        out->ip = a->ip;
    else
        out->host = host;
    out->port = a->port;
    out->proxy_protocol = proxy_protocol;
}

char *sg_backend_format(const struct sg_backend *b, uint16_t listener_port, char *buf, size_t cap)
{
    uint16_t port = b->port ? b->port : listener_port;
    if (b->host != NULL) {
        if (port)
            snprintf(buf, cap, "%s:%u", b->host, port);
        else
            snprintf(buf, cap, "%s", b->host);
        return buf;
    }
    if (port == 0)
        return sg_sockaddr_format_ip(&b->ip.sa, true, buf, cap);
    union sg_sockaddr sa = b->ip;
    sg_sockaddr_set_port(&sa, port);
    return sg_sockaddr_format(&sa.sa, buf, cap);
}
