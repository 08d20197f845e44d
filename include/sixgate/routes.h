/* The routing table: host name -> backend. Built once from the map, then
 * frozen; lookups take a const table and may run on any thread. */
#ifndef SIXGATE_ROUTES_H
#define SIXGATE_ROUTES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sixgate/address.h"
#include "sixgate/hostname.h"
#include "sixgate/proxy_header.h"

/* Where a connection goes. Owned by the table (or snapshot) that holds it. */
struct sg_backend {
    union sg_sockaddr ip; /* the address, when <host> is NULL */
    const char *host;     /* a DNS name resolved to AAAA on connect; NULL for a literal */
    uint16_t port;        /* 0: the port the client connected to */
    enum sg_proxy_protocol proxy_protocol;
};

/* Fills <out> from a parsed address; <host> (if any) must outlive <out>. */
void sg_backend_from_addr(struct sg_backend *out, const struct sg_addr *a, const char *host,
                          enum sg_proxy_protocol proxy_protocol);

/* Formats the backend as written: "[2001:db8::5]:443", "name:443"; a port
 * of 0 is shown as <listener_port> (when non-zero) or left out. */
char *sg_backend_format(const struct sg_backend *b, uint16_t listener_port, char *buf,
                        size_t cap);

enum sg_match {
    SG_MATCH_NONE = 0, /* refused: no route and no fallback */
    SG_MATCH_EXACT,
    SG_MATCH_WILDCARD,
    SG_MATCH_FALLBACK,
};

const char *sg_match_str(enum sg_match m);

struct sg_route_result {
    enum sg_match match;
    const struct sg_backend *backend; /* NULL when SG_MATCH_NONE; borrowed from the table */
    const char *pattern; /* the map key that matched ("*.example.org"), or NULL */
};

struct sg_routes;
struct sg_routes_builder;

/* Returns a new builder or NULL when out of memory. */
struct sg_routes_builder *sg_routes_builder_new(void);

enum sg_routes_add {
    SG_ROUTES_ADDED = 0,
    SG_ROUTES_DUPLICATE, /* the same normalised name is already in the table */
    SG_ROUTES_NOMEM,
};

/* Adds a route from a normalised <name> (a wildcard "*.x" matches names
 * below x). <backend> is copied, its host name too. */
enum sg_routes_add sg_routes_builder_add(struct sg_routes_builder *b, const struct sg_name *name,
                                         const struct sg_backend *backend);

/* Sets the backend for names that match nothing; false when out of memory. */
bool sg_routes_builder_set_fallback(struct sg_routes_builder *b,
                                    const struct sg_backend *backend);

/* Freezes the builder into a table and frees the builder, even on failure.
 * Returns NULL when out of memory. */
struct sg_routes *sg_routes_build(struct sg_routes_builder *b);

void sg_routes_builder_free(struct sg_routes_builder *b);
void sg_routes_free(struct sg_routes *r);

/* Looks a normalised name up: exact beats wildcard, the longest wildcard
 * suffix wins, then the fallback. IP literals match exactly or fall back. */
void sg_routes_lookup(const struct sg_routes *r, const struct sg_name *name,
                      struct sg_route_result *out);

size_t sg_routes_count(const struct sg_routes *r);    /* exact + wildcard routes */
size_t sg_routes_backends(const struct sg_routes *r); /* distinct backends */
bool sg_routes_has_fallback(const struct sg_routes *r);
size_t sg_routes_memory(const struct sg_routes *r);   /* bytes allocated */

#endif
