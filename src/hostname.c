#include "sixgate/hostname.h"

#include <arpa/inet.h>
#include <string.h>

static bool is_label_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

/* Strips ":digits" from the end of a non-bracketed name. An empty port
 * ("host:") is allowed by RFC 3986 and means the default. */
static enum sg_name_status strip_port(const char *in, size_t *len)
{
    const char *colon = memchr(in, ':', *len);
    if (colon == NULL)
        return SG_NAME_OK;
    size_t at = (size_t)(colon - in);
    size_t digits = *len - at - 1;
    if (digits > 5)
        return SG_NAME_BAD_PORT;
    unsigned long port = 0;
    for (size_t i = at + 1; i < *len; i++) {
        if (in[i] < '0' || in[i] > '9')
            return SG_NAME_BAD_PORT;
        port = port * 10 + (unsigned long)(in[i] - '0');
    }
    if (port > 65535)
        return SG_NAME_BAD_PORT;
    *len = at;
    return SG_NAME_OK;
}

/* "[v6]" or "[v6]:port": re-formats the address in its canonical form so that
 * "[::0001]" and "[::1]" are the same name. */
static enum sg_name_status normalize_ip6(const char *in, size_t len, unsigned flags,
                                         struct sg_name *out)
{
    const char *close = memchr(in, ']', len);
    if (close == NULL || !(flags & SG_NAME_ALLOW_IP))
        return SG_NAME_BAD_IP_LITERAL;
    size_t inner = (size_t)(close - in) - 1;
    size_t rest = len - (size_t)(close - in) - 1;
    if (rest > 0) {
        if (!(flags & SG_NAME_ALLOW_PORT) || close[1] != ':')
            return SG_NAME_BAD_PORT;
        size_t plen = rest;
        enum sg_name_status st = strip_port(close + 1, &plen);
        if (st != SG_NAME_OK)
            return st;
    }
    char text[64];
    struct in6_addr a;
    if (inner == 0 || inner >= sizeof(text))
        return SG_NAME_BAD_IP_LITERAL;
    memcpy(text, in + 1, inner);
    text[inner] = '\0';
    if (inet_pton(AF_INET6, text, &a) != 1)
        return SG_NAME_BAD_IP_LITERAL;
    char canon[INET6_ADDRSTRLEN];
    if (inet_ntop(AF_INET6, &a, canon, sizeof(canon)) == NULL)
        return SG_NAME_BAD_IP_LITERAL;
    size_t clen = strlen(canon);
    out->s[0] = '[';
    memcpy(out->s + 1, canon, clen);
    out->s[clen + 1] = ']';
    out->s[clen + 2] = '\0';
    out->len = clen + 2;
    return SG_NAME_OK;
}

enum sg_name_status sg_name_normalize(const char *in, size_t len, unsigned flags,
                                      struct sg_name *out)
{
    if (len == 0)
        return SG_NAME_EMPTY;
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)in[i] >= 0x80)
            return SG_NAME_NON_ASCII;
    }
    if (in[0] == '[')
        return normalize_ip6(in, len, flags, out);
    if (flags & SG_NAME_ALLOW_PORT) {
        enum sg_name_status st = strip_port(in, &len);
        if (st != SG_NAME_OK)
            return st;
    }
    if (len > 0 && in[len - 1] == '.')
        len--;
    if (len == 0)
        return SG_NAME_EMPTY;
    if (len > SG_NAME_MAX)
        return SG_NAME_TOO_LONG;

    size_t label = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c >= 'A' && c <= 'Z')
            c = (unsigned char)(c - 'A' + 'a');
        if (c == '.') {
            if (label == 0)
                return SG_NAME_BAD_LABEL;
            label = 0;
        } else if (c == '*') {
            if (!(flags & SG_NAME_ALLOW_WILDCARD) || i != 0 || len < 3 || in[1] != '.')
                return SG_NAME_BAD_WILDCARD;
            label++;
        } else if (is_label_char(c)) {
            if (++label > 63)
                return SG_NAME_BAD_LABEL;
        } else {
            return SG_NAME_BAD_CHAR;
        }
        out->s[i] = (char)c;
    }
    if (label == 0)
        return SG_NAME_BAD_LABEL;
    out->s[len] = '\0';
    out->len = len;
    return SG_NAME_OK;
}

const char *sg_name_status_str(enum sg_name_status st)
{
    switch (st) {
    case SG_NAME_OK:
        return "ok";
    case SG_NAME_EMPTY:
        return "empty name";
    case SG_NAME_TOO_LONG:
        return "name longer than 253 bytes";
    case SG_NAME_NON_ASCII:
        return "non-ASCII name (write the punycode A-label, xn--...)";
    case SG_NAME_BAD_CHAR:
        return "invalid character in name (letters, digits, '-', '_' and '.' only)";
    case SG_NAME_BAD_LABEL:
        return "empty label or label longer than 63 bytes";
    case SG_NAME_BAD_PORT:
        return "invalid port after name";
    case SG_NAME_BAD_WILDCARD:
        return "'*' is only allowed as the whole first label (\"*.example.org\")";
    case SG_NAME_BAD_IP_LITERAL:
        return "invalid IPv6 literal";
    }
    return "unknown";
}

bool sg_name_is_wildcard(const struct sg_name *n)
{
    return n->len >= 3 && n->s[0] == '*' && n->s[1] == '.';
}
