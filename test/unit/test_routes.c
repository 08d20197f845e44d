#include <arpa/inet.h>

#include "sixgate/routes.h"
#include "sixgate/siphash.h"
#include "test.h"

static struct sg_name name(const char *s)
{
    struct sg_name n;
    if (sg_name_normalize(s, strlen(s), SG_NAME_ALLOW_WILDCARD | SG_NAME_ALLOW_IP, &n))
        abort();
    return n;
}

static struct sg_backend be(const char *text)
{
    struct sg_addr a;
    if (sg_addr_parse(text, strlen(text), SG_ADDR_ALLOW_HOSTNAME, &a) != SG_ADDR_OK)
        abort();
    struct sg_backend b;
    /* a.host lives on this stack frame: the builder copies host names */
    static char hostbuf[8][SG_NAME_MAX + 1];
    static int next;
    char *h = NULL;
    if (a.kind == SG_ADDR_HOSTNAME) {
        h = hostbuf[next++ % 8];
        memcpy(h, a.host.s, a.host.len + 1);
    }
    sg_backend_from_addr(&b, &a, h, SG_PROXY_NONE);
    return b;
}

static const char *lookup(const struct sg_routes *r, const char *n, enum sg_match *m)
{
    static char buf[128];
    struct sg_name nm = name(n);
    struct sg_route_result res;
    sg_routes_lookup(r, &nm, &res);
    *m = res.match;
    if (res.backend == NULL)
        return "-";
    return sg_backend_format(res.backend, 443, buf, sizeof(buf));
}

static struct sg_routes *sample(bool fallback)
{
    struct sg_routes_builder *b = sg_routes_builder_new();
    struct sg_name n;
    struct sg_backend x;
#define ADD(nm, bk)                                                                                \
    do {                                                                                           \
        n = name(nm);                                                                              \
        x = be(bk);                                                                                \
        if (sg_routes_builder_add(b, &n, &x) != SG_ROUTES_ADDED)                                   \
            abort();                                                                               \
    } while (0)
    ADD("www.example.org", "2001:db8:10::5");
    ADD("*.example.org", "[2001:db8:10::6]:8443");
    ADD("*.pi.example.net", "[2001:db8:20::7]:8443");
    ADD("*.example.net", "[2001:db8:20::8]");
    ADD("deep.a.pi.example.net", "[2001:db8:20::9]");
    ADD("shop.example.com", "shop.backends.example");
    ADD("[2001:db8::99]", "[2001:db8::98]");
    ADD("192.0.2.10", "[2001:db8::97]");
    ADD("*.0.2.10", "[2001:db8::96]");
#undef ADD
    if (fallback) {
        x = be("[2001:db8::1]");
        sg_routes_builder_set_fallback(b, &x);
    }
    return sg_routes_build(b);
}

TEST(exact_wildcard_and_longest_suffix)
{
    struct sg_routes *r = sample(false);
    enum sg_match m;
    CHECK_STR(lookup(r, "www.example.org", &m), "[2001:db8:10::5]:443");
    CHECK_EQ(m, SG_MATCH_EXACT);
    CHECK_STR(lookup(r, "WWW.Example.Org.", &m), "[2001:db8:10::5]:443");
    CHECK_STR(lookup(r, "mail.example.org", &m), "[2001:db8:10::6]:8443");
    CHECK_EQ(m, SG_MATCH_WILDCARD);
    CHECK_STR(lookup(r, "a.b.c.example.org", &m), "[2001:db8:10::6]:8443");
    CHECK_STR(lookup(r, "example.org", &m), "-");
    CHECK_EQ(m, SG_MATCH_NONE);
    CHECK_STR(lookup(r, "x.pi.example.net", &m), "[2001:db8:20::7]:8443");
    CHECK_STR(lookup(r, "y.x.pi.example.net", &m), "[2001:db8:20::7]:8443");
    CHECK_STR(lookup(r, "pi.example.net", &m), "[2001:db8:20::8]:443");
    CHECK_EQ(m, SG_MATCH_WILDCARD);
    CHECK_STR(lookup(r, "deep.a.pi.example.net", &m), "[2001:db8:20::9]:443");
    CHECK_EQ(m, SG_MATCH_EXACT);
    CHECK_STR(lookup(r, "shop.example.com", &m), "shop.backends.example:443");
    CHECK_STR(lookup(r, "www.shop.example.com", &m), "-");
    CHECK_STR(lookup(r, "xexample.org", &m), "-");
    CHECK_STR(lookup(r, "org", &m), "-");
    sg_routes_free(r);
}

TEST(ip_literals_match_exactly)
{
    struct sg_routes *r = sample(false);
    enum sg_match m;
    CHECK_STR(lookup(r, "[2001:db8:0::99]", &m), "[2001:db8::98]:443");
    CHECK_EQ(m, SG_MATCH_EXACT);
    CHECK_STR(lookup(r, "192.0.2.10", &m), "[2001:db8::97]:443");
    CHECK_STR(lookup(r, "192.0.2.11", &m), "-");
    CHECK_STR(lookup(r, "1.0.2.10", &m), "-"); /* not caught by "*.0.2.10" */
    sg_routes_free(r);
}

TEST(fallback)
{
    struct sg_routes *r = sample(true);
    enum sg_match m;
    CHECK(sg_routes_has_fallback(r));
    CHECK_STR(lookup(r, "unknown.example", &m), "[2001:db8::1]:443");
    CHECK_EQ(m, SG_MATCH_FALLBACK);
    CHECK_STR(lookup(r, "www.example.org", &m), "[2001:db8:10::5]:443");
    CHECK_EQ(m, SG_MATCH_EXACT);
    sg_routes_free(r);
}

TEST(duplicates_are_refused_and_backends_shared)
{
    struct sg_routes_builder *b = sg_routes_builder_new();
    struct sg_name n = name("a.example");
    struct sg_backend x = be("[2001:db8::5]:80");
    CHECK_EQ(sg_routes_builder_add(b, &n, &x), SG_ROUTES_ADDED);
    n = name("A.Example.");
    CHECK_EQ(sg_routes_builder_add(b, &n, &x), SG_ROUTES_DUPLICATE);
    n = name("*.a.example");
    CHECK_EQ(sg_routes_builder_add(b, &n, &x), SG_ROUTES_ADDED);
    n = name("*.A.example");
    CHECK_EQ(sg_routes_builder_add(b, &n, &x), SG_ROUTES_DUPLICATE);
    n = name("b.example");
    x = be("[2001:db8::5]:80");
    CHECK_EQ(sg_routes_builder_add(b, &n, &x), SG_ROUTES_ADDED);
    n = name("c.example");
    x = be("[2001:db8::5]:81");
    CHECK_EQ(sg_routes_builder_add(b, &n, &x), SG_ROUTES_ADDED);
    struct sg_routes *r = sg_routes_build(b);
    CHECK_EQ(sg_routes_count(r), 4);
    CHECK_EQ(sg_routes_backends(r), 2);
    sg_routes_free(r);
}

/* Many routes: every one is found with its own backend, nothing else is. */
TEST(hundred_thousand_routes)
{
    enum { N = 100000 };
    struct sg_routes_builder *b = sg_routes_builder_new();
    char buf[64];
    for (unsigned i = 0; i < N; i++) {
        snprintf(buf, sizeof(buf), "site%u.customer%u.example", i, i % 977);
        struct sg_name n = name(buf);
        struct sg_backend x;
        memset(&x, 0, sizeof(x));
        x.ip.in6.sin6_family = AF_INET6;
        x.ip.in6.sin6_addr.s6_addr[0] = 0x20;
        x.ip.in6.sin6_addr.s6_addr[12] = (uint8_t)(i >> 24);
        x.ip.in6.sin6_addr.s6_addr[13] = (uint8_t)(i >> 16);
        x.ip.in6.sin6_addr.s6_addr[14] = (uint8_t)(i >> 8);
        x.ip.in6.sin6_addr.s6_addr[15] = (uint8_t)i;
        CHECK_EQ(sg_routes_builder_add(b, &n, &x), SG_ROUTES_ADDED);
    }
    struct sg_routes *r = sg_routes_build(b);
    CHECK_EQ(sg_routes_count(r), N);
    for (unsigned i = 0; i < N; i++) {
        snprintf(buf, sizeof(buf), "site%u.customer%u.example", i, i % 977);
        struct sg_name n = name(buf);
        struct sg_route_result res;
        sg_routes_lookup(r, &n, &res);
        CHECK_EQ(res.match, SG_MATCH_EXACT);
        const uint8_t *a = res.backend->ip.in6.sin6_addr.s6_addr;
        CHECK_EQ(((unsigned)a[12] << 24 | (unsigned)a[13] << 16 | (unsigned)a[14] << 8 | a[15]), i);
        CHECK_STR(res.pattern, buf);
        snprintf(buf, sizeof(buf), "site%u.customer%u.example", i, (i + 1) % 977);
        n = name(buf);
        sg_routes_lookup(r, &n, &res);
        CHECK_EQ(res.match, SG_MATCH_NONE);
    }
    sg_routes_free(r);
}

TEST(siphash_reference_vectors)
{
    /* Key 00..0f, message 00..(n-1): values from the SipHash paper. */
    uint8_t key[16], msg[16];
    for (int i = 0; i < 16; i++)
        key[i] = msg[i] = (uint8_t)i;
    CHECK(sg_siphash(key, msg, 0) == 0x726fdb47dd0e0e31ULL);
    CHECK(sg_siphash(key, msg, 1) == 0x74f839c593dc67fdULL);
    CHECK(sg_siphash(key, msg, 15) == 0xa129ca6149be45e5ULL);
}

TEST_MAIN(T(exact_wildcard_and_longest_suffix), T(ip_literals_match_exactly), T(fallback),
          T(duplicates_are_refused_and_backends_shared), T(hundred_thousand_routes),
          T(siphash_reference_vectors))
