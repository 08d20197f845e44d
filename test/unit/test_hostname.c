#include "sixgate/hostname.h"
#include "test.h"

static enum sg_name_status norm(const char *in, unsigned flags, struct sg_name *out)
{
    return sg_name_normalize(in, strlen(in), flags, out);
}

TEST(lower_cases_and_drops_trailing_dot)
{
    struct sg_name n;
    CHECK_EQ(norm("WWW.Example.ORG.", 0, &n), SG_NAME_OK);
    CHECK_STR(n.s, "www.example.org");
    CHECK_EQ(n.len, 15);
    CHECK_EQ(norm("a_b-c.example", 0, &n), SG_NAME_OK);
    CHECK_STR(n.s, "a_b-c.example");
}

TEST(strips_port_only_when_allowed)
{
    struct sg_name n;
    CHECK_EQ(norm("Example.org:8080", SG_NAME_ALLOW_PORT, &n), SG_NAME_OK);
    CHECK_STR(n.s, "example.org");
    CHECK_EQ(norm("example.org.:443", SG_NAME_ALLOW_PORT, &n), SG_NAME_OK);
    CHECK_STR(n.s, "example.org");
    CHECK_EQ(norm("example.org:", SG_NAME_ALLOW_PORT, &n), SG_NAME_OK);
    CHECK_STR(n.s, "example.org");
    CHECK_EQ(norm("example.org:8080", 0, &n), SG_NAME_BAD_CHAR);
    CHECK_EQ(norm("example.org:65536", SG_NAME_ALLOW_PORT, &n), SG_NAME_BAD_PORT);
    CHECK_EQ(norm("example.org:80a", SG_NAME_ALLOW_PORT, &n), SG_NAME_BAD_PORT);
    CHECK_EQ(norm("example.org:123456", SG_NAME_ALLOW_PORT, &n), SG_NAME_BAD_PORT);
    CHECK_EQ(norm("a:1:2", SG_NAME_ALLOW_PORT, &n), SG_NAME_BAD_PORT);
}

TEST(ipv6_literals_are_canonical)
{
    struct sg_name n;
    unsigned f = SG_NAME_ALLOW_IP | SG_NAME_ALLOW_PORT;
    CHECK_EQ(norm("[2001:DB8:0::0001]:8080", f, &n), SG_NAME_OK);
    CHECK_STR(n.s, "[2001:db8::1]");
    CHECK_EQ(norm("[::1]", f, &n), SG_NAME_OK);
    CHECK_STR(n.s, "[::1]");
    CHECK_EQ(norm("[::1]", 0, &n), SG_NAME_BAD_IP_LITERAL);
    CHECK_EQ(norm("[::1]:99999", f, &n), SG_NAME_BAD_PORT);
    CHECK_EQ(norm("[::1]x", f, &n), SG_NAME_BAD_PORT);
    CHECK_EQ(norm("[nothex::1]", f, &n), SG_NAME_BAD_IP_LITERAL);
    CHECK_EQ(norm("[]", f, &n), SG_NAME_BAD_IP_LITERAL);
    CHECK_EQ(norm("[::1", f, &n), SG_NAME_BAD_IP_LITERAL);
    CHECK_EQ(norm("[::1]:80", SG_NAME_ALLOW_IP, &n), SG_NAME_BAD_PORT);
}

TEST(wildcards_only_as_first_label)
{
    struct sg_name n;
    CHECK_EQ(norm("*.Pi.Example.net", SG_NAME_ALLOW_WILDCARD, &n), SG_NAME_OK);
    CHECK_STR(n.s, "*.pi.example.net");
    CHECK(sg_name_is_wildcard(&n));
    CHECK_EQ(norm("*.example.net", 0, &n), SG_NAME_BAD_WILDCARD);
    CHECK_EQ(norm("www.*.example.net", SG_NAME_ALLOW_WILDCARD, &n), SG_NAME_BAD_WILDCARD);
    CHECK_EQ(norm("*x.example.net", SG_NAME_ALLOW_WILDCARD, &n), SG_NAME_BAD_WILDCARD);
    CHECK_EQ(norm("*", SG_NAME_ALLOW_WILDCARD, &n), SG_NAME_BAD_WILDCARD);
    CHECK_EQ(norm("*.", SG_NAME_ALLOW_WILDCARD, &n), SG_NAME_BAD_WILDCARD);
    CHECK_EQ(norm("*.*.example.net", SG_NAME_ALLOW_WILDCARD, &n), SG_NAME_BAD_WILDCARD);
    CHECK_EQ(norm("www.example.net", SG_NAME_ALLOW_WILDCARD, &n), SG_NAME_OK);
    CHECK(!sg_name_is_wildcard(&n));
}

TEST(refuses_bad_names)
{
    struct sg_name n;
    CHECK_EQ(norm("", 0, &n), SG_NAME_EMPTY);
    CHECK_EQ(norm(".", 0, &n), SG_NAME_EMPTY);
    CHECK_EQ(norm("a..b", 0, &n), SG_NAME_BAD_LABEL);
    CHECK_EQ(norm(".a", 0, &n), SG_NAME_BAD_LABEL);
    CHECK_EQ(norm("a..", 0, &n), SG_NAME_BAD_LABEL);
    CHECK_EQ(norm("bücher.example", 0, &n), SG_NAME_NON_ASCII);
    CHECK_EQ(norm("a b.example", 0, &n), SG_NAME_BAD_CHAR);
    CHECK_EQ(norm("a/b", 0, &n), SG_NAME_BAD_CHAR);
    CHECK_EQ(norm("a\r\nb", 0, &n), SG_NAME_BAD_CHAR);
    CHECK_EQ(sg_name_normalize("a\0b", 3, 0, &n), SG_NAME_BAD_CHAR);
    CHECK_EQ(norm("user@host", SG_NAME_ALLOW_PORT, &n), SG_NAME_BAD_CHAR);
}

TEST(length_limits)
{
    struct sg_name n;
    char label[80], name[300];
    memset(label, 'a', 63);
    label[63] = '\0';
    CHECK_EQ(norm(label, 0, &n), SG_NAME_OK);
    memset(label, 'a', 64);
    label[64] = '\0';
    CHECK_EQ(norm(label, 0, &n), SG_NAME_BAD_LABEL);
    /* 253 bytes: three labels of 63 with their dots, then one of 61 */
    size_t at = 0;
    for (int i = 0; i < 3; i++) {
        memset(name + at, 'b', 63);
        at += 63;
        name[at++] = '.';
    }
    memset(name + at, 'c', 61);
    at += 61;
    name[at] = '\0';
    CHECK_EQ(strlen(name), 253);
    CHECK_EQ(norm(name, 0, &n), SG_NAME_OK);
    CHECK_EQ(n.len, 253);
    name[at++] = '.'; /* a trailing dot on a 253-byte name is still fine */
    name[at] = '\0';
    CHECK_EQ(norm(name, 0, &n), SG_NAME_OK);
    name[at - 1] = 'e';
    CHECK_EQ(norm(name, 0, &n), SG_NAME_TOO_LONG);
}

TEST_MAIN(T(lower_cases_and_drops_trailing_dot), T(strips_port_only_when_allowed),
          T(ipv6_literals_are_canonical), T(wildcards_only_as_first_label),
          T(refuses_bad_names), T(length_limits))
