#include "sixgate/proxy_header.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

static const uint8_t v2_sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                   0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

/* Copies <sa> as IPv6 (mapping IPv4) into <out>. */
static void as_v6(const struct sockaddr *sa, struct sockaddr_in6 *out)
{
    if (sa->sa_family == AF_INET6) {
        memcpy(out, sa, sizeof(*out));
        return;
    }
    const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
    memset(out, 0, sizeof(*out));
    out->sin6_family = AF_INET6;
    out->sin6_port = in->sin_port;
    out->sin6_addr.s6_addr[10] = 0xff;
    out->sin6_addr.s6_addr[11] = 0xff;
    memcpy(out->sin6_addr.s6_addr + 12, &in->sin_addr, 4);
}

size_t sg_proxy_header_encode(enum sg_proxy_protocol version, const struct sockaddr *src, const struct sockaddr *dst,
                              const char *authority, size_t authority_len, uint8_t *out,
                              size_t cap)
{
    struct sockaddr_in6 s6, d6;
    bool v4 = src->sa_family == AF_INET && dst->sa_family == AF_INET;
    if (!v4) {
        as_v6(src, &s6);
        as_v6(dst, &d6);
    }
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)src;
    const struct sockaddr_in *d4 = (const struct sockaddr_in *)dst;

    if (version == SG_PROXY_V1) {
        char sa[INET6_ADDRSTRLEN], da[INET6_ADDRSTRLEN];
        unsigned sp, dp;
        if (v4) {
            inet_ntop(AF_INET, &s4->sin_addr, sa, sizeof(sa));
            inet_ntop(AF_INET, &d4->sin_addr, da, sizeof(da));
            sp = ntohs(s4->sin_port);
            dp = ntohs(d4->sin_port);
        } else {
            inet_ntop(AF_INET6, &s6.sin6_addr, sa, sizeof(sa));
            inet_ntop(AF_INET6, &d6.sin6_addr, da, sizeof(da));
            sp = ntohs(s6.sin6_port);
            dp = ntohs(d6.sin6_port);
        }
        int n = snprintf((char *)out, cap, "PROXY %s %s %s %u %u\r\n", v4 ? "TCP4" : "TCP6", sa,
                         da, sp, dp);
        return n > 0 && (size_t)n < cap ? (size_t)n : 0;
    }

    size_t addr_len = v4 ? 12 : 36;
    size_t tlv_len = authority_len > 0 ? 3 + authority_len : 0;
    size_t total = 16 + addr_len + tlv_len;
    if (version != SG_PROXY_V2 || total > cap || authority_len > 255)
        return 0;
    memcpy(out, v2_sig, 12);
    out[12] = 0x21;             /* version 2, PROXY */
    out[13] = v4 ? 0x11 : 0x21; /* TCP over IPv4 / IPv6 */
    out[14] = (uint8_t)((addr_len + tlv_len) >> 8);
    out[15] = (uint8_t)(addr_len + tlv_len);
    uint8_t *p = out + 16;
    if (v4) {
        memcpy(p, &s4->sin_addr, 4);
        memcpy(p + 4, &d4->sin_addr, 4);
        memcpy(p + 8, &s4->sin_port, 2);
        memcpy(p + 10, &d4->sin_port, 2);
    } else {
        memcpy(p, &s6.sin6_addr, 16);
        memcpy(p + 16, &d6.sin6_addr, 16);
        memcpy(p + 32, &s6.sin6_port, 2);
        memcpy(p + 34, &d6.sin6_port, 2);
    }
    p += addr_len;
    if (tlv_len > 0) {
        p[0] = SG_PP2_TYPE_AUTHORITY;
        p[1] = (uint8_t)(authority_len >> 8);
        p[2] = (uint8_t)authority_len;
        memcpy(p + 3, authority, authority_len);
    }
    return total;
}

static enum sg_proxy_parse invalid(struct sg_proxy_info *out, const char *why)
{
    out->detail = why;
    return SG_PROXY_HDR_INVALID;
}

/* Parses one space-terminated field of a v1 header. */
static bool v1_field(const char **p, const char *end, char *buf, size_t cap)
{
    const char *s = *p;
    const char *e = memchr(s, ' ', (size_t)(end - s));
    if (e == NULL)
        e = end;
    size_t n = (size_t)(e - s);
    if (n == 0 || n >= cap)
        return false;
    memcpy(buf, s, n);
    buf[n] = '\0';
    *p = e < end ? e + 1 : e;
    return true;
}

static bool v1_port(const char *s, uint16_t *port)
{
    size_t n = strlen(s);
    if (n == 0 || n > 5 || (n > 1 && s[0] == '0'))
        return false;
    unsigned long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v > 65535)
        return false;
    *port = (uint16_t)v;
    return true;
}

static enum sg_proxy_parse decode_v1(const uint8_t *buf, size_t len, struct sg_proxy_info *out)
{
    const size_t max = 107;
    const uint8_t *nl = memchr(buf, '\n', len < max ? len : max);
    if (nl == NULL)
        return len >= max ? invalid(out, "PROXY v1 line longer than 107 bytes")
                          : SG_PROXY_HDR_NEED_MORE;
    if (nl == buf || nl[-1] != '\r')
        return invalid(out, "PROXY v1 line does not end in CRLF");
    const char *p = (const char *)buf + 6, *end = (const char *)nl - 1;
    out->header_len = (size_t)(nl - buf) + 1;
    char proto[8], sa[INET6_ADDRSTRLEN], da[INET6_ADDRSTRLEN], sp[8], dp[8];
    if (!v1_field(&p, end, proto, sizeof(proto)))
        return invalid(out, "PROXY v1 without a protocol");
    if (strcmp(proto, "UNKNOWN") == 0) {
        out->has_addresses = false;
        return SG_PROXY_HDR_OK;
    }
    int family = strcmp(proto, "TCP4") == 0 ? AF_INET : strcmp(proto, "TCP6") == 0 ? AF_INET6 : 0;
    if (family == 0)
        return invalid(out, "PROXY v1 protocol is not TCP4, TCP6 or UNKNOWN");
    if (!v1_field(&p, end, sa, sizeof(sa)) || !v1_field(&p, end, da, sizeof(da)) ||
        !v1_field(&p, end, sp, sizeof(sp)) || !v1_field(&p, end, dp, sizeof(dp)) || p != end)
        return invalid(out, "PROXY v1 needs exactly: protocol, two addresses, two ports");
    uint16_t sport, dport;
    if (!v1_port(sp, &sport) || !v1_port(dp, &dport))
        return invalid(out, "PROXY v1 port is invalid");
    memset(&out->src, 0, sizeof(out->src));
    memset(&out->dst, 0, sizeof(out->dst));
    out->src.sa.sa_family = out->dst.sa.sa_family = (sa_family_t)family;
    void *s_addr = family == AF_INET ? (void *)&out->src.in.sin_addr : (void *)&out->src.in6.sin6_addr;
    void *d_addr = family == AF_INET ? (void *)&out->dst.in.sin_addr : (void *)&out->dst.in6.sin6_addr;
    if (inet_pton(family, sa, s_addr) != 1 || inet_pton(family, da, d_addr) != 1)
        return invalid(out, "PROXY v1 address is invalid");
    sg_sockaddr_set_port(&out->src, sport);
    sg_sockaddr_set_port(&out->dst, dport);
    out->has_addresses = true;
    return SG_PROXY_HDR_OK;
}

static enum sg_proxy_parse decode_v2(const uint8_t *buf, size_t len, struct sg_proxy_info *out)
{
    if (len < 16)
        return SG_PROXY_HDR_NEED_MORE;
    if ((buf[12] >> 4) != 2)
        return invalid(out, "PROXY v2 version is not 2");
    unsigned cmd = buf[12] & 0x0f;
    if (cmd > 1)
        return invalid(out, "PROXY v2 command is neither LOCAL nor PROXY");
    size_t body = (size_t)buf[14] << 8 | buf[15];
    if (16 + body > SG_PROXY_DECODE_MAX)
        return invalid(out, "PROXY v2 header longer than the limit");
    if (len < 16 + body)
        return SG_PROXY_HDR_NEED_MORE;
    out->header_len = 16 + body;
    unsigned fam = buf[13] >> 4, proto = buf[13] & 0x0f;
    if (cmd == 0 || fam == 0) { /* LOCAL, or UNSPEC: the connection's own addresses count */
        out->has_addresses = false;
        return SG_PROXY_HDR_OK;
    }
    if (proto != 1)
        return invalid(out, "PROXY v2 transport is not STREAM");
    const uint8_t *p = buf + 16;
    memset(&out->src, 0, sizeof(out->src));
    memset(&out->dst, 0, sizeof(out->dst));
    if (fam == 1) {
        if (body < 12)
            return invalid(out, "PROXY v2 too short for IPv4 addresses");
        out->src.in.sin_family = out->dst.in.sin_family = AF_INET;
        memcpy(&out->src.in.sin_addr, p, 4);
        memcpy(&out->dst.in.sin_addr, p + 4, 4);
        memcpy(&out->src.in.sin_port, p + 8, 2);
        memcpy(&out->dst.in.sin_port, p + 10, 2);
    } else if (fam == 2) {
        if (body < 36)
            return invalid(out, "PROXY v2 too short for IPv6 addresses");
        out->src.in6.sin6_family = out->dst.in6.sin6_family = AF_INET6;
        memcpy(&out->src.in6.sin6_addr, p, 16);
        memcpy(&out->dst.in6.sin6_addr, p + 16, 16);
        memcpy(&out->src.in6.sin6_port, p + 32, 2);
        memcpy(&out->dst.in6.sin6_port, p + 34, 2);
    } else {
        return invalid(out, "PROXY v2 family is not IPv4 or IPv6");
    }
    out->has_addresses = true;
    return SG_PROXY_HDR_OK;
}

enum sg_proxy_parse sg_proxy_header_decode(const uint8_t *buf, size_t len,
                                           struct sg_proxy_info *out)
{
    memset(out, 0, sizeof(*out));
    static const char v1_sig[6] = {'P', 'R', 'O', 'X', 'Y', ' '};
    size_t n = len < 12 ? len : 12;
    if (memcmp(buf, v2_sig, n) == 0)
        return n < 12 ? SG_PROXY_HDR_NEED_MORE : decode_v2(buf, len, out);
    n = len < 6 ? len : 6;
    if (memcmp(buf, v1_sig, n) == 0)
        return n < 6 ? SG_PROXY_HDR_NEED_MORE : decode_v1(buf, len, out);
    return invalid(out, "no PROXY protocol header");
}
