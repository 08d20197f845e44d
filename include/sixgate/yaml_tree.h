/* A small YAML reader over libyaml's event API. It builds trees of nodes with
 * their positions for the parts of a file the caller asks for, one subtree at
 * a time, so that a map of a million routes never exists as one big tree.
 * Aliases and anchors are refused (they have no use here, and they are how
 * "billion laughs" documents explode); so are documents nested too deep. */
#ifndef SIXGATE_YAML_TREE_H
#define SIXGATE_YAML_TREE_H

#include <stdbool.h>
#include <stddef.h>
#include <yaml.h>

#include "sixgate/arena.h"
#include "sixgate/diag.h"

#define SG_YAML_MAX_DEPTH 32

enum sg_ynode_kind { SG_YSCALAR, SG_YSEQ, SG_YMAP };

struct sg_ynode {
    enum sg_ynode_kind kind;
    unsigned line, col;     /* 1-based position of the node's first character */
    const char *str;        /* SG_YSCALAR: the value, NUL-terminated */
    size_t len;             /* SG_YSCALAR: bytes in str; otherwise the number of children */
    bool plain;             /* SG_YSCALAR: written without quotes (so "null" may mean null) */
    struct sg_ynode *first; /* children; a mapping alternates key, value */
    struct sg_ynode *next;  /* next sibling */
};

struct sg_yreader {
    yaml_parser_t parser;
    const char *file;     /* for diagnostics; borrowed */
    struct sg_diag *diag; /* borrowed */
    struct sg_arena arena; /* nodes of the trees read so far */
    bool failed;          /* a syntax error was reported: stop reading */
};

/* Starts reading <len> bytes of <buf> (borrowed until sg_yreader_close()). */
void sg_yreader_init(struct sg_yreader *r, const char *file, const unsigned char *buf, size_t len,
                     struct sg_diag *diag);
void sg_yreader_close(struct sg_yreader *r);

/* Reads the next event into <ev> (free it with yaml_event_delete()). On a
 * syntax error, reports it with its position and returns false. */
bool sg_yreader_next(struct sg_yreader *r, yaml_event_t *ev);

/* Reads up to the root node of the (single) document: on success <ev> is
 * the root node's first event. An empty stream is reported as
 * "<empty_message>" and fails. */
bool sg_yreader_begin(struct sg_yreader *r, const char *empty_message, yaml_event_t *ev);

/* Reads the node that starts with <first> (an event just read, which this
 * function deletes) and everything inside it; returns its tree, allocated in
 * r->arena, or NULL after reporting an error. */
struct sg_ynode *sg_yreader_node(struct sg_yreader *r, yaml_event_t *first);

/* Skips to the end of the document's stream, reporting a second document as
 * an error. Call after the root node's events are consumed. */
bool sg_yreader_finish(struct sg_yreader *r);

/* "a mapping", "a list", "a string": for "expected X, found Y" messages. */
const char *sg_ynode_kind_str(enum sg_ynode_kind k);

#endif
