#include "sixgate/sniff_tls.h"
#include "test.h"

/* Tests run in test/, where fixtures/hello/expected.txt lists every fixture
 * that test/tools/make_hellos.py wrote, with its expected result and name. */
#define FIXTURE_DIR "fixtures/hello/"
#define FIXTURES_MAX 256

struct fixture {
    char file[128];
    char token[32];
    char name[SG_NAME_MAX + 3];
    uint8_t *data; /* exactly len bytes, so ASan sees any read past the end */
    size_t len;
};

static struct fixture fixtures[FIXTURES_MAX];
static size_t fixture_count;
static uint8_t scratch[SG_TLS_SCRATCH_SIZE];

/* Loads a file into a buffer of exactly its size (1 byte for an empty file). */
static uint8_t *load_exact(const char *path, size_t *len)
{
    unsigned char *raw = test_read_file(path, len);
    if (raw == NULL)
        return NULL;
    uint8_t *exact = malloc(*len ? *len : 1);
    if (exact != NULL)
        memcpy(exact, raw, *len);
    free(raw);
    return exact;
}

/* Reads expected.txt and every file it names, once per process. */
static size_t load_fixtures(void)
{
    if (fixture_count > 0)
        return fixture_count;
    FILE *f = fopen(FIXTURE_DIR "expected.txt", "r");
    if (f == NULL)
        return 0;
    char line[512];
    while (fgets(line, sizeof(line), f) != NULL && fixture_count < FIXTURES_MAX) {
        struct fixture *fx = &fixtures[fixture_count];
        if (line[0] == '#' || line[0] == '\n')
            continue;
        if (sscanf(line, "%127s %31s %255s", fx->file, fx->token, fx->name) != 3)
            continue;
        char path[256];
        snprintf(path, sizeof(path), FIXTURE_DIR "%s", fx->file);
        fx->data = load_exact(path, &fx->len);
        if (fx->data == NULL) {
            fprintf(stderr, "  cannot read %s\n", path);
            continue;
        }
        fixture_count++;
    }
    fclose(f);
    return fixture_count;
}

static const struct fixture *find_fixture(const char *file)
{
    for (size_t i = 0; i < load_fixtures(); i++) {
        if (strcmp(fixtures[i].file, file) == 0)
            return &fixtures[i];
    }
    return NULL;
}

/* Whether the fixture is a complete hello (one that ends in a verdict on a name). */
static bool is_complete_hello(const struct fixture *fx)
{
    return strcmp(fx->token, "found") == 0 || strcmp(fx->token, "no_name") == 0 ||
           strcmp(fx->token, "bad_name") == 0;
}

/* Counts the whole TLS records at the start of <buf>. */
static size_t count_records(const uint8_t *buf, size_t len)
{
    size_t pos = 0, n = 0;
    while (len - pos >= 5) {
        size_t rlen = (size_t)buf[pos + 3] << 8 | buf[pos + 4];
        if (len - pos - 5 < rlen)
            break;
        pos += 5 + rlen;
        n++;
    }
    return n;
}

/* Runs the parser on the first <len> bytes of <data>, copied to the end of a
 * buffer of exactly <len> bytes so that reading past <len> is an ASan error. */
static enum sg_sniff_result sniff_prefix(const uint8_t *data, size_t len, uint8_t *tail,
                                         size_t tail_size, uint8_t *scr, struct sg_sniffed *out)
{
    uint8_t *at = tail + (tail_size - len);
    memmove(at, data, len);
    return sg_sniff_tls(at, len, scr, out);
}

TEST(result_tokens)
{
    CHECK_STR(sg_sniff_result_str(SG_SNIFF_NEED_MORE), "need_more");
    CHECK_STR(sg_sniff_result_str(SG_SNIFF_FOUND), "found");
    CHECK_STR(sg_sniff_result_str(SG_SNIFF_NO_NAME), "no_name");
    CHECK_STR(sg_sniff_result_str(SG_SNIFF_BAD_NAME), "bad_name");
    CHECK_STR(sg_sniff_result_str(SG_SNIFF_MALFORMED), "malformed");
    CHECK_STR(sg_sniff_result_str(SG_SNIFF_TOO_LARGE), "too_large");
    CHECK_STR(sg_sniff_result_str(SG_SNIFF_WRONG_PROTOCOL), "wrong_protocol");
}

TEST(every_fixture_whole)
{
    size_t n = load_fixtures();
    CHECK_INT(n, >=, 80);
    for (size_t i = 0; i < n; i++) {
        const struct fixture *fx = &fixtures[i];
        struct sg_sniffed out;
        enum sg_sniff_result r = sg_sniff_tls(fx->data, fx->len, scratch, &out);
        if (strcmp(sg_sniff_result_str(r), fx->token) != 0)
            FAIL_("%s: %s (%s), expected %s", fx->file, sg_sniff_result_str(r),
                  out.detail ? out.detail : "-", fx->token);
        /* the name as sent is kept for the log exactly when it was refused */
        if ((r == SG_SNIFF_BAD_NAME) != (out.raw_name != NULL && out.raw_name_len > 0))
            FAIL_("%s: raw_name %p (%zu bytes) for %s", fx->file, (const void *)out.raw_name,
                  out.raw_name_len, fx->token);
        if (r == SG_SNIFF_FOUND) {
            if (strcmp(out.name.s, fx->name) != 0 || out.name.len != strlen(fx->name))
                FAIL_("%s: name \"%s\", expected \"%s\"", fx->file, out.name.s, fx->name);
        } else {
            CHECK_STR(fx->name, "-");
            if (out.detail == NULL || out.detail[0] == '\0')
                FAIL_("%s: %s without a detail", fx->file, fx->token);
            CHECK_EQ(out.name.len, 0);
        }
        if (r == SG_SNIFF_NEED_MORE)
            CHECK_INT(out.need, >, fx->len);
        else
            CHECK_EQ(out.need, 0);
    }
}

/* Feeds each complete hello as a client sending 1-byte segments would: the
 * naive caller retries on every byte, the careful one only once it has
 * out->need bytes. Both must see NEED_MORE until the hello's last byte and
 * then the verdict; the careful one must need O(records) calls. */
TEST(good_fixtures_byte_by_byte)
{
    size_t tested = 0;
    for (size_t i = 0; i < load_fixtures(); i++) {
        const struct fixture *fx = &fixtures[i];
        if (!is_complete_hello(fx))
            continue;
        struct sg_sniffed whole, out;
        enum sg_sniff_result want = sg_sniff_tls(fx->data, fx->len, scratch, &whole);
        uint8_t *tail = malloc(fx->len);
        CHECK(tail != NULL);

        /* Naive: every prefix, until the verdict. */
        size_t end = 0, max_need = 0;
        enum sg_sniff_result r = SG_SNIFF_NEED_MORE;
        for (end = 0; end <= fx->len; end++) {
            r = sniff_prefix(fx->data, end, tail, fx->len, scratch, &out);
            if (r != SG_SNIFF_NEED_MORE)
                break;
            if (out.need <= end)
                FAIL_("%s: need %zu at %zu bytes", fx->file, out.need, end);
            if (out.need > max_need)
                max_need = out.need;
        }
        if (r != want || strcmp(out.name.s, whole.name.s) != 0) {
            free(tail);
            FAIL_("%s: %s at %zu bytes, whole gives %s", fx->file, sg_sniff_result_str(r), end,
                  sg_sniff_result_str(want));
        }
        /* need never points past the byte that completes the hello */
        if (max_need > end) {
            free(tail);
            FAIL_("%s: asked for %zu bytes, verdict came at %zu", fx->file, max_need, end);
        }

        /* Careful: only call again once len >= need. */
        size_t len = 1, calls = 0;
        for (;;) {
            r = sniff_prefix(fx->data, len, tail, fx->len, scratch, &out);
            calls++;
            if (r != SG_SNIFF_NEED_MORE || out.need > fx->len)
                break;
            len = out.need;
        }
        free(tail);
        size_t records = count_records(fx->data, fx->len);
        if (r != want || strcmp(out.name.s, whole.name.s) != 0)
            FAIL_("%s: careful caller got %s", fx->file, sg_sniff_result_str(r));
        CHECK_EQ(len, end);
        if (calls > records * 2 + 4)
            FAIL_("%s: %zu calls for %zu records", fx->file, calls, records);
        tested++;
    }
    CHECK_INT(tested, >=, 30);
}

/* With 1-byte records, a careful caller needs far fewer calls than records:
 * once the handshake length is known, <need> covers every missing payload
 * byte, so each call walks about a sixth of what was left. */
TEST(need_keeps_calls_few)
{
    static const char *const files[] = {"py_tls13_1byte_found.bin", "pq_keyshare_1byte_found.bin",
                                        "s_client_1byte_found.bin"};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        const struct fixture *fx = find_fixture(files[i]);
        CHECK(fx != NULL);
        struct sg_sniffed out;
        size_t len = 1, calls = 1;
        enum sg_sniff_result r;
        while ((r = sg_sniff_tls(fx->data, len, scratch, &out)) == SG_SNIFF_NEED_MORE) {
            calls++;
            CHECK_INT(out.need, <=, fx->len);
            len = out.need;
        }
        CHECK_EQ(r, SG_SNIFF_FOUND);
        CHECK_EQ(len, fx->len);
        CHECK_INT(count_records(fx->data, fx->len), >, 300);
        if (calls > 64)
            FAIL_("%s: %zu calls for %zu records", files[i], calls,
                  count_records(fx->data, fx->len));
    }
}

TEST(prefix_of_valid_hello_is_need_more)
{
    static const char *const files[] = {"py_tls13_found.bin", "s_client_found.bin",
                                        "py_tls13_hdrsplit_found.bin", "big16k_2rec_found.bin"};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        const struct fixture *fx = find_fixture(files[i]);
        CHECK(fx != NULL);
        for (size_t len = 0; len < fx->len; len++) {
            struct sg_sniffed out;
            enum sg_sniff_result r = sg_sniff_tls(fx->data, len, scratch, &out);
            if (r != SG_SNIFF_NEED_MORE || out.need <= len || out.need > fx->len)
                FAIL_("%s at %zu: %s, need %zu", files[i], len, sg_sniff_result_str(r), out.need);
        }
    }
    struct sg_sniffed out;
    CHECK_EQ(sg_sniff_tls((const uint8_t *)"", 0, NULL, &out), SG_SNIFF_NEED_MORE);
    CHECK_EQ(out.need, 5);
}

TEST(reframed_match_originals)
{
    static const char *const pairs[][2] = {
        {"py_tls13_found.bin", "py_tls13_2rec_found.bin"},
        {"py_tls13_found.bin", "py_tls13_3rec_found.bin"},
        {"py_tls13_found.bin", "py_tls13_1byte_found.bin"},
        {"py_tls13_found.bin", "py_tls13_hdrsplit_found.bin"},
        {"py_tls13_found.bin", "rec_ver_0300_found.bin"},
        {"py_tls13_found.bin", "pq_keyshare_1byte_found.bin"},
        {"pq_keyshare_found.bin", "pq_keyshare_1byte_found.bin"},
        {"py_nosni_no_name.bin", "py_nosni_1byte_no_name.bin"},
        {"s_client_found.bin", "s_client_2rec_found.bin"},
        {"s_client_found.bin", "s_client_3rec_found.bin"},
        {"s_client_found.bin", "s_client_1byte_found.bin"},
        {"py_tls12_found.bin", "py_tls12_5byte_found.bin"},
    };
    for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
        const struct fixture *a = find_fixture(pairs[i][0]), *b = find_fixture(pairs[i][1]);
        CHECK(a != NULL && b != NULL);
        if (strncmp(b->file, "rec_ver_", 8) != 0)
            CHECK_INT(count_records(b->data, b->len), >, 1);
        struct sg_sniffed oa, ob;
        enum sg_sniff_result ra = sg_sniff_tls(a->data, a->len, scratch, &oa);
        enum sg_sniff_result rb = sg_sniff_tls(b->data, b->len, scratch, &ob);
        if (ra != rb || strcmp(oa.name.s, ob.name.s) != 0)
            FAIL_("%s gives %s \"%s\", %s gives %s \"%s\"", a->file, sg_sniff_result_str(ra),
                  oa.name.s, b->file, sg_sniff_result_str(rb), ob.name.s);
    }
}

/* Early data, a ChangeCipherSpec, garbage or a second hello after the
 * ClientHello's last record are not the parser's business. */
TEST(bytes_after_hello_change_nothing)
{
    static const uint8_t after[] = {0x14, 0x03, 0x03, 0x00, 0x01, 0x01, 0x17, 0x03,
                                    0x03, 0x00, 0x04, 0xde, 0xad, 0xbe, 0xef, 0x00};
    for (size_t i = 0; i < load_fixtures(); i++) {
        const struct fixture *fx = &fixtures[i];
        if (!is_complete_hello(fx))
            continue;
        struct sg_sniffed whole, out;
        enum sg_sniff_result want = sg_sniff_tls(fx->data, fx->len, scratch, &whole);
        size_t extra[] = {1, 5, sizeof(after), fx->len};
        for (size_t k = 0; k < sizeof(extra) / sizeof(extra[0]); k++) {
            size_t n = fx->len + extra[k];
            uint8_t *buf = malloc(n);
            CHECK(buf != NULL);
            memcpy(buf, fx->data, fx->len);
            if (extra[k] == fx->len)
                memcpy(buf + fx->len, fx->data, fx->len); /* the same hello again */
            else
                memcpy(buf + fx->len, after, extra[k]);
            enum sg_sniff_result r = sg_sniff_tls(buf, n, scratch, &out);
            free(buf);
            if (r != want || strcmp(out.name.s, whole.name.s) != 0 || out.detail != whole.detail)
                FAIL_("%s + %zu bytes: %s", fx->file, extra[k], sg_sniff_result_str(r));
        }
    }
}

/* An unfragmented hello is parsed in place: NULL scratch is fine, and a
 * scratch buffer passed anyway is left alone. */
TEST(scratch_only_when_fragmented)
{
    size_t single = 0, multi = 0;
    for (size_t i = 0; i < load_fixtures(); i++) {
        const struct fixture *fx = &fixtures[i];
        if (!is_complete_hello(fx))
            continue;
        struct sg_sniffed a, b;
        enum sg_sniff_result want = sg_sniff_tls(fx->data, fx->len, scratch, &a);
        memset(scratch, 0xa5, sizeof(scratch));
        enum sg_sniff_result with = sg_sniff_tls(fx->data, fx->len, scratch, &b);
        enum sg_sniff_result without = sg_sniff_tls(fx->data, fx->len, NULL, &b);
        bool touched = scratch[0] != 0xa5 || scratch[sizeof(scratch) - 1] != 0xa5;
        CHECK_EQ(with, want);
        /* The first record holds all of the hello iff its 4-byte handshake
         * header's length plus 4 equals the record's payload length. */
        size_t rlen = (size_t)fx->data[3] << 8 | fx->data[4];
        size_t mlen = 4 + ((size_t)fx->data[6] << 16 | (size_t)fx->data[7] << 8 | fx->data[8]);
        if (rlen >= 4 && mlen == rlen) {
            single++;
            if (without != want || strcmp(a.name.s, b.name.s) != 0)
                FAIL_("%s: %s with NULL scratch", fx->file, sg_sniff_result_str(without));
            if (touched)
                FAIL_("%s: scratch written for an unfragmented hello", fx->file);
        } else {
            multi++;
            CHECK_EQ(without, SG_SNIFF_TOO_LARGE);
            CHECK_STR(b.detail, "fragmented ClientHello and no scratch buffer");
            if (!touched || scratch[0] != 1)
                FAIL_("%s: fragmented hello not joined in scratch", fx->file);
        }
    }
    CHECK_INT(single, >=, 10);
    CHECK_INT(multi, >=, 10);
}

TEST(scratch_contents_irrelevant)
{
    const struct fixture *fx = find_fixture("s_client_1byte_found.bin");
    CHECK(fx != NULL);
    struct sg_sniffed out;
    memset(scratch, 0x00, sizeof(scratch));
    CHECK_EQ(sg_sniff_tls(fx->data, fx->len, scratch, &out), SG_SNIFF_FOUND);
    CHECK_STR(out.name.s, "s-client.example.net");
    memset(scratch, 0xff, sizeof(scratch));
    CHECK_EQ(sg_sniff_tls(fx->data, fx->len, scratch, &out), SG_SNIFF_FOUND);
    CHECK_STR(out.name.s, "s-client.example.net");
}

TEST(refusal_alert_bytes)
{
    uint8_t buf[SG_TLS_ALERT_LEN + 1];
    static const uint8_t unrecognized[] = {0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 112};
    static const uint8_t decode[] = {0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 50};
    memset(buf, 0xee, sizeof(buf));
    CHECK_EQ(sg_tls_alert(SG_TLS_ALERT_UNRECOGNIZED_NAME, buf), 7);
    CHECK_MEM(buf, unrecognized, sizeof(unrecognized));
    CHECK_EQ(buf[SG_TLS_ALERT_LEN], 0xee);
    CHECK_EQ(sg_tls_alert(SG_TLS_ALERT_DECODE_ERROR, buf), SG_TLS_ALERT_LEN);
    CHECK_MEM(buf, decode, sizeof(decode));
    CHECK_EQ(sg_tls_alert(SG_TLS_ALERT_HANDSHAKE_FAILURE, buf), SG_TLS_ALERT_LEN);
    CHECK_EQ(buf[6], 40);
    CHECK_EQ(sg_tls_alert(SG_TLS_ALERT_INTERNAL_ERROR, buf), SG_TLS_ALERT_LEN);
    CHECK_EQ(buf[6], 80);
}

/* --- hellos built here, to pin each refusal to its detail ------------------ */

struct bytes {
    uint8_t b[70000];
    size_t n;
};

static void put(struct bytes *m, const void *p, size_t n)
{
    memcpy(m->b + m->n, p, n);
    m->n += n;
}

static void put8(struct bytes *m, unsigned v)
{
    m->b[m->n++] = (uint8_t)v;
}

static void put16(struct bytes *m, unsigned v)
{
    put8(m, v >> 8 & 0xff);
    put8(m, v & 0xff);
}

static void put24(struct bytes *m, size_t v)
{
    put8(m, (unsigned)(v >> 16 & 0xff));
    put16(m, (unsigned)(v & 0xffff));
}

static void add_ext(struct bytes *exts, unsigned type, const void *data, size_t len)
{
    put16(exts, type);
    put16(exts, (unsigned)len);
    put(exts, data, len);
}

/* A server_name extension with one entry of <type> holding <name>. */
static void add_sni(struct bytes *exts, unsigned type, const char *name, size_t len)
{
    put16(exts, 0);
    put16(exts, (unsigned)(len + 5));
    put16(exts, (unsigned)(len + 3));
    put8(exts, type);
    put16(exts, (unsigned)len);
    put(exts, name, len);
}

/* A ClientHello handshake message with <exts> as its extensions block (none at
 * all when exts is NULL). */
static void make_msg(struct bytes *msg, const struct bytes *exts)
{
    static const uint8_t random[32] = {1, 2, 3};
    msg->n = 0;
    put8(msg, 1);
    size_t len_at = msg->n;
    put24(msg, 0);
    put16(msg, 0x0303);
    put(msg, random, sizeof(random));
    put8(msg, 0);  /* session_id */
    put16(msg, 2); /* cipher_suites */
    put16(msg, 0x1301);
    put8(msg, 1); /* compression_methods */
    put8(msg, 0);
    if (exts != NULL) {
        put16(msg, (unsigned)exts->n);
        put(msg, exts->b, exts->n);
    }
    size_t body = msg->n - 4;
    msg->b[len_at] = (uint8_t)(body >> 16);
    msg->b[len_at + 1] = (uint8_t)(body >> 8);
    msg->b[len_at + 2] = (uint8_t)body;
}

/* Frames <msg> into records of at most <chunk> payload bytes. */
static void frame(struct bytes *out, const struct bytes *msg, size_t chunk)
{
    out->n = 0;
    for (size_t pos = 0; pos < msg->n; pos += chunk) {
        size_t n = msg->n - pos < chunk ? msg->n - pos : chunk;
        put8(out, 22);
        put16(out, 0x0301);
        put16(out, (unsigned)n);
        put(out, msg->b + pos, n);
    }
}

static struct bytes exts_, msg_, rec_;

static enum sg_sniff_result sniff_built(bool with_exts, struct sg_sniffed *out)
{
    make_msg(&msg_, with_exts ? &exts_ : NULL);
    frame(&rec_, &msg_, 16384);
    return sg_sniff_tls(rec_.b, rec_.n, scratch, out);
}

#define CHECK_VERDICT(r, out, want, why)                                                           \
    do {                                                                                           \
        CHECK_STR(sg_sniff_result_str(r), sg_sniff_result_str(want));                              \
        CHECK_STR((out).detail, why);                                                              \
    } while (0)

TEST(built_hello_names)
{
    struct sg_sniffed out;
    exts_.n = 0;
    add_ext(&exts_, 10, "\x00\x02\x00\x1d", 4);
    add_sni(&exts_, 0, "Example.COM.", 12);
    CHECK_EQ(sniff_built(true, &out), SG_SNIFF_FOUND);
    CHECK_STR(out.name.s, "example.com");
    CHECK_EQ(out.name.len, 11);
    CHECK(out.detail == NULL);

    exts_.n = 0;
    add_sni(&exts_, 0, "a b", 3);
    CHECK_VERDICT(sniff_built(true, &out), out, SG_SNIFF_BAD_NAME,
                  sg_name_status_str(SG_NAME_BAD_CHAR));
    CHECK_EQ(out.name.len, 0);
    CHECK_STR(out.name.s, "");
    CHECK_EQ(out.raw_name_len, 3);
    CHECK_MEM(out.raw_name, "a b", 3);
    CHECK(out.raw_name > (const char *)rec_.b && out.raw_name < (const char *)rec_.b + rec_.n);
    /* fragmented: the raw name lies in the scratch buffer */
    frame(&rec_, &msg_, 7);
    CHECK_EQ(sg_sniff_tls(rec_.b, rec_.n, scratch, &out), SG_SNIFF_BAD_NAME);
    CHECK_EQ(out.raw_name_len, 3);
    CHECK_MEM(out.raw_name, "a b", 3);
    CHECK(out.raw_name > (const char *)scratch && out.raw_name < (const char *)scratch + msg_.n);
    exts_.n = 0;
    add_sni(&exts_, 0, "ok.example", 10);
    CHECK_EQ(sniff_built(true, &out), SG_SNIFF_FOUND);
    CHECK(out.raw_name == NULL && out.raw_name_len == 0);
    exts_.n = 0;
    add_sni(&exts_, 0, "caf\xc3\xa9.example", 13);
    CHECK_VERDICT(sniff_built(true, &out), out, SG_SNIFF_BAD_NAME,
                  sg_name_status_str(SG_NAME_NON_ASCII));
    exts_.n = 0;
    add_sni(&exts_, 0, "[2001:db8::1]", 13);
    CHECK_VERDICT(sniff_built(true, &out), out, SG_SNIFF_BAD_NAME,
                  sg_name_status_str(SG_NAME_BAD_IP_LITERAL));
    exts_.n = 0;
    add_sni(&exts_, 0, "*.example.org", 13);
    CHECK_VERDICT(sniff_built(true, &out), out, SG_SNIFF_BAD_NAME,
                  sg_name_status_str(SG_NAME_BAD_WILDCARD));

    exts_.n = 0;
    add_sni(&exts_, 0, "", 0);
    CHECK_VERDICT(sniff_built(true, &out), out, SG_SNIFF_MALFORMED, "empty host_name");
    exts_.n = 0;
    add_sni(&exts_, 9, "whatever", 8);
    CHECK_VERDICT(sniff_built(true, &out), out, SG_SNIFF_NO_NAME,
                  "server_name without a host_name");
}

TEST(built_hello_structure)
{
    struct sg_sniffed out;
    exts_.n = 0;
    CHECK_VERDICT(sniff_built(false, &out), out, SG_SNIFF_NO_NAME,
                  "ClientHello without extensions");
    CHECK_VERDICT(sniff_built(true, &out), out, SG_SNIFF_NO_NAME, "no server_name extension");
    add_ext(&exts_, 43, "\x02\x03\x04", 3);
    CHECK_VERDICT(sniff_built(true, &out), out, SG_SNIFF_NO_NAME, "no server_name extension");

    /* A duplicate of any type is refused, wherever the server_name sits. */
    add_sni(&exts_, 0, "a.example", 9);
    add_ext(&exts_, 43, "\x02\x03\x04", 3);
    CHECK_VERDICT(sniff_built(true, &out), out, SG_SNIFF_MALFORMED, "duplicate extension");
    exts_.n = 0;
    add_sni(&exts_, 0, "a.example", 9);
    add_sni(&exts_, 0, "a.example", 9);
    CHECK_VERDICT(sniff_built(true, &out), out, SG_SNIFF_MALFORMED, "duplicate extension");
    exts_.n = 0;
    add_ext(&exts_, 0xfe0d, "", 0);
    add_ext(&exts_, 0xfe0d, "", 0);
    CHECK_VERDICT(sniff_built(true, &out), out, SG_SNIFF_MALFORMED, "duplicate extension");

    /* Two host_names in one list. */
    exts_.n = 0;
    put16(&exts_, 0);
    put16(&exts_, 2 + 2 * 6);
    put16(&exts_, 2 * 6);
    static const uint8_t two[] = {0, 0, 3, 'a', '.', 'b', 0, 0, 3, 'c', '.', 'd'};
    put(&exts_, two, sizeof(two));
    CHECK_VERDICT(sniff_built(true, &out), out, SG_SNIFF_MALFORMED, "more than one host_name");
    /* ... but an unknown type beside a host_name is skipped. */
    exts_.b[4 + 2 + 3 + 3] = 0x07;
    CHECK_EQ(sniff_built(true, &out), SG_SNIFF_FOUND);
    CHECK_STR(out.name.s, "a.b");
    exts_.b[5 + 2 + 3 + 3] = 0xff; /* the second entry's length now overflows the list */
    CHECK_VERDICT(sniff_built(true, &out), out, SG_SNIFF_MALFORMED,
                  "server name length over its list");

    exts_.n = 0;
    add_ext(&exts_, 0, "\x00\x00", 2);
    CHECK_VERDICT(sniff_built(true, &out), out, SG_SNIFF_MALFORMED, "empty server_name list");
    exts_.n = 0;
    add_ext(&exts_, 0, "", 0);
    CHECK_VERDICT(sniff_built(true, &out), out, SG_SNIFF_MALFORMED,
                  "server_name list length mismatch");
    exts_.n = 0;
    add_ext(&exts_, 0, "\x00\x05\x00\x00\x01x", 6);
    CHECK_VERDICT(sniff_built(true, &out), out, SG_SNIFF_MALFORMED,
                  "server_name list length mismatch");
    /* a list shorter than its extension leaves bytes that nobody reads */
    exts_.n = 0;
    add_ext(&exts_, 0, "\x00\x04\x00\x00\x01xy", 7);
    CHECK_VERDICT(sniff_built(true, &out), out, SG_SNIFF_MALFORMED,
                  "server_name list length mismatch");

    /* An extension longer than its block. */
    exts_.n = 0;
    add_sni(&exts_, 0, "a.example", 9);
    exts_.b[3] += 1;
    CHECK_VERDICT(sniff_built(true, &out), out, SG_SNIFF_MALFORMED,
                  "extension length over the extensions block");
    /* An extension header cut short by the end of the block. */
    exts_.n = 0;
    put16(&exts_, 0x0017);
    put8(&exts_, 0);
    CHECK_VERDICT(sniff_built(true, &out), out, SG_SNIFF_MALFORMED,
                  "extension length over the extensions block");
}

/* Mutates the fixed part of a built hello at body offset <at> and checks the
 * verdict. Offsets: version 0, random 2, session_id 34, cipher_suites 35,
 * compression 39, extensions 41 (with an empty session_id). */
TEST(built_hello_fixed_fields)
{
    struct sg_sniffed out;
    exts_.n = 0;
    add_sni(&exts_, 0, "a.example", 9);
    make_msg(&msg_, &exts_);
    uint8_t *body = msg_.b + 4;

    body[0] = 2;
    frame(&rec_, &msg_, 16384);
    CHECK_VERDICT(sg_sniff_tls(rec_.b, rec_.n, scratch, &out), out, SG_SNIFF_MALFORMED,
                  "ClientHello version is not 3.x");
    body[0] = 3;
    body[34] = 33;
    frame(&rec_, &msg_, 16384);
    CHECK_VERDICT(sg_sniff_tls(rec_.b, rec_.n, scratch, &out), out, SG_SNIFF_MALFORMED,
                  "bad session_id length");
    body[34] = 0;
    body[36] = 3;
    frame(&rec_, &msg_, 16384);
    CHECK_VERDICT(sg_sniff_tls(rec_.b, rec_.n, scratch, &out), out, SG_SNIFF_MALFORMED,
                  "bad cipher_suites length");
    body[36] = 0;
    frame(&rec_, &msg_, 16384);
    CHECK_VERDICT(sg_sniff_tls(rec_.b, rec_.n, scratch, &out), out, SG_SNIFF_MALFORMED,
                  "bad cipher_suites length");
    body[36] = 2;
    body[39] = 0;
    frame(&rec_, &msg_, 16384);
    CHECK_VERDICT(sg_sniff_tls(rec_.b, rec_.n, scratch, &out), out, SG_SNIFF_MALFORMED,
                  "bad compression_methods length");
    body[39] = 1;
    body[42] += 1;
    frame(&rec_, &msg_, 16384);
    CHECK_VERDICT(sg_sniff_tls(rec_.b, rec_.n, scratch, &out), out, SG_SNIFF_MALFORMED,
                  "extensions length over the ClientHello");
    body[42] -= 2;
    frame(&rec_, &msg_, 16384);
    CHECK_VERDICT(sg_sniff_tls(rec_.b, rec_.n, scratch, &out), out, SG_SNIFF_MALFORMED,
                  "data after the extensions");
    body[42] += 1;
    frame(&rec_, &msg_, 16384);
    CHECK_EQ(sg_sniff_tls(rec_.b, rec_.n, scratch, &out), SG_SNIFF_FOUND);

    /* Cut the body short at every offset before its extensions, lengths fixed up. */
    for (size_t cut = 0; cut < 41; cut++) {
        struct bytes m;
        m.n = 0;
        put8(&m, 1);
        put24(&m, cut);
        put(&m, body, cut);
        frame(&rec_, &m, 16384);
        enum sg_sniff_result r = sg_sniff_tls(rec_.b, rec_.n, scratch, &out);
        if (cut == 0) {
            /* a zero-length handshake message still has to be a ClientHello */
            CHECK_EQ(r, SG_SNIFF_MALFORMED);
        } else if (r != SG_SNIFF_MALFORMED) {
            FAIL_("body cut at %zu: %s", cut, sg_sniff_result_str(r));
        }
    }
}

TEST(records_and_limits)
{
    struct sg_sniffed out;
    static const uint8_t http[] = "GET / HTTP/1.1\r\nHost: a.example\r\n\r\n";
    CHECK_VERDICT(sg_sniff_tls(http, 1, NULL, &out), out, SG_SNIFF_WRONG_PROTOCOL,
                  "plain text, not TLS (HTTP on a TLS port?)");
    CHECK_VERDICT(sg_sniff_tls(http, sizeof(http) - 1, NULL, &out), out, SG_SNIFF_WRONG_PROTOCOL,
                  "plain text, not TLS (HTTP on a TLS port?)");
    CHECK_EQ(out.spoken, SG_SPOKE_HTTP); /* so the refusal is an HTTP 400 */
    static const uint8_t v2[] = {0x80, 0x2e, 0x01, 0x03, 0x01};
    CHECK_VERDICT(sg_sniff_tls(v2, sizeof(v2), NULL, &out), out, SG_SNIFF_WRONG_PROTOCOL,
                  "SSLv2-style hello or binary data, not a TLS record");
    CHECK_EQ(out.spoken, SG_SPOKE_UNKNOWN);
    static const uint8_t ccs[] = {0x14, 0x03, 0x03, 0x00, 0x01, 0x01};
    CHECK_VERDICT(sg_sniff_tls(ccs, sizeof(ccs), NULL, &out), out, SG_SNIFF_WRONG_PROTOCOL,
                  "first record is not a TLS handshake");

    /* Each header field is judged as soon as it arrives. */
    static const uint8_t v4[] = {0x16, 0x04, 0x01};
    CHECK_VERDICT(sg_sniff_tls(v4, 2, NULL, &out), out, SG_SNIFF_MALFORMED,
                  "record version is not 3.x");
    static const uint8_t big[] = {0x16, 0x03, 0x01, 0x40, 0x01};
    CHECK_VERDICT(sg_sniff_tls(big, 5, NULL, &out), out, SG_SNIFF_MALFORMED,
                  "record length over 2^14");
    static const uint8_t empty[] = {0x16, 0x03, 0x01, 0x00, 0x00};
    CHECK_VERDICT(sg_sniff_tls(empty, 5, NULL, &out), out, SG_SNIFF_MALFORMED,
                  "empty handshake record");
    static const uint8_t server_hello[] = {0x16, 0x03, 0x03, 0x00, 0x7a, 0x02};
    CHECK_VERDICT(sg_sniff_tls(server_hello, 6, NULL, &out), out, SG_SNIFF_MALFORMED,
                  "first handshake message is not a ClientHello");
    static const uint8_t huge[] = {0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0x00, 0x80, 0x01};
    CHECK_VERDICT(sg_sniff_tls(huge, 8, NULL, &out), out, SG_SNIFF_NEED_MORE, "incomplete record");
    CHECK_EQ(out.need, 5 + 16384);
    CHECK_VERDICT(sg_sniff_tls(huge, 9, NULL, &out), out, SG_SNIFF_TOO_LARGE,
                  "ClientHello over 32 KiB");
    /* A handshake length shorter than its record leaves data after the hello. */
    static const uint8_t shorter[] = {0x16, 0x03, 0x01, 0x00, 0x40, 0x01, 0x00, 0x00, 0x30};
    CHECK_VERDICT(sg_sniff_tls(shorter, 9, NULL, &out), out, SG_SNIFF_MALFORMED,
                  "data after the ClientHello in its record");
    /* ... even by a single byte, in the record that completes a fragmented hello */
    exts_.n = 0;
    add_sni(&exts_, 0, "a.example", 9);
    make_msg(&msg_, &exts_);
    put8(&msg_, 0);
    frame(&rec_, &msg_, 30);
    CHECK_VERDICT(sg_sniff_tls(rec_.b, rec_.n, scratch, &out), out, SG_SNIFF_MALFORMED,
                  "data after the ClientHello in its record");
    frame(&rec_, &msg_, 16384);
    CHECK_VERDICT(sg_sniff_tls(rec_.b, rec_.n, scratch, &out), out, SG_SNIFF_MALFORMED,
                  "data after the ClientHello in its record");

    /* need: the record header, then the record, then the next header. */
    CHECK_VERDICT(sg_sniff_tls(big, 3, NULL, &out), out, SG_SNIFF_NEED_MORE,
                  "incomplete record header");
    CHECK_EQ(out.need, 5);
    exts_.n = 0;
    add_sni(&exts_, 0, "a.example", 9);
    make_msg(&msg_, &exts_);
    frame(&rec_, &msg_, 10);
    CHECK_EQ(sg_sniff_tls(rec_.b, 5, scratch, &out), SG_SNIFF_NEED_MORE);
    CHECK_EQ(out.need, 15); /* the first record; the handshake length is not known yet */
    CHECK_EQ(sg_sniff_tls(rec_.b, 14, scratch, &out), SG_SNIFF_NEED_MORE);
    CHECK_EQ(out.need, 15 + 5 + msg_.n - 10); /* now it is: all of it, in one more record */
    CHECK_EQ(sg_sniff_tls(rec_.b, 15, scratch, &out), SG_SNIFF_NEED_MORE);
    CHECK_EQ(out.need, 15 + 5 + msg_.n - 10);
    CHECK_EQ(sg_sniff_tls(rec_.b, 17, scratch, &out), SG_SNIFF_NEED_MORE);
    CHECK_STR(out.detail, "incomplete record header");
    CHECK_EQ(out.need, 15 + 5 + msg_.n - 10);
    CHECK_EQ(sg_sniff_tls(rec_.b, 15 + 5 + msg_.n - 10, scratch, &out), SG_SNIFF_NEED_MORE);
    CHECK_INT(out.need, >, 15 + 5 + msg_.n - 10);
    CHECK_INT(out.need, <=, rec_.n);
    CHECK_EQ(sg_sniff_tls(rec_.b, rec_.n, scratch, &out), SG_SNIFF_FOUND);
    CHECK_STR(out.name.s, "a.example");
    /* A non-handshake record in the middle of the hello. */
    rec_.b[15] = 0x17;
    CHECK_VERDICT(sg_sniff_tls(rec_.b, rec_.n, scratch, &out), out, SG_SNIFF_MALFORMED,
                  "non-handshake record inside the ClientHello");
}

/* Builds into msg_ a ClientHello for "edge.example" padded (extension 21) to
 * exactly <total> bytes of handshake message. */
static void padded_msg(size_t total)
{
    static const uint8_t zeros[SG_TLS_HELLO_MAX];
    exts_.n = 0;
    add_sni(&exts_, 0, "edge.example", 12);
    make_msg(&msg_, &exts_);
    add_ext(&exts_, 21, zeros, total - msg_.n - 4);
    make_msg(&msg_, &exts_);
}

/* The largest record, 2^14 bytes of payload, is accepted; the 32 KiB message
 * limit is inclusive; raw bytes past SG_TLS_SNIFF_MAX are refused. */
TEST(size_edges)
{
    struct sg_sniffed out;
    padded_msg(16384);
    CHECK_EQ(msg_.n, 16384);
    frame(&rec_, &msg_, 16384);
    CHECK_EQ(rec_.n, 5 + 16384);
    CHECK_EQ(sg_sniff_tls(rec_.b, rec_.n, NULL, &out), SG_SNIFF_FOUND);
    CHECK_STR(out.name.s, "edge.example");

    padded_msg(SG_TLS_HELLO_MAX);
    CHECK_EQ(msg_.n, SG_TLS_HELLO_MAX);
    frame(&rec_, &msg_, 16384);
    CHECK_EQ(sg_sniff_tls(rec_.b, rec_.n, scratch, &out), SG_SNIFF_FOUND);
    CHECK_STR(out.name.s, "edge.example");
    CHECK_VERDICT(sg_sniff_tls(rec_.b, rec_.n, NULL, &out), out, SG_SNIFF_TOO_LARGE,
                  "fragmented ClientHello and no scratch buffer");

    padded_msg(SG_TLS_HELLO_MAX + 1);
    frame(&rec_, &msg_, 16384);
    CHECK_VERDICT(sg_sniff_tls(rec_.b, rec_.n, scratch, &out), out, SG_SNIFF_TOO_LARGE,
                  "ClientHello over 32 KiB");

    /* 40 KiB of raw bytes are reached with small records long before 32 KiB
     * of handshake: 8-byte payloads cost 13 bytes each. */
    padded_msg(30000);
    frame(&rec_, &msg_, 8);
    CHECK_INT(rec_.n, >, SG_TLS_SNIFF_MAX);
    CHECK_VERDICT(sg_sniff_tls(rec_.b, rec_.n, scratch, &out), out, SG_SNIFF_TOO_LARGE,
                  "ClientHello records over the sniff limit");
    /* ... and a careful caller is never asked to buffer more than the limit. */
    size_t len = 1, calls = 0;
    enum sg_sniff_result r;
    while ((r = sg_sniff_tls(rec_.b, len, scratch, &out)) == SG_SNIFF_NEED_MORE) {
        CHECK_INT(out.need, <=, SG_TLS_SNIFF_MAX);
        len = out.need;
        calls++;
    }
    CHECK_EQ(r, SG_SNIFF_TOO_LARGE);
    CHECK_INT(len, <=, SG_TLS_SNIFF_MAX);
    CHECK_INT(calls, <=, 2 * (SG_TLS_SNIFF_MAX / 13) + 4);
}

TEST_MAIN(T(result_tokens), T(every_fixture_whole), T(good_fixtures_byte_by_byte),
          T(need_keeps_calls_few), T(prefix_of_valid_hello_is_need_more),
          T(reframed_match_originals), T(bytes_after_hello_change_nothing),
          T(scratch_only_when_fragmented), T(scratch_contents_irrelevant), T(refusal_alert_bytes),
          T(built_hello_names), T(built_hello_structure), T(built_hello_fixed_fields),
          T(records_and_limits), T(size_edges))
