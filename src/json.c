#include "sixgate/json.h"

#include <stdio.h>
#include <string.h>

/* Room kept for the closing "}\n" and the NUL. */
#define RESERVE 3

void sg_json_begin(struct sg_json *j, char *buf, size_t cap)
{
    j->buf = buf;
    j->cap = cap;
    j->len = 1;
    j->first = true;
    j->truncated = false;
    buf[0] = '{';
}

static size_t escaped_len(const unsigned char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = s[i];
        if (c == '"' || c == '\\')
            n += 2;
        else if (c < 0x20 || c >= 0x7f)
            n += 6;
        else
            n += 1;
    }
    return n;
}

static size_t escape_into(const unsigned char *s, size_t len, char *out)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = s[i];
        if (c == '"' || c == '\\') {
            out[n++] = '\\';
            out[n++] = (char)c;
        } else if (c < 0x20 || c >= 0x7f) {
            memcpy(out + n, "\\u00", 4);
            out[n + 4] = hex[c >> 4];
            out[n + 5] = hex[c & 15];
            n += 6;
        } else {
            out[n++] = (char)c;
        }
    }
    return n;
}

/* Appends ,"key": and reports whether <more> bytes of value fit after it. */
static bool field(struct sg_json *j, const char *key, size_t more)
{
    size_t klen = strlen(key);
    size_t need = (j->first ? 0 : 1) + klen + 3 + more;
    if (j->truncated || j->len + need + RESERVE > j->cap) {
        j->truncated = true;
        return false;
    }
    if (!j->first)
        j->buf[j->len++] = ',';
    j->first = false;
    j->buf[j->len++] = '"';
    memcpy(j->buf + j->len, key, klen);
    j->len += klen;
    j->buf[j->len++] = '"';
    j->buf[j->len++] = ':';
    return true;
}

void sg_json_str(struct sg_json *j, const char *key, const char *s, size_t len)
{
    if (s == NULL) {
        if (field(j, key, 4)) {
            memcpy(j->buf + j->len, "null", 4);
            j->len += 4;
        }
        return;
    }
    size_t elen = escaped_len((const unsigned char *)s, len);
    if (!field(j, key, elen + 2))
        return;
    j->buf[j->len++] = '"';
    j->len += escape_into((const unsigned char *)s, len, j->buf + j->len);
    j->buf[j->len++] = '"';
}

void sg_json_cstr(struct sg_json *j, const char *key, const char *s)
{
    sg_json_str(j, key, s, s ? strlen(s) : 0);
}

void sg_json_u64(struct sg_json *j, const char *key, uint64_t v)
{
    char num[24];
    int n = snprintf(num, sizeof(num), "%llu", (unsigned long long)v);
    if (field(j, key, (size_t)n)) {
        memcpy(j->buf + j->len, num, (size_t)n);
        j->len += (size_t)n;
    }
}

void sg_json_ms(struct sg_json *j, const char *key, uint64_t ns)
{
    char num[32];
    int n = snprintf(num, sizeof(num), "%llu.%03llu", (unsigned long long)(ns / 1000000),
                     (unsigned long long)(ns / 1000 % 1000));
    if (field(j, key, (size_t)n)) {
        memcpy(j->buf + j->len, num, (size_t)n);
        j->len += (size_t)n;
    }
}

size_t sg_json_end(struct sg_json *j)
{
    j->buf[j->len++] = '}';
    j->buf[j->len++] = '\n';
    j->buf[j->len] = '\0';
    return j->len;
}
