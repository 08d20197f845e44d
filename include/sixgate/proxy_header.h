/* The PROXY protocol (HAProxy's proxy-protocol.txt, versions 1 and 2): the
 * header sixgate writes to a backend before any client byte, so that the
 * backend sees the real client address, and the header it reads from a
 * trusted load balancer in front of it. Pure functions over bytes. */
#ifndef SIXGATE_PROXY_HEADER_H
#define SIXGATE_PROXY_HEADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "sixgate/address.h"

/* v1 is at most 107 bytes; v2 with an authority TLV at most 16+36+3+253. */
#define SG_PROXY_HEADER_MAX 320

/* v2 TLV type of the host name the client asked for (SNI or Host). */
#define SG_PP2_TYPE_AUTHORITY 0x02

/* Which PROXY protocol header a backend gets in front of the client's bytes. */
enum sg_proxy_protocol { SG_PROXY_NONE = 0, SG_PROXY_V1 = 1, SG_PROXY_V2 = 2 };

/* Writes a header of <version> (v1 or v2) for a connection from <src> to
 * <dst> into <out>; with version 2 and a non-empty <authority>, adds it as
 * a PP2_TYPE_AUTHORITY TLV. When the families differ, IPv4 addresses are
 * written as IPv4-mapped IPv6. Returns the length, 0 when <cap> is short. */
size_t sg_proxy_header_encode(enum sg_proxy_protocol version, const struct sockaddr *src, const struct sockaddr *dst,
                              const char *authority, size_t authority_len, uint8_t *out,
                              size_t cap);

enum sg_proxy_parse {
    SG_PROXY_HDR_NEED_MORE = 0,
    SG_PROXY_HDR_OK,
    SG_PROXY_HDR_INVALID,
};

/* The largest header sg_proxy_header_decode() accepts (v2 with TLVs). */
#define SG_PROXY_DECODE_MAX 1024

struct sg_proxy_info {
    size_t header_len;   /* bytes to strip from the stream */
    bool has_addresses;  /* false for v1 UNKNOWN and v2 LOCAL/UNSPEC: keep the TCP peer */
    union sg_sockaddr src;
    union sg_sockaddr dst;
    const char *detail;  /* why INVALID */
};

/* Parses a v1 or v2 header at the start of <buf>. NEED_MORE while <buf> is a
 * valid prefix; INVALID for anything else, including a stream that does not
 * start with a header at all. */
enum sg_proxy_parse sg_proxy_header_decode(const uint8_t *buf, size_t len,
                                           struct sg_proxy_info *out);

#endif
