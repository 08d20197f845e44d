/* The main file's schema: listeners, timeouts, limits, log, admin, reload,
 * resolver and the process settings, one key table per mapping. The file is
 * small, so it is read as one tree. docs/config.md is the contract. */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "config_internal.h"
#include "util.h"

#define MAX_WORKERS 256


/* ---- timeouts, limits, log, admin, reload, resolver --------------------- */

/* A key whose value is a mapping of <name>_keys, filling the same object. */
#define SECTION_KEY(name)                                                                          \
    static void key_##name(struct config_ctx *c, const struct sg_ynode *v, void *obj)              \
    {                                                                                              \
        config_walk_map(c, v, #name, name##_keys, SG_ARRAY_LEN(name##_keys), obj);                 \
    }

#define DURATION_KEY(field)                                                                        \
    static void key_timeout_##field(struct config_ctx *c, const struct sg_ynode *v, void *obj)     \
    {                                                                                              \
        config_get_duration(c, v, &((struct sg_snapshot *)obj)->timeouts.field##_ms,               \
                            "timeouts." #field);                                                   \
    }
DURATION_KEY(sniff)
DURATION_KEY(connect)
DURATION_KEY(idle)
DURATION_KEY(drain)

static const struct config_key timeouts_keys[] = {
    {"sniff", key_timeout_sniff},
    {"connect", key_timeout_connect},
    {"idle", key_timeout_idle},
    {"drain", key_timeout_drain},
};

SECTION_KEY(timeouts)

static void key_limit_http_head(struct config_ctx *c, const struct sg_ynode *v, void *obj)
{
    config_get_size(c, v, &((struct sg_snapshot *)obj)->http_head_max, "limits.http_head", 1024,
                    1024 * 1024);
}

static void key_limit_connections(struct config_ctx *c, const struct sg_ynode *v, void *obj)
{
    config_get_size(c, v, &((struct sg_snapshot *)obj)->max_connections, "limits.connections", 1,
                    10 * 1000 * 1000);
}

/* limits.per_client.<field>: a number from <min> to <max>. */
#define PER_CLIENT_KEY(field, min, max)                                                            \
    static void key_per_client_##field(struct config_ctx *c, const struct sg_ynode *v, void *obj) \
    {                                                                                              \
        size_t n;                                                                                  \
        if (!config_want_string(c, v, "limits.per_client." #field))                               \
            return;                                                                                \
        if (!config_is_number(v->str, v->len, min, max, &n))                                       \
            config_error(c, v, "limits.per_client." #field " must be a number from %d to %d, "     \
                               "not '%s'",                                                         \
                         min, max, v->str);                                                        \
        else                                                                                       \
            ((struct sg_snapshot *)obj)->per_client.field = (__typeof__(                           \
                ((struct sg_snapshot *)obj)->per_client.field))n;                                  \
    }
PER_CLIENT_KEY(connections, 1, 10000000)
PER_CLIENT_KEY(sniffing, 1, 10000000)
PER_CLIENT_KEY(rate, 1, 10000000)
PER_CLIENT_KEY(ipv4_prefix, 1, 32)
PER_CLIENT_KEY(ipv6_prefix, 1, 128)

static const struct config_key per_client_keys[] = {
    {"connections", key_per_client_connections}, {"sniffing", key_per_client_sniffing},
    {"rate", key_per_client_rate},               {"ipv4_prefix", key_per_client_ipv4_prefix},
    {"ipv6_prefix", key_per_client_ipv6_prefix},
};

SECTION_KEY(per_client)

static const struct config_key limits_keys[] = {
    {"http_head", key_limit_http_head},
    {"connections", key_limit_connections},
    {"per_client", key_per_client},
};

SECTION_KEY(limits)

static void key_log_level(struct config_ctx *c, const struct sg_ynode *v, void *obj)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    struct sg_snapshot *s = obj;
    if (!config_want_string(c, v, "log.level"))
        return;
    for (size_t i = 0; i < SG_ARRAY_LEN(names); i++) {
        if (strcmp(v->str, names[i]) == 0) {
            s->log_level = (enum sg_log_level)i;
            return;
        }
    }
    config_error(c, v, "log.level must be error, warn, info or debug, not '%s'", v->str);
}

/* A path in the main file is relative to that file's folder. */
static const char *relative_to(struct config_ctx *c, const struct sg_ynode *v)
{
    if (v->str[0] == '/')
        return config_strdup(c, v);
    const char *base = c->main_path;
    const char *slash = strrchr(base, '/');
    size_t dir = slash ? (size_t)(slash - base) + 1 : 0;
    char *p = sg_arena_alloc(&c->snap->arena, dir + v->len + 1);
    if (p == NULL) {
        config_error(c, v, "out of memory");
        return NULL;
    }
    memcpy(p, base, dir);
    memcpy(p + dir, v->str, v->len + 1);
    return p;
}

static void key_log_access(struct config_ctx *c, const struct sg_ynode *v, void *obj)
{
    struct sg_snapshot *s = obj;
    if (!config_want_string(c, v, "log.access"))
        return;
    if (strcmp(v->str, "off") == 0)
        s->access_log = NULL;
    else if (strcmp(v->str, "stderr") == 0)
        s->access_log = "stderr";
    else
        s->access_log = relative_to(c, v);
}

static const struct config_key log_keys[] = {
    {"level", key_log_level},
    {"access", key_log_access},
};

SECTION_KEY(log)

struct admin_tmp {
    const struct sg_ynode *listen;
    bool allow_remote;
};

static void key_admin_listen(struct config_ctx *c, const struct sg_ynode *v, void *obj)
{
    struct admin_tmp *a = obj;
    if (!config_want_string(c, v, "admin.listen"))
        return;
    struct sg_addr addr;
    enum sg_addr_status st = sg_addr_parse(v->str, v->len, SG_ADDR_REQUIRE_PORT, &addr);
    if (st != SG_ADDR_OK) {
        config_error(c, v, "admin.listen '%s': %s", v->str, sg_addr_status_str(st));
        return;
    }
    c->snap->has_admin = true;
    c->snap->admin = addr.ip;
    a->listen = v;
}

static void key_admin_allow_remote(struct config_ctx *c, const struct sg_ynode *v, void *obj)
{
    config_get_bool(c, v, &((struct admin_tmp *)obj)->allow_remote, "admin.allow_remote");
}

/* "listen" comes first: key_admin() checks bit 0. */
static const struct config_key admin_keys[] = {
    {"listen", key_admin_listen},
    {"allow_remote", key_admin_allow_remote},
};

static bool is_loopback(const union sg_sockaddr *a)
{
    if (a->sa.sa_family == AF_INET)
        return (ntohl(a->in.sin_addr.s_addr) >> 24) == 127;
    return IN6_IS_ADDR_LOOPBACK(&a->in6.sin6_addr);
}

static void key_admin(struct config_ctx *c, const struct sg_ynode *v, void *obj)
{
    (void)obj;
    struct admin_tmp a = {0};
    unsigned seen = config_walk_map(c, v, "admin", admin_keys, SG_ARRAY_LEN(admin_keys), &a);
    if (v->kind == SG_YMAP && !(seen & 1u))
        config_error(c, v, "admin needs 'listen' (e.g. \"127.0.0.1:9180\")");
    if (a.listen != NULL && !a.allow_remote && !is_loopback(&c->snap->admin))
        config_error(c, a.listen,
                     "admin.listen '%s' is not a loopback address: metrics would be public "
                     "(set admin.allow_remote: true if that is intended)",
                     a.listen->str);
}

static void key_reload_watch(struct config_ctx *c, const struct sg_ynode *v, void *obj)
{
    config_get_bool(c, v, &((struct sg_snapshot *)obj)->watch_map, "reload.watch");
}

static void key_reload_debounce(struct config_ctx *c, const struct sg_ynode *v, void *obj)
{
    config_get_duration(c, v, &((struct sg_snapshot *)obj)->watch_debounce_ms, "reload.debounce");
}

static const struct config_key reload_keys[] = {
    {"watch", key_reload_watch},
    {"debounce", key_reload_debounce},
};

SECTION_KEY(reload)

static void key_resolver_cache(struct config_ctx *c, const struct sg_ynode *v, void *obj)
{
    config_get_duration(c, v, &((struct sg_snapshot *)obj)->dns_ttl_ms, "resolver.cache");
}

static void key_resolver_negative_cache(struct config_ctx *c, const struct sg_ynode *v, void *obj)
{
    config_get_duration(c, v, &((struct sg_snapshot *)obj)->dns_negative_ttl_ms,
                        "resolver.negative_cache");
}

static const struct config_key resolver_keys[] = {
    {"cache", key_resolver_cache},
    {"negative_cache", key_resolver_negative_cache},
};

SECTION_KEY(resolver)

static void key_workers(struct config_ctx *c, const struct sg_ynode *v, void *obj)
{
    struct sg_snapshot *s = obj;
    if (!config_want_string(c, v, "workers"))
        return;
    if (strcmp(v->str, "auto") == 0) {
        s->workers = 0;
        return;
    }
    size_t n;
    if (!config_is_number(v->str, v->len, 1, MAX_WORKERS, &n))
        config_error(c, v, "workers must be auto or a number from 1 to %d, not '%s'", MAX_WORKERS,
                     v->str);
    else
        s->workers = (unsigned)n;
}

static void key_splice(struct config_ctx *c, const struct sg_ynode *v, void *obj)
{
    struct sg_snapshot *s = obj;
    if (!config_want_string(c, v, "splice"))
        return;
    if (strcmp(v->str, "auto") == 0)
        s->splice = SG_SPLICE_AUTO;
    else if (strcmp(v->str, "off") == 0)
        s->splice = SG_SPLICE_OFF;
    else if (strcmp(v->str, "always") == 0)
        s->splice = SG_SPLICE_ALWAYS;
    else
        config_error(c, v, "splice must be auto, off or always, not '%s'", v->str);
}

static void key_user(struct config_ctx *c, const struct sg_ynode *v, void *obj)
{
    if (config_want_string(c, v, "user"))
        ((struct sg_snapshot *)obj)->user = config_strdup(c, v);
}

static void key_group(struct config_ctx *c, const struct sg_ynode *v, void *obj)
{
    if (config_want_string(c, v, "group"))
        ((struct sg_snapshot *)obj)->group = config_strdup(c, v);
}

static void backend_network_one(struct config_ctx *c, const struct sg_ynode *v, void *obj)
{
    config_add_cidr(c, v, &((struct sg_snapshot *)obj)->backend_networks, "backend_networks");
}

static void key_backend_networks(struct config_ctx *c, const struct sg_ynode *v, void *obj)
{
    struct sg_snapshot *s = obj;
    s->has_backend_networks = true;
    config_each_value(c, v, "backend_networks", backend_network_one, s);
}

static void key_map(struct config_ctx *c, const struct sg_ynode *v, void *obj)
{
    struct sg_snapshot *s = obj;
    if (config_want_string(c, v, "map"))
        s->map_path = relative_to(c, v);
}

/* "listeners" comes first: config_parse_main() checks bit 0. */
static const struct config_key main_keys[] = {
    {"listeners", config_key_listeners},
    {"timeouts", key_timeouts},
    {"limits", key_limits},
    {"map", key_map},
    {"workers", key_workers},
    {"splice", key_splice},
    {"user", key_user},
    {"group", key_group},
    {"log", key_log},
    {"admin", key_admin},
    {"reload", key_reload},
    {"resolver", key_resolver},
    {"backend_networks", key_backend_networks},
};

/* The bit config_walk_map() sets for main key <name>. */
static unsigned main_key_bit(const char *name)
{
    for (size_t i = 0; i < SG_ARRAY_LEN(main_keys); i++)
        if (strcmp(main_keys[i].name, name) == 0)
            return 1u << i;
    return 0;
}

/* ---- the backend policy ------------------------------------------------- */

void config_build_policy(struct config_ctx *c)
{
    struct sg_snapshot *s = c->snap;
    struct sg_backend_policy *p = &s->backend_policy;
    *p = (struct sg_backend_policy){0};
    if (s->has_backend_networks)
        p->networks = &s->backend_networks;
    if (s->has_admin)
        p->admin = &s->admin;
    size_t n = 0;
    for (size_t i = 0; i < s->nlisteners; i++)
        n += s->listeners[i].naddrs;
    size_t nhost = c->host != NULL ? c->host->n : 0;
    union sg_sockaddr *listen = sg_arena_alloc(&s->arena, (n ? n : 1) * sizeof(*listen));
    union sg_sockaddr *host = sg_arena_alloc(&s->arena, (nhost ? nhost : 1) * sizeof(*host));
    if (listen == NULL || host == NULL) {
        sg_diag_add(c->diag, c->file, 0, 0, "out of memory");
        return;
    }
    for (size_t i = 0; i < s->nlisteners; i++)
        for (size_t j = 0; j < s->listeners[i].naddrs; j++)
            listen[p->nlisten++] = s->listeners[i].addrs[j].addr;
    if (nhost > 0)
        memcpy(host, c->host->addrs, nhost * sizeof(*host));
    p->listen = listen;
    p->host = host;
    p->nhost = nhost;
    c->policy_built = true;
}

/* The value of key <name> in mapping <map>, or NULL. */
static const struct sg_ynode *find_key(const struct sg_ynode *map, const char *name)
{
    if (map->kind != SG_YMAP)
        return NULL;
    for (const struct sg_ynode *k = map->first; k != NULL && k->next != NULL; k = k->next->next)
        if (k->kind == SG_YSCALAR && strcmp(k->str, name) == 0)
            return k->next;
    return NULL;
}

/* tcp listeners' fixed backends, judged once every listener is known. */
static void check_tcp_backends(struct config_ctx *c, const struct sg_ynode *root)
{
    const struct sg_ynode *ls = find_key(root, "listeners");
    if (ls == NULL || ls->kind != SG_YSEQ)
        return;
    size_t i = 0;
    for (const struct sg_ynode *l = ls->first; l != NULL && i < c->snap->nlisteners;
         l = l->next, i++) {
        const struct sg_listener_spec *spec = &c->snap->listeners[i];
        const struct sg_ynode *b = find_key(l, "backend");
        /* a backend that did not parse was reported already */
        if (spec->protocol == SG_PROTO_TCP && b != NULL &&
            (spec->backend.host != NULL || spec->backend.ip.sa.sa_family != 0))
            config_check_backend(c, b, &spec->backend, spec);
    }
}

/* ---- the file ----------------------------------------------------------- */

static bool expect_event(struct sg_yreader *r, yaml_event_t *ev, yaml_event_type_t type)
{
    if (!sg_yreader_next(r, ev))
        return false;
    if (ev->type == type)
        return true;
    yaml_event_delete(ev);
    return false;
}

void config_parse_main(struct config_ctx *c, const unsigned char *buf, size_t len)
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
    unsigned seen =
        config_walk_map(c, root, "the main config", main_keys, SG_ARRAY_LEN(main_keys), c->snap);
    if (root->kind == SG_YMAP && !(seen & 1u))
        config_error(c, root, "the main config needs 'listeners'");
    if (root->kind == SG_YMAP && (seen & main_key_bit("group")) && !(seen & main_key_bit("user")))
        for (const struct sg_ynode *k = root->first; k != NULL && k->next != NULL;
             k = k->next->next)
            if (k->kind == SG_YSCALAR && strcmp(k->str, "group") == 0)
                config_error(c, k, "'group' needs 'user': the privileges are dropped to a user "
                                   "(and this group), never to a group alone");
    config_build_policy(c);
    check_tcp_backends(c, root);
out:
    sg_yreader_close(&r);
}
