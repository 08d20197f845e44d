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
    const char *why;
    static const char *const ranges[] = {"10.0.0.0/8", "2001:db8:ffff::/48", "192.0.2.7",
                                         "203.0.113.128/25"};
    for (size_t i = 0; i < 4; i++) {
        CHECK(sg_cidr_parse(ranges[i], strlen(ranges[i]), &c, &why));
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
    const char *why = NULL;
    CHECK(!sg_cidr_parse("10.1.2.3/8", 10, &c, &why));
    CHECK_STR(why, "address has bits set past the prefix length");
    CHECK(!sg_cidr_parse("10.0.0.0/33", 11, &c, &why));
    CHECK(!sg_cidr_parse("10.0.0.0/", 9, &c, &why));
    CHECK(!sg_cidr_parse("10.0.0.0/x", 10, &c, &why));
    CHECK(!sg_cidr_parse("example.org/8", 13, &c, &why));
    CHECK(sg_cidr_parse("::/0", 4, &c, &why));
    CHECK(sg_cidr_parse("0.0.0.0/0", 9, &c, &why));
}

TEST_MAIN(T(parse_and_match), T(refuses_typos))
