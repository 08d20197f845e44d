/* libFuzzer target for sg_sniff_tls(). Besides memory safety (ASan/UBSan),
 * it checks the promises callers rely on, and aborts when one is broken:
 *  - every verdict is a known result with a detail, FOUND carries a name that
 *    sg_name_normalize() accepts unchanged, and only BAD_NAME a raw name;
 *  - NEED_MORE asks for more than it has, and never past SG_TLS_SNIFF_MAX;
 *  - no prefix shorter than <need> can end in a name verdict;
 *  - a verdict reached on a prefix is the verdict on the whole input;
 *  - a caller that waits for <need> reaches that verdict in O(records) calls;
 *  - the scratch buffer only matters for a fragmented hello. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sixgate/sniff_tls.h"

static uint8_t scratch[SG_TLS_SCRATCH_SIZE];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok)
{
    if (!ok)
        abort();
}

static bool is_name_verdict(enum sg_sniff_result r)
{
    return r == SG_SNIFF_FOUND || r == SG_SNIFF_NO_NAME || r == SG_SNIFF_BAD_NAME;
}

static enum sg_sniff_result sniff(const uint8_t *data, size_t len, struct sg_sniffed *out)
{
    memset(out, 0x5a, sizeof(*out)); /* garbage in: the parser must set what it reports */
    enum sg_sniff_result r = sg_sniff_tls(data, len, scratch, out);

    check(r >= SG_SNIFF_NEED_MORE && r <= SG_SNIFF_WRONG_PROTOCOL);
    if (r == SG_SNIFF_FOUND) {
        struct sg_name again;
        check(out->name.len >= 1 && out->name.len <= SG_NAME_MAX);
        check(strlen(out->name.s) == out->name.len);
        check(sg_name_normalize(out->name.s, out->name.len, 0, &again) == SG_NAME_OK);
        check(again.len == out->name.len && memcmp(again.s, out->name.s, again.len) == 0);
    } else {
        check(out->detail != NULL && out->detail[0] != '\0');
        check(out->name.len == 0);
    }
    /* the name as received, only for BAD_NAME, inside the input or the scratch */
    if (r == SG_SNIFF_BAD_NAME) {
        uintptr_t raw = (uintptr_t)out->raw_name, end = raw + out->raw_name_len;
        uintptr_t in = (uintptr_t)data, scr = (uintptr_t)scratch;
        check(out->raw_name != NULL && out->raw_name_len > 0);
        check((raw >= in && end <= in + len) || (raw >= scr && end <= scr + sizeof(scratch)));
    } else {
        check(out->raw_name == NULL && out->raw_name_len == 0);
    }
    if (r == SG_SNIFF_NEED_MORE)
        check(out->need > len && out->need <= SG_TLS_SNIFF_MAX);
    return r;
}

/* The verdict at <len> must agree with the verdict on the whole input, and a
 * hello complete in the whole input never makes a prefix wait past its end. */
static void check_prefix(const uint8_t *data, size_t len, size_t size, enum sg_sniff_result whole_r,
                         const struct sg_sniffed *whole)
{
    struct sg_sniffed out;
    enum sg_sniff_result r = sniff(data, len, &out);
    if (r == SG_SNIFF_NEED_MORE) {
        if (is_name_verdict(whole_r))
            check(out.need <= size);
        return;
    }
    check(r == whole_r && out.detail == whole->detail);
    if (r == SG_SNIFF_FOUND)
        check(strcmp(out.name.s, whole->name.s) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sg_sniffed whole, out;
    enum sg_sniff_result whole_r = sniff(data, size, &whole);

    /* Some prefixes: the first bytes, the middle, the end. */
    size_t cuts[] = {0, 1, 2, 4, 5, 6, 9, 10, size / 3, size / 2, size - size / 4};
    for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
        if (cuts[i] < size)
            check_prefix(data, cuts[i], size, whole_r, &whole);
    }
    if (size > 0)
        check_prefix(data, size - 1, size, whole_r, &whole);

    /* The careful caller: start with one byte, call again only at <need>. */
    size_t len = size < 1 ? size : 1, calls = 0;
    enum sg_sniff_result r;
    for (;;) {
        r = sniff(data, len, &out);
        calls++;
        if (r != SG_SNIFF_NEED_MORE) {
            check(r == whole_r && out.detail == whole.detail);
            break;
        }
        if (out.need > size) {
            /* the input ends before the hello: the whole is no name verdict */
            check(!is_name_verdict(whole_r));
            break;
        }
        /* a name verdict cannot come before <need> */
        if (out.need - 1 > len) {
            struct sg_sniffed mid;
            check(!is_name_verdict(sniff(data, out.need - 1, &mid)));
        }
        len = out.need;
    }
    /* two calls per record (header, then payload), plus the first */
    check(calls <= 2 * (len / 6 + 1) + 2);

    /* Without scratch: the same, unless the hello had to be joined. */
    struct sg_sniffed noscr;
    enum sg_sniff_result nr = sg_sniff_tls(data, size, NULL, &noscr);
    if (nr != whole_r || noscr.detail != whole.detail)
        check(nr == SG_SNIFF_TOO_LARGE &&
              strcmp(noscr.detail, "fragmented ClientHello and no scratch buffer") == 0);
    else if (nr == SG_SNIFF_FOUND)
        check(strcmp(noscr.name.s, whole.name.s) == 0);
    return 0;
}
