/* The protocol table: what each listener protocol buffers, how its sniffer
 * is fed, and the exact bytes a refused client gets for each outcome. */
#include "sixgate/protocol.h"
#include "sixgate/sniff_http.h"
#include "test.h"

static const uint8_t *refusal(enum sg_protocol p, enum sg_outcome o, bool name_seen,
                              enum sg_sniff_spoken spoken, uint8_t *scratch, size_t *len)
{
    struct sg_refusal_facts f = {.name_seen = name_seen, .spoken = spoken};
    return sg_protocol_ops(p)->refusal(o, &f, scratch, len);
}

/* The status line of an HTTP refusal. */
static bool http_status_is(const uint8_t *b, size_t len, const char *status)
{
    size_t n = strlen(status);
    return b != NULL && len > n + 9 && memcmp(b, "HTTP/1.1 ", 9) == 0 &&
           memcmp(b + 9, status, n) == 0;
}

static bool alert_is(const uint8_t *b, size_t len, uint8_t desc)
{
    const uint8_t want[SG_TLS_ALERT_LEN] = {0x15, 3, 3, 0, 2, 2, desc};
    return b != NULL && len == SG_TLS_ALERT_LEN && memcmp(b, want, len) == 0;
}

TEST(tls_refusals)
{
    uint8_t s[SG_REFUSAL_SCRATCH];
    size_t len;
    const uint8_t *b = refusal(SG_PROTO_TLS, SG_OUT_NO_ROUTE, true, SG_SPOKE_UNKNOWN, s, &len);
    CHECK(alert_is(b, len, SG_TLS_ALERT_UNRECOGNIZED_NAME));
    b = refusal(SG_PROTO_TLS, SG_OUT_NO_ROUTE, false, SG_SPOKE_UNKNOWN, s, &len);
    CHECK(alert_is(b, len, SG_TLS_ALERT_DECODE_ERROR)); /* no name and no fallback */
    b = refusal(SG_PROTO_TLS, SG_OUT_BAD_REQUEST, true, SG_SPOKE_UNKNOWN, s, &len);
    CHECK(alert_is(b, len, SG_TLS_ALERT_UNRECOGNIZED_NAME));
    b = refusal(SG_PROTO_TLS, SG_OUT_TOO_LARGE, false, SG_SPOKE_UNKNOWN, s, &len);
    CHECK(alert_is(b, len, SG_TLS_ALERT_HANDSHAKE_FAILURE));
    b = refusal(SG_PROTO_TLS, SG_OUT_CONNECT_FAILED, true, SG_SPOKE_UNKNOWN, s, &len);
    CHECK(alert_is(b, len, SG_TLS_ALERT_INTERNAL_ERROR));
    b = refusal(SG_PROTO_TLS, SG_OUT_BACKEND_REFUSED, true, SG_SPOKE_UNKNOWN, s, &len);
    CHECK(alert_is(b, len, SG_TLS_ALERT_INTERNAL_ERROR));
    b = refusal(SG_PROTO_TLS, SG_OUT_CONNECT_TIMEOUT, true, SG_SPOKE_UNKNOWN, s, &len);
    CHECK(alert_is(b, len, SG_TLS_ALERT_INTERNAL_ERROR));
    /* plain HTTP on a TLS port gets an HTTP answer; other garbage nothing */
    b = refusal(SG_PROTO_TLS, SG_OUT_WRONG_PROTOCOL, false, SG_SPOKE_HTTP, s, &len);
    CHECK(http_status_is(b, len, "400 "));
    b = refusal(SG_PROTO_TLS, SG_OUT_WRONG_PROTOCOL, false, SG_SPOKE_UNKNOWN, s, &len);
    CHECK(b == NULL);
    CHECK_EQ(len, 0);
}

TEST(http_refusals)
{
    uint8_t s[SG_REFUSAL_SCRATCH];
    size_t len;
    static const struct {
        enum sg_outcome o;
        const char *status;
    } cases[] = {
        {SG_OUT_NO_ROUTE, "421 "},       {SG_OUT_TOO_LARGE, "431 "},
        {SG_OUT_CONNECT_FAILED, "502 "}, {SG_OUT_RESOLVE_FAILED, "503 "},
        {SG_OUT_OVERLOAD, "503 "},       {SG_OUT_CONNECT_TIMEOUT, "504 "},
        {SG_OUT_BAD_REQUEST, "400 "},    {SG_OUT_INTERNAL, "400 "},
        {SG_OUT_BACKEND_REFUSED, "502 "},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const uint8_t *b = refusal(SG_PROTO_HTTP, cases[i].o, true, SG_SPOKE_UNKNOWN, s, &len);
        if (!http_status_is(b, len, cases[i].status))
            FAIL_("%s: not %s", sg_outcome_str(cases[i].o), cases[i].status);
    }
    /* a TLS hello on an HTTP port is answered in TLS */
    const uint8_t *b = refusal(SG_PROTO_HTTP, SG_OUT_WRONG_PROTOCOL, false, SG_SPOKE_TLS, s, &len);
    CHECK(alert_is(b, len, SG_TLS_ALERT_HANDSHAKE_FAILURE));
}

TEST(tcp_closes_without_a_word)
{
    uint8_t s[SG_REFUSAL_SCRATCH];
    for (int o = 0; o < SG_OUT_COUNT; o++) {
        size_t len = 99;
        CHECK(refusal(SG_PROTO_TCP, (enum sg_outcome)o, true, SG_SPOKE_HTTP, s, &len) == NULL);
        CHECK_EQ(len, 0);
    }
    CHECK(!sg_protocol_ops(SG_PROTO_TCP)->sniffs);
    CHECK_EQ(sg_protocol_ops(SG_PROTO_TCP)->early_max(NULL), 16 * 1024);
}

/* The HTTP sniffer is fed only the new bytes, whatever the split. */
TEST(http_sniff_feeds_only_fresh_bytes)
{
    const struct sg_protocol_ops *ops = sg_protocol_ops(SG_PROTO_HTTP);
    struct sg_snapshot snap = {.http_head_max = 1024};
    struct sg_sniff_state st = {0};
    CHECK(ops->sniffs);
    CHECK_EQ(ops->early_max(&snap), 1024 + 4096);
    CHECK(ops->sniff_begin(&st, &snap));
    const char *req = "GET / HTTP/1.1\r\nHost: Shop.Example\r\n\r\n";
    size_t n = strlen(req);
    struct sg_sniffed out;
    for (size_t i = 1; i < n; i++) {
        memset(&out, 0, sizeof(out));
        if (ops->sniff(&st, (const uint8_t *)req, i, 1, NULL, &out) != SG_SNIFF_NEED_MORE)
            FAIL_("verdict after %zu bytes", i);
    }
    CHECK_EQ(ops->sniff(&st, (const uint8_t *)req, n, 1, NULL, &out), SG_SNIFF_FOUND);
    CHECK_STR(out.name.s, "shop.example");
    ops->sniff_end(&st);
    CHECK(st.http == NULL);
    ops->sniff_end(&st); /* twice is fine */
}

/* The TLS sniffer parses again only once the bytes it asked for are there. */
TEST(tls_sniff_waits_for_need)
{
    const struct sg_protocol_ops *ops = sg_protocol_ops(SG_PROTO_TLS);
    struct sg_sniff_state st = {0};
    CHECK(ops->sniff_begin(&st, NULL));
    CHECK_EQ(ops->early_max(NULL), SG_TLS_SNIFF_MAX);
    /* a handshake record header announcing 512 bytes */
    uint8_t rec[5 + 4] = {0x16, 3, 1, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc};
    struct sg_sniffed out;
    CHECK_EQ(ops->sniff(&st, rec, sizeof(rec), sizeof(rec), NULL, &out), SG_SNIFF_NEED_MORE);
    size_t need = out.need;
    CHECK(need > sizeof(rec));
    CHECK_EQ(st.need, need);
    /* fewer bytes than asked for: no parse, the same answer */
    memset(&out, 0, sizeof(out));
    CHECK_EQ(ops->sniff(&st, rec, need - 1, 1, NULL, &out), SG_SNIFF_NEED_MORE);
    CHECK_EQ(out.need, need);
}

TEST_MAIN(T(tls_refusals), T(http_refusals), T(tcp_closes_without_a_word),
          T(http_sniff_feeds_only_fresh_bytes), T(tls_sniff_waits_for_need))
