/* Reads the name to route an HTTP/1.x connection by: the Host header of the
 * first request, or the authority of an absolute-form target (RFC 9112 3.2.2).
 *
 * llhttp does the parsing. It is incremental, so each call hands it only the
 * bytes that are new, and its callbacks may deliver a header name or value in
 * several pieces; what we keep of them is bounded. Parsing pauses at the end
 * of the request head, so a body or a pipelined request is never looked at.
 *
 * sixgate forwards the client's bytes unchanged, so a head that llhttp reads
 * one way and a backend could read another must be refused rather than
 * routed. Besides what llhttp (built without its strict mode) rejects, we
 * refuse whitespace between a field name and its colon (what llhttp's strict
 * mode rejects), obs-fold and a bare LF line end (which even strict llhttp
 * accepts; RFC 9112 5.2 lets a server that cannot unfold reject), a CR
 * followed by anything but LF (loose llhttp takes "\r" and any byte as the
 * end of the head), and a request line that is not "HTTP/1.x" (llhttp also
 * reads RTSP and ICE).
 *
 * Every check is made at a fixed byte position of the stream, never at the
 * end of whatever chunk arrived, so the verdict does not depend on how the
 * bytes were split: the fuzz target checks exactly that. */
#include "sixgate/sniff_http.h"
#include "util.h"

#include <string.h>

#define TLS_HANDSHAKE_RECORD 0x16 /* the first byte of a ClientHello */

static const char incomplete[] = "request head incomplete";

/* The sniffer embeds its parser, so the parser's address leads back to it
 * without relying on parser.data, which a copied struct would leave stale. */
static struct sg_http_sniffer *sniffer_of(llhttp_t *p)
{
    return SG_CONTAINER_OF(p, struct sg_http_sniffer, parser);
}

static bool is_ows(unsigned char c)
{
    return c == ' ' || c == '\t';
}

static unsigned char lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c - 'A' + 'a') : c;
}

/* Keeps the first bytes of the request target: enough to tell its form and
 * to hold "https://" plus a maximal authority and the byte that ends it. */
static int url_cb(llhttp_t *p, const char *at, size_t len)
{
    struct sg_http_sniffer *s = sniffer_of(p);
    size_t room = sizeof(s->url) - s->url_len;
    if (len > room) {
        s->url_overflow = true;
        len = room;
    }
    memcpy(s->url + s->url_len, at, len);
    s->url_len += len;
    return 0;
}

/* Matches the field name against "host" one piece at a time; only its first
 * five bytes matter, so nothing of it is stored. */
static int header_field_cb(llhttp_t *p, const char *at, size_t len)
{
    static const char host[] = "host";
    struct sg_http_sniffer *s = sniffer_of(p);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)at[i];
        if (is_ows(c))
            s->field_has_ws = true;
        if (s->field_len >= 4 || lower(c) != (unsigned char)host[s->field_len])
            s->field_is_host = false;
        if (s->field_len < UINT8_MAX)
            s->field_len++;
    }
    return 0;
}

static int header_field_complete_cb(llhttp_t *p)
{
    struct sg_http_sniffer *s = sniffer_of(p);
    if (s->field_is_host && s->field_len == 4) {
        if (s->host_count < 2)
            s->host_count++;
        /* A second Host is refused whatever it says, so only the first is kept. */
        s->in_host = s->host_count == 1;
    }
    s->field_len = 0;
    s->field_is_host = true;
    return 0;
}

/* Stores the first Host value up to SG_HTTP_AUTHORITY_MAX bytes. llhttp drops
 * leading whitespace but hands over trailing whitespace, so whitespace is only
 * counted until a later byte shows it is inside the value. It is stored as a
 * space: any whitespace inside a name makes it invalid, whichever kind. */
static int header_value_cb(llhttp_t *p, const char *at, size_t len)
{
    struct sg_http_sniffer *s = sniffer_of(p);
    if (!s->in_host || s->host_overflow)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)at[i];
        if (is_ows(c)) {
            if (s->host_len > 0)
                s->host_ws++;
            continue;
        }
        if (s->host_ws >= sizeof(s->host) - s->host_len) {
            s->host_overflow = true;
            return 0;
        }
        memset(s->host + s->host_len, ' ', s->host_ws);
        s->host_len += s->host_ws;
        s->host_ws = 0;
        s->host[s->host_len++] = (char)c;
    }
    return 0;
}

static int header_value_complete_cb(llhttp_t *p)
{
    struct sg_http_sniffer *s = sniffer_of(p);
    s->in_host = false;
    s->host_ws = 0;
    return 0;
}

/* The head is complete: stop here, so llhttp_execute() returns HPE_PAUSED and
 * its error position marks the end of the head. */
static int headers_complete_cb(llhttp_t *p)
{
    (void)p;
    return HPE_PAUSED;
}

static const llhttp_settings_t settings = {
    .on_url = url_cb,
    .on_header_field = header_field_cb,
    .on_header_field_complete = header_field_complete_cb,
    .on_header_value = header_value_cb,
    .on_header_value_complete = header_value_complete_cb,
    .on_headers_complete = headers_complete_cb,
};

void sg_http_sniffer_init(struct sg_http_sniffer *s, size_t head_limit)
{
    memset(s, 0, sizeof(*s));
    llhttp_init(&s->parser, HTTP_REQUEST, &settings);
    s->limit = head_limit;
    s->field_is_host = true;
    s->result = SG_SNIFF_NEED_MORE;
    s->detail = incomplete;
}

static void finish(struct sg_http_sniffer *s, enum sg_sniff_result r, const char *detail)
{
    s->result = r;
    s->detail = detail;
}

/* Whether the last 8 bytes of the request line are "HTTP/" and a version
 * (llhttp has already checked the digits). */
static bool tail_is_http(uint64_t tail)
{
    const uint64_t http = (uint64_t)'H' << 32 | (uint64_t)'T' << 24 | (uint64_t)'T' << 16 |
                          (uint64_t)'P' << 8 | (uint64_t)'/';
    return tail >> 24 == http;
}

/* Looks at the raw head bytes llhttp has consumed, in order, for the line
 * framing it tolerates and for the protocol name of the request line, which
 * no llhttp 8 callback reports. Only the first framing fault is kept, so the
 * detail does not depend on how much arrived at once. */
static void scan(struct sg_http_sniffer *s, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n && s->framing_fault == NULL; i++) {
        uint8_t c = p[i];
        if (c == '\n' && s->prev != '\r')
            s->framing_fault = "bare LF line end";
        else if (c != '\n' && s->prev == '\r')
            s->framing_fault = "CR without LF";
        else if (is_ows(c) && s->prev == '\n')
            s->framing_fault = "obs-fold (header line continued)";
        if (!s->line_done) {
            if (c != '\r' && c != '\n')
                s->line_tail = s->line_tail << 8 | c;
            else if (s->line_tail != 0) /* empty lines before the request line are allowed */
                s->line_done = true;
        }
        s->prev = c;
    }
    if (s->line_done && !s->line_is_http)
        s->line_is_http = tail_is_http(s->line_tail);
}

/* Why a name was refused, for Host and for an absolute-form authority. */
static const char *name_refusal(bool authority, enum sg_name_status st)
{
    static const char *const host[] = {
        [SG_NAME_EMPTY] = "Host: empty name",
        [SG_NAME_TOO_LONG] = "Host: name longer than 253 bytes",
        [SG_NAME_NON_ASCII] = "Host: non-ASCII name",
        [SG_NAME_BAD_CHAR] = "Host: invalid character in name",
        [SG_NAME_BAD_LABEL] = "Host: empty or over-long label",
        [SG_NAME_BAD_PORT] = "Host: invalid port",
        [SG_NAME_BAD_WILDCARD] = "Host: '*' in name",
        [SG_NAME_BAD_IP_LITERAL] = "Host: invalid IPv6 literal",
    };
    static const char *const auth[] = {
        [SG_NAME_EMPTY] = "authority: empty name",
        [SG_NAME_TOO_LONG] = "authority: name longer than 253 bytes",
        [SG_NAME_NON_ASCII] = "authority: non-ASCII name",
        [SG_NAME_BAD_CHAR] = "authority: invalid character in name",
        [SG_NAME_BAD_LABEL] = "authority: empty or over-long label",
        [SG_NAME_BAD_PORT] = "authority: invalid port",
        [SG_NAME_BAD_WILDCARD] = "authority: '*' in name",
        [SG_NAME_BAD_IP_LITERAL] = "authority: invalid IPv6 literal",
    };
    const char *const *table = authority ? auth : host;
    if ((size_t)st < SG_ARRAY_LEN(host) && table[st] != NULL)
        return table[st];
    return authority ? "authority: invalid name" : "Host: invalid name";
}

static bool has_prefix_nocase(const char *s, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    if (len < n)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (lower((unsigned char)s[i]) != (unsigned char)prefix[i])
            return false;
    }
    return true;
}

/* Takes the name from an absolute-form target "http[s]://authority[/?...]".
 * Only http and https name a site we serve. A userinfo part or an empty host
 * makes the target malformed (RFC 9110 4.2.1 and 4.2.4); a host that is merely
 * not a valid name is a bad name, like a bad Host. An authority longer than
 * SG_HTTP_AUTHORITY_MAX cannot hold a valid name either, so it is a bad name
 * too, not a head over the limit: the head may still fit. */
static bool take_authority(struct sg_http_sniffer *s)
{
    size_t start;
    if (has_prefix_nocase(s->url, s->url_len, "http://")) {
        start = 7;
    } else if (has_prefix_nocase(s->url, s->url_len, "https://")) {
        start = 8;
    } else {
        finish(s, SG_SNIFF_MALFORMED, "absolute-form target with a scheme other than http(s)");
        return false;
    }
    const char *auth = s->url + start;
    size_t len = 0;
    while (start + len < s->url_len && !memchr("/?#", auth[len], 3))
        len++;
    s->raw_in_url = true;
    s->raw_start = start;
    s->raw_len = len;
    if ((start + len == s->url_len && s->url_overflow) || len > SG_HTTP_AUTHORITY_MAX) {
        finish(s, SG_SNIFF_BAD_NAME, "authority: longer than 300 bytes");
        return false;
    }
    if (memchr(auth, '@', len) != NULL) {
        finish(s, SG_SNIFF_MALFORMED, "userinfo in absolute-form target");
        return false;
    }
    enum sg_name_status st =
        sg_name_normalize(auth, len, SG_NAME_ALLOW_PORT | SG_NAME_ALLOW_IP, &s->name);
    if (st == SG_NAME_EMPTY) {
        finish(s, SG_SNIFF_MALFORMED, "empty host in absolute-form target");
        return false;
    }
    if (st != SG_NAME_OK) {
        finish(s, SG_SNIFF_BAD_NAME, name_refusal(true, st));
        return false;
    }
    return true;
}

/* Gives the verdict on a complete head. Structural faults come first, then
 * the names: the authority of an absolute-form target, then Host, which RFC
 * 9112 3.2 requires to be valid even when the authority wins. */
static void decide(struct sg_http_sniffer *s)
{
    const llhttp_t *p = &s->parser;
    if (!s->line_is_http) {
        finish(s, SG_SNIFF_MALFORMED, "request line does not end in HTTP/1.x");
        return;
    }
    if (p->http_major != 1 || p->http_minor > 1) {
        finish(s, SG_SNIFF_MALFORMED, "unsupported HTTP version");
        return;
    }
    if (s->field_has_ws) {
        finish(s, SG_SNIFF_MALFORMED, "whitespace between a field name and its colon");
        return;
    }
    /* CONNECT asks for a tunnel to the authority-form target: a forward
     * proxy's job, and llhttp would take everything after the head as
     * tunnel data. */
    if (p->method == HTTP_CONNECT) {
        finish(s, SG_SNIFF_MALFORMED, "CONNECT request");
        return;
    }
    bool asterisk = s->url_len == 1 && s->url[0] == '*';
    if (asterisk && p->method != HTTP_OPTIONS) {
        finish(s, SG_SNIFF_MALFORMED, "asterisk-form target without OPTIONS");
        return;
    }
    if (s->host_count > 1) {
        finish(s, SG_SNIFF_MALFORMED, "more than one Host header");
        return;
    }
    bool http11 = p->http_minor == 1;
    bool has_host = s->host_count == 1 && (s->host_len > 0 || s->host_overflow);
    if (http11 && s->host_count == 0) {
        finish(s, SG_SNIFF_MALFORMED, "HTTP/1.1 request without Host");
        return;
    }
    if (http11 && !has_host) {
        finish(s, SG_SNIFF_MALFORMED, "empty Host in an HTTP/1.1 request");
        return;
    }
    bool absolute = !asterisk && s->url_len > 0 && s->url[0] != '/';
    if (absolute && !take_authority(s))
        return;
    if (has_host) {
        struct sg_name host;
        s->raw_in_url = false;
        s->raw_start = 0;
        s->raw_len = s->host_len;
        if (s->host_overflow) {
            finish(s, SG_SNIFF_BAD_NAME, "Host: longer than 300 bytes");
            return;
        }
        enum sg_name_status st =
            sg_name_normalize(s->host, s->host_len, SG_NAME_ALLOW_PORT | SG_NAME_ALLOW_IP, &host);
        if (st != SG_NAME_OK) {
            finish(s, SG_SNIFF_BAD_NAME, name_refusal(false, st));
            return;
        }
        if (!absolute)
            s->name = host;
    }
    if (absolute || has_host)
        finish(s, SG_SNIFF_FOUND, NULL);
    else
        finish(s, SG_SNIFF_NO_NAME, "HTTP/1.0 request without Host");
}

/* Gives llhttp the new bytes, at most up to the head limit, and reaches a
 * verdict if they complete the head, break it or overflow the limit. */
static void feed(struct sg_http_sniffer *s, const uint8_t *data, size_t len)
{
    if (s->fed == 0 && data[0] == TLS_HANDSHAKE_RECORD) {
        finish(s, SG_SNIFF_WRONG_PROTOCOL, "TLS handshake on an HTTP port");
        return;
    }
    size_t room = s->limit - s->fed;
    size_t n = len < room ? len : room;
    size_t used = n;
    llhttp_errno_t err = HPE_OK;
    if (n > 0) {
        err = llhttp_execute(&s->parser, (const char *)data, n);
        const char *pos = llhttp_get_error_pos(&s->parser);
        if (err != HPE_OK && pos != NULL) {
            size_t at = (size_t)(pos - (const char *)data);
            used = at < n ? at : n;
        }
    }
    scan(s, data, used);
    s->fed += used;

    /* The scan covers exactly the bytes llhttp consumed, so a fault it finds
     * precedes anything llhttp says about the bytes after it. */
    if (s->framing_fault != NULL) {
        finish(s, SG_SNIFF_MALFORMED, s->framing_fault);
        return;
    }
    switch (err) {
    case HPE_OK:
        /* Only the head counts against the limit, so whether bytes beyond it
         * arrived in this call or will in the next makes no difference. */
        if (len > room)
            finish(s, SG_SNIFF_TOO_LARGE, "request head over the limit");
        return;
    case HPE_PAUSED:
        s->head_len = s->fed;
        decide(s);
        return;
    case HPE_PAUSED_H2_UPGRADE:
        finish(s, SG_SNIFF_MALFORMED, "HTTP/2 connection preface");
        return;
    default: {
        /* llhttp's reasons are string literals, so they outlive the parser. */
        const char *reason = llhttp_get_error_reason(&s->parser);
        finish(s, SG_SNIFF_MALFORMED, reason != NULL ? reason : "invalid request head");
        return;
    }
    }
}

enum sg_sniff_result sg_http_sniffer_feed(struct sg_http_sniffer *s, const uint8_t *data,
                                          size_t len, struct sg_sniffed *out)
{
    if (s->result == SG_SNIFF_NEED_MORE && len > 0)
        feed(s, data, len);
    out->detail = s->detail;
    out->spoken = s->result == SG_SNIFF_WRONG_PROTOCOL ? SG_SPOKE_TLS : SG_SPOKE_UNKNOWN;
    out->need = s->result == SG_SNIFF_NEED_MORE ? s->fed + 1 : 0;
    if (s->result == SG_SNIFF_FOUND) {
        out->name = s->name;
    } else {
        out->name.len = 0;
        out->name.s[0] = '\0';
    }
    out->raw_name = NULL;
    out->raw_name_len = 0;
    if (s->result == SG_SNIFF_BAD_NAME) {
        /* At most the bytes kept: a longer name is cut at the bound. */
        out->raw_name = (s->raw_in_url ? s->url : s->host) + s->raw_start;
        out->raw_name_len = s->raw_len;
    }
    return s->result;
}

/* Each response is built from its body, whose length is written out by hand
 * in Content-Length and checked against the body at compile time. */
#define RESPONSE(status, body_len, body)                                                           \
    "HTTP/1.1 " status "\r\n"                                                                      \
    "Content-Type: text/plain; charset=utf-8\r\n"                                                  \
    "Content-Length: " #body_len "\r\n"                                                            \
    "Connection: close\r\n"                                                                        \
    "\r\n" body

#define BODY_400 "400 Bad Request: the request could not be read\n"
#define BODY_421 "421 Misdirected Request: no site is configured for this name\n"
#define BODY_431 "431 Request Header Fields Too Large: the request head is too long\n"
#define BODY_502 "502 Bad Gateway: the site's server could not be reached\n"
#define BODY_503 "503 Service Unavailable: the site's server cannot be found or is busy\n"
#define BODY_504 "504 Gateway Timeout: the site's server did not answer in time\n"

_Static_assert(sizeof(BODY_400) - 1 == 47, "Content-Length of the 400 body");
_Static_assert(sizeof(BODY_421) - 1 == 61, "Content-Length of the 421 body");
_Static_assert(sizeof(BODY_431) - 1 == 66, "Content-Length of the 431 body");
_Static_assert(sizeof(BODY_502) - 1 == 56, "Content-Length of the 502 body");
_Static_assert(sizeof(BODY_503) - 1 == 70, "Content-Length of the 503 body");
_Static_assert(sizeof(BODY_504) - 1 == 62, "Content-Length of the 504 body");

static const char response_400[] = RESPONSE("400 Bad Request", 47, BODY_400);
static const char response_421[] = RESPONSE("421 Misdirected Request", 61, BODY_421);
static const char response_431[] = RESPONSE("431 Request Header Fields Too Large", 66, BODY_431);
static const char response_502[] = RESPONSE("502 Bad Gateway", 56, BODY_502);
static const char response_503[] = RESPONSE("503 Service Unavailable", 70, BODY_503);
static const char response_504[] = RESPONSE("504 Gateway Timeout", 62, BODY_504);

static const struct {
    const char *bytes;
    size_t len;
} responses[] = {
    [SG_HTTP_400_BAD_REQUEST] = {response_400, sizeof(response_400) - 1},
    [SG_HTTP_421_MISDIRECTED] = {response_421, sizeof(response_421) - 1},
    [SG_HTTP_431_TOO_LARGE] = {response_431, sizeof(response_431) - 1},
    [SG_HTTP_502_BAD_GATEWAY] = {response_502, sizeof(response_502) - 1},
    [SG_HTTP_503_UNAVAILABLE] = {response_503, sizeof(response_503) - 1},
    [SG_HTTP_504_GATEWAY_TIMEOUT] = {response_504, sizeof(response_504) - 1},
};

/* An out-of-range <r> is a caller bug; it gets NULL and a length of 0. */
const char *sg_http_refusal_bytes(enum sg_http_refusal r, size_t *len)
{
    if ((size_t)r >= SG_ARRAY_LEN(responses)) {
        *len = 0;
        return NULL;
    }
    *len = responses[r].len;
    return responses[r].bytes;
}
