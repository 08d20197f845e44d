/* Reads the Host (or the absolute-form authority) of the first HTTP/1.x
 * request on a connection, with llhttp, without changing a byte. */
#ifndef SIXGATE_SNIFF_HTTP_H
#define SIXGATE_SNIFF_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <llhttp.h>

#include "sixgate/sniff.h"

#define SG_HTTP_HEAD_DEFAULT (16u * 1024u) /* default limit on the request head */
#define SG_HTTP_AUTHORITY_MAX 300          /* name, brackets and port fit */

/* Incremental state for one connection's first request head. Embedded in the
 * connection while it sniffs; it owns no memory. The fields are private to
 * sniff_http.c. */
struct sg_http_sniffer {
    llhttp_t parser;
    size_t limit;    /* head size limit in bytes */
    size_t fed;      /* head bytes given to llhttp so far (never more than limit) */
    size_t head_len; /* bytes up to and including the blank line, once the head is read */
    /* a raw look at every head byte, for what llhttp accepts but we refuse */
    uint64_t line_tail; /* the last 8 bytes of the request line */
    uint8_t prev;       /* the byte before the current one */
    bool line_done;     /* the request line has ended */
    bool line_is_http;  /* ... with "HTTP/x.y" */
    const char *framing_fault; /* the first bare CR or LF, or obs-fold */
    /* the header field being read: only whether it is "host" matters */
    uint8_t field_len;  /* saturates; only lengths up to 5 matter */
    bool field_is_host; /* the bytes so far match "host" case-insensitively */
    bool field_has_ws;  /* some field name had whitespace (before the colon) */
    bool in_host;       /* the current value is the first Host header's */
    uint8_t host_count; /* saturates at 2 */
    size_t host_len;
    size_t host_ws;     /* whitespace seen but not yet stored: trailing OWS is dropped */
    bool host_overflow;
    char host[SG_HTTP_AUTHORITY_MAX];
    /* the start of the request target: its form, and an absolute-form authority */
    size_t url_len;
    bool url_overflow;
    char url[SG_HTTP_AUTHORITY_MAX + 16];
    enum sg_sniff_result result; /* NEED_MORE until a verdict, then sticky */
    const char *detail;
    struct sg_name name; /* valid when result is FOUND */
    /* BAD_NAME: where the refused name lies, in url (the authority) or host */
    bool raw_in_url;
    size_t raw_start;
    size_t raw_len;
};

/* Prepares <s> for a new connection; <head_limit> bytes at most for the head. */
void sg_http_sniffer_init(struct sg_http_sniffer *s, size_t head_limit);

/* Feeds the next <len> bytes the client sent (only the new ones). Returns
 * NEED_MORE until the request head is complete; then FOUND (name in out),
 * NO_NAME (HTTP/1.0 without Host), BAD_NAME (invalid Host), MALFORMED (a
 * broken head, HTTP/1.1 without Host, two Host headers, CONNECT), TOO_LARGE
 * (head over the limit) or WRONG_PROTOCOL (a TLS ClientHello). Once it has
 * returned anything but NEED_MORE it returns the same again. */
enum sg_sniff_result sg_http_sniffer_feed(struct sg_http_sniffer *s, const uint8_t *data,
                                          size_t len, struct sg_sniffed *out);

/* Complete responses sixgate sends when it refuses or fails a request. Each
 * has Content-Type text/plain, a short body and "Connection: close". */
enum sg_http_refusal {
    SG_HTTP_400_BAD_REQUEST,
    SG_HTTP_421_MISDIRECTED,   /* no route for the name */
    SG_HTTP_431_TOO_LARGE,
    SG_HTTP_502_BAD_GATEWAY,   /* backend refused or unreachable */
    SG_HTTP_503_UNAVAILABLE,   /* backend name did not resolve, or overload */
    SG_HTTP_504_GATEWAY_TIMEOUT,
};

/* Returns a static response; *len is set to its length in bytes. */
const char *sg_http_refusal_bytes(enum sg_http_refusal r, size_t *len);

#endif
