#include "sixgate/json.h"
#include "test.h"

TEST(fields_and_escapes)
{
    char buf[256];
    struct sg_json j;
    sg_json_begin(&j, buf, sizeof(buf));
    sg_json_cstr(&j, "a", "plain");
    sg_json_str(&j, "evil", "x\"}\n{\"y\\\x01\xc3\xbc", 11);
    sg_json_u64(&j, "n", 18446744073709551615ULL);
    sg_json_ms(&j, "t", 1234567);
    sg_json_str(&j, "nul", NULL, 0);
    size_t n = sg_json_end(&j);
    const char *want = "{\"a\":\"plain\",\"evil\":\"x\\\"}\\u000a{\\\"y\\\\\\u0001\\u00c3\\u00bc\","
                       "\"n\":18446744073709551615,\"t\":1.234,\"nul\":null}\n";
    CHECK_STR(buf, want);
    CHECK_EQ(n, strlen(want));
}

TEST(overflow_keeps_the_object_closed)
{
    char buf[64];
    struct sg_json j;
    sg_json_begin(&j, buf, sizeof(buf));
    sg_json_cstr(&j, "a", "0123456789");
    sg_json_cstr(&j, "b", "0123456789012345678901234567890123456789");
    sg_json_cstr(&j, "c", "x");
    sg_json_end(&j);
    CHECK_STR(buf, "{\"a\":\"0123456789\"}\n");
    CHECK(j.truncated);
}

TEST_MAIN(T(fields_and_escapes), T(overflow_keeps_the_object_closed))
