/* Fuzzes the HTTP request-head sniffer. The verdict must not depend on how
 * the bytes were split into reads: each input is fed whole, cut in two at a
 * position taken from its first byte and, when short, one byte at a time,
 * under the default head limit and under a small one, and every run must give
 * the same result, name, detail and head length. A found name must be in
 * normal form already. Any disagreement abort()s. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sixgate/sniff_http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SMALL_LIMIT 96u    /* small enough for inputs to cross it often */
#define BYTEWISE_MAX 4096u /* one call per byte is slow; do it for short inputs */

struct run {
    enum sg_sniff_result r;
    struct sg_sniffed out;
    size_t head_len;
    /* a copy of out.raw_name, which points into the sniffer */
    char raw[SG_HTTP_AUTHORITY_MAX + 16];
    size_t raw_len;
};

/* Feeds data[0..size) in pieces of <step> bytes after a first piece of
 * <first> bytes, then once more after the end, which must change nothing. */
static void sniff(const uint8_t *data, size_t size, size_t limit, size_t first, size_t step,
                  struct run *run)
{
    struct sg_http_sniffer s;
    sg_http_sniffer_init(&s, limit);
    run->r = sg_http_sniffer_feed(&s, data, first, &run->out);
    for (size_t at = first; at < size; at += step) {
        size_t n = size - at < step ? size - at : step;
        run->r = sg_http_sniffer_feed(&s, data + at, n, &run->out);
    }
    run->head_len = s.head_len;
    run->raw_len = 0;
    if (run->out.raw_name != NULL) {
        if (run->r != SG_SNIFF_BAD_NAME || run->out.raw_name_len > sizeof(run->raw))
            abort();
        memcpy(run->raw, run->out.raw_name, run->out.raw_name_len);
        run->raw_len = run->out.raw_name_len;
    } else if (run->r == SG_SNIFF_BAD_NAME) {
        abort();
    }

    struct sg_sniffed again;
    if (run->r != SG_SNIFF_NEED_MORE) {
        if (sg_http_sniffer_feed(&s, data, size, &again) != run->r ||
            again.detail != run->out.detail)
            abort();
        if (run->r == SG_SNIFF_FOUND && strcmp(again.name.s, run->out.name.s) != 0)
            abort();
    }
}

static void check_same(const struct run *a, const struct run *b)
{
    if (a->r != b->r || a->head_len != b->head_len || a->out.need != b->out.need)
        abort();
    /* Details are static strings, so the same verdict gives the same pointer. */
    if (a->out.detail != b->out.detail)
        abort();
    if (a->raw_len != b->raw_len || memcmp(a->raw, b->raw, a->raw_len) != 0)
        abort();
    if (a->r == SG_SNIFF_FOUND &&
        (a->out.name.len != b->out.name.len || strcmp(a->out.name.s, b->out.name.s) != 0))
        abort();
}

static void check_invariants(const uint8_t *data, size_t size, size_t limit, const struct run *r)
{
    if (r->r != SG_SNIFF_FOUND && r->out.detail == NULL)
        abort();
    switch (r->r) {
    case SG_SNIFF_NEED_MORE:
        /* Nothing refused yet: everything was read and it all fits. */
        if (size > limit || r->out.need != size + 1)
            abort();
        break;
    case SG_SNIFF_FOUND: {
        if (r->head_len == 0 || r->head_len > size || r->head_len > limit ||
            data[r->head_len - 1] != '\n')
            abort();
        struct sg_name again;
        if (r->out.name.len == 0 || r->out.name.len != strlen(r->out.name.s))
            abort();
        if (sg_name_normalize(r->out.name.s, r->out.name.len, SG_NAME_ALLOW_PORT | SG_NAME_ALLOW_IP,
                              &again) != SG_NAME_OK ||
            again.len != r->out.name.len || strcmp(again.s, r->out.name.s) != 0)
            abort();
        break;
    }
    case SG_SNIFF_NO_NAME:
        if (r->head_len == 0 || r->head_len > size || r->head_len > limit)
            abort();
        break;
    case SG_SNIFF_TOO_LARGE:
        if (size <= limit)
            abort();
        break;
    case SG_SNIFF_WRONG_PROTOCOL:
        if (size == 0 || data[0] != 0x16)
            abort();
        break;
    case SG_SNIFF_BAD_NAME:
    case SG_SNIFF_MALFORMED:
        break;
    }
}

static void check_limit(const uint8_t *data, size_t size, size_t limit)
{
    struct run whole, split, bytes;
    size_t cut = size ? (size_t)data[0] * size / 255 : 0;
    sniff(data, size, limit, size, 1, &whole);
    check_invariants(data, size, limit, &whole);
    sniff(data, size, limit, cut, size ? size : 1, &split);
    check_same(&whole, &split);
    if (size <= BYTEWISE_MAX) {
        sniff(data, size, limit, 0, 1, &bytes);
        check_same(&whole, &bytes);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_limit(data, size, SG_HTTP_HEAD_DEFAULT);
    check_limit(data, size, SMALL_LIMIT);
    return 0;
}
