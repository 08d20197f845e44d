/* Collects configuration errors as "FILE:LINE:COLUMN: message" lines, so that
 * a broken file is reported in full in one pass and never applied. */
#ifndef SIXGATE_DIAG_H
#define SIXGATE_DIAG_H

#include <stddef.h>
#include <stdio.h>

#define SG_DIAG_MAX 1000 /* messages kept; past this they are only counted */

struct sg_diag {
    char **msgs;
    size_t count;   /* messages kept */
    size_t cap;
    size_t dropped; /* messages past SG_DIAG_MAX, or lost to a failed allocation */
};

void sg_diag_init(struct sg_diag *d);
void sg_diag_free(struct sg_diag *d);

/* Adds one message. <line> and <col> are 1-based; a <line> of 0 leaves out
 * both ("FILE: message"). Control bytes in the message become '?', so that a
 * message is always exactly one line. */
void sg_diag_add(struct sg_diag *d, const char *file, size_t line, size_t col, const char *fmt,
                 ...) __attribute__((format(printf, 5, 6)));

/* How many errors were reported, kept or not. */
size_t sg_diag_errors(const struct sg_diag *d);

/* Writes every message, one per line, each after <prefix> (may be ""). */
void sg_diag_print(const struct sg_diag *d, FILE *out, const char *prefix);

#endif
