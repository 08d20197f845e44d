#include "sixgate/snapshot.h"

#include <stdlib.h>
#include <string.h>

struct sg_snapshot *sg_snapshot_new(void)
{
    struct sg_snapshot *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    atomic_init(&s->refs, 1);
    sg_arena_init(&s->arena, 16 * 1024);
    return s;
}

struct sg_snapshot *sg_snapshot_ref(struct sg_snapshot *s)
{
    /* The caller already holds a reference, so the count cannot reach zero
     * meanwhile: no ordering is needed for the increment. */
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    return s;
}

void sg_snapshot_unref(struct sg_snapshot *s)
{
    if (s == NULL)
        return;
    /* acq_rel: every use by this thread happens before the free by another. */
    if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
        return;
    if (s->on_release != NULL)
        s->on_release(s, s->on_release_data);
    else
        sg_snapshot_free(s);
}

void sg_snapshot_free(struct sg_snapshot *s)
{
    sg_routes_free(s->routes);
    for (size_t i = 0; i < s->nlisteners; i++)
        sg_cidr_list_free(&s->listeners[i].accept_proxy);
    sg_cidr_list_free(&s->backend_networks);
    sg_arena_free(&s->arena);
    free(s);
}


const char *sg_protocol_str(enum sg_protocol p)
{
    switch (p) {
    case SG_PROTO_TLS:
        return "tls";
    case SG_PROTO_HTTP:
        return "http";
    case SG_PROTO_TCP:
        return "tcp";
    }
    return "?";
}
