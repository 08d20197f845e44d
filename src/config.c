#include "sixgate/config.h"
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sixgate/yaml_tree.h"

/* Defaults, documented in docs/config.md. */
#define DEFAULT_SNIFF_MS 10000
#define DEFAULT_CONNECT_MS 5000
#define DEFAULT_IDLE_MS 300000
#define DEFAULT_DRAIN_MS 30000
#define DEFAULT_DEBOUNCE_MS 200
#define DEFAULT_DNS_TTL_MS 30000
#define DEFAULT_DNS_NEGATIVE_TTL_MS 5000
#define MAX_DURATION_MS (7ull * 24 * 3600 * 1000)
#define MAX_WORKERS 256
#define MAX_LISTENERS 4096
/* What the map's "version" may hold: it is logged and shown in /metrics. */
#define PRINTABLE                                                                                  \
    " !#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[]^_`abcdefghijklmnopqrstuvwxyz{|}~"

/* What one parse carries around. */
struct ctx {
    const char *file; /* the file being read, for messages */
    struct sg_diag *diag;
    struct sg_snapshot *snap;
    struct sg_routes_builder *routes;
    size_t nroutes_seen;
    sg_config_read_fn read;
    void *read_ctx;
    size_t errors_before; /* errors in the diag before this parse began */
};

static void errf(struct ctx *c, const struct sg_ynode *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void errf(struct ctx *c, const struct sg_ynode *at, const char *fmt, ...)
{
    char msg[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    sg_diag_add(c->diag, c->file, at ? at->line : 0, at ? at->col : 0, "%s", msg);
}

/* ---- values ---------------------------------------------------------- */

bool sg_parse_duration(const char *s, uint64_t *ms)
{
    uint64_t v = 0;
    size_t i = 0;
    if (s[0] < '0' || s[0] > '9')
        return false;
    for (; s[i] >= '0' && s[i] <= '9'; i++) {
        if (v > MAX_DURATION_MS)
            return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    const char *u = s + i;
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
    uint64_t v = 0;
    size_t i = 0;
    if (s[0] < '0' || s[0] > '9')
        return false;
    for (; s[i] >= '0' && s[i] <= '9'; i++) {
        if (v > (1ull << 40))
            return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    const char *u = s + i;
    uint64_t mul;
    if (*u == '\0' || strcmp(u, "B") == 0)
        mul = 1;
    else if (strcmp(u, "k") == 0 || strcmp(u, "K") == 0 || strcmp(u, "KiB") == 0)
        mul = 1024;
    else if (strcmp(u, "M") == 0 || strcmp(u, "MiB") == 0)
        mul = 1024 * 1024;
    else
        return false;
    if (v > (1ull << 40) / mul)
        return false;
    *bytes = (size_t)(v * mul);
    return true;
}

static bool want_scalar(struct ctx *c, const struct sg_ynode *v, const char *what)
{
    if (v->kind == SG_YSCALAR)
        return true;
    errf(c, v, "%s must be a single value, not %s", what, sg_ynode_kind_str(v->kind));
    return false;
}

static bool want_string(struct ctx *c, const struct sg_ynode *v, const char *what)
{
    if (!want_scalar(c, v, what))
        return false;
    if (v->len == 0) {
        errf(c, v, "%s must not be empty", what);
        return false;
    }
    if (strlen(v->str) != v->len) {
        errf(c, v, "%s contains a NUL byte", what);
        return false;
    }
    return true;
}

static const char *arena_str(struct ctx *c, const struct sg_ynode *v)
{
    const char *p = sg_arena_strndup(&c->snap->arena, v->str, v->len);
    if (p == NULL)
        errf(c, v, "out of memory");
    return p;
}

static void get_duration(struct ctx *c, const struct sg_ynode *v, uint64_t *ms, const char *what)
{
    if (!want_string(c, v, what))
        return;
    if (!sg_parse_duration(v->str, ms) || *ms == 0)
        errf(c, v, "%s: invalid duration '%s' (write e.g. 500ms, 10s, 5m or 1h; at most 7 days)",
             what, v->str);
}

static void get_size(struct ctx *c, const struct sg_ynode *v, size_t *out, const char *what,
                     size_t min, size_t max)
{
    if (!want_string(c, v, what))
        return;
    size_t n;
    if (!sg_parse_size(v->str, &n))
        errf(c, v, "%s: invalid size '%s' (write e.g. 16384, 16KiB or 1MiB)", what, v->str);
    else if (n < min || n > max)
        errf(c, v, "%s: %zu bytes is out of range (%zu to %zu)", what, n, min, max);
    else
        *out = n;
}

static void get_bool(struct ctx *c, const struct sg_ynode *v, bool *out, const char *what)
{
    if (!want_string(c, v, what))
        return;
    if (strcmp(v->str, "true") == 0 || strcmp(v->str, "yes") == 0 || strcmp(v->str, "on") == 0)
        *out = true;
    else if (strcmp(v->str, "false") == 0 || strcmp(v->str, "no") == 0 ||
             strcmp(v->str, "off") == 0)
        *out = false;
    else
        errf(c, v, "%s must be true or false, not '%s'", what, v->str);
}

static bool get_proxy_protocol(struct ctx *c, const struct sg_ynode *v, enum sg_proxy_protocol *out)
{
    if (!want_string(c, v, "proxy_protocol"))
        return false;
    if (strcmp(v->str, "none") == 0 || strcmp(v->str, "off") == 0)
        *out = SG_PROXY_NONE;
    else if (strcmp(v->str, "v1") == 0)
        *out = SG_PROXY_V1;
    else if (strcmp(v->str, "v2") == 0)
        *out = SG_PROXY_V2;
    else {
        errf(c, v, "proxy_protocol must be none, v1 or v2, not '%s'", v->str);
        return false;
    }
    return true;
}

/* ---- mappings driven by key tables ------------------------------------ */

struct key_def {
    const char *name;
    void (*fn)(struct ctx *c, const struct sg_ynode *value, void *obj);
};

/* Walks a mapping: each key must appear in <keys> and only once. Returns a
 * bit mask of the keys seen (bit i for keys[i]), for required-key checks. */
static unsigned walk_map(struct ctx *c, const struct sg_ynode *map, const char *what,
                         const struct key_def *keys, size_t nkeys, void *obj)
{
    unsigned seen = 0;
    if (map->kind != SG_YMAP) {
        errf(c, map, "%s must be a mapping, not %s", what, sg_ynode_kind_str(map->kind));
        return 0;
    }
    for (const struct sg_ynode *k = map->first; k != NULL; k = k->next->next) {
        const struct sg_ynode *v = k->next;
        if (k->kind != SG_YSCALAR) {
            errf(c, k, "keys of %s must be plain words", what);
            continue;
        }
        size_t i;
        for (i = 0; i < nkeys; i++) {
            if (strcmp(keys[i].name, k->str) == 0)
                break;
        }
        if (i == nkeys) {
            char expected[512];
            size_t at = 0;
            expected[0] = '\0';
            for (size_t j = 0; j < nkeys && at < sizeof(expected); j++)
                at += (size_t)snprintf(expected + at, sizeof(expected) - at, "%s%s",
                                       j ? ", " : "", keys[j].name);
            errf(c, k, "unknown key '%s' in %s (expected one of: %s)", k->str, what, expected);
            continue;
        }
        if (seen & (1u << i)) {
            errf(c, k, "duplicate key '%s' in %s", k->str, what);
            continue;
        }
        seen |= 1u << i;
        keys[i].fn(c, v, obj);
    }
    return seen;
}

/* ---- timeouts, limits, log, admin, reload ------------------------------ */

#define DURATION_KEY(field)                                                                        \
    static void key_timeout_##field(struct ctx *c, const struct sg_ynode *v, void *obj)            \
    {                                                                                              \
        get_duration(c, v, &((struct sg_timeouts *)obj)->field##_ms, "timeouts." #field);          \
    }
DURATION_KEY(sniff)
DURATION_KEY(connect)
DURATION_KEY(idle)
DURATION_KEY(drain)

static const struct key_def timeout_keys[] = {
    {"sniff", key_timeout_sniff},
    {"connect", key_timeout_connect},
    {"idle", key_timeout_idle},
    {"drain", key_timeout_drain},
};

static void key_timeouts(struct ctx *c, const struct sg_ynode *v, void *obj)
{
    (void)obj;
    walk_map(c, v, "timeouts", timeout_keys, SG_ARRAY_LEN(timeout_keys),
             &c->snap->timeouts);
}

static void key_limit_http_head(struct ctx *c, const struct sg_ynode *v, void *obj)
{
    get_size(c, v, &((struct sg_snapshot *)obj)->http_head_max, "limits.http_head", 1024,
             1024 * 1024);
}

static void key_limit_connections(struct ctx *c, const struct sg_ynode *v, void *obj)
{
    get_size(c, v, &((struct sg_snapshot *)obj)->max_connections, "limits.connections", 1,
             10 * 1000 * 1000);
}

static const struct key_def limit_keys[] = {
    {"http_head", key_limit_http_head},
    {"connections", key_limit_connections},
};

static void key_limits(struct ctx *c, const struct sg_ynode *v, void *obj)
{
    walk_map(c, v, "limits", limit_keys, SG_ARRAY_LEN(limit_keys), obj);
}

static void key_log_level(struct ctx *c, const struct sg_ynode *v, void *obj)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    struct sg_snapshot *s = obj;
    if (!want_string(c, v, "log.level"))
        return;
    for (size_t i = 0; i < SG_ARRAY_LEN(names); i++) {
        if (strcmp(v->str, names[i]) == 0) {
            s->log_level = (enum sg_log_level)i;
            return;
        }
    }
    errf(c, v, "log.level must be error, warn, info or debug, not '%s'", v->str);
}

static const char *relative_to(struct ctx *c, const char *base, const struct sg_ynode *v);

static void key_log_access(struct ctx *c, const struct sg_ynode *v, void *obj)
{
    struct sg_snapshot *s = obj;
    if (!want_string(c, v, "log.access"))
        return;
    if (strcmp(v->str, "off") == 0)
        s->access_log = NULL;
    else if (strcmp(v->str, "stderr") == 0)
        s->access_log = "stderr";
    else
        s->access_log = relative_to(c, s->main_path, v);
}

static const struct key_def log_keys[] = {
    {"level", key_log_level},
    {"access", key_log_access},
};

static void key_log(struct ctx *c, const struct sg_ynode *v, void *obj)
{
    walk_map(c, v, "log", log_keys, SG_ARRAY_LEN(log_keys), obj);
}

struct admin_tmp {
    const struct sg_ynode *listen;
    bool allow_remote;
};

static void key_admin_listen(struct ctx *c, const struct sg_ynode *v, void *obj)
{
    struct admin_tmp *a = obj;
    if (!want_string(c, v, "admin.listen"))
        return;
    struct sg_addr addr;
    enum sg_addr_status st = sg_addr_parse(v->str, v->len, SG_ADDR_REQUIRE_PORT, &addr);
    if (st != SG_ADDR_OK) {
        errf(c, v, "admin.listen '%s': %s", v->str, sg_addr_status_str(st));
        return;
    }
    c->snap->has_admin = true;
    c->snap->admin = addr.ip;
    a->listen = v;
}

static void key_admin_allow_remote(struct ctx *c, const struct sg_ynode *v, void *obj)
{
    get_bool(c, v, &((struct admin_tmp *)obj)->allow_remote, "admin.allow_remote");
}

static const struct key_def admin_keys[] = {
    {"listen", key_admin_listen},
    {"allow_remote", key_admin_allow_remote},
};

static bool is_loopback(const union sg_sockaddr *a)
{
    if (a->sa.sa_family == AF_INET)
        return (ntohl(a->in.sin_addr.s_addr) >> 24) == 127;
    return IN6_IS_ADDR_LOOPBACK(&a->in6.sin6_addr);
}

static void key_admin(struct ctx *c, const struct sg_ynode *v, void *obj)
{
    (void)obj;
    struct admin_tmp a = {0};
    unsigned seen =
        walk_map(c, v, "admin", admin_keys, SG_ARRAY_LEN(admin_keys), &a);
    if (v->kind == SG_YMAP && !(seen & 1u))
        errf(c, v, "admin needs 'listen' (e.g. \"127.0.0.1:9180\")");
    if (a.listen != NULL && !a.allow_remote && !is_loopback(&c->snap->admin))
        errf(c, a.listen,
             "admin.listen '%s' is not a loopback address: metrics would be public "
             "(set admin.allow_remote: true if that is intended)",
             a.listen->str);
}

static void key_reload_watch(struct ctx *c, const struct sg_ynode *v, void *obj)
{
    get_bool(c, v, &((struct sg_snapshot *)obj)->watch_map, "reload.watch");
}

static void key_reload_debounce(struct ctx *c, const struct sg_ynode *v, void *obj)
{
    get_duration(c, v, &((struct sg_snapshot *)obj)->watch_debounce_ms, "reload.debounce");
}

static const struct key_def reload_keys[] = {
    {"watch", key_reload_watch},
    {"debounce", key_reload_debounce},
};

static void key_reload(struct ctx *c, const struct sg_ynode *v, void *obj)
{
    walk_map(c, v, "reload", reload_keys, SG_ARRAY_LEN(reload_keys), obj);
}

static void key_resolver_cache(struct ctx *c, const struct sg_ynode *v, void *obj)
{
    get_duration(c, v, &((struct sg_snapshot *)obj)->dns_ttl_ms, "resolver.cache");
}

static void key_resolver_negative_cache(struct ctx *c, const struct sg_ynode *v, void *obj)
{
    get_duration(c, v, &((struct sg_snapshot *)obj)->dns_negative_ttl_ms,
                 "resolver.negative_cache");
}

static const struct key_def resolver_keys[] = {
    {"cache", key_resolver_cache},
    {"negative_cache", key_resolver_negative_cache},
};

static void key_resolver(struct ctx *c, const struct sg_ynode *v, void *obj)
{
    walk_map(c, v, "resolver", resolver_keys, SG_ARRAY_LEN(resolver_keys),
             obj);
}

static void key_workers(struct ctx *c, const struct sg_ynode *v, void *obj)
{
    struct sg_snapshot *s = obj;
    if (!want_string(c, v, "workers"))
        return;
    if (strcmp(v->str, "auto") == 0) {
        s->workers = 0;
        return;
    }
    size_t n;
    if (!sg_parse_size(v->str, &n) || strspn(v->str, "0123456789") != v->len || n < 1 ||
        n > MAX_WORKERS)
        errf(c, v, "workers must be auto or a number from 1 to %d, not '%s'", MAX_WORKERS, v->str);
    else
        s->workers = (unsigned)n;
}

static void key_user(struct ctx *c, const struct sg_ynode *v, void *obj)
{
    if (want_string(c, v, "user"))
        ((struct sg_snapshot *)obj)->user = arena_str(c, v);
}

static void key_group(struct ctx *c, const struct sg_ynode *v, void *obj)
{
    if (want_string(c, v, "group"))
        ((struct sg_snapshot *)obj)->group = arena_str(c, v);
}

/* A path in the config is relative to the folder of <base> (the main file). */
static const char *relative_to(struct ctx *c, const char *base, const struct sg_ynode *v)
{
    if (v->str[0] == '/')
        return arena_str(c, v);
    const char *slash = strrchr(base, '/');
    size_t dir = slash ? (size_t)(slash - base) + 1 : 0;
    char *p = sg_arena_alloc(&c->snap->arena, dir + v->len + 1);
    if (p == NULL) {
        errf(c, v, "out of memory");
        return NULL;
    }
    memcpy(p, base, dir);
    memcpy(p + dir, v->str, v->len + 1);
    return p;
}

static void key_map(struct ctx *c, const struct sg_ynode *v, void *obj)
{
    struct sg_snapshot *s = obj;
    if (want_string(c, v, "map"))
        s->map_path = relative_to(c, s->main_path, v);
}

/* ---- listeners ---------------------------------------------------------- */

struct listener_tmp {
    struct sg_listener_spec *spec;
    const struct sg_ynode *node;
    const struct sg_ynode *backend;
    const struct sg_ynode *proxy_protocol;
    const struct sg_ynode *backend_port;
    bool has_protocol;
};

static void key_listener_name(struct ctx *c, const struct sg_ynode *v, void *obj)
{
    struct listener_tmp *t = obj;
    if (!want_string(c, v, "listener name"))
        return;
    if (v->len > 64 || strspn(v->str, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                      "0123456789_.-") != v->len) {
        errf(c, v, "listener name '%s' must be 1 to 64 letters, digits, '_', '.' or '-'", v->str);
        return;
    }
    t->spec->name = arena_str(c, v);
}

static void key_listener_protocol(struct ctx *c, const struct sg_ynode *v, void *obj)
{
    struct listener_tmp *t = obj;
    if (!want_string(c, v, "protocol"))
        return;
    if (strcmp(v->str, "tls") == 0)
        t->spec->protocol = SG_PROTO_TLS;
    else if (strcmp(v->str, "http") == 0)
        t->spec->protocol = SG_PROTO_HTTP;
    else if (strcmp(v->str, "tcp") == 0)
        t->spec->protocol = SG_PROTO_TCP;
    else {
        errf(c, v, "protocol must be tls, http or tcp, not '%s'", v->str);
        return;
    }
    t->has_protocol = true;
}

/* Calls <fn> on a single value or on each value of a list. */
static void each_value(struct ctx *c, const struct sg_ynode *v, const char *what,
                       void (*fn)(struct ctx *, const struct sg_ynode *, void *), void *obj)
{
    if (v->kind == SG_YSCALAR) {
        fn(c, v, obj);
        return;
    }
    if (v->kind != SG_YSEQ) {
        errf(c, v, "%s must be a value or a list of values", what);
        return;
    }
    if (v->len == 0)
        errf(c, v, "%s must not be an empty list", what);
    for (const struct sg_ynode *i = v->first; i != NULL; i = i->next)
        fn(c, i, obj);
}

static void listen_one(struct ctx *c, const struct sg_ynode *v, void *obj)
{
    struct sg_listener_spec *spec = ((struct listener_tmp *)obj)->spec;
    if (!want_string(c, v, "listen address"))
        return;
    struct sg_addr a;
    enum sg_addr_status st = sg_addr_parse(v->str, v->len, SG_ADDR_REQUIRE_PORT, &a);
    if (st != SG_ADDR_OK) {
        errf(c, v, "listen address '%s': %s", v->str, sg_addr_status_str(st));
        return;
    }
    /* the array was sized for every item of the list up front */
    struct sg_listen_addr *la = &spec->addrs[spec->naddrs++];
    la->addr = a.ip;
    la->text = arena_str(c, v);
}

static void key_listener_listen(struct ctx *c, const struct sg_ynode *v, void *obj)
{
    struct listener_tmp *t = obj;
    size_t n = v->kind == SG_YSEQ ? v->len : 1;
    t->spec->addrs = sg_arena_alloc(&c->snap->arena, (n ? n : 1) * sizeof(*t->spec->addrs));
    if (t->spec->addrs == NULL) {
        errf(c, v, "out of memory");
        return;
    }
    each_value(c, v, "listen", listen_one, t);
}

static void key_listener_backend(struct ctx *c, const struct sg_ynode *v, void *obj)
{
    (void)c;
    ((struct listener_tmp *)obj)->backend = v;
}

static void key_listener_proxy_protocol(struct ctx *c, const struct sg_ynode *v, void *obj)
{
    struct listener_tmp *t = obj;
    if (get_proxy_protocol(c, v, &t->spec->backend.proxy_protocol))
        t->proxy_protocol = v;
}

static void key_listener_backend_port(struct ctx *c, const struct sg_ynode *v, void *obj)
{
    struct listener_tmp *t = obj;
    if (!want_string(c, v, "backend_port"))
        return;
    size_t n;
    if (strspn(v->str, "0123456789") != v->len || !sg_parse_size(v->str, &n) || n < 1 ||
        n > 65535) {
        errf(c, v, "backend_port must be a port number from 1 to 65535, not '%s'", v->str);
        return;
    }
    t->spec->backend_port = (uint16_t)n;
    t->backend_port = v;
}

static void accept_proxy_one(struct ctx *c, const struct sg_ynode *v, void *obj)
{
    struct listener_tmp *t = obj;
    if (!want_string(c, v, "accept_proxy range"))
        return;
    struct sg_cidr cidr;
    enum sg_cidr_status st = sg_cidr_parse(v->str, v->len, &cidr);
    if (st != SG_CIDR_OK)
        errf(c, v, "accept_proxy '%s': %s", v->str, sg_cidr_status_str(st));
    else if (!sg_cidr_list_add(&t->spec->accept_proxy, &cidr))
        errf(c, v, "out of memory");
}

static void key_listener_accept_proxy(struct ctx *c, const struct sg_ynode *v, void *obj)
{
    each_value(c, v, "accept_proxy", accept_proxy_one, obj);
}

static const struct key_def listener_keys[] = {
    {"name", key_listener_name},
    {"listen", key_listener_listen},
    {"protocol", key_listener_protocol},
    {"backend", key_listener_backend},
    {"proxy_protocol", key_listener_proxy_protocol},
    {"accept_proxy", key_listener_accept_proxy},
    {"backend_port", key_listener_backend_port},
};

/* Parses a backend address into <out>; a host name is copied into <arena>
 * when one is given, else it points into <a>, which must outlive <out>. */
static bool parse_backend(struct ctx *c, const struct sg_ynode *v, struct sg_addr *a,
                          struct sg_backend *out, enum sg_proxy_protocol proxy_protocol, struct sg_arena *arena)
{
    if (!want_string(c, v, "backend"))
        return false;
    enum sg_addr_status st = sg_addr_parse(v->str, v->len, SG_ADDR_ALLOW_HOSTNAME, a);
    if (st != SG_ADDR_OK) {
        errf(c, v, "backend '%s': %s", v->str, sg_addr_status_str(st));
        return false;
    }
    const char *host = a->host.s;
    if (a->kind == SG_ADDR_HOSTNAME && arena != NULL) {
        host = sg_arena_strndup(arena, a->host.s, a->host.len);
        if (host == NULL) {
            errf(c, v, "out of memory");
            return false;
        }
    }
    sg_backend_from_addr(out, a, host, proxy_protocol);
    return true;
}

static void parse_listener(struct ctx *c, const struct sg_ynode *v, struct sg_listener_spec *spec)
{
    struct listener_tmp t = {.spec = spec, .node = v};
    spec->line = v->line;
    unsigned seen = walk_map(c, v, "a listener", listener_keys,
                             SG_ARRAY_LEN(listener_keys), &t);
    if (v->kind != SG_YMAP)
        return;
    static const char *const required[] = {"name", "listen", "protocol"};
    for (unsigned i = 0; i < 3; i++) {
        if (!(seen & (1u << i)))
            errf(c, v, "listener needs '%s'", required[i]);
    }
    if (!t.has_protocol)
        return;
    if (spec->protocol == SG_PROTO_TCP) {
        enum sg_proxy_protocol pp = spec->backend.proxy_protocol;
        struct sg_addr a;
        if (t.backend == NULL)
            errf(c, v, "listener '%s' has protocol tcp and needs a 'backend'",
                 spec->name ? spec->name : "?");
        else
            parse_backend(c, t.backend, &a, &spec->backend, pp, &c->snap->arena);
        if (t.backend_port != NULL)
            errf(c, t.backend_port, "'backend_port' is for tls and http listeners; a tcp "
                                    "listener's backend carries its own port");
    } else {
        if (t.backend != NULL)
            errf(c, t.backend,
                 "'backend' is only for protocol tcp; %s listeners route by the map",
                 sg_protocol_str(spec->protocol));
        if (t.proxy_protocol != NULL)
            errf(c, t.proxy_protocol,
                 "'proxy_protocol' is only for protocol tcp; for %s listeners set it per route "
                 "in the map",
                 sg_protocol_str(spec->protocol));
    }
}

static void key_listeners(struct ctx *c, const struct sg_ynode *v, void *obj)
{
    struct sg_snapshot *s = obj;
    if (v->kind != SG_YSEQ) {
        errf(c, v, "listeners must be a list, not %s", sg_ynode_kind_str(v->kind));
        return;
    }
    if (v->len == 0 || v->len > MAX_LISTENERS) {
        errf(c, v, "listeners must hold 1 to %d listeners", MAX_LISTENERS);
        return;
    }
    s->listeners = sg_arena_alloc(&s->arena, v->len * sizeof(*s->listeners));
    if (s->listeners == NULL) {
        errf(c, v, "out of memory");
        return;
    }
    memset(s->listeners, 0, v->len * sizeof(*s->listeners));
    for (const struct sg_ynode *i = v->first; i != NULL; i = i->next)
        parse_listener(c, i, &s->listeners[s->nlisteners++]);

    /* Names and addresses are unique across listeners. */
    for (size_t a = 0; a < s->nlisteners; a++) {
        const struct sg_listener_spec *la = &s->listeners[a];
        for (size_t b = 0; b <= a; b++) {
            const struct sg_listener_spec *lb = &s->listeners[b];
            if (b < a && la->name && lb->name && strcmp(la->name, lb->name) == 0)
                sg_diag_add(c->diag, c->file, la->line, 1,
                            "duplicate listener name '%s' (first at line %u)", la->name,
                            lb->line);
            for (size_t i = 0; i < la->naddrs; i++) {
                for (size_t j = 0; j < (b == a ? i : lb->naddrs); j++) {
                    if (sg_sockaddr_equal(&la->addrs[i].addr.sa, &lb->addrs[j].addr.sa))
                        sg_diag_add(c->diag, c->file, la->line, 1,
                                    "listen address %s is used twice (listener '%s' at line %u)",
                                    la->addrs[i].text, lb->name ? lb->name : "?", lb->line);
                }
            }
        }
    }
}

static const struct key_def main_keys[] = {
    {"listeners", key_listeners}, {"timeouts", key_timeouts}, {"limits", key_limits},
    {"map", key_map},             {"workers", key_workers},   {"user", key_user},
    {"group", key_group},         {"log", key_log},           {"admin", key_admin},
    {"reload", key_reload},       {"resolver", key_resolver},
};

/* ---- the map ------------------------------------------------------------ */

struct route_tmp {
    const struct sg_ynode *backend;
    enum sg_proxy_protocol proxy_protocol;
};

static void key_route_backend(struct ctx *c, const struct sg_ynode *v, void *obj)
{
    (void)c;
    ((struct route_tmp *)obj)->backend = v;
}

static void key_route_proxy_protocol(struct ctx *c, const struct sg_ynode *v, void *obj)
{
    get_proxy_protocol(c, v, &((struct route_tmp *)obj)->proxy_protocol);
}

static const struct key_def route_keys[] = {
    {"backend", key_route_backend},
    {"proxy_protocol", key_route_proxy_protocol},
};

/* A route's value: a backend address, or a mapping with 'backend' and
 * options. Fills <out> (host names point into <a>). */
static bool parse_route_value(struct ctx *c, const struct sg_ynode *v, const char *what,
                              struct sg_addr *a, struct sg_backend *out)
{
    if (v->kind == SG_YSCALAR)
        return parse_backend(c, v, a, out, SG_PROXY_NONE, NULL);
    struct route_tmp t = {0};
    unsigned seen = walk_map(c, v, what, route_keys, SG_ARRAY_LEN(route_keys), &t);
    if (v->kind != SG_YMAP)
        return false;
    if (!(seen & 1u)) {
        errf(c, v, "%s needs a 'backend'", what);
        return false;
    }
    return parse_backend(c, t.backend, a, out, t.proxy_protocol, NULL);
}

static void add_route(struct ctx *c, const struct sg_ynode *k, const struct sg_ynode *v)
{
    c->nroutes_seen++;
    if (k->kind != SG_YSCALAR) {
        errf(c, k, "a route name must be a host name, not %s", sg_ynode_kind_str(k->kind));
        return;
    }
    struct sg_name name;
    enum sg_name_status st =
        sg_name_normalize(k->str, k->len, SG_NAME_ALLOW_WILDCARD | SG_NAME_ALLOW_IP, &name);
    if (st != SG_NAME_OK) {
        errf(c, k, "route '%.*s': %s", (int)(k->len > 80 ? 80 : k->len), k->str,
             sg_name_status_str(st));
        /* the value is still checked */
    }
    struct sg_addr a;
    struct sg_backend be;
    char what[300];
    snprintf(what, sizeof(what), "route '%.*s'", (int)(k->len > 80 ? 80 : k->len), k->str);
    if (!parse_route_value(c, v, what, &a, &be) || st != SG_NAME_OK)
        return;
    switch (sg_routes_builder_add(c->routes, &name, &be)) {
    case SG_ROUTES_ADDED:
        break;
    case SG_ROUTES_DUPLICATE:
        errf(c, k, "duplicate route '%s' (names are compared case-insensitively, without a "
                   "trailing dot)", name.s);
        break;
    case SG_ROUTES_NOMEM:
        errf(c, k, "out of memory");
        break;
    }
}

static bool expect_event(struct sg_yreader *r, yaml_event_t *ev, yaml_event_type_t type)
{
    if (!sg_yreader_next(r, ev))
        return false;
    if (ev->type == type)
        return true;
    yaml_event_delete(ev);
    return false;
}

/* Reads the routes mapping one route at a time: only the route being
 * checked exists as a tree, so a million routes cost no tree memory. */
static void parse_routes_stream(struct ctx *c, struct sg_yreader *r, yaml_event_t *start)
{
    if (start->type == YAML_SCALAR_EVENT) {
        bool null = start->data.scalar.length == 0 ||
                    (start->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
                     strcmp((const char *)start->data.scalar.value, "null") == 0);
        if (!null)
            sg_diag_add(c->diag, c->file, start->start_mark.line + 1, start->start_mark.column + 1,
                        "routes must be a mapping of names to backends");
        yaml_event_delete(start);
        return;
    }
    if (start->type != YAML_MAPPING_START_EVENT) {
        sg_diag_add(c->diag, c->file, start->start_mark.line + 1, start->start_mark.column + 1,
                    "routes must be a mapping of names to backends");
        struct sg_ynode *skip = sg_yreader_node(r, start);
        (void)skip;
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

static void parse_fallback(struct ctx *c, const struct sg_ynode *v)
{
    struct sg_addr a;
    struct sg_backend be;
    if (!parse_route_value(c, v, "fallback", &a, &be))
        return;
    if (!sg_routes_builder_set_fallback(c->routes, &be))
        errf(c, v, "out of memory");
}

static void parse_map(struct ctx *c, const unsigned char *buf, size_t len)
{
    struct sg_yreader r;
    yaml_event_t ev;
    bool seen_routes = false, seen_fallback = false, seen_version = false;
    sg_yreader_init(&r, c->file, buf, len, c->diag);
    if (!sg_yreader_begin(&r, "the map is empty (expected 'routes:')", &ev))
        goto out;
    if (ev.type != YAML_MAPPING_START_EVENT) {
        sg_diag_add(c->diag, c->file, ev.start_mark.line + 1, ev.start_mark.column + 1,
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
            errf(c, k, "keys of the map must be plain words");
        const char *key = k->kind == SG_YSCALAR ? k->str : "";
        bool *seen = strcmp(key, "routes") == 0     ? &seen_routes
                     : strcmp(key, "fallback") == 0 ? &seen_fallback
                     : strcmp(key, "version") == 0  ? &seen_version
                                                    : NULL;
        if (seen != NULL && *seen) {
            errf(c, k, "duplicate key '%s' in the map", key);
            if (sg_yreader_node(&r, &ev) == NULL)
                goto out;
        } else if (seen == &seen_routes) {
            seen_routes = true;
            parse_routes_stream(c, &r, &ev);
        } else {
            struct sg_ynode *v = sg_yreader_node(&r, &ev);
            if (v == NULL)
                goto out;
            if (seen == NULL && k->kind == SG_YSCALAR) {
                errf(c, k, "unknown key '%s' in the map (expected one of: routes, fallback, "
                           "version)", key);
            } else if (seen == NULL) {
                /* reported above */
            } else if (seen == &seen_fallback) {
                seen_fallback = true;
                parse_fallback(c, v);
            } else {
                seen_version = true;
                if (!want_string(c, v, "version"))
                    ;
                else if (v->len > 200 || strspn(v->str, PRINTABLE) != v->len)
                    errf(c, v, "version must be 1 to 200 printable ASCII characters");
                else
                    c->snap->map_version = arena_str(c, v);
            }
        }
        if (r.failed)
            goto out;
        sg_arena_reset(&r.arena);
    }
    if (!sg_yreader_finish(&r))
        goto out;
    if (!seen_routes && !seen_fallback)
        sg_diag_add(c->diag, c->file, 1, 1, "the map has no 'routes' and no 'fallback'");
    else if (c->nroutes_seen == 0 && !seen_fallback)
        sg_diag_add(c->diag, c->file, 1, 1,
                    "the map has no routes and no fallback: it would refuse every name");
out:
    sg_yreader_close(&r);
}

/* ---- files -------------------------------------------------------------- */

int sg_config_read_file(void *ctx, const char *path, unsigned char **buf, size_t *len)
{
    (void)ctx;
    int err = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        err = -errno;
        goto out_close;
    }
    if (!S_ISREG(st.st_mode)) {
        err = -EINVAL;
        goto out_close;
    }
    if ((uint64_t)st.st_size > SG_CONFIG_FILE_MAX) {
        err = -EFBIG;
        goto out_close;
    }
    /* The file may grow while it is read (a writer not using rename): read
     * until EOF within the limit rather than trusting st_size. */
    size_t cap = (size_t)st.st_size + 1, n = 0;
    unsigned char *b = malloc(cap);
    if (b == NULL) {
        err = -ENOMEM;
        goto out_close;
    }
    for (;;) {
        if (n == cap) {
            if (cap >= SG_CONFIG_FILE_MAX) {
                free(b);
                err = -EFBIG;
                goto out_close;
            }
            unsigned char *nb = realloc(b, cap * 2);
            if (nb == NULL) {
                free(b);
                err = -ENOMEM;
                goto out_close;
            }
            b = nb;
            cap *= 2;
        }
        ssize_t got = read(fd, b + n, cap - n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            err = -errno;
            free(b);
            goto out_close;
        }
        if (got == 0)
            break;
        n += (size_t)got;
    }
    *buf = b;
    *len = n;
out_close:
    close(fd);
    return err;
}

static void sha256_hex(const unsigned char *buf, size_t len, char out[65])
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    if (!EVP_Digest(buf, len, md, &mdlen, EVP_sha256(), NULL) || mdlen != 32) {
        memset(out, '0', 64);
        out[64] = '\0';
        return;
    }
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static void parse_main(struct ctx *c, const unsigned char *buf, size_t len)
{
    struct sg_yreader r;
    yaml_event_t ev;
    sg_yreader_init(&r, c->file, buf, len, c->diag);
    if (!sg_yreader_begin(&r, "the file is empty (expected 'listeners:')", &ev))
        goto out;
    struct sg_ynode *root = sg_yreader_node(&r, &ev);
    if (root == NULL || !expect_event(&r, &ev, YAML_DOCUMENT_END_EVENT))
        goto out;
    yaml_event_delete(&ev);
    if (!sg_yreader_finish(&r))
        goto out;
    unsigned seen = walk_map(c, root, "the main config", main_keys,
                             SG_ARRAY_LEN(main_keys), c->snap);
    if (root->kind == SG_YMAP && !(seen & 1u))
        errf(c, root, "the main config needs 'listeners'");
out:
    sg_yreader_close(&r);
}

struct sg_snapshot *sg_config_parse(const char *main_path, const unsigned char *main_buf,
                                    size_t main_len, sg_config_read_fn read, void *read_ctx,
                                    struct sg_diag *diag)
{
    size_t errors_before = sg_diag_errors(diag);
    struct ctx c = {.file = main_path,
                    .diag = diag,
                    .read = read,
                    .read_ctx = read_ctx,
                    .errors_before = errors_before};
    struct sg_snapshot *s = sg_snapshot_new();
    if (s == NULL) {
        sg_diag_add(diag, main_path, 0, 0, "out of memory");
        return NULL;
    }
    c.snap = s;
    s->main_path = sg_arena_strndup(&s->arena, main_path, strlen(main_path));
    s->timeouts = (struct sg_timeouts){DEFAULT_SNIFF_MS, DEFAULT_CONNECT_MS, DEFAULT_IDLE_MS,
                                       DEFAULT_DRAIN_MS};
    s->http_head_max = 16 * 1024;
    s->log_level = SG_LOG_INFO;
    s->access_log = "stderr";
    s->watch_map = true;
    s->watch_debounce_ms = DEFAULT_DEBOUNCE_MS;
    s->dns_ttl_ms = DEFAULT_DNS_TTL_MS;
    s->dns_negative_ttl_ms = DEFAULT_DNS_NEGATIVE_TTL_MS;
    c.routes = sg_routes_builder_new();
    if (s->main_path == NULL || c.routes == NULL) {
        sg_diag_add(diag, main_path, 0, 0, "out of memory");
        goto fail;
    }

    parse_main(&c, main_buf, main_len);

    bool routed = false;
    for (size_t i = 0; i < s->nlisteners; i++)
        routed |= s->listeners[i].protocol != SG_PROTO_TCP;
    if (s->map_path == NULL && routed) {
        sg_diag_add(diag, main_path, 0, 0,
                    "tls and http listeners need a routing map: add 'map: routes.yaml'");
    } else if (s->map_path != NULL) {
        unsigned char *map = NULL;
        size_t map_len = 0;
        int err = read(read_ctx, s->map_path, &map, &map_len);
        c.file = s->map_path;
        if (err < 0) {
            sg_diag_add(diag, s->map_path, 0, 0, "cannot read the map: %s", strerror(-err));
        } else {
            sha256_hex(map, map_len, s->map_sha256);
            parse_map(&c, map, map_len);
            free(map);
        }
    }
    if (sg_diag_errors(diag) > errors_before)
        goto fail;
    s->routes = sg_routes_build(c.routes);
    if (s->routes == NULL) {
        sg_diag_add(diag, main_path, 0, 0, "out of memory");
        sg_snapshot_unref(s);
        return NULL;
    }
    return s;

fail:
    sg_routes_builder_free(c.routes);
    sg_snapshot_unref(s);
    return NULL;
}

struct sg_snapshot *sg_config_load(const char *main_path, struct sg_diag *diag)
{
    unsigned char *buf = NULL;
    size_t len = 0;
    int err = sg_config_read_file(NULL, main_path, &buf, &len);
    if (err < 0) {
        sg_diag_add(diag, main_path, 0, 0, "cannot read the config: %s", strerror(-err));
        return NULL;
    }
    struct sg_snapshot *s = sg_config_parse(main_path, buf, len, sg_config_read_file, NULL, diag);
    free(buf);
    return s;
}
