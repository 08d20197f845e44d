/* The main file's listeners: each one's keys, and that no address is
 * listed twice. */
#include <stdio.h>
#include <string.h>

#include "config_internal.h"
#include "util.h"

#define MAX_LISTENERS 4096

struct listener_tmp {
    struct sg_listener_spec *spec;
    const struct sg_ynode *backend;
    const struct sg_ynode *proxy_protocol;
    const struct sg_ynode *backend_port;
    bool has_protocol;
};

static void key_listener_name(struct config_ctx *c, const struct sg_ynode *v, void *obj)
{
    struct listener_tmp *t = obj;
    if (!config_want_string(c, v, "listener name"))
        return;
    if (v->len > 64 || strspn(v->str, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                      "0123456789_.-") != v->len) {
        config_error(c, v, "listener name '%s' must be 1 to 64 letters, digits, '_', '.' or '-'",
                     v->str);
        return;
    }
    t->spec->name = config_strdup(c, v);
}

static void key_listener_protocol(struct config_ctx *c, const struct sg_ynode *v, void *obj)
{
    struct listener_tmp *t = obj;
    if (!config_want_string(c, v, "protocol"))
        return;
    if (strcmp(v->str, "tls") == 0)
        t->spec->protocol = SG_PROTO_TLS;
    else if (strcmp(v->str, "http") == 0)
        t->spec->protocol = SG_PROTO_HTTP;
    else if (strcmp(v->str, "tcp") == 0)
        t->spec->protocol = SG_PROTO_TCP;
    else {
        config_error(c, v, "protocol must be tls, http or tcp, not '%s'", v->str);
        return;
    }
    t->has_protocol = true;
}

static void listen_one(struct config_ctx *c, const struct sg_ynode *v, void *obj)
{
    struct sg_listener_spec *spec = ((struct listener_tmp *)obj)->spec;
    if (!config_want_string(c, v, "listen address"))
        return;
    struct sg_addr a;
    enum sg_addr_status st = sg_addr_parse(v->str, v->len, SG_ADDR_REQUIRE_PORT, &a);
    if (st != SG_ADDR_OK) {
        config_error(c, v, "listen address '%s': %s", v->str, sg_addr_status_str(st));
        return;
    }
    /* the array was sized for every item of the list up front */
    struct sg_listen_addr *la = &spec->addrs[spec->naddrs++];
    la->addr = a.ip;
    la->text = config_strdup(c, v);
}

static void key_listener_listen(struct config_ctx *c, const struct sg_ynode *v, void *obj)
{
    struct listener_tmp *t = obj;
    size_t n = v->kind == SG_YSEQ ? v->len : 1;
    t->spec->addrs = sg_arena_alloc(&c->snap->arena, (n ? n : 1) * sizeof(*t->spec->addrs));
    if (t->spec->addrs == NULL) {
        config_error(c, v, "out of memory");
        return;
    }
    config_each_value(c, v, "listen", listen_one, t);
}

static void key_listener_backend(struct config_ctx *c, const struct sg_ynode *v, void *obj)
{
    (void)c;
    ((struct listener_tmp *)obj)->backend = v;
}

static void key_listener_proxy_protocol(struct config_ctx *c, const struct sg_ynode *v, void *obj)
{
    struct listener_tmp *t = obj;
    if (config_get_proxy_protocol(c, v, &t->spec->backend.proxy_protocol))
        t->proxy_protocol = v;
}

static void key_listener_backend_port(struct config_ctx *c, const struct sg_ynode *v, void *obj)
{
    struct listener_tmp *t = obj;
    if (!config_want_string(c, v, "backend_port"))
        return;
    size_t n;
    if (!config_is_number(v->str, v->len, 1, 65535, &n)) {
        config_error(c, v, "backend_port must be a port number from 1 to 65535, not '%s'", v->str);
        return;
    }
    t->spec->backend_port = (uint16_t)n;
    t->backend_port = v;
}

static void accept_proxy_one(struct config_ctx *c, const struct sg_ynode *v, void *obj)
{
    config_add_cidr(c, v, &((struct listener_tmp *)obj)->spec->accept_proxy, "accept_proxy");
}

static void key_listener_accept_proxy(struct config_ctx *c, const struct sg_ynode *v, void *obj)
{
    config_each_value(c, v, "accept_proxy", accept_proxy_one, obj);
}

/* The first three are required: parse_listener() checks bits 0 to 2. */
static const struct config_key listener_keys[] = {
    {"name", key_listener_name},
    {"listen", key_listener_listen},
    {"protocol", key_listener_protocol},
    {"backend", key_listener_backend},
    {"proxy_protocol", key_listener_proxy_protocol},
    {"accept_proxy", key_listener_accept_proxy},
    {"backend_port", key_listener_backend_port},
};

static void parse_listener(struct config_ctx *c, const struct sg_ynode *v,
                           struct sg_listener_spec *spec)
{
    struct listener_tmp t = {.spec = spec};
    spec->line = v->line;
    unsigned seen =
        config_walk_map(c, v, "a listener", listener_keys, SG_ARRAY_LEN(listener_keys), &t);
    if (v->kind != SG_YMAP)
        return;
    static const char *const required[] = {"name", "listen", "protocol"};
    for (size_t i = 0; i < SG_ARRAY_LEN(required); i++) {
        if (!(seen & (1u << i)))
            config_error(c, v, "listener needs '%s'", required[i]);
    }
    if (!t.has_protocol)
        return;
    if (spec->protocol == SG_PROTO_TCP) {
        enum sg_proxy_protocol pp = spec->backend.proxy_protocol;
        struct sg_addr a;
        if (t.backend == NULL)
            config_error(c, v, "listener '%s' has protocol tcp and needs a 'backend'",
                         spec->name ? spec->name : "?");
        else
            config_get_backend(c, t.backend, &a, &spec->backend, pp, &c->snap->arena);
        if (t.backend_port != NULL)
            config_error(c, t.backend_port,
                         "'backend_port' is for tls and http listeners; a tcp "
                         "listener's backend carries its own port");
    } else {
        if (t.backend != NULL)
            config_error(c, t.backend,
                         "'backend' is only for protocol tcp; %s listeners route by the map",
                         sg_protocol_str(spec->protocol));
        if (t.proxy_protocol != NULL)
            config_error(
                c, t.proxy_protocol,
                "'proxy_protocol' is only for protocol tcp; for %s listeners set it per route "
                "in the map",
                sg_protocol_str(spec->protocol));
    }
}

/* Names and addresses are unique across listeners. */
static void check_listeners_unique(struct config_ctx *c, const struct sg_snapshot *s)
{
    for (size_t a = 0; a < s->nlisteners; a++) {
        const struct sg_listener_spec *la = &s->listeners[a];
        for (size_t b = 0; b <= a; b++) {
            const struct sg_listener_spec *lb = &s->listeners[b];
            if (b < a && la->name && lb->name && strcmp(la->name, lb->name) == 0)
                sg_diag_add(c->diag, c->file, la->line, 1,
                            "duplicate listener name '%s' (first at line %u)", la->name, lb->line);
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

void config_key_listeners(struct config_ctx *c, const struct sg_ynode *v, void *obj)
{
    struct sg_snapshot *s = obj;
    if (v->kind != SG_YSEQ) {
        config_error(c, v, "listeners must be a list, not %s", sg_ynode_kind_str(v->kind));
        return;
    }
    if (v->len == 0 || v->len > MAX_LISTENERS) {
        config_error(c, v, "listeners must hold 1 to %d listeners", MAX_LISTENERS);
        return;
    }
    s->listeners = sg_arena_alloc(&s->arena, v->len * sizeof(*s->listeners));
    if (s->listeners == NULL) {
        config_error(c, v, "out of memory");
        return;
    }
    memset(s->listeners, 0, v->len * sizeof(*s->listeners));
    for (const struct sg_ynode *i = v->first; i != NULL; i = i->next)
        parse_listener(c, i, &s->listeners[s->nlisteners++]);
    check_listeners_unique(c, s);
}

