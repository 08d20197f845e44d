#include "sixgate/sniff_http.h"
#include "test.h"

/* What one run of the sniffer over a request gave. */
struct outcome {
    enum sg_sniff_result r;
    struct sg_sniffed out;
    size_t head_len;
    /* out.raw_name points into the sniffer, which is gone: a copy */
    char raw[SG_HTTP_AUTHORITY_MAX + 16];
    size_t raw_len;
};

static void keep_raw(struct outcome *o)
{
    o->raw_len = 0;
    if (o->out.raw_name != NULL && o->out.raw_name_len <= sizeof(o->raw)) {
        memcpy(o->raw, o->out.raw_name, o->out.raw_name_len);
        o->raw_len = o->out.raw_name_len;
    }
    o->raw[o->raw_len < sizeof(o->raw) ? o->raw_len : sizeof(o->raw) - 1] = '\0';
    o->out.raw_name = NULL;
}

/* Feeds <req> in two calls, cut at <cut> (either may be empty). The second
 * call is made even after a verdict, which must then stick. */
static void sniff_cut(const uint8_t *req, size_t len, size_t limit, size_t cut, struct outcome *o)
{
    struct sg_http_sniffer s;
    sg_http_sniffer_init(&s, limit);
    sg_http_sniffer_feed(&s, req, cut, &o->out);
    o->r = sg_http_sniffer_feed(&s, req + cut, len - cut, &o->out);
    o->head_len = s.head_len;
    keep_raw(o);
}

static void sniff_bytewise(const uint8_t *req, size_t len, size_t limit, struct outcome *o)
{
    struct sg_http_sniffer s;
    sg_http_sniffer_init(&s, limit);
    o->r = SG_SNIFF_NEED_MORE;
    o->out.need = 1;
    o->out.detail = NULL;
    o->out.raw_name = NULL;
    for (size_t i = 0; i < len; i++)
        o->r = sg_http_sniffer_feed(&s, req + i, 1, &o->out);
    o->head_len = s.head_len;
    keep_raw(o);
}

static bool same_outcome(const struct outcome *a, const struct outcome *b, const char *how,
                         size_t at)
{
    bool same = a->r == b->r && a->head_len == b->head_len && a->out.need == b->out.need &&
                (a->out.detail == b->out.detail ||
                 (a->out.detail && b->out.detail && strcmp(a->out.detail, b->out.detail) == 0));
    same = same && a->raw_len == b->raw_len && memcmp(a->raw, b->raw, a->raw_len) == 0;
    if (same && a->r == SG_SNIFF_FOUND)
        same = a->out.name.len == b->out.name.len && strcmp(a->out.name.s, b->out.name.s) == 0;
    if (!same)
        fprintf(stderr, "  %s %zu: %s \"%s\" \"%s\" head %zu, whole: %s \"%s\" \"%s\" head %zu\n",
                how, at, sg_sniff_result_str(b->r), b->out.detail ? b->out.detail : "",
                b->out.name.s, b->head_len, sg_sniff_result_str(a->r),
                a->out.detail ? a->out.detail : "", a->out.name.s, a->head_len);
    return same;
}

/* Sniffs <req> whole, one byte at a time and cut in two at every position:
 * all must agree. Leaves the whole-input outcome in <o>. */
static bool sniff_all_ways(const void *req, size_t len, size_t limit, struct outcome *o)
{
    const uint8_t *p = req;
    struct outcome other;
    sniff_cut(p, len, limit, len, o);
    sniff_bytewise(p, len, limit, &other);
    if (!same_outcome(o, &other, "byte by byte", len))
        return false;
    for (size_t cut = 0; cut < len; cut++) {
        sniff_cut(p, len, limit, cut, &other);
        if (!same_outcome(o, &other, "cut at", cut))
            return false;
    }
    return true;
}

#define SNIFF(req, o) CHECK(sniff_all_ways((req), sizeof(req) - 1, SG_HTTP_HEAD_DEFAULT, &(o)))

/* <req> (a string literal) gives FOUND with <want_name>, its head ending at <head>
 * bytes (0: the whole request). */
#define EXPECT_FOUND_AT(req, want_name, head)                                                      \
    do {                                                                                           \
        struct outcome o_;                                                                         \
        SNIFF(req, o_);                                                                            \
        CHECK_STR(sg_sniff_result_str(o_.r), "found");                                             \
        CHECK_STR(o_.out.name.s, want_name);                                                       \
        CHECK_EQ(o_.out.name.len, strlen(want_name));                                              \
        CHECK(o_.out.detail == NULL);                                                              \
        CHECK_EQ(o_.head_len, (head) ? (size_t)(head) : sizeof(req) - 1);                          \
    } while (0)

#define EXPECT_FOUND(req, want_name) EXPECT_FOUND_AT(req, want_name, 0)

/* The head ends at the first blank line, whatever follows. */
#define EXPECT_FOUND_FIRST(req, want_name)                                                         \
    EXPECT_FOUND_AT(req, want_name, strstr(req, "\r\n\r\n") + 4 - (req))

/* <req> gives <result> (a sg_sniff_result_str() token) and exactly <want_detail>. */
#define EXPECT(req, result, want_detail)                                                           \
    do {                                                                                           \
        struct outcome o_;                                                                         \
        SNIFF(req, o_);                                                                            \
        CHECK_STR(sg_sniff_result_str(o_.r), result);                                              \
        CHECK_STR(o_.out.detail, want_detail);                                                     \
        CHECK_EQ(o_.out.name.len, 0);                                                              \
    } while (0)

TEST(simple_get_with_host)
{
    static const char req[] = "GET / HTTP/1.1\r\nHost: example.org\r\nAccept: */*\r\n\r\n";
    struct sg_http_sniffer s;
    struct sg_sniffed out;
    sg_http_sniffer_init(&s, SG_HTTP_HEAD_DEFAULT);
    CHECK_EQ(sg_http_sniffer_feed(&s, (const uint8_t *)req, strlen(req), &out), SG_SNIFF_FOUND);
    CHECK_STR(out.name.s, "example.org");
    CHECK_EQ(out.name.len, 11);
    CHECK_EQ(s.head_len, strlen(req));
    CHECK_EQ(out.need, 0);
    CHECK(out.detail == NULL);
    EXPECT_FOUND("GET / HTTP/1.1\r\nHost: example.org\r\n\r\n", "example.org");
    EXPECT_FOUND("GET /index.html?q=1 HTTP/1.1\r\nUser-Agent: t\r\nHost: a.example\r\n"
                 "Accept: */*\r\n\r\n",
                 "a.example");
}

TEST(need_more_asks_for_one_more_byte)
{
    static const char req[] = "GET / HTTP/1.1\r\nHost: example.org\r\n\r";
    struct sg_http_sniffer s;
    struct sg_sniffed out;
    sg_http_sniffer_init(&s, SG_HTTP_HEAD_DEFAULT);
    CHECK_EQ(sg_http_sniffer_feed(&s, (const uint8_t *)req, 0, &out), SG_SNIFF_NEED_MORE);
    CHECK_EQ(out.need, 1);
    CHECK_EQ(sg_http_sniffer_feed(&s, (const uint8_t *)req, strlen(req), &out), SG_SNIFF_NEED_MORE);
    CHECK_EQ(out.need, strlen(req) + 1);
    CHECK_STR(out.detail, "request head incomplete");
    CHECK_EQ(sg_http_sniffer_feed(&s, (const uint8_t *)"\n", 1, &out), SG_SNIFF_FOUND);
    CHECK_STR(out.name.s, "example.org");
    CHECK_EQ(s.head_len, strlen(req) + 1);
}

TEST(host_is_normalised)
{
    EXPECT_FOUND("GET / HTTP/1.1\r\nHost: example.org:8080\r\n\r\n", "example.org");
    EXPECT_FOUND("GET / HTTP/1.1\r\nHost: example.org.\r\n\r\n", "example.org");
    EXPECT_FOUND("GET / HTTP/1.1\r\nHost: example.org.:443\r\n\r\n", "example.org");
    EXPECT_FOUND("GET / HTTP/1.1\r\nHost: WWW.Example.ORG\r\n\r\n", "www.example.org");
    EXPECT_FOUND("GET / HTTP/1.1\r\nHost: [2001:DB8:0::0001]:8443\r\n\r\n", "[2001:db8::1]");
    EXPECT_FOUND("GET / HTTP/1.1\r\nHost: [::1]\r\n\r\n", "[::1]");
    EXPECT_FOUND("GET / HTTP/1.1\r\nHost: example.org:\r\n\r\n", "example.org");
}

/* llhttp drops the whitespace before a value but hands over the whitespace
 * after it; the sniffer drops that. */
TEST(optional_whitespace_around_host_is_ignored)
{
    EXPECT_FOUND("GET / HTTP/1.1\r\nHost:example.org\r\n\r\n", "example.org");
    EXPECT_FOUND("GET / HTTP/1.1\r\nHost: \t example.org \t \r\n\r\n", "example.org");
    EXPECT_FOUND("GET / HTTP/1.1\r\nHost:\texample.org\t\r\n\r\n", "example.org");
}

TEST(host_field_name_is_case_insensitive)
{
    EXPECT_FOUND("GET / HTTP/1.1\r\nHOST: a.example\r\n\r\n", "a.example");
    EXPECT_FOUND("GET / HTTP/1.1\r\nhOsT: a.example\r\n\r\n", "a.example");
    EXPECT_FOUND("GET / HTTP/1.1\r\nhost: a.example\r\n\r\n", "a.example");
    /* Only "host" itself is Host. */
    EXPECT("GET / HTTP/1.1\r\nHosts: a.example\r\n\r\n", "malformed",
           "HTTP/1.1 request without Host");
    EXPECT("GET / HTTP/1.1\r\nHos: a.example\r\nX-Host: b.example\r\n\r\n", "malformed",
           "HTTP/1.1 request without Host");
    EXPECT_FOUND("GET / HTTP/1.1\r\nX-Forwarded-Host: b.example\r\nHost: a.example\r\n\r\n",
                 "a.example");
}

TEST(absolute_form_authority_wins_over_host)
{
    EXPECT_FOUND("GET http://Example.ORG:8080/x HTTP/1.1\r\nHost: other.example\r\n\r\n",
                 "example.org");
    EXPECT_FOUND("GET https://www.example.org/ HTTP/1.1\r\nHost: www.example.org\r\n\r\n",
                 "www.example.org");
    EXPECT_FOUND("GET HTTPS://[2001:db8::0:1]:443/a?b HTTP/1.1\r\nHost: x.example\r\n\r\n",
                 "[2001:db8::1]");
    EXPECT_FOUND("GET http://a.example HTTP/1.1\r\nHost: b.example\r\n\r\n", "a.example");
    EXPECT_FOUND("GET http://a.example?q=1 HTTP/1.1\r\nHost: b.example\r\n\r\n", "a.example");
    EXPECT_FOUND("OPTIONS http://a.example HTTP/1.1\r\nHost: b.example\r\n\r\n", "a.example");
    /* HTTP/1.0 needs no Host when the target names the site. */
    EXPECT_FOUND("GET http://a.example/ HTTP/1.0\r\n\r\n", "a.example");
}

TEST(absolute_form_faults)
{
    EXPECT("GET http://user:pw@a.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n", "malformed",
           "userinfo in absolute-form target");
    EXPECT("GET http://a.example@/ HTTP/1.1\r\nHost: a.example\r\n\r\n", "malformed",
           "userinfo in absolute-form target");
    EXPECT("GET http:///x HTTP/1.1\r\nHost: a.example\r\n\r\n", "malformed",
           "empty host in absolute-form target");
    EXPECT("GET http://:80/x HTTP/1.1\r\nHost: a.example\r\n\r\n", "malformed",
           "empty host in absolute-form target");
    EXPECT("GET ftp://a.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n", "malformed",
           "absolute-form target with a scheme other than http(s)");
    EXPECT("GET httpx://a.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n", "malformed",
           "absolute-form target with a scheme other than http(s)");
    EXPECT("GET http://a.example:99999/ HTTP/1.1\r\nHost: a.example\r\n\r\n", "bad_name",
           "authority: invalid port");
    EXPECT("GET http://a..example/ HTTP/1.1\r\nHost: a.example\r\n\r\n", "bad_name",
           "authority: empty or over-long label");
    /* llhttp itself refuses a target that is neither origin- nor absolute-form. */
    EXPECT("GET a.example HTTP/1.1\r\nHost: a.example\r\n\r\n", "malformed",
           "Unexpected char in url schema");
    /* Host must still be there and valid: the authority only takes precedence. */
    EXPECT("GET http://a.example/ HTTP/1.1\r\n\r\n", "malformed", "HTTP/1.1 request without Host");
    EXPECT("GET http://a.example/ HTTP/1.1\r\nHost: b c\r\n\r\n", "bad_name",
           "Host: invalid character in name");
}

TEST(http10_without_host_has_no_name)
{
    EXPECT("GET / HTTP/1.0\r\n\r\n", "no_name", "HTTP/1.0 request without Host");
    EXPECT("GET / HTTP/1.0\r\nAccept: */*\r\n\r\n", "no_name", "HTTP/1.0 request without Host");
    EXPECT("GET / HTTP/1.0\r\nHost:\r\n\r\n", "no_name", "HTTP/1.0 request without Host");
    EXPECT_FOUND("GET / HTTP/1.0\r\nHost: a.example\r\n\r\n", "a.example");
    struct outcome o;
    SNIFF("GET / HTTP/1.0\r\n\r\n", o);
    CHECK_EQ(o.head_len, 18);
}

TEST(http11_needs_exactly_one_nonempty_host)
{
    EXPECT("GET / HTTP/1.1\r\n\r\n", "malformed", "HTTP/1.1 request without Host");
    EXPECT("GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", "malformed", "HTTP/1.1 request without Host");
    EXPECT("GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n", "malformed",
           "more than one Host header");
    EXPECT("GET / HTTP/1.1\r\nHost: a.example\r\nHost: a.example\r\n\r\n", "malformed",
           "more than one Host header");
    EXPECT("GET / HTTP/1.1\r\nHost: a.example\r\nX: y\r\nhost: a.example\r\n\r\n", "malformed",
           "more than one Host header");
    EXPECT("GET / HTTP/1.1\r\nHost:\r\nHost: a.example\r\n\r\n", "malformed",
           "more than one Host header");
    EXPECT("GET / HTTP/1.0\r\nHost: a.example\r\nHost: a.example\r\n\r\n", "malformed",
           "more than one Host header");
    EXPECT("GET / HTTP/1.1\r\nHost:\r\n\r\n", "malformed", "empty Host in an HTTP/1.1 request");
    EXPECT("GET / HTTP/1.1\r\nHost:  \t \r\n\r\n", "malformed",
           "empty Host in an HTTP/1.1 request");
}

/* Each refusal is pinned to the layer that makes it: llhttp for framing, the
 * sniffer for what llhttp lets through, hostname for the name itself. */
TEST(host_injection_and_bad_names)
{
    EXPECT("GET / HTTP/1.1\r\nHost: a.example b.example\r\n\r\n", "bad_name",
           "Host: invalid character in name");
    EXPECT("GET / HTTP/1.1\r\nHost: a.example\rX: b\r\n\r\n", "malformed",
           "Missing expected LF after header value");
    EXPECT("GET / HTTP/1.1\r\nHost: a.example\nX: b\r\n\r\n", "malformed",
           "Invalid header value char");
    EXPECT("GET / HTTP/1.1\r\nHost: a\x01.example\r\n\r\n", "malformed",
           "Invalid header value char");
    EXPECT("GET / HTTP/1.1\r\nHost: b\303\274cher.example\r\n\r\n", "bad_name",
           "Host: non-ASCII name");
    EXPECT("GET / HTTP/1.1\r\nHost: user@a.example\r\n\r\n", "bad_name",
           "Host: invalid character in name");
    EXPECT("GET / HTTP/1.1\r\nHost: \"a.example\"\r\n\r\n", "bad_name",
           "Host: invalid character in name");
    EXPECT("GET / HTTP/1.1\r\nHost: a.example/x\r\n\r\n", "bad_name",
           "Host: invalid character in name");
    EXPECT("GET / HTTP/1.1\r\nHost: a.example:80:80\r\n\r\n", "bad_name", "Host: invalid port");
    EXPECT("GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", "bad_name", "Host: invalid IPv6 literal");
    EXPECT("GET / HTTP/1.1\r\nHost: [::1]x\r\n\r\n", "bad_name", "Host: invalid port");
    EXPECT("GET / HTTP/1.1\r\nHost: *.example\r\n\r\n", "bad_name", "Host: '*' in name");
    EXPECT("GET / HTTP/1.1\r\nHost: :80\r\n\r\n", "bad_name", "Host: empty name");
    EXPECT("GET / HTTP/1.1\r\nHost: .\r\n\r\n", "bad_name", "Host: empty name");
    EXPECT("GET / HTTP/1.1\r\nHost: a..example\r\n\r\n", "bad_name",
           "Host: empty or over-long label");
}

/* A refused name is handed back as received, for the access log. */
TEST(bad_names_are_handed_back_raw)
{
    struct outcome o;
    SNIFF("GET / HTTP/1.1\r\nHost:  B\303\274cher.Example  \r\n\r\n", o);
    CHECK_EQ(o.r, SG_SNIFF_BAD_NAME);
    CHECK_STR(o.raw, "B\303\274cher.Example");
    SNIFF("GET / HTTP/1.1\r\nHost: a b\t c\r\n\r\n", o);
    CHECK_STR(o.raw, "a b  c");
    SNIFF("GET HTTP://a..b:80/x HTTP/1.1\r\nHost: c\r\n\r\n", o);
    CHECK_EQ(o.r, SG_SNIFF_BAD_NAME);
    CHECK_STR(o.raw, "a..b:80");
    SNIFF("GET https://a.example/ HTTP/1.1\r\nHost: %\r\n\r\n", o);
    CHECK_STR(o.out.detail, "Host: invalid character in name");
    CHECK_STR(o.raw, "%");
    /* Only a bad name has one. */
    SNIFF("GET / HTTP/1.1\r\nHost: a.example\r\n\r\n", o);
    CHECK_EQ(o.raw_len, 0);
    SNIFF("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", o);
    CHECK_EQ(o.raw_len, 0);
    /* An over-long one is cut at the bound. */
    char req[1024], value[400];
    memset(value, 'x', 399);
    value[399] = '\0';
    int n = snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", value);
    CHECK(sniff_all_ways(req, (size_t)n, SG_HTTP_HEAD_DEFAULT, &o));
    CHECK_EQ(o.raw_len, SG_HTTP_AUTHORITY_MAX);
    CHECK_MEM(o.raw, value, SG_HTTP_AUTHORITY_MAX);
}

TEST(connect_and_asterisk_form)
{
    EXPECT("CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n", "malformed",
           "CONNECT request");
    EXPECT("GET * HTTP/1.1\r\nHost: a.example\r\n\r\n", "malformed",
           "asterisk-form target without OPTIONS");
    EXPECT_FOUND("OPTIONS * HTTP/1.1\r\nHost: a.example\r\n\r\n", "a.example");
}

TEST(garbage_and_other_protocols)
{
    EXPECT("\x00\x01\x02\x03", "malformed", "Invalid method encountered");
    EXPECT("hello world\r\n\r\n", "malformed", "Invalid method encountered");
    EXPECT("get / HTTP/1.1\r\nHost: a.example\r\n\r\n", "malformed", "Invalid method encountered");
    EXPECT("GET / HTTP/1.2\r\nHost: a.example\r\n\r\n", "malformed", "Invalid HTTP version");
    EXPECT("GET / HTTP/2.0\r\nHost: a.example\r\n\r\n", "malformed", "unsupported HTTP version");
    EXPECT("GET / HTTP/0.9\r\nHost: a.example\r\n\r\n", "malformed", "unsupported HTTP version");
    EXPECT("GET /\r\n\r\n", "malformed", "request line does not end in HTTP/1.x");
    EXPECT("GET / RTSP/1.0\r\nHost: a.example\r\n\r\n", "malformed",
           "request line does not end in HTTP/1.x");
    EXPECT("SOURCE / ICE/1.0\r\nHost: a.example\r\n\r\n", "malformed",
           "request line does not end in HTTP/1.x");
    EXPECT("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "malformed", "HTTP/2 connection preface");
    EXPECT("GET / HTTP/1.1 \r\nHost: a.example\r\n\r\n", "malformed",
           "Expected CRLF after version");
    /* llhttp refuses a body whose length two headers disagree on: smuggling. */
    EXPECT("POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 5\r\n"
           "Transfer-Encoding: chunked\r\n\r\n",
           "malformed", "Content-Length can't be present with Transfer-Encoding");
    EXPECT("POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
           "malformed", "Duplicate Content-Length");
}

TEST(tls_client_hello_is_the_wrong_protocol)
{
    static const uint8_t hello[] = {0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01,
                                    0xfc, 0x03, 0x03, 0x8a, 0x1f, 0x00, 0x00, 0x20};
    struct outcome o;
    CHECK(sniff_all_ways(hello, sizeof(hello), SG_HTTP_HEAD_DEFAULT, &o));
    CHECK_EQ(o.r, SG_SNIFF_WRONG_PROTOCOL);
    CHECK_STR(o.out.detail, "TLS handshake on an HTTP port");
    /* The first byte alone decides. */
    CHECK(sniff_all_ways(hello, 1, SG_HTTP_HEAD_DEFAULT, &o));
    CHECK_EQ(o.r, SG_SNIFF_WRONG_PROTOCOL);
    /* Anywhere else 0x16 is just a bad byte. */
    EXPECT("G\x16T / HTTP/1.1\r\n\r\n", "malformed", "Invalid method encountered");
}

/* Appends "X-Pad: aaa...\r\n" sized so that the head, "GET / HTTP/1.1\r\nHost:
 * a.example\r\n" + the pad + "\r\n", is exactly <total> bytes. Returns its length. */
static size_t padded_request(char *buf, size_t total)
{
    static const char start[] = "GET / HTTP/1.1\r\nHost: a.example\r\n";
    static const char pad[] = "X-Pad: ";
    size_t fixed = strlen(start) + strlen(pad) + 2 + 2;
    size_t n = 0;
    memcpy(buf, start, strlen(start));
    n += strlen(start);
    memcpy(buf + n, pad, strlen(pad));
    n += strlen(pad);
    memset(buf + n, 'a', total - fixed);
    n += total - fixed;
    memcpy(buf + n, "\r\n\r\n", 4);
    return n + 4;
}

TEST(head_limit_is_exact)
{
    char buf[512];
    struct outcome o;
    size_t len = padded_request(buf, 200);
    CHECK_EQ(len, 200);
    CHECK(sniff_all_ways(buf, len, 200, &o));
    CHECK_EQ(o.r, SG_SNIFF_FOUND);
    CHECK_EQ(o.head_len, 200);
    CHECK(sniff_all_ways(buf, len, 199, &o));
    CHECK_EQ(o.r, SG_SNIFF_TOO_LARGE);
    CHECK_STR(o.out.detail, "request head over the limit");
    /* 199 bytes of an unfinished head may still be the whole head... */
    CHECK(sniff_all_ways(buf, 199, 199, &o));
    CHECK_EQ(o.r, SG_SNIFF_NEED_MORE);
    CHECK_EQ(o.out.need, 200);
    /* ...and only the head counts: a body after it does not. */
    memcpy(buf + len, "body bytes", 10);
    CHECK(sniff_all_ways(buf, len + 10, 200, &o));
    CHECK_EQ(o.r, SG_SNIFF_FOUND);
    CHECK_EQ(o.head_len, 200);
    /* A limit of 0 takes nothing. */
    CHECK(sniff_all_ways(buf, len, 0, &o));
    CHECK_EQ(o.r, SG_SNIFF_TOO_LARGE);
}

TEST(default_limit_with_huge_heads)
{
    size_t cap = 3 * SG_HTTP_HEAD_DEFAULT;
    char *buf = malloc(cap);
    CHECK(buf != NULL);
    struct outcome o, other;
    size_t len = padded_request(buf, SG_HTTP_HEAD_DEFAULT);
    sniff_cut((uint8_t *)buf, len, SG_HTTP_HEAD_DEFAULT, len, &o);
    sniff_bytewise((uint8_t *)buf, len, SG_HTTP_HEAD_DEFAULT, &other);
    bool at_limit = o.r == SG_SNIFF_FOUND && other.r == SG_SNIFF_FOUND &&
                    o.head_len == SG_HTTP_HEAD_DEFAULT && other.head_len == o.head_len;
    /* One enormous header value. */
    len = padded_request(buf, 2 * SG_HTTP_HEAD_DEFAULT);
    sniff_cut((uint8_t *)buf, len, SG_HTTP_HEAD_DEFAULT, len, &o);
    sniff_bytewise((uint8_t *)buf, len, SG_HTTP_HEAD_DEFAULT, &other);
    bool huge_value = o.r == SG_SNIFF_TOO_LARGE && other.r == SG_SNIFF_TOO_LARGE;
    /* Many small headers. */
    len = (size_t)snprintf(buf, cap, "GET / HTTP/1.1\r\nHost: a.example\r\n");
    while (len < 2 * SG_HTTP_HEAD_DEFAULT)
        len += (size_t)snprintf(buf + len, cap - len, "X-N: %zu\r\n", len);
    memcpy(buf + len, "\r\n", 2);
    len += 2;
    sniff_cut((uint8_t *)buf, len, SG_HTTP_HEAD_DEFAULT, len, &o);
    sniff_bytewise((uint8_t *)buf, len, SG_HTTP_HEAD_DEFAULT, &other);
    bool many = o.r == SG_SNIFF_TOO_LARGE && other.r == SG_SNIFF_TOO_LARGE;
    /* ...which fit under a larger limit. */
    sniff_cut((uint8_t *)buf, len, cap, len / 3, &o);
    bool many_fit = o.r == SG_SNIFF_FOUND && o.head_len == len;
    free(buf);
    CHECK(at_limit);
    CHECK(huge_value);
    CHECK(many);
    CHECK(many_fit);
}

/* A 4 MiB head fed one byte at a time: quadratic work would not finish. */
TEST(byte_at_a_time_is_linear)
{
    size_t total = 4u << 20;
    char *buf = malloc(total);
    CHECK(buf != NULL);
    size_t len = padded_request(buf, total);
    struct outcome o;
    sniff_bytewise((uint8_t *)buf, len, total, &o);
    /* The same with the bulk in a Host value, which is kept only up to its bound. */
    memcpy(buf + 16, "Host:", 5);
    memset(buf + 21, 'a', total - 21 - 4);
    struct outcome host;
    sniff_bytewise((uint8_t *)buf, total, total, &host);
    free(buf);
    CHECK_EQ(o.r, SG_SNIFF_FOUND);
    CHECK_EQ(o.head_len, total);
    CHECK_EQ(host.r, SG_SNIFF_BAD_NAME);
    CHECK_STR(host.out.detail, "Host: longer than 300 bytes");
}

TEST(body_and_pipelined_requests_are_not_read)
{
    EXPECT_FOUND_FIRST("POST /form HTTP/1.1\r\nHost: first.example\r\nContent-Length: 5\r\n\r\n"
                       "hello"
                       "GET / HTTP/1.1\r\nHost: second.example\r\n\r\n",
                       "first.example");
    EXPECT_FOUND_FIRST("GET /1 HTTP/1.1\r\nHost: first.example\r\n\r\n"
                       "GET /2 HTTP/1.1\r\nHost: second.example\r\n\r\n",
                       "first.example");
    /* Whatever follows the head, even garbage or a TLS record. */
    EXPECT_FOUND_FIRST("GET / HTTP/1.1\r\nHost: first.example\r\n\r\n\x16\x03\x01\r\n\n\x00",
                       "first.example");
    /* An upgrade is only a header to the sniffer. */
    EXPECT_FOUND("GET /ws HTTP/1.1\r\nHost: a.example\r\nUpgrade: websocket\r\n"
                 "Connection: Upgrade\r\n\r\n",
                 "a.example");
}

/* llhttp 8 without strict mode accepts obs-fold, bare LF line ends, a CR
 * without LF at the end of the head and whitespace before a colon; its strict
 * mode refuses only the last. The sniffer refuses them all, since the bytes
 * go to the backend unchanged. */
TEST(line_framing_is_strict)
{
    EXPECT("GET / HTTP/1.1\r\nHost: a.example\r\n b.example\r\n\r\n", "malformed",
           "obs-fold (header line continued)");
    EXPECT("GET / HTTP/1.1\r\nX-A: 1\r\n\t2\r\nHost: a.example\r\n\r\n", "malformed",
           "obs-fold (header line continued)");
    EXPECT("GET / HTTP/1.1\nHost: a.example\n\n", "malformed", "bare LF line end");
    EXPECT("GET / HTTP/1.1\r\nHost: a.example\r\n\n", "malformed", "bare LF line end");
    EXPECT("\nGET / HTTP/1.1\r\nHost: a.example\r\n\r\n", "malformed", "bare LF line end");
    /* Loose llhttp ends the head at "\r" and any byte; found by fuzzing. */
    EXPECT("GET / HTTP/1.0\r\n\r/\n", "malformed", "CR without LF");
    EXPECT("GET / HTTP/1.1\r\nHost: a.example\r\n\rX", "malformed", "CR without LF");
    EXPECT("GET / HTTP/1.1\r\nHost: a.example\r\n\r\r", "malformed", "CR without LF");
    /* The first fault is the one reported, however the bytes arrive. */
    EXPECT("\r\r\n\n", "malformed", "CR without LF");
    EXPECT("GET / HTTP/1.1\r\nHost: a.example\n\r\r\n", "malformed", "Invalid header value char");
    EXPECT("GET / HTTP/1.1\r\nHost : a.example\r\n\r\n", "malformed",
           "whitespace between a field name and its colon");
    EXPECT("GET / HTTP/1.1\r\nX-A : 1\r\nHost: a.example\r\n\r\n", "malformed",
           "whitespace between a field name and its colon");
    EXPECT("GET / HTTP/1.1\r\nHost\t: a.example\r\n\r\n", "malformed", "Invalid header token");
    /* llhttp refuses a line that starts with whitespace right after the
     * request line (RFC 9112 2.2) with its error position past that space, so
     * the sniffer's own check, which sees a continuation line, speaks first. */
    EXPECT("GET / HTTP/1.1\r\n Host: a.example\r\n\r\n", "malformed",
           "obs-fold (header line continued)");
    /* RFC 9112 2.2 lets a server skip empty lines before the request line. */
    EXPECT_FOUND("\r\n\r\nGET / HTTP/1.1\r\nHost: a.example\r\n\r\n", "a.example");
}

/* A name is at most 253 bytes, its labels 63: a 100-byte label is a bad name.
 * A Host value or an authority over SG_HTTP_AUTHORITY_MAX bytes cannot hold a
 * valid name, so it is a bad name too (400), not a head over the limit (431):
 * the head itself may be small. Only the first 300 bytes are ever kept. */
TEST(overlong_names)
{
    char label[101], name[254], req[1024];
    struct outcome o;
    memset(label, 'a', 100);
    label[100] = '\0';
    int n = snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: %s.example\r\n\r\n", label);
    CHECK(sniff_all_ways(req, (size_t)n, SG_HTTP_HEAD_DEFAULT, &o));
    CHECK_EQ(o.r, SG_SNIFF_BAD_NAME);
    CHECK_STR(o.out.detail, "Host: empty or over-long label");

    /* 253 bytes with a port and a trailing dot: the longest valid name. */
    for (size_t i = 0; i < 253; i++)
        name[i] = i % 2 ? '.' : 'x';
    name[253] = '\0';
    n = snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: %s.:65535\r\n\r\n", name);
    CHECK(sniff_all_ways(req, (size_t)n, SG_HTTP_HEAD_DEFAULT, &o));
    CHECK_EQ(o.r, SG_SNIFF_FOUND);
    CHECK_STR(o.out.name.s, name);
    n = snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: a%s\r\n\r\n", name);
    CHECK(sniff_all_ways(req, (size_t)n, SG_HTTP_HEAD_DEFAULT, &o));
    CHECK_EQ(o.r, SG_SNIFF_BAD_NAME);
    CHECK_STR(o.out.detail, "Host: name longer than 253 bytes");

    /* 300 bytes are kept and judged; 301 are not kept. */
    char value[302];
    memset(value, 'a', 301);
    value[300] = '\0';
    n = snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", value);
    CHECK(sniff_all_ways(req, (size_t)n, SG_HTTP_HEAD_DEFAULT, &o));
    CHECK_STR(o.out.detail, "Host: name longer than 253 bytes");
    /* Trailing whitespace does not count against the bound. */
    n = snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: %s     \r\n\r\n", value);
    CHECK(sniff_all_ways(req, (size_t)n, SG_HTTP_HEAD_DEFAULT, &o));
    CHECK_STR(o.out.detail, "Host: name longer than 253 bytes");
    value[300] = 'a';
    value[301] = '\0';
    n = snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", value);
    CHECK(sniff_all_ways(req, (size_t)n, SG_HTTP_HEAD_DEFAULT, &o));
    CHECK_EQ(o.r, SG_SNIFF_BAD_NAME);
    CHECK_STR(o.out.detail, "Host: longer than 300 bytes");
    n = snprintf(req, sizeof(req), "GET http://%s/ HTTP/1.1\r\nHost: a\r\n\r\n", value);
    CHECK(sniff_all_ways(req, (size_t)n, SG_HTTP_HEAD_DEFAULT, &o));
    CHECK_EQ(o.r, SG_SNIFF_BAD_NAME);
    CHECK_STR(o.out.detail, "authority: longer than 300 bytes");
    n = snprintf(req, sizeof(req), "GET http://%s HTTP/1.1\r\nHost: a\r\n\r\n", value);
    CHECK(sniff_all_ways(req, (size_t)n, SG_HTTP_HEAD_DEFAULT, &o));
    CHECK_STR(o.out.detail, "authority: longer than 300 bytes");
    n = snprintf(req, sizeof(req), "GET http://%s%s/ HTTP/1.1\r\nHost: a\r\n\r\n", value, value);
    CHECK(sniff_all_ways(req, (size_t)n, SG_HTTP_HEAD_DEFAULT, &o));
    CHECK_STR(o.out.detail, "authority: longer than 300 bytes");
    n = snprintf(req, sizeof(req), "GET https://%s.example/ HTTP/1.1\r\nHost: a\r\n\r\n", label);
    CHECK(sniff_all_ways(req, (size_t)n, SG_HTTP_HEAD_DEFAULT, &o));
    CHECK_STR(o.out.detail, "authority: empty or over-long label");
}

TEST(verdicts_are_sticky)
{
    static const char good[] = "GET / HTTP/1.1\r\nHost: a.example\r\n\r\n";
    struct sg_http_sniffer s;
    struct sg_sniffed out;
    sg_http_sniffer_init(&s, SG_HTTP_HEAD_DEFAULT);
    CHECK_EQ(sg_http_sniffer_feed(&s, (const uint8_t *)good, strlen(good), &out), SG_SNIFF_FOUND);
    CHECK_EQ(sg_http_sniffer_feed(&s, (const uint8_t *)"\x16garbage", 8, &out), SG_SNIFF_FOUND);
    CHECK_STR(out.name.s, "a.example");
    CHECK_EQ(sg_http_sniffer_feed(&s, NULL, 0, &out), SG_SNIFF_FOUND);
    CHECK_STR(out.name.s, "a.example");
    CHECK_EQ(s.head_len, strlen(good));

    sg_http_sniffer_init(&s, SG_HTTP_HEAD_DEFAULT);
    CHECK_EQ(sg_http_sniffer_feed(&s, (const uint8_t *)"XX", 2, &out), SG_SNIFF_MALFORMED);
    const char *detail = out.detail;
    CHECK_EQ(sg_http_sniffer_feed(&s, (const uint8_t *)good, strlen(good), &out),
             SG_SNIFF_MALFORMED);
    CHECK(out.detail == detail);

    sg_http_sniffer_init(&s, 4);
    CHECK_EQ(sg_http_sniffer_feed(&s, (const uint8_t *)good, strlen(good), &out),
             SG_SNIFF_TOO_LARGE);
    CHECK_EQ(sg_http_sniffer_feed(&s, (const uint8_t *)good, 1, &out), SG_SNIFF_TOO_LARGE);
    CHECK_EQ(out.need, 0);

    sg_http_sniffer_init(&s, SG_HTTP_HEAD_DEFAULT);
    CHECK_EQ(sg_http_sniffer_feed(&s, (const uint8_t *)"\x16", 1, &out), SG_SNIFF_WRONG_PROTOCOL);
    CHECK_EQ(out.spoken, SG_SPOKE_TLS); /* so the refusal is a TLS alert */
    CHECK_EQ(sg_http_sniffer_feed(&s, (const uint8_t *)good, strlen(good), &out),
             SG_SNIFF_WRONG_PROTOCOL);
}

/* The response parsed back by llhttp: its status, and a body that ends exactly
 * where the Content-Length says. */
struct response_check {
    size_t body_len;
    bool complete;
};

static int body_cb(llhttp_t *p, const char *at, size_t len)
{
    (void)at;
    ((struct response_check *)p->data)->body_len += len;
    return 0;
}

static int message_complete_cb(llhttp_t *p)
{
    ((struct response_check *)p->data)->complete = true;
    return 0;
}

TEST(refusal_responses_are_complete)
{
    static const struct {
        enum sg_http_refusal r;
        int status;
    } all[] = {
        {SG_HTTP_400_BAD_REQUEST, 400}, {SG_HTTP_421_MISDIRECTED, 421},
        {SG_HTTP_431_TOO_LARGE, 431},   {SG_HTTP_502_BAD_GATEWAY, 502},
        {SG_HTTP_503_UNAVAILABLE, 503}, {SG_HTTP_504_GATEWAY_TIMEOUT, 504},
    };
    static const llhttp_settings_t settings = {
        .on_body = body_cb,
        .on_message_complete = message_complete_cb,
    };
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        size_t len = 0;
        const char *resp = sg_http_refusal_bytes(all[i].r, &len);
        CHECK(resp != NULL);
        CHECK_EQ(len, strlen(resp));
        /* Read the head by hand: exactly these three headers. */
        char status[16];
        snprintf(status, sizeof(status), "HTTP/1.1 %d ", all[i].status);
        CHECK(strncmp(resp, status, strlen(status)) == 0);
        const char *head_end = strstr(resp, "\r\n\r\n");
        CHECK(head_end != NULL);
        const char *body = head_end + 4;
        size_t body_len = len - (size_t)(body - resp);
        const char *line = strstr(resp, "\r\n") + 2;
        CHECK(strncmp(line, "Content-Type: text/plain; charset=utf-8\r\n", 41) == 0);
        line += 41;
        unsigned long clen = 0;
        int used = 0;
        CHECK_EQ(sscanf(line, "Content-Length: %lu\r\n%n", &clen, &used), 1);
        CHECK(used > 0);
        line += used;
        CHECK(strncmp(line, "Connection: close\r\n\r\n", 21) == 0);
        CHECK(line + 19 == head_end + 2);
        CHECK_EQ(clen, body_len);
        /* A one-line body that starts with the status. */
        CHECK(strncmp(body, status + 9, 4) == 0);
        CHECK(memchr(body, '\n', body_len) == body + body_len - 1);
        /* And llhttp agrees. */
        struct response_check rc = {0, false};
        llhttp_t p;
        llhttp_init(&p, HTTP_RESPONSE, &settings);
        p.data = &rc;
        CHECK_EQ(llhttp_execute(&p, resp, len), HPE_OK);
        CHECK(rc.complete);
        CHECK_EQ(rc.body_len, clen);
        CHECK_EQ(p.status_code, all[i].status);
        CHECK(!llhttp_should_keep_alive(&p));
    }
    size_t len = 99;
    CHECK(sg_http_refusal_bytes((enum sg_http_refusal)99, &len) == NULL);
    CHECK_EQ(len, 0);
}

TEST_MAIN(T(simple_get_with_host), T(need_more_asks_for_one_more_byte), T(host_is_normalised),
          T(optional_whitespace_around_host_is_ignored), T(host_field_name_is_case_insensitive),
          T(absolute_form_authority_wins_over_host), T(absolute_form_faults),
          T(http10_without_host_has_no_name), T(http11_needs_exactly_one_nonempty_host),
          T(host_injection_and_bad_names), T(bad_names_are_handed_back_raw),
          T(connect_and_asterisk_form), T(garbage_and_other_protocols),
          T(tls_client_hello_is_the_wrong_protocol), T(head_limit_is_exact),
          T(default_limit_with_huge_heads), T(byte_at_a_time_is_linear),
          T(body_and_pipelined_requests_are_not_read), T(line_framing_is_strict), T(overlong_names),
          T(verdicts_are_sticky), T(refusal_responses_are_complete))
