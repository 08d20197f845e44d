#include <arpa/inet.h>

#include "sixgate/address.h"
#include "sixgate/cidr.h"
#include "test.h"

static bool in(const struct sg_cidr_list *l, const char *text)
{
    struct sg_addr a;
    if (sg_addr_parse(text, strlen(text), 0, &a) != SG_ADDR_OK)
        abort();
    return sg_cidr_list_match(l, &a.ip.sa);
}

TEST(parse_and_match)
{
    struct sg_cidr_list l = {0};
    struct sg_cidr c;
    static const char *const ranges[] = {"10.0.0.0/8", "2001:db8:ffff::/48", "192.0.2.7",
                                         "203.0.113.128/25"};
    for (size_t i = 0; i < 4; i++) {
        CHECK_EQ(sg_cidr_parse(ranges[i], strlen(ranges[i]), &c), SG_CIDR_OK);
        CHECK(sg_cidr_list_add(&l, &c));
    }
    CHECK(in(&l, "10.1.2.3:1"));
    CHECK(!in(&l, "11.0.0.1:1"));
    CHECK(in(&l, "[2001:db8:ffff:1::5]:1"));
    CHECK(!in(&l, "[2001:db8:fffe::5]:1"));
    CHECK(in(&l, "192.0.2.7:1"));
    CHECK(!in(&l, "192.0.2.8:1"));
    CHECK(in(&l, "203.0.113.200:1"));
    CHECK(!in(&l, "203.0.113.127:1"));
    CHECK(in(&l, "[::ffff:10.9.9.9]:1")); /* IPv4-mapped counts as IPv4 */
    sg_cidr_list_free(&l);
}

TEST(refuses_typos)
{
    struct sg_cidr c;
    CHECK_EQ(sg_cidr_parse("10.1.2.3/8", 10, &c), SG_CIDR_HOST_BITS);
    CHECK_STR(sg_cidr_status_str(SG_CIDR_HOST_BITS),
              "address has bits set past the prefix length");
    CHECK_EQ(sg_cidr_parse("10.0.0.0/33", 11, &c), SG_CIDR_PREFIX_TOO_LONG);
    CHECK_EQ(sg_cidr_parse("10.0.0.0/", 9, &c), SG_CIDR_BAD_PREFIX);
    CHECK_EQ(sg_cidr_parse("10.0.0.0/x", 10, &c), SG_CIDR_BAD_PREFIX);
    CHECK_EQ(sg_cidr_parse("10.0.0.0/1234", 13, &c), SG_CIDR_BAD_PREFIX);
    CHECK_EQ(sg_cidr_parse("example.org/8", 13, &c), SG_CIDR_BAD_IP);
    CHECK_EQ(sg_cidr_parse("", 0, &c), SG_CIDR_BAD_RANGE);
    CHECK_EQ(sg_cidr_parse("::/0", 4, &c), SG_CIDR_OK);
    CHECK_EQ(sg_cidr_parse("0.0.0.0/0", 9, &c), SG_CIDR_OK);
}

TEST_MAIN(T(parse_and_match), T(refuses_typos))
