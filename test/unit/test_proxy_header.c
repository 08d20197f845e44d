#include <arpa/inet.h>

#include "sixgate/proxy_header.h"
#include "test.h"

static union sg_sockaddr addr(const char *text)
{
    struct sg_addr a;
    if (sg_addr_parse(text, strlen(text), SG_ADDR_REQUIRE_PORT, &a) != SG_ADDR_OK)
        abort();
    return a.ip;
}

TEST(v1_ipv4_and_ipv6)
{
    uint8_t out[SG_PROXY_HEADER_MAX];
    union sg_sockaddr s = addr("203.0.113.7:51812"), d = addr("192.0.2.10:443");
    size_t n = sg_proxy_header_encode(SG_PROXY_V1, &s.sa, &d.sa, "x", 1, out, sizeof(out));
    const char *want = "PROXY TCP4 203.0.113.7 192.0.2.10 51812 443\r\n";
    CHECK_EQ(n, strlen(want));
    CHECK_MEM(out, want, n);
    s = addr("[2001:db8::7]:40000");
    d = addr("[2001:db8::10]:80");
    n = sg_proxy_header_encode(SG_PROXY_V1, &s.sa, &d.sa, NULL, 0, out, sizeof(out));
    want = "PROXY TCP6 2001:db8::7 2001:db8::10 40000 80\r\n";
    CHECK_EQ(n, strlen(want));
    CHECK_MEM(out, want, n);
    /* mixed families: IPv4 is written as IPv4-mapped IPv6 */
    s = addr("203.0.113.7:1");
    n = sg_proxy_header_encode(SG_PROXY_V1, &s.sa, &d.sa, NULL, 0, out, sizeof(out));
    want = "PROXY TCP6 ::ffff:203.0.113.7 2001:db8::10 1 80\r\n";
    CHECK_EQ(n, strlen(want));
    CHECK_MEM(out, want, n);
}

TEST(v2_layout_with_authority_tlv)
{
    uint8_t out[SG_PROXY_HEADER_MAX];
    union sg_sockaddr s = addr("203.0.113.7:51812"), d = addr("192.0.2.10:443");
    size_t n = sg_proxy_header_encode(SG_PROXY_V2, &s.sa, &d.sa, "www.example.org", 15, out, sizeof(out));
    static const uint8_t want[] = {
        0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, /* signature */
        0x21, 0x11, 0x00, 12 + 3 + 15,                                           /* v2 PROXY TCP4 */
        203, 0, 113, 7, 192, 0, 2, 10, 0xca, 0x64, 0x01, 0xbb,                  /* addresses */
        0x02, 0x00, 15, 'w', 'w', 'w', '.', 'e', 'x', 'a', 'm', 'p', 'l', 'e', '.', 'o', 'r', 'g'};
    CHECK_EQ(n, sizeof(want));
    CHECK_MEM(out, want, n);

    s = addr("[2001:db8::7]:40000");
    d = addr("[2001:db8::10]:80");
    n = sg_proxy_header_encode(SG_PROXY_V2, &s.sa, &d.sa, NULL, 0, out, sizeof(out));
    CHECK_EQ(n, 16 + 36);
    CHECK_EQ(out[13], 0x21);
    CHECK_EQ(out[15], 36);
    CHECK_EQ(out[16], 0x20);
    CHECK_EQ(out[16 + 15], 7);
    CHECK_EQ(out[16 + 16 + 15], 0x10);
    CHECK_EQ(out[48], 40000 >> 8);
    CHECK_EQ(out[49], 40000 & 0xff);
    CHECK_EQ(out[51], 80);
    CHECK_EQ(sg_proxy_header_encode(SG_PROXY_V2, &s.sa, &d.sa, NULL, 0, out, 40), 0); /* too small */
}

TEST(decode_round_trip)
{
    uint8_t buf[SG_PROXY_HEADER_MAX + 8];
    const char *pairs[][2] = {{"203.0.113.7:51812", "192.0.2.10:443"},
                              {"[2001:db8::7]:40000", "[2001:db8::10]:80"}};
    for (int v = 1; v <= 2; v++) {
        for (int i = 0; i < 2; i++) {
            union sg_sockaddr s = addr(pairs[i][0]), d = addr(pairs[i][1]);
            size_t n = sg_proxy_header_encode(v, &s.sa, &d.sa, "a.example", 9, buf, sizeof(buf));
            memcpy(buf + n, "GET /", 5); /* the stream goes on after the header */
            struct sg_proxy_info info;
            for (size_t k = 0; k < n; k++) /* every prefix is incomplete */
                CHECK_EQ(sg_proxy_header_decode(buf, k, &info), SG_PROXY_HDR_NEED_MORE);
            CHECK_EQ(sg_proxy_header_decode(buf, n + 5, &info), SG_PROXY_HDR_OK);
            CHECK_EQ(info.header_len, n);
            CHECK(info.has_addresses);
            CHECK(sg_sockaddr_equal(&info.src.sa, &s.sa));
            CHECK(sg_sockaddr_equal(&info.dst.sa, &d.sa));
        }
    }
}

static enum sg_proxy_parse dec(const char *s, struct sg_proxy_info *info)
{
    return sg_proxy_header_decode((const uint8_t *)s, strlen(s), info);
}

TEST(decode_refuses_bad_headers)
{
    struct sg_proxy_info info;
    CHECK_EQ(dec("GET / HTTP/1.1\r\n", &info), SG_PROXY_HDR_INVALID);
    CHECK_EQ(dec("\x16\x03\x01", &info), SG_PROXY_HDR_INVALID);
    CHECK_EQ(dec("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", &info), SG_PROXY_HDR_INVALID);
    CHECK_EQ(dec("PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", &info), SG_PROXY_HDR_INVALID);
    CHECK_EQ(dec("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", &info), SG_PROXY_HDR_INVALID);
    CHECK_EQ(dec("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", &info), SG_PROXY_HDR_INVALID);
    CHECK_EQ(dec("PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n", &info), SG_PROXY_HDR_INVALID);
    CHECK_EQ(dec("PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", &info), SG_PROXY_HDR_INVALID);
    CHECK_EQ(dec("PROXY TCP4 ::1 5.6.7.8 1 2\r\n", &info), SG_PROXY_HDR_INVALID);
    CHECK_EQ(dec("PROXY TCP6 1.2.3.4 ::1 1 2\r\n", &info), SG_PROXY_HDR_INVALID);
    CHECK_EQ(dec("PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", &info), SG_PROXY_HDR_INVALID);
    char longline[200];
    memset(longline, 'A', sizeof(longline));
    memcpy(longline, "PROXY ", 6);
    CHECK_EQ(sg_proxy_header_decode((const uint8_t *)longline, sizeof(longline), &info),
             SG_PROXY_HDR_INVALID);
    CHECK_EQ(dec("PROXY UNKNOWN\r\n", &info), SG_PROXY_HDR_OK);
    CHECK(!info.has_addresses);
    CHECK_EQ(dec("PROXY UNKNOWN ffff:f...f:ffff 1 2\r\n", &info), SG_PROXY_HDR_OK);

    uint8_t v2[64] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
                      0x20, 0x00, 0x00, 0x00};
    CHECK_EQ(sg_proxy_header_decode(v2, 16, &info), SG_PROXY_HDR_OK); /* LOCAL */
    CHECK(!info.has_addresses);
    CHECK_EQ(info.header_len, 16);
    v2[12] = 0x31; /* version 3 */
    CHECK_EQ(sg_proxy_header_decode(v2, 16, &info), SG_PROXY_HDR_INVALID);
    v2[12] = 0x22; /* command 2 */
    CHECK_EQ(sg_proxy_header_decode(v2, 16, &info), SG_PROXY_HDR_INVALID);
    v2[12] = 0x21;
    v2[13] = 0x11;
    v2[15] = 4; /* too short for IPv4 */
    CHECK_EQ(sg_proxy_header_decode(v2, 20, &info), SG_PROXY_HDR_INVALID);
    v2[13] = 0x12; /* UDP */
    v2[15] = 12;
    CHECK_EQ(sg_proxy_header_decode(v2, 28, &info), SG_PROXY_HDR_INVALID);
    v2[13] = 0x11;
    v2[14] = 0x10; /* 4 KiB body: over the limit */
    CHECK_EQ(sg_proxy_header_decode(v2, 28, &info), SG_PROXY_HDR_INVALID);
}

TEST_MAIN(T(v1_ipv4_and_ipv6), T(v2_layout_with_authority_tlv), T(decode_round_trip),
          T(decode_refuses_bad_headers))
