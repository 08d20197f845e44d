#include "sixgate/diag.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

void sg_diag_init(struct sg_diag *d)
{
    memset(d, 0, sizeof(*d));
}

void sg_diag_free(struct sg_diag *d)
{
    for (size_t i = 0; i < d->count; i++)
        free(d->msgs[i]);
    free(d->msgs);
    memset(d, 0, sizeof(*d));
}

void sg_diag_add(struct sg_diag *d, const char *file, size_t line, size_t col, const char *fmt,
                 ...)
{
    if (d->count >= SG_DIAG_MAX) {
        d->dropped++;
        return;
    }
    char head[512];
    if (line > 0)
        snprintf(head, sizeof(head), "%s:%zu:%zu: ", file, line, col);
    else
        snprintf(head, sizeof(head), "%s: ", file);

    va_list ap;
    va_start(ap, fmt);
    char body[1024];
    vsnprintf(body, sizeof(body), fmt, ap);
    va_end(ap);

    size_t len = strlen(head) + strlen(body) + 1;
    char *msg = malloc(len);
    if (d->count == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 8;
        char **m = realloc(d->msgs, cap * sizeof(*m));
        if (m == NULL) {
            free(msg);
            d->dropped++;
            return;
        }
        d->msgs = m;
        d->cap = cap;
    }
    if (msg == NULL) {
        d->dropped++;
        return;
    }
    snprintf(msg, len, "%s%s", head, body);
    /* Messages quote the files' text, and are logged as lines: a control
     * byte in a YAML string ("a\n...") must not end a line or forge one. */
    for (char *p = msg; *p; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    }
    d->msgs[d->count++] = msg;
}

size_t sg_diag_errors(const struct sg_diag *d)
{
    return d->count + d->dropped;
}

void sg_diag_print(const struct sg_diag *d, FILE *out, const char *prefix)
{
    for (size_t i = 0; i < d->count; i++)
        fprintf(out, "%s%s\n", prefix, d->msgs[i]);
    if (d->dropped)
        fprintf(out, "%s... and %zu more errors\n", prefix, d->dropped);
}
