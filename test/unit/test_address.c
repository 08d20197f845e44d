#include <arpa/inet.h>

#include "sixgate/address.h"
#include "test.h"

static enum sg_addr_status parse(const char *s, unsigned flags, struct sg_addr *a)
{
    return sg_addr_parse(s, strlen(s), flags, a);
}

static const char *fmt(const struct sg_addr *a)
{
    static char buf[SG_ADDR_TEXT_MAX];
    return sg_sockaddr_format(&a->ip.sa, buf, sizeof(buf));
}

TEST(listen_addresses)
{
    struct sg_addr a;
    CHECK_EQ(parse("[::]:8443", SG_ADDR_REQUIRE_PORT, &a), SG_ADDR_OK);
    CHECK_EQ(a.kind, SG_ADDR_IP);
    CHECK_EQ(a.ip.sa.sa_family, AF_INET6);
    CHECK_EQ(a.port, 8443);
    CHECK_STR(fmt(&a), "[::]:8443");
    CHECK_EQ(parse("0.0.0.0:8080", SG_ADDR_REQUIRE_PORT, &a), SG_ADDR_OK);
    CHECK_EQ(a.ip.sa.sa_family, AF_INET);
    CHECK_STR(fmt(&a), "0.0.0.0:8080");
    CHECK_EQ(sg_sockaddr_port(&a.ip.sa), 8080);
    CHECK_EQ(parse("[::1]", SG_ADDR_REQUIRE_PORT, &a), SG_ADDR_MISSING_PORT);
    CHECK_EQ(parse("127.0.0.1", SG_ADDR_REQUIRE_PORT, &a), SG_ADDR_MISSING_PORT);
    CHECK_EQ(parse("localhost:80", SG_ADDR_REQUIRE_PORT, &a), SG_ADDR_HOSTNAME_NOT_ALLOWED);
    CHECK_EQ(parse("0.0.0.0:0", SG_ADDR_REQUIRE_PORT, &a), SG_ADDR_BAD_PORT);
    CHECK_EQ(parse("0.0.0.0:65536", SG_ADDR_REQUIRE_PORT, &a), SG_ADDR_BAD_PORT);
    CHECK_EQ(parse("0.0.0.0:", SG_ADDR_REQUIRE_PORT, &a), SG_ADDR_BAD_PORT);
    CHECK_EQ(parse("[::1]x", SG_ADDR_REQUIRE_PORT, &a), SG_ADDR_BAD_PORT);
    CHECK_EQ(parse("[::1", SG_ADDR_REQUIRE_PORT, &a), SG_ADDR_BAD_IP);
    CHECK_EQ(parse("", SG_ADDR_REQUIRE_PORT, &a), SG_ADDR_EMPTY);
}

TEST(backend_addresses)
{
    struct sg_addr a;
    unsigned f = SG_ADDR_ALLOW_HOSTNAME;
    CHECK_EQ(parse("2001:db8:10::5", f, &a), SG_ADDR_OK);
    CHECK_EQ(a.kind, SG_ADDR_IP);
    CHECK_EQ(a.port, 0);
    CHECK_STR(fmt(&a), "[2001:db8:10::5]:0");
    CHECK_EQ(parse("[2001:db8:20::7]:8443", f, &a), SG_ADDR_OK);
    CHECK_EQ(a.port, 8443);
    CHECK_STR(fmt(&a), "[2001:db8:20::7]:8443");
    CHECK_EQ(parse("[2001:db8::1]", f, &a), SG_ADDR_OK);
    CHECK_EQ(a.port, 0);
    CHECK_EQ(parse("192.0.2.1:80", f, &a), SG_ADDR_OK);
    CHECK_EQ(a.ip.sa.sa_family, AF_INET);
    CHECK_EQ(parse("Shop.Backends.Example", f, &a), SG_ADDR_OK);
    CHECK_EQ(a.kind, SG_ADDR_HOSTNAME);
    CHECK_STR(a.host.s, "shop.backends.example");
    CHECK_EQ(a.port, 0);
    CHECK_EQ(parse("shop.backends.example:8080", f, &a), SG_ADDR_OK);
    CHECK_EQ(a.port, 8080);
    CHECK_EQ(parse("shop.backends.example", 0, &a), SG_ADDR_HOSTNAME_NOT_ALLOWED);
    CHECK_EQ(parse("999.1.1.1", f, &a), SG_ADDR_BAD_IP);
    CHECK_EQ(parse("2001:db8::zz", f, &a), SG_ADDR_BAD_IP);
    CHECK_EQ(parse("bad name:80", f, &a), SG_ADDR_BAD_HOSTNAME);
    CHECK_EQ(parse("*.example:80", f, &a), SG_ADDR_BAD_HOSTNAME);
}

TEST(sockaddr_helpers)
{
    struct sg_addr a, b;
    CHECK_EQ(parse("[::1]:80", 0, &a), SG_ADDR_OK);
    CHECK_EQ(parse("[0:0::1]:80", 0, &b), SG_ADDR_OK);
    CHECK(sg_sockaddr_equal(&a.ip.sa, &b.ip.sa));
    sg_sockaddr_set_port(&b.ip, 81);
    CHECK(!sg_sockaddr_equal(&a.ip.sa, &b.ip.sa));
    CHECK_EQ(sg_sockaddr_len(&a.ip.sa), sizeof(struct sockaddr_in6));
    CHECK_EQ(parse("127.0.0.1:80", 0, &b), SG_ADDR_OK);
    CHECK(!sg_sockaddr_equal(&a.ip.sa, &b.ip.sa));
    CHECK_EQ(sg_sockaddr_len(&b.ip.sa), sizeof(struct sockaddr_in));
}

TEST(format_ip_only)
{
    struct sg_addr a;
    char buf[SG_ADDR_TEXT_MAX];
    CHECK_EQ(parse("[2001:db8::7]:443", 0, &a), SG_ADDR_OK);
    CHECK_STR(sg_sockaddr_format_ip(&a.ip.sa, false, buf, sizeof(buf)), "2001:db8::7");
    CHECK_STR(sg_sockaddr_format_ip(&a.ip.sa, true, buf, sizeof(buf)), "[2001:db8::7]");
    CHECK_EQ(parse("203.0.113.9:80", 0, &a), SG_ADDR_OK);
    CHECK_STR(sg_sockaddr_format_ip(&a.ip.sa, true, buf, sizeof(buf)), "203.0.113.9");
    CHECK_EQ(parse("[::ffff:192.0.2.1]", 0, &a), SG_ADDR_OK);
    CHECK_STR(sg_sockaddr_format_ip(&a.ip.sa, false, buf, sizeof(buf)), "::ffff:192.0.2.1");
}

TEST_MAIN(T(listen_addresses), T(backend_addresses), T(sockaddr_helpers), T(format_ip_only))
