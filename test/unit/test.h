/* A minimal unit-test harness: each test file is one executable, each
 * TEST() a function, and main() comes from TEST_MAIN(). A failed check
 * prints file:line and the values, marks the test failed and returns. */
#ifndef SIXGATE_TEST_H
#define SIXGATE_TEST_H

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct test_case {
    const char *name;
    void (*fn)(bool *failed);
};

#define TEST(name) static void name(bool *test_failed_)

#define FAIL_(...)                                                                                 \
    do {                                                                                           \
        fprintf(stderr, "  %s:%d: ", __FILE__, __LINE__);                                          \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fputc('\n', stderr);                                                                       \
        *test_failed_ = true;                                                                      \
        return;                                                                                    \
    } while (0)

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            FAIL_("check failed: %s", #cond);                                                      \
    } while (0)

#define CHECK_INT(a, op, b)                                                                        \
    do {                                                                                           \
        long long a_ = (long long)(a), b_ = (long long)(b);                                        \
        if (!(a_ op b_))                                                                           \
            FAIL_("%s %s %s: %lld vs %lld", #a, #op, #b, a_, b_);                                  \
    } while (0)

#define CHECK_EQ(a, b) CHECK_INT(a, ==, b)

#define CHECK_STR(a, b)                                                                            \
    do {                                                                                           \
        const char *a_ = (a), *b_ = (b);                                                           \
        if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0)                                       \
            FAIL_("%s == %s: \"%s\" vs \"%s\"", #a, #b, a_ ? a_ : "(null)", b_ ? b_ : "(null)");   \
    } while (0)

#define CHECK_MEM(a, b, n)                                                                         \
    do {                                                                                           \
        if (memcmp((a), (b), (n)) != 0)                                                            \
            FAIL_("%s and %s differ in their %zu bytes", #a, #b, (size_t)(n));                    \
    } while (0)

#define TEST_MAIN(...)                                                                             \
    int main(int argc, char **argv)                                                                \
    {                                                                                              \
        static const struct test_case cases_[] = {__VA_ARGS__};                                    \
        int failures = 0, ran = 0;                                                                 \
        for (size_t i = 0; i < sizeof(cases_) / sizeof(cases_[0]); i++) {                          \
            if (argc > 1 && strcmp(argv[1], cases_[i].name) != 0)                                  \
                continue;                                                                          \
            bool failed = false;                                                                   \
            cases_[i].fn(&failed);                                                                 \
            ran++;                                                                                 \
            fprintf(stderr, "%s %s\n", failed ? "FAIL" : "ok  ", cases_[i].name);                  \
            failures += failed;                                                                    \
        }                                                                                          \
        fprintf(stderr, "%d of %d tests failed\n", failures, ran);                                 \
        return failures || ran == 0 ? 1 : 0;                                                       \
    }

#define T(fn) {#fn, fn}

/* Reads a whole file into a malloc'd buffer; returns NULL on error. */
static inline unsigned char *test_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    size_t cap = 4096, n = 0;
    unsigned char *buf = malloc(cap);
    size_t got;
    while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            unsigned char *nb = realloc(buf, cap *= 2);
            if (nb == NULL) {
                free(buf);
                buf = NULL;
            } else {
                buf = nb;
            }
        }
    }
    fclose(f);
    if (buf)
        *len = n;
    return buf;
}

#endif
