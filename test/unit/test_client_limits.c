/* Limits per client: which addresses make one client, and each limit. */
#include <arpa/inet.h>

#include "sixgate/client_limits.h"
#include "test.h"

static struct sockaddr_storage addr(const char *ip)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    if (strchr(ip, ':') != NULL) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        inet_pton(AF_INET6, ip, &a->sin6_addr);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        inet_pton(AF_INET, ip, &a->sin_addr);
    }
    return ss;
}

static enum sg_client_verdict admit(struct sg_client_table *t, const struct sg_client_limits *l,
                                    const char *ip, bool sniffs, uint64_t now,
                                    struct sg_client **out)
{
    struct sockaddr_storage ss = addr(ip);
    return sg_client_admit(t, l, (struct sockaddr *)&ss, sniffs, now, out);
}

TEST(connections_per_client_and_prefixes)
{
    struct sg_client_table *t = sg_client_table_new();
    struct sg_client_limits l = {.connections = 2, .ipv4_prefix = 32, .ipv6_prefix = 64};
    struct sg_client *a, *b, *x;
    CHECK(sg_client_limits_on(&l));
    CHECK_EQ(admit(t, &l, "2001:db8:1:2::1", false, 0, &a), SG_CLIENT_OK);
    CHECK_EQ(admit(t, &l, "2001:db8:1:2:ffff::9", false, 0, &b), SG_CLIENT_OK); /* same /64 */
    CHECK(a == b);
    CHECK_EQ(admit(t, &l, "2001:db8:1:2::7", false, 0, &x), SG_CLIENT_TOO_MANY);
    CHECK_EQ(admit(t, &l, "2001:db8:1:3::1", false, 0, &x), SG_CLIENT_OK); /* another /64 */
    CHECK(x != a);
    /* IPv4 by /32; an IPv4-mapped IPv6 address is the same client */
    CHECK_EQ(admit(t, &l, "192.0.2.7", false, 0, &x), SG_CLIENT_OK);
    CHECK_EQ(admit(t, &l, "::ffff:192.0.2.7", false, 0, &b), SG_CLIENT_OK);
    CHECK(x == b);
    CHECK_EQ(admit(t, &l, "192.0.2.7", false, 0, &b), SG_CLIENT_TOO_MANY);
    CHECK_EQ(admit(t, &l, "192.0.2.8", false, 0, &b), SG_CLIENT_OK);
    /* a connection that ends makes room */
    sg_client_release(t, a, false);
    CHECK_EQ(admit(t, &l, "2001:db8:1:2::7", false, 0, &b), SG_CLIENT_OK);
    CHECK(b == a);
    sg_client_table_free(t);
}

TEST(configurable_prefixes)
{
    struct sg_client_table *t = sg_client_table_new();
    struct sg_client_limits l = {.connections = 1, .ipv4_prefix = 24, .ipv6_prefix = 48};
    struct sg_client *a, *x;
    CHECK_EQ(admit(t, &l, "198.51.100.1", false, 0, &a), SG_CLIENT_OK);
    CHECK_EQ(admit(t, &l, "198.51.100.200", false, 0, &x), SG_CLIENT_TOO_MANY); /* same /24 */
    CHECK_EQ(admit(t, &l, "198.51.101.1", false, 0, &x), SG_CLIENT_OK);
    CHECK_EQ(admit(t, &l, "2001:db8:7::1", false, 0, &a), SG_CLIENT_OK);
    CHECK_EQ(admit(t, &l, "2001:db8:7:ffff::1", false, 0, &x), SG_CLIENT_TOO_MANY); /* /48 */
    sg_client_table_free(t);
}

TEST(sniffing_counts_until_routed)
{
    struct sg_client_table *t = sg_client_table_new();
    struct sg_client_limits l = {.sniffing = 1, .ipv4_prefix = 32, .ipv6_prefix = 64};
    struct sg_client *a, *x;
    CHECK_EQ(admit(t, &l, "203.0.113.5", true, 0, &a), SG_CLIENT_OK);
    CHECK_EQ(admit(t, &l, "203.0.113.5", true, 0, &x), SG_CLIENT_TOO_MANY_SNIFFING);
    CHECK_EQ(admit(t, &l, "203.0.113.5", false, 0, &x), SG_CLIENT_OK); /* a tcp listener */
    sg_client_routed(t, a);
    CHECK_EQ(admit(t, &l, "203.0.113.5", true, 0, &x), SG_CLIENT_OK);
    sg_client_release(t, x, true);
    CHECK_EQ(admit(t, &l, "203.0.113.5", true, 0, &x), SG_CLIENT_OK);
    sg_client_table_free(t);
}

TEST(rate_per_second)
{
    struct sg_client_table *t = sg_client_table_new();
    struct sg_client_limits l = {.rate = 3, .ipv4_prefix = 32, .ipv6_prefix = 64};
    struct sg_client *x;
    for (int i = 0; i < 3; i++) {
        CHECK_EQ(admit(t, &l, "203.0.113.9", false, 1000 + (uint64_t)i, &x), SG_CLIENT_OK);
        sg_client_release(t, x, false);
    }
    CHECK_EQ(admit(t, &l, "203.0.113.9", false, 1500, &x), SG_CLIENT_TOO_FAST);
    CHECK_EQ(admit(t, &l, "203.0.113.10", false, 1500, &x), SG_CLIENT_OK); /* another client */
    CHECK_EQ(admit(t, &l, "203.0.113.9", false, 2000, &x), SG_CLIENT_OK);  /* the next second */
    sg_client_table_free(t);
}

TEST(idle_clients_are_forgotten)
{
    struct sg_client_table *t = sg_client_table_new();
    struct sg_client_limits l = {.connections = 5, .ipv4_prefix = 32, .ipv6_prefix = 64};
    struct sg_client *x;
    char ip[32];
    for (int i = 0; i < 4000; i++) {
        snprintf(ip, sizeof(ip), "10.%d.%d.1", i / 250, i % 250);
        CHECK_EQ(admit(t, &l, ip, false, 0, &x), SG_CLIENT_OK);
        sg_client_release(t, x, false);
    }
    CHECK_EQ(sg_client_table_size(t), 4000);
    /* seconds later, new clients walk the chains and free the idle ones */
    for (int i = 0; i < 4000; i++) {
        snprintf(ip, sizeof(ip), "10.%d.%d.2", i / 250, i % 250);
        CHECK_EQ(admit(t, &l, ip, false, 5000, &x), SG_CLIENT_OK);
        sg_client_release(t, x, false);
    }
    CHECK_INT(sg_client_table_size(t), <, 6000);
    sg_client_table_free(t);
}

TEST_MAIN(T(connections_per_client_and_prefixes), T(configurable_prefixes),
          T(sniffing_counts_until_routed), T(rate_per_second), T(idle_clients_are_forgotten))
