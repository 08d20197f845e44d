/* The routing map, read from libyaml events one route at a time: only the
 * route being checked exists as a tree, so a map of a million routes never
 * costs a document's worth of memory. */
#include <stdio.h>
#include <string.h>

#include "config_internal.h"
#include "util.h"

/* What the map's "version" may hold: it is logged and shown in /metrics. */
#define PRINTABLE                                                                                  \
    " !#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[]^_`abcdefghijklmnopqrstuvwxyz{|}~"

/* Route names are quoted in messages up to this many bytes. */
#define ROUTE_NAME_SHOWN 80

/* ---- one route ----------------------------------------------------------- */

struct route_tmp {
    const struct sg_ynode *backend;
    enum sg_proxy_protocol proxy_protocol;
};

static void key_route_backend(struct config_ctx *c, const struct sg_ynode *v, void *obj)
{
    (void)c;
    ((struct route_tmp *)obj)->backend = v;
}

static void key_route_proxy_protocol(struct config_ctx *c, const struct sg_ynode *v, void *obj)
{
    config_get_proxy_protocol(c, v, &((struct route_tmp *)obj)->proxy_protocol);
}

/* "backend" comes first: parse_route_value() checks bit 0. */
static const struct config_key route_keys[] = {
    {"backend", key_route_backend},
    {"proxy_protocol", key_route_proxy_protocol},
};

/* A route's value: a backend address, or a mapping with 'backend' and
 * options. Fills <out> (host names point into <a>). */
static bool parse_route_value(struct config_ctx *c, const struct sg_ynode *v, const char *what,
                              struct sg_addr *a, struct sg_backend *out)
{
    if (v->kind == SG_YSCALAR)
        return config_get_backend(c, v, a, out, SG_PROXY_NONE, NULL) &&
               config_check_backend(c, v, out, NULL);
    struct route_tmp t = {0};
    unsigned seen = config_walk_map(c, v, what, route_keys, SG_ARRAY_LEN(route_keys), &t);
    if (v->kind != SG_YMAP)
        return false;
    if (!(seen & 1u)) {
        config_error(c, v, "%s needs a 'backend'", what);
        return false;
    }
    return config_get_backend(c, t.backend, a, out, t.proxy_protocol, NULL) &&
           config_check_backend(c, t.backend, out, NULL);
}

static void add_route(struct config_ctx *c, const struct sg_ynode *k, const struct sg_ynode *v)
{
    c->nroutes_seen++;
    if (k->kind != SG_YSCALAR) {
        config_error(c, k, "a route name must be a host name, not %s", sg_ynode_kind_str(k->kind));
        return;
    }
    int shown = (int)(k->len > ROUTE_NAME_SHOWN ? ROUTE_NAME_SHOWN : k->len);
    struct sg_name name;
    enum sg_name_status st =
        sg_name_normalize(k->str, k->len, SG_NAME_ALLOW_WILDCARD | SG_NAME_ALLOW_IP, &name);
    if (st != SG_NAME_OK) {
        config_error(c, k, "route '%.*s': %s", shown, k->str, sg_name_status_str(st));
        /* the value is still checked */
    }
    struct sg_addr a;
    struct sg_backend be;
    char what[300];
    snprintf(what, sizeof(what), "route '%.*s'", shown, k->str);
    if (!parse_route_value(c, v, what, &a, &be) || st != SG_NAME_OK)
        return;
    switch (sg_routes_builder_add(c->routes, &name, &be)) {
    case SG_ROUTES_ADDED:
        break;
    case SG_ROUTES_DUPLICATE:
        config_error(c, k,
                     "duplicate route '%s' (names are compared case-insensitively, without a "
                     "trailing dot)",
                     name.s);
        break;
    case SG_ROUTES_NOMEM:
        config_error(c, k, "out of memory");
        break;
    }
}

/* ---- the map's keys ------------------------------------------------------ */

static void diag_at_event(struct config_ctx *c, const yaml_event_t *ev, const char *msg)
{
    sg_diag_add(c->diag, c->file, ev->start_mark.line + 1, ev->start_mark.column + 1, "%s", msg);
}

/* Reads the routes mapping, whose first event is <start>, one route at a
 * time. An empty value ("routes:" alone) is no route at all. */
static void parse_routes_stream(struct config_ctx *c, struct sg_yreader *r, yaml_event_t *start)
{
    static const char not_a_mapping[] = "routes must be a mapping of names to backends";
    if (start->type == YAML_SCALAR_EVENT) {
        bool null = start->data.scalar.length == 0 ||
                    (start->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
                     strcmp((const char *)start->data.scalar.value, "null") == 0);
        if (!null)
            diag_at_event(c, start, not_a_mapping);
        yaml_event_delete(start);
        return;
    }
    if (start->type != YAML_MAPPING_START_EVENT) {
        diag_at_event(c, start, not_a_mapping);
        (void)sg_yreader_node(r, start); /* skipped: only its syntax errors matter */
        return;
    }
    yaml_event_delete(start);
    yaml_event_t ev;
    for (;;) {
        if (!sg_yreader_next(r, &ev))
            return;
        if (ev.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&ev);
            return;
        }
        struct sg_ynode *k = sg_yreader_node(r, &ev);
        if (k == NULL || !sg_yreader_next(r, &ev))
            return;
        struct sg_ynode *v = sg_yreader_node(r, &ev);
        if (v == NULL)
            return;
        add_route(c, k, v);
        sg_arena_reset(&r->arena);
    }
}

static void parse_fallback(struct config_ctx *c, const struct sg_ynode *v)
{
    struct sg_addr a;
    struct sg_backend be;
    if (!parse_route_value(c, v, "fallback", &a, &be))
        return;
    if (!sg_routes_builder_set_fallback(c->routes, &be))
        config_error(c, v, "out of memory");
}

static void parse_version(struct config_ctx *c, const struct sg_ynode *v)
{
    if (!config_want_string(c, v, "version"))
        return;
    if (v->len > 200 || strspn(v->str, PRINTABLE) != v->len)
        config_error(c, v, "version must be 1 to 200 printable ASCII characters");
    else
        c->snap->map_version = config_strdup(c, v);
}

enum map_key { MAP_ROUTES, MAP_FALLBACK, MAP_VERSION, MAP_UNKNOWN };

static const char *const map_key_names[] = {
    [MAP_ROUTES] = "routes",
    [MAP_FALLBACK] = "fallback",
    [MAP_VERSION] = "version",
};

static enum map_key map_key_of(const struct sg_ynode *k)
{
    for (size_t i = 0; k->kind == SG_YSCALAR && i < SG_ARRAY_LEN(map_key_names); i++) {
        if (strcmp(k->str, map_key_names[i]) == 0)
            return (enum map_key)i;
    }
    return MAP_UNKNOWN;
}

/* Reads the value of the map's key <k>, whose first event is <ev>, and
 * marks the key in <seen>. Returns false when the reader cannot go on. */
static bool parse_map_entry(struct config_ctx *c, struct sg_yreader *r, const struct sg_ynode *k,
                            yaml_event_t *ev, unsigned *seen)
{
    enum map_key key = map_key_of(k);
    if (key != MAP_UNKNOWN && (*seen & (1u << key))) {
        config_error(c, k, "duplicate key '%s' in the map", k->str);
        return sg_yreader_node(r, ev) != NULL;
    }
    if (key != MAP_UNKNOWN)
        *seen |= 1u << key;
    if (key == MAP_ROUTES) {
        parse_routes_stream(c, r, ev); /* streamed, never a tree */
        return true;
    }
    struct sg_ynode *v = sg_yreader_node(r, ev);
    if (v == NULL)
        return false;
    switch (key) {
    case MAP_ROUTES:
        break;
    case MAP_FALLBACK:
        parse_fallback(c, v);
        break;
    case MAP_VERSION:
        parse_version(c, v);
        break;
    case MAP_UNKNOWN:
        if (k->kind == SG_YSCALAR) /* other keys were reported by the caller */
            config_error(c, k,
                         "unknown key '%s' in the map (expected one of: routes, fallback, "
                         "version)",
                         k->str);
        break;
    }
    return true;
}

void config_parse_map(struct config_ctx *c, const unsigned char *buf, size_t len)
{
    struct sg_yreader r;
    yaml_event_t ev;
    unsigned seen = 0;
    sg_yreader_init(&r, c->file, buf, len, c->diag);
    if (!sg_yreader_begin(&r, "the map is empty (expected 'routes:')", &ev))
        goto out;
    if (ev.type != YAML_MAPPING_START_EVENT) {
        diag_at_event(c, &ev,
                      "the map must be a mapping with 'routes:' and optionally 'fallback:'");
        yaml_event_delete(&ev);
        goto out;
    }
    yaml_event_delete(&ev);
    for (;;) {
        if (!sg_yreader_next(&r, &ev))
            goto out;
        if (ev.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&ev);
            break;
        }
        struct sg_ynode *k = sg_yreader_node(&r, &ev);
        if (k == NULL || !sg_yreader_next(&r, &ev))
            goto out;
        if (k->kind != SG_YSCALAR)
            config_error(c, k, "keys of the map must be plain words");
        if (!parse_map_entry(c, &r, k, &ev, &seen) || r.failed)
            goto out;
        sg_arena_reset(&r.arena);
    }
    if (!sg_yreader_finish(&r))
        goto out;
    bool has_fallback = seen & (1u << MAP_FALLBACK);
    if (!(seen & (1u << MAP_ROUTES)) && !has_fallback)
        sg_diag_add(c->diag, c->file, 1, 1, "the map has no 'routes' and no 'fallback'");
    else if (c->nroutes_seen == 0 && !has_fallback)
        sg_diag_add(c->diag, c->file, 1, 1,
                    "the map has no routes and no fallback: it would refuse every name");
out:
    sg_yreader_close(&r);
}
