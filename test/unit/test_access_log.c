/* The access-log line, byte for byte, and the accounting beside it. */
#include <arpa/inet.h>

#include "sixgate/access_log.h"
#include "test.h"

static union sg_sockaddr sa(const char *text)
{
    struct sg_addr a;
    union sg_sockaddr none = {0};
    if (sg_addr_parse(text, strlen(text), 0, &a) != SG_ADDR_OK)
        return none;
    return a.ip;
}

TEST(a_proxied_connection)
{
    struct sg_listener_spec l = {.name = "https", .protocol = SG_PROTO_TLS};
    union sg_sockaddr client = sa("[2001:db8::7]:51812"), local = sa("[2001:db8::1]:443"),
                      be = sa("[2001:db8:10::5]:443");
    struct sg_backend b;
    memset(&b, 0, sizeof(b));
    b.ip = be;
    struct sg_access_record r = {.conn = 42, .listener = &l, .client = &client.sa,
                                 .local = &local.sa, .name = "www.example.org", .name_len = 15,
                                 .match = SG_MATCH_EXACT, .route = "www.example.org",
                                 .backend = &b, .backend_port = 443, .backend_addr = &be.sa,
                                 .bytes_from_client = 517, .bytes_from_backend = 4096,
                                 .t_accept = 1000000, .t_routed = 2000000,
                                 .t_connected = 2500000, .t_end = 9000000,
                                 .outcome = SG_OUT_OK};
    char buf[SG_ACCESS_LINE_MAX];
    size_t n = sg_access_format(&r, "2026-12-03T12:00:00.000Z", buf, sizeof(buf));
    const char *want =
        "{\"time\":\"2026-12-03T12:00:00.000Z\",\"conn\":42,\"listener\":\"https\","
        "\"protocol\":\"tls\",\"client\":\"2001:db8::7\",\"client_port\":51812,"
        "\"local\":\"[2001:db8::1]:443\",\"name\":\"www.example.org\",\"match\":\"exact\","
        "\"route\":\"www.example.org\",\"backend\":\"[2001:db8:10::5]:443\","
        "\"bytes_from_client\":517,\"bytes_from_backend\":4096,\"sniff_ms\":1.000,"
        "\"connect_ms\":0.500,\"duration_ms\":8.000,\"outcome\":\"ok\",\"reason\":null}\n";
    CHECK_STR(buf, want);
    CHECK_EQ(n, strlen(want));

    struct sg_listener_stats ls;
    memset(&ls, 0, sizeof(ls));
    ls.active = 1;
    sg_access_account(&ls, &r);
    CHECK_EQ(ls.active, 0);
    CHECK_EQ(ls.outcomes[SG_OUT_OK], 1);
    CHECK_EQ(ls.bytes_from_client, 517);
    CHECK_EQ(ls.bytes_from_backend, 4096);
    sg_access_account(NULL, &r); /* no stats: nothing */
}

/* A refused tcp-less connection: no backend yet, a PROXY header's peer, a
 * name from the wire that must be escaped. */
TEST(a_refusal_behind_a_proxy)
{
    struct sg_listener_spec l = {.name = "http", .protocol = SG_PROTO_HTTP};
    union sg_sockaddr client = sa("203.0.113.9:4000"), local = sa("192.0.2.1:80"),
                      via = sa("[::1]:5000");
    struct sg_access_record r = {.conn = 7, .listener = &l, .client = &client.sa, .via = &via.sa,
                                 .local = &local.sa, .name = "bad\"name\n", .name_len = 9,
                                 .match = SG_MATCH_NONE, .t_accept = 5, .t_end = 5,
                                 .outcome = SG_OUT_BAD_REQUEST, .reason = "invalid Host"};
    char buf[SG_ACCESS_LINE_MAX];
    sg_access_format(&r, "T", buf, sizeof(buf));
    CHECK_STR(buf, "{\"time\":\"T\",\"conn\":7,\"listener\":\"http\",\"protocol\":\"http\","
                   "\"client\":\"203.0.113.9\",\"client_port\":4000,\"via\":\"[::1]:5000\","
                   "\"local\":\"192.0.2.1:80\",\"name\":\"bad\\\"name\\u000a\","
                   "\"match\":\"none\",\"route\":null,\"backend\":null,\"bytes_from_client\":0,"
                   "\"bytes_from_backend\":0,\"duration_ms\":0.000,\"outcome\":\"bad_request\","
                   "\"reason\":\"invalid Host\"}\n");
}

/* A tcp listener's line has no match field; an unconnected backend is
 * written as configured. */
TEST(a_tcp_connect_failure)
{
    struct sg_listener_spec l = {.name = "ssh", .protocol = SG_PROTO_TCP};
    union sg_sockaddr client = sa("[::1]:4000"), local = sa("[::1]:2222"),
                      be = sa("[2001:db8::9]");
    struct sg_backend b;
    memset(&b, 0, sizeof(b));
    b.ip = be;
    struct sg_access_record r = {.conn = 1, .listener = &l, .client = &client.sa,
                                 .local = &local.sa, .match = SG_MATCH_EXACT, .backend = &b,
                                 .backend_port = 22, .t_accept = 1, .t_routed = 1, .t_end = 1,
                                 .outcome = SG_OUT_CONNECT_FAILED};
    char buf[SG_ACCESS_LINE_MAX];
    sg_access_format(&r, "T", buf, sizeof(buf));
    CHECK(strstr(buf, "\"match\"") == NULL);
    CHECK(strstr(buf, "\"name\":null,\"route\":null,\"backend\":\"[2001:db8::9]:22\",") != NULL);
    CHECK(strstr(buf, "\"outcome\":\"connect_failed\"") != NULL);
}

TEST_MAIN(T(a_proxied_connection), T(a_refusal_behind_a_proxy), T(a_tcp_connect_failure))
