/* One value of a YAML node — a duration, a size, a boolean, an address, a
 * PROXY protocol version — and mappings walked by key tables. Every refusal
 * is reported to the parse's diag with the node's position. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "config_internal.h"

/* What a duration may be: long enough for any timeout, short enough that
 * adding it to a clock in milliseconds cannot overflow. */
#define MAX_DURATION_MS (7ull * 24 * 3600 * 1000)
/* What a size may be before its unit: 1 TiB, far past any limit we check. */
#define MAX_SIZE (1ull << 40)

void config_error(struct config_ctx *c, const struct sg_ynode *at, const char *fmt, ...)
{
    char msg[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    sg_diag_add(c->diag, c->file, at ? at->line : 0, at ? at->col : 0, "%s", msg);
}

/* ---- numbers with units ------------------------------------------------ */

/* Reads the decimal digits that <s> starts with (at least one) into *v and
 * returns what follows them, the unit; NULL when there is no digit or the
 * number grows past <limit>. */
static const char *leading_number(const char *s, uint64_t limit, uint64_t *v)
{
    if (s[0] < '0' || s[0] > '9')
        return NULL;
    *v = 0;
    for (; *s >= '0' && *s <= '9'; s++) {
        if (*v > limit)
            return NULL;
        *v = *v * 10 + (uint64_t)(*s - '0');
    }
    return s;
}

bool sg_parse_duration(const char *s, uint64_t *ms)
{
    uint64_t v;
    const char *u = leading_number(s, MAX_DURATION_MS, &v);
    if (u == NULL)
        return false;
    uint64_t mul;
    if (strcmp(u, "ms") == 0)
        mul = 1;
    else if (strcmp(u, "s") == 0)
        mul = 1000;
    else if (strcmp(u, "m") == 0)
        mul = 60 * 1000;
    else if (strcmp(u, "h") == 0)
        mul = 3600 * 1000;
    else
        return false;
    if (v > MAX_DURATION_MS / mul)
        return false;
    *ms = v * mul;
    return true;
}

bool sg_parse_size(const char *s, size_t *bytes)
{
    uint64_t v;
    const char *u = leading_number(s, MAX_SIZE, &v);
    if (u == NULL)
        return false;
    uint64_t mul;
    if (*u == '\0' || strcmp(u, "B") == 0)
        mul = 1;
    else if (strcmp(u, "k") == 0 || strcmp(u, "K") == 0 || strcmp(u, "KiB") == 0)
        mul = 1024;
    else if (strcmp(u, "M") == 0 || strcmp(u, "MiB") == 0)
        mul = 1024 * 1024;
    else
        return false;
    if (v > MAX_SIZE / mul)
        return false;
    *bytes = (size_t)(v * mul);
    return true;
}

bool config_is_number(const char *s, size_t len, size_t min, size_t max, size_t *n)
{
    size_t v;
    if (len == 0 || strspn(s, "0123456789") != len || !sg_parse_size(s, &v) || v < min ||
        v > max)
        return false;
    *n = v;
    return true;
}

/* ---- scalars ----------------------------------------------------------- */

bool config_want_scalar(struct config_ctx *c, const struct sg_ynode *v, const char *what)
{
    if (v->kind == SG_YSCALAR)
        return true;
    config_error(c, v, "%s must be a single value, not %s", what, sg_ynode_kind_str(v->kind));
    return false;
}

bool config_want_string(struct config_ctx *c, const struct sg_ynode *v, const char *what)
{
    if (!config_want_scalar(c, v, what))
        return false;
    if (v->len == 0) {
        config_error(c, v, "%s must not be empty", what);
        return false;
    }
    if (strlen(v->str) != v->len) {
        config_error(c, v, "%s contains a NUL byte", what);
        return false;
    }
    return true;
}

const char *config_strdup(struct config_ctx *c, const struct sg_ynode *v)
{
    const char *p = sg_arena_strndup(&c->snap->arena, v->str, v->len);
    if (p == NULL)
        config_error(c, v, "out of memory");
    return p;
}

void config_get_duration(struct config_ctx *c, const struct sg_ynode *v, uint64_t *ms,
                         const char *what)
{
    if (!config_want_string(c, v, what))
        return;
    uint64_t n;
    if (!sg_parse_duration(v->str, &n) || n == 0)
        config_error(c, v,
                     "%s: invalid duration '%s' (write e.g. 500ms, 10s, 5m or 1h; at most 7 days)",
                     what, v->str);
    else
        *ms = n;
}

void config_get_size(struct config_ctx *c, const struct sg_ynode *v, size_t *out, const char *what,
                     size_t min, size_t max)
{
    if (!config_want_string(c, v, what))
        return;
    size_t n;
    if (!sg_parse_size(v->str, &n))
        config_error(c, v, "%s: invalid size '%s' (write e.g. 16384, 16KiB or 1MiB)", what,
                     v->str);
    else if (n < min || n > max)
        config_error(c, v, "%s: %zu bytes is out of range (%zu to %zu)", what, n, min, max);
    else
        *out = n;
}

void config_get_bool(struct config_ctx *c, const struct sg_ynode *v, bool *out, const char *what)
{
    if (!config_want_string(c, v, what))
        return;
    if (strcmp(v->str, "true") == 0 || strcmp(v->str, "yes") == 0 || strcmp(v->str, "on") == 0)
        *out = true;
    else if (strcmp(v->str, "false") == 0 || strcmp(v->str, "no") == 0 ||
             strcmp(v->str, "off") == 0)
        *out = false;
    else
        config_error(c, v, "%s must be true or false, not '%s'", what, v->str);
}

bool config_get_proxy_protocol(struct config_ctx *c, const struct sg_ynode *v,
                               enum sg_proxy_protocol *out)
{
    if (!config_want_string(c, v, "proxy_protocol"))
        return false;
    if (strcmp(v->str, "none") == 0 || strcmp(v->str, "off") == 0)
        *out = SG_PROXY_NONE;
    else if (strcmp(v->str, "v1") == 0)
        *out = SG_PROXY_V1;
    else if (strcmp(v->str, "v2") == 0)
        *out = SG_PROXY_V2;
    else {
        config_error(c, v, "proxy_protocol must be none, v1 or v2, not '%s'", v->str);
        return false;
    }
    return true;
}

bool config_get_backend(struct config_ctx *c, const struct sg_ynode *v, struct sg_addr *a,
                        struct sg_backend *out, enum sg_proxy_protocol proxy_protocol,
                        struct sg_arena *arena)
{
    if (!config_want_string(c, v, "backend"))
        return false;
    enum sg_addr_status st = sg_addr_parse(v->str, v->len, SG_ADDR_ALLOW_HOSTNAME, a);
    if (st != SG_ADDR_OK) {
        config_error(c, v, "backend '%s': %s", v->str, sg_addr_status_str(st));
        return false;
    }
    const char *host = a->host.s;
    if (a->kind == SG_ADDR_HOSTNAME && arena != NULL) {
        host = sg_arena_strndup(arena, a->host.s, a->host.len);
        if (host == NULL) {
            config_error(c, v, "out of memory");
            return false;
        }
    }
    sg_backend_from_addr(out, a, host, proxy_protocol);
    return true;
}

/* Judges <be> on <port> (a port-less backend's candidate); reports at <v>
 * and returns false when refused. */
static bool check_on_port(struct config_ctx *c, const struct sg_ynode *v,
                          const struct sg_backend *be, uint16_t port, const char *listener)
{
    union sg_sockaddr a = be->ip;
    sg_sockaddr_set_port(&a, port);
    enum sg_backend_verdict vd = sg_backend_check(&c->snap->backend_policy, &a.sa);
    if (vd == SG_BACKEND_OK)
        return true;
    char on[100] = "";
    if (be->port == 0)
        snprintf(on, sizeof(on), " on port %u (listener '%s')", port, listener);
    config_error(c, v, "backend '%s'%s refused: %s%s", v->str, on, sg_backend_verdict_str(vd),
                 sg_backend_verdict_is_default(vd) ? " (set backend_networks to allow it)" : "");
    return false;
}

/* Judges a port-less backend on each port <l> may give it; false at the
 * first refusal. */
static bool check_listener_ports(struct config_ctx *c, const struct sg_ynode *v,
                                 const struct sg_backend *be, const struct sg_listener_spec *l)
{
    const char *name = l->name ? l->name : "?";
    if (l->protocol != SG_PROTO_TCP && l->backend_port != 0)
        return check_on_port(c, v, be, l->backend_port, name);
    for (size_t i = 0; i < l->naddrs; i++)
        if (!check_on_port(c, v, be, sg_sockaddr_port(&l->addrs[i].addr.sa), name))
            return false;
    return true;
}

bool config_check_backend(struct config_ctx *c, const struct sg_ynode *v,
                          const struct sg_backend *be, const struct sg_listener_spec *tcp)
{
    if (be->host != NULL || !c->policy_built)
        return true;
    if (be->port != 0)
        return check_on_port(c, v, be, be->port, NULL);
    if (tcp != NULL)
        return check_listener_ports(c, v, be, tcp);
    const struct sg_snapshot *s = c->snap;
    for (size_t i = 0; i < s->nlisteners; i++)
        if (s->listeners[i].protocol != SG_PROTO_TCP &&
            !check_listener_ports(c, v, be, &s->listeners[i]))
            return false;
    return true;
}

/* ---- mappings ---------------------------------------------------------- */

/* Reports an unknown key <k>, listing what <keys> would have accepted. */
static void unknown_key(struct config_ctx *c, const struct sg_ynode *k, const char *what,
                        const struct config_key *keys, size_t nkeys)
{
    char expected[512];
    size_t at = 0;
    expected[0] = '\0';
    for (size_t j = 0; j < nkeys && at < sizeof(expected); j++)
        at += (size_t)snprintf(expected + at, sizeof(expected) - at, "%s%s", j ? ", " : "",
                               keys[j].name);
    config_error(c, k, "unknown key '%s' in %s (expected one of: %s)", k->str, what, expected);
}

unsigned config_walk_map(struct config_ctx *c, const struct sg_ynode *map, const char *what,
                         const struct config_key *keys, size_t nkeys, void *obj)
{
    unsigned seen = 0;
    if (map->kind != SG_YMAP) {
        config_error(c, map, "%s must be a mapping, not %s", what, sg_ynode_kind_str(map->kind));
        return 0;
    }
    for (const struct sg_ynode *k = map->first; k != NULL; k = k->next->next) {
        const struct sg_ynode *v = k->next;
        if (k->kind != SG_YSCALAR) {
            config_error(c, k, "keys of %s must be plain words", what);
            continue;
        }
        size_t i;
        for (i = 0; i < nkeys; i++) {
            if (strcmp(keys[i].name, k->str) == 0)
                break;
        }
        if (i == nkeys) {
            unknown_key(c, k, what, keys, nkeys);
            continue;
        }
        if (seen & (1u << i)) {
            config_error(c, k, "duplicate key '%s' in %s", k->str, what);
            continue;
        }
        seen |= 1u << i;
        keys[i].fn(c, v, obj);
    }
    return seen;
}

/* Calls <fn> on a single value or on each value of a list. */
void config_each_value(struct config_ctx *c, const struct sg_ynode *v, const char *what,
                       void (*fn)(struct config_ctx *, const struct sg_ynode *, void *), void *obj)
{
    if (v->kind == SG_YSCALAR) {
        fn(c, v, obj);
        return;
    }
    if (v->kind != SG_YSEQ) {
        config_error(c, v, "%s must be a value or a list of values", what);
        return;
    }
    if (v->len == 0)
        config_error(c, v, "%s must not be an empty list", what);
    for (const struct sg_ynode *i = v->first; i != NULL; i = i->next)
        fn(c, i, obj);
}

/* Adds the range <v> to <l>; <what> names the key in messages. */
void config_add_cidr(struct config_ctx *c, const struct sg_ynode *v, struct sg_cidr_list *l,
                     const char *what)
{
    char range[64];
    snprintf(range, sizeof(range), "%s range", what);
    if (!config_want_string(c, v, range))
        return;
    struct sg_cidr cidr;
    enum sg_cidr_status st = sg_cidr_parse(v->str, v->len, &cidr);
    if (st != SG_CIDR_OK)
        config_error(c, v, "%s '%s': %s", what, v->str, sg_cidr_status_str(st));
    else if (!sg_cidr_list_add(l, &cidr))
        config_error(c, v, "out of memory");
}

