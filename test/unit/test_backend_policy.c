#include <string.h>

#include "sixgate/backend_policy.h"
#include "test.h"

static union sg_sockaddr sa(const char *text)
{
    struct sg_addr a;
    if (sg_addr_parse(text, strlen(text), 0, &a) != SG_ADDR_OK)
        abort();
    return a.ip;
}

static enum sg_backend_verdict check(const struct sg_backend_policy *p, const char *text)
{
    union sg_sockaddr a = sa(text);
    return sg_backend_check(p, &a.sa);
}

static void add_range(struct sg_cidr_list *l, const char *text)
{
    struct sg_cidr c;
    if (sg_cidr_parse(text, strlen(text), &c) != SG_CIDR_OK || !sg_cidr_list_add(l, &c))
        abort();
}

TEST(default_refusals)
{
    struct sg_backend_policy p = {0};
    CHECK_EQ(check(&p, "[2001:db8::5]:443"), SG_BACKEND_OK);
    CHECK_EQ(check(&p, "192.0.2.1:80"), SG_BACKEND_OK);
    CHECK_EQ(check(&p, "[::]:443"), SG_BACKEND_UNSPECIFIED);
    CHECK_EQ(check(&p, "0.0.0.0:443"), SG_BACKEND_UNSPECIFIED);
    CHECK_EQ(check(&p, "[::1]:443"), SG_BACKEND_LOOPBACK);
    CHECK_EQ(check(&p, "127.0.0.1:443"), SG_BACKEND_LOOPBACK);
    CHECK_EQ(check(&p, "127.255.0.9:443"), SG_BACKEND_LOOPBACK);
    CHECK_EQ(check(&p, "[fe80::1]:443"), SG_BACKEND_LINK_LOCAL);
    CHECK_EQ(check(&p, "[febf::1]:443"), SG_BACKEND_LINK_LOCAL);
    CHECK_EQ(check(&p, "[fec0::1]:443"), SG_BACKEND_OK);
    CHECK_EQ(check(&p, "169.254.169.254:80"), SG_BACKEND_LINK_LOCAL);
    CHECK_EQ(check(&p, "[ff02::1]:443"), SG_BACKEND_MULTICAST);
    CHECK_EQ(check(&p, "239.1.2.3:443"), SG_BACKEND_MULTICAST);
    CHECK_EQ(check(&p, "223.255.255.255:443"), SG_BACKEND_OK);
    CHECK_STR(sg_backend_verdict_str(SG_BACKEND_LOOPBACK), "loopback");
    CHECK_STR(sg_backend_verdict_str(SG_BACKEND_LOOP), "a loop to sixgate's own listener");
    CHECK(sg_backend_verdict_is_default(SG_BACKEND_MULTICAST));
    CHECK(!sg_backend_verdict_is_default(SG_BACKEND_LOOP));
    CHECK(!sg_backend_verdict_is_default(SG_BACKEND_OUTSIDE_NETWORKS));
}

/* ::ffff:a.b.c.d is judged as a.b.c.d: no way around the IPv4 rules. */
TEST(v4_mapped)
{
    struct sg_backend_policy p = {0};
    CHECK_EQ(check(&p, "[::ffff:127.0.0.1]:9180"), SG_BACKEND_LOOPBACK);
    CHECK_EQ(check(&p, "[::ffff:0.0.0.0]:1"), SG_BACKEND_UNSPECIFIED);
    CHECK_EQ(check(&p, "[::ffff:169.254.1.1]:1"), SG_BACKEND_LINK_LOCAL);
    CHECK_EQ(check(&p, "[::ffff:192.0.2.1]:1"), SG_BACKEND_OK);
    union sg_sockaddr admin = sa("127.0.0.1:9180");
    p.admin = &admin;
    CHECK_EQ(check(&p, "[::ffff:127.0.0.1]:9180"), SG_BACKEND_ADMIN);
    CHECK_EQ(check(&p, "127.0.0.1:9180"), SG_BACKEND_ADMIN);
    CHECK_EQ(check(&p, "127.0.0.1:9181"), SG_BACKEND_LOOPBACK);
    struct sg_cidr_list l = {0};
    add_range(&l, "192.0.2.0/24");
    p.networks = &l;
    CHECK_EQ(check(&p, "[::ffff:192.0.2.9]:80"), SG_BACKEND_OK);
    CHECK_EQ(check(&p, "[::ffff:198.51.100.1]:80"), SG_BACKEND_OUTSIDE_NETWORKS);
    sg_cidr_list_free(&l);
}

TEST(own_listeners)
{
    union sg_sockaddr listen[] = {sa("[::1]:8443"), sa("192.0.2.10:443")};
    union sg_sockaddr host[] = {sa("192.0.2.10"), sa("[2001:db8::10]")};
    struct sg_cidr_list l = {0};
    add_range(&l, "::1/128");
    add_range(&l, "127.0.0.0/8");
    add_range(&l, "192.0.2.0/24");
    struct sg_backend_policy p = {.networks = &l, .listen = listen, .nlisten = 2, .host = host,
                                  .nhost = 2};
    /* backend_networks allows loopback, but never sixgate itself */
    CHECK_EQ(check(&p, "[::1]:8443"), SG_BACKEND_LOOP);
    CHECK_EQ(check(&p, "[::1]:8444"), SG_BACKEND_OK);
    CHECK_EQ(check(&p, "127.0.0.1:8443"), SG_BACKEND_OK); /* a v6 socket is not v4's */
    CHECK_EQ(check(&p, "192.0.2.10:443"), SG_BACKEND_LOOP);
    CHECK_EQ(check(&p, "[::ffff:192.0.2.10]:443"), SG_BACKEND_LOOP);
    CHECK_EQ(check(&p, "192.0.2.11:443"), SG_BACKEND_OK);
    CHECK_EQ(check(&p, "[::]:8443"), SG_BACKEND_LOOP); /* a connect to :: is local */
    CHECK_EQ(check(&p, "0.0.0.0:443"), SG_BACKEND_LOOP);
    sg_cidr_list_free(&l);
}

/* A wildcard socket is every address of this host of its family. */
TEST(wildcard_listeners)
{
    union sg_sockaddr listen[] = {sa("[::]:443"), sa("0.0.0.0:80")};
    union sg_sockaddr host[] = {sa("192.0.2.10"), sa("[2001:db8::10]"), sa("[fe80::10]")};
    union sg_sockaddr admin = sa("[::]:9180");
    struct sg_backend_policy p = {.listen = listen, .nlisten = 2, .host = host, .nhost = 3,
                                  .admin = &admin};
    CHECK_EQ(check(&p, "[2001:db8::10]:443"), SG_BACKEND_LOOP);
    CHECK_EQ(check(&p, "[::1]:443"), SG_BACKEND_LOOP);
    CHECK_EQ(check(&p, "[fe80::10]:443"), SG_BACKEND_LOOP);
    CHECK_EQ(check(&p, "[::]:443"), SG_BACKEND_LOOP);
    CHECK_EQ(check(&p, "[2001:db8::11]:443"), SG_BACKEND_OK);
    CHECK_EQ(check(&p, "[2001:db8::10]:444"), SG_BACKEND_OK);
    CHECK_EQ(check(&p, "192.0.2.10:443"), SG_BACKEND_OK);
    CHECK_EQ(check(&p, "192.0.2.10:80"), SG_BACKEND_LOOP);
    CHECK_EQ(check(&p, "[::ffff:192.0.2.10]:80"), SG_BACKEND_LOOP);
    CHECK_EQ(check(&p, "127.8.9.1:80"), SG_BACKEND_LOOP);
    CHECK_EQ(check(&p, "[2001:db8::10]:80"), SG_BACKEND_OK);
    CHECK_EQ(check(&p, "[2001:db8::10]:9180"), SG_BACKEND_ADMIN);
    CHECK_EQ(check(&p, "[2001:db8::10]:9181"), SG_BACKEND_OK);
}

TEST(backend_networks)
{
    struct sg_cidr_list l = {0};
    add_range(&l, "2001:db8:10::/48");
    add_range(&l, "198.51.100.0/24");
    add_range(&l, "fe80::/10");
    struct sg_backend_policy p = {.networks = &l};
    CHECK_EQ(check(&p, "[2001:db8:10::5]:443"), SG_BACKEND_OK);
    CHECK_EQ(check(&p, "[2001:db8:11::5]:443"), SG_BACKEND_OUTSIDE_NETWORKS);
    CHECK_EQ(check(&p, "198.51.100.7:80"), SG_BACKEND_OK);
    CHECK_EQ(check(&p, "192.0.2.1:80"), SG_BACKEND_OUTSIDE_NETWORKS);
    /* the list replaces the default refusals: what it holds is allowed */
    CHECK_EQ(check(&p, "[fe80::1]:443"), SG_BACKEND_OK);
    CHECK_EQ(check(&p, "[::1]:443"), SG_BACKEND_OUTSIDE_NETWORKS);
    CHECK_EQ(check(&p, "127.0.0.1:443"), SG_BACKEND_OUTSIDE_NETWORKS);
    CHECK_STR(sg_backend_verdict_str(SG_BACKEND_OUTSIDE_NETWORKS), "outside backend_networks");
    sg_cidr_list_free(&l);
}

TEST_MAIN(T(default_refusals), T(v4_mapped), T(own_listeners), T(wildcard_listeners),
          T(backend_networks))
