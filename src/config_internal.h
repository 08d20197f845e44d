/* What the files of the config module share with each other and with no one
 * else:
 *   config.c        file I/O, the map's hash, the public entry points
 *   config_value.c  one value of a YAML node (duration, size, address...) and
 *                   mappings walked by key tables; every refusal goes to diag
 *   config_main.c   the main file's schema
 *   config_map.c    the map's streaming reader
 * Every function here reports its own errors, with the node's position, and
 * leaves its output untouched when it refuses. */
#ifndef SIXGATE_CONFIG_INTERNAL_H
#define SIXGATE_CONFIG_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sixgate/config.h"
#include "sixgate/yaml_tree.h"

/* What one parse carries around. */
struct config_ctx {
    const char *file;      /* the file being read, for messages; borrowed */
    const char *main_path; /* the main file: relative paths start at its folder; borrowed */
    struct sg_diag *diag;
    struct sg_snapshot *snap;         /* being filled */
    struct sg_routes_builder *routes; /* the map's routes, frozen at the end */
    size_t nroutes_seen;              /* route entries in the map, valid or not */
    const struct sg_host_addrs *host; /* this host's addresses; borrowed, may be NULL */
    bool policy_built; /* the main file was read: backends can be judged */
};

/* Reports "<c->file>:LINE:COL: message" at <at> (NULL: no position). */
void config_error(struct config_ctx *c, const struct sg_ynode *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Whether <v> is a scalar; otherwise reports that <what> must be one. */
bool config_want_scalar(struct config_ctx *c, const struct sg_ynode *v, const char *what);

/* Whether <v> is a non-empty scalar without a NUL byte, so that v->str can be
 * used as a C string; otherwise reports why not. */
bool config_want_string(struct config_ctx *c, const struct sg_ynode *v, const char *what);

/* Copies <v>'s string into the snapshot's arena; NULL (reported) when out of memory. */
const char *config_strdup(struct config_ctx *c, const struct sg_ynode *v);

/* Whether <s> is written in decimal digits only and lies in <min>..<max>;
 * sets *n if so. Reports nothing: callers say what the number is for. */
bool config_is_number(const char *s, size_t len, size_t min, size_t max, size_t *n);

/* Typed values: each sets *out only if <v> is valid, else reports why,
 * naming the value <what> ("timeouts.idle"). */
void config_get_duration(struct config_ctx *c, const struct sg_ynode *v, uint64_t *ms,
                         const char *what);
void config_get_size(struct config_ctx *c, const struct sg_ynode *v, size_t *out, const char *what,
                     size_t min, size_t max);
void config_get_bool(struct config_ctx *c, const struct sg_ynode *v, bool *out, const char *what);
bool config_get_proxy_protocol(struct config_ctx *c, const struct sg_ynode *v,
                               enum sg_proxy_protocol *out);

/* Parses a backend address into <out>; a host name is copied into <arena>
 * when one is given, else it points into <a>, which must outlive <out>. */
bool config_get_backend(struct config_ctx *c, const struct sg_ynode *v, struct sg_addr *a,
                        struct sg_backend *out, enum sg_proxy_protocol proxy_protocol,
                        struct sg_arena *arena);

/* Fills c->snap->backend_policy from what the main file said (called once
 * it is read, before the map). */
void config_build_policy(struct config_ctx *c);

/* Whether the backend parsed from <v> may be used: an IP literal is judged
 * by the backend policy (host names are judged per connection; nothing is
 * judged when the main file could not be read, which was reported). A backend
 * without a port is judged on each port it may be given: <tcp>'s own
 * ports for a tcp listener's backend, else every tls/http listener's
 * backend_port or listen ports. Reports a refusal at <v>. */
bool config_check_backend(struct config_ctx *c, const struct sg_ynode *v,
                          const struct sg_backend *be, const struct sg_listener_spec *tcp);

/* One key of a mapping and what handles its value; <obj> is what the
 * mapping fills. */
struct config_key {
    const char *name;
    void (*fn)(struct config_ctx *c, const struct sg_ynode *value, void *obj);
};

/* Walks a mapping: each key must appear in <keys> and only once. Returns a
 * bit mask of the keys seen (bit i for keys[i]), for required-key checks. */
unsigned config_walk_map(struct config_ctx *c, const struct sg_ynode *map, const char *what,
                         const struct config_key *keys, size_t nkeys, void *obj);

/* The two files. Each reports every error it finds and fills c->snap (and
 * c->routes, for the map) with what is valid. */
void config_parse_main(struct config_ctx *c, const unsigned char *buf, size_t len);
void config_parse_map(struct config_ctx *c, const unsigned char *buf, size_t len);

/* Calls <fn> on a single value or on each value of a list; <what> names
 * the key in messages. */
void config_each_value(struct config_ctx *c, const struct sg_ynode *v, const char *what,
                       void (*fn)(struct config_ctx *, const struct sg_ynode *, void *), void *obj);

/* Adds the range <v> to <l>; <what> names the key in messages. */
void config_add_cidr(struct config_ctx *c, const struct sg_ynode *v, struct sg_cidr_list *l,
                     const char *what);

/* The main file's "listeners" (config_listeners.c). */
void config_key_listeners(struct config_ctx *c, const struct sg_ynode *v, void *obj);

#endif
