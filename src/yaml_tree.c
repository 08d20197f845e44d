#include "sixgate/yaml_tree.h"

#include <string.h>

void sg_yreader_init(struct sg_yreader *r, const char *file, const unsigned char *buf, size_t len,
                     struct sg_diag *diag)
{
    memset(r, 0, sizeof(*r));
    r->file = file;
    r->diag = diag;
    sg_arena_init(&r->arena, 16 * 1024);
    if (!yaml_parser_initialize(&r->parser)) {
        sg_diag_add(diag, file, 0, 0, "out of memory");
        r->failed = true;
        return;
    }
    yaml_parser_set_input_string(&r->parser, buf, len);
}

void sg_yreader_close(struct sg_yreader *r)
{
    yaml_parser_delete(&r->parser);
    sg_arena_free(&r->arena);
}

bool sg_yreader_next(struct sg_yreader *r, yaml_event_t *ev)
{
    if (r->failed)
        return false;
    if (!yaml_parser_parse(&r->parser, ev)) {
        const yaml_parser_t *p = &r->parser;
        if (p->error == YAML_MEMORY_ERROR)
            sg_diag_add(r->diag, r->file, 0, 0, "out of memory");
        else if (p->context != NULL)
            sg_diag_add(r->diag, r->file, p->problem_mark.line + 1, p->problem_mark.column + 1,
                        "YAML syntax error: %s %s (which began at line %zu, column %zu)",
                        p->problem ? p->problem : "unknown", p->context,
                        p->context_mark.line + 1, p->context_mark.column + 1);
        else
            sg_diag_add(r->diag, r->file, p->problem_mark.line + 1, p->problem_mark.column + 1,
                        "YAML syntax error: %s", p->problem ? p->problem : "unknown");
        r->failed = true;
        return false;
    }
    return true;
}

static struct sg_ynode *new_node(struct sg_yreader *r, enum sg_ynode_kind kind,
                                 const yaml_event_t *ev)
{
    struct sg_ynode *n = sg_arena_alloc(&r->arena, sizeof(*n));
    if (n == NULL) {
        sg_diag_add(r->diag, r->file, 0, 0, "out of memory");
        r->failed = true;
        return NULL;
    }
    memset(n, 0, sizeof(*n));
    n->kind = kind;
    n->line = (unsigned)ev->start_mark.line + 1;
    n->col = (unsigned)ev->start_mark.column + 1;
    return n;
}

static struct sg_ynode *read_node(struct sg_yreader *r, yaml_event_t *ev, unsigned depth)
{
    struct sg_ynode *n = NULL;
    yaml_event_type_t end;
    enum sg_ynode_kind kind;

    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        if (ev->data.scalar.anchor != NULL)
            goto anchor;
        n = new_node(r, SG_YSCALAR, ev);
        if (n == NULL)
            goto out;
        n->len = ev->data.scalar.length;
        n->str = sg_arena_strndup(&r->arena, (const char *)ev->data.scalar.value, n->len);
        n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
        if (n->str == NULL) {
            sg_diag_add(r->diag, r->file, 0, 0, "out of memory");
            r->failed = true;
            n = NULL;
        }
        goto out;
    case YAML_ALIAS_EVENT:
        sg_diag_add(r->diag, r->file, ev->start_mark.line + 1, ev->start_mark.column + 1,
                    "YAML aliases (*name) are not supported");
        r->failed = true;
        goto out;
    case YAML_SEQUENCE_START_EVENT:
        if (ev->data.sequence_start.anchor != NULL)
            goto anchor;
        kind = SG_YSEQ;
        end = YAML_SEQUENCE_END_EVENT;
        break;
    case YAML_MAPPING_START_EVENT:
        if (ev->data.mapping_start.anchor != NULL)
            goto anchor;
        kind = SG_YMAP;
        end = YAML_MAPPING_END_EVENT;
        break;
    default:
        sg_diag_add(r->diag, r->file, ev->start_mark.line + 1, ev->start_mark.column + 1,
                    "unexpected YAML event");
        r->failed = true;
        goto out;
    }

    if (depth >= SG_YAML_MAX_DEPTH) {
        sg_diag_add(r->diag, r->file, ev->start_mark.line + 1, ev->start_mark.column + 1,
                    "nested deeper than %d levels", SG_YAML_MAX_DEPTH);
        r->failed = true;
        goto out;
    }
    n = new_node(r, kind, ev);
    if (n == NULL)
        goto out;
    yaml_event_delete(ev);
    struct sg_ynode **tail = &n->first;
    for (;;) {
        if (!sg_yreader_next(r, ev))
            return NULL;
        if (ev->type == end)
            break;
        struct sg_ynode *kid = read_node(r, ev, depth + 1);
        if (kid == NULL)
            return NULL;
        *tail = kid;
        tail = &kid->next;
        n->len++;
    }
    goto out;

anchor:
    sg_diag_add(r->diag, r->file, ev->start_mark.line + 1, ev->start_mark.column + 1,
                "YAML anchors (&name) are not supported");
    r->failed = true;
out:
    yaml_event_delete(ev);
    return n;
}

struct sg_ynode *sg_yreader_node(struct sg_yreader *r, yaml_event_t *first)
{
    return read_node(r, first, 0);
}

bool sg_yreader_begin(struct sg_yreader *r, const char *empty_message, yaml_event_t *ev)
{
    for (int want = 0; want < 2; want++) {
        if (!sg_yreader_next(r, ev))
            return false;
        yaml_event_type_t t = ev->type;
        yaml_event_delete(ev);
        if (want == 1 && t == YAML_STREAM_END_EVENT) {
            sg_diag_add(r->diag, r->file, 0, 0, "%s", empty_message);
            r->failed = true;
            return false;
        }
        if (t != (want == 0 ? YAML_STREAM_START_EVENT : YAML_DOCUMENT_START_EVENT)) {
            sg_diag_add(r->diag, r->file, 0, 0, "unexpected YAML event");
            r->failed = true;
            return false;
        }
    }
    return sg_yreader_next(r, ev);
}

bool sg_yreader_finish(struct sg_yreader *r)
{
    yaml_event_t ev;
    for (;;) {
        if (!sg_yreader_next(r, &ev))
            return false;
        yaml_event_type_t t = ev.type;
        size_t line = ev.start_mark.line + 1, col = ev.start_mark.column + 1;
        yaml_event_delete(&ev);
        if (t == YAML_STREAM_END_EVENT)
            return true;
        if (t == YAML_DOCUMENT_START_EVENT) {
            sg_diag_add(r->diag, r->file, line, col, "only one YAML document is allowed");
            r->failed = true;
            return false;
        }
    }
}

const char *sg_ynode_kind_str(enum sg_ynode_kind k)
{
    switch (k) {
    case SG_YSCALAR:
        return "a value";
    case SG_YSEQ:
        return "a list";
    case SG_YMAP:
        return "a mapping";
    }
    return "?";
}
