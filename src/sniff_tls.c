/* Reads the server_name of a TLS ClientHello (RFC 8446 4.1.2 and 5.1, RFC 6066
 * section 3) from the bytes a client sent first, without decrypting or
 * answering anything.
 *
 * The parser is stateless: each call walks every record received so far.
 * That costs a re-walk of the record headers per call, but the caller keeps
 * nothing except the bytes it had to buffer anyway, and a pure function of
 * (buf, len) is easy to fuzz. Because the checks run in stream order and each
 * one looks only at bytes already present, a verdict reached on a prefix is
 * the verdict on every longer input. */
#include "sixgate/sniff_tls.h"

#include <stdbool.h>
#include <string.h>

#define TLS_RECORD_HEADER 5u
#define TLS_RECORD_MAX 16384u /* 2^14: the largest plaintext fragment (RFC 8446 5.1) */
#define TLS_CONTENT_HANDSHAKE 22u
#define TLS_CONTENT_ALERT 21u
#define TLS_HANDSHAKE_HEADER 4u
#define TLS_CLIENT_HELLO 1u
#define TLS_RANDOM_LEN 32u
#define TLS_SESSION_ID_MAX 32u
#define TLS_EXT_SERVER_NAME 0u
#define TLS_NAME_TYPE_HOST_NAME 0u
#define TLS_ALERT_LEVEL_FATAL 2u

/* A bounded cursor over a span of bytes: a read either fits in <left> or
 * fails without moving, so no length taken from the wire can overrun. */
struct reader {
    const uint8_t *p;
    size_t left;
};

static bool take_u8(struct reader *r, unsigned *v)
{
    if (r->left < 1)
        return false;
    *v = r->p[0];
    r->p++;
    r->left--;
    return true;
}

static bool take_u16(struct reader *r, unsigned *v)
{
    if (r->left < 2)
        return false;
    *v = (unsigned)r->p[0] << 8 | r->p[1];
    r->p += 2;
    r->left -= 2;
    return true;
}

/* Carves the next <n> bytes off <r> into <sub> (which may be NULL to skip them). */
static bool take_span(struct reader *r, size_t n, struct reader *sub)
{
    if (r->left < n)
        return false;
    if (sub != NULL) {
        sub->p = r->p;
        sub->left = n;
    }
    r->p += n;
    r->left -= n;
    return true;
}

static size_t be16(const uint8_t *p)
{
    return (size_t)p[0] << 8 | p[1];
}

static enum sg_sniff_result verdict(struct sg_sniffed *out, enum sg_sniff_result r,
                                    const char *detail)
{
    out->need = 0;
    out->detail = detail;
    return r;
}

static enum sg_sniff_result need_more(struct sg_sniffed *out, size_t need, const char *detail)
{
    out->need = need;
    out->detail = detail;
    return SG_SNIFF_NEED_MORE;
}

/* The first byte alone tells a TLS port that the client speaks something
 * else; the detail names the likely culprit for whoever reads the log. */
static enum sg_sniff_result not_tls(uint8_t first, struct sg_sniffed *out)
{
    const char *why = "first record is not a TLS handshake";
    if (first & 0x80u)
        why = "SSLv2-style hello or binary data, not a TLS record";
    else if (first >= 'A' && first <= 'Z') {
        why = "plain text, not TLS (HTTP on a TLS port?)";
        out->spoken = SG_SPOKE_HTTP;
    }
    else if (first == TLS_CONTENT_ALERT)
        why = "TLS alert before any handshake";
    return verdict(out, SG_SNIFF_WRONG_PROTOCOL, why);
}

/* Where the ClientHello handshake message lies once all of it has arrived. */
struct hello_span {
    size_t first_payload; /* offset of the first record's payload in buf */
    size_t msg_len;       /* the handshake message, its 4-byte header included */
    bool fragmented;      /* whether it spans more than one record */
};

/* Walks the records in the first <len> bytes of <buf> until the first
 * handshake message is complete. Returns FOUND (meaning only "complete",
 * with <span> filled), NEED_MORE or a refusal.
 *
 * The message must end exactly at a record boundary: a ClientHello is always
 * followed by a key change (early data, or the server's flight), and RFC 8446
 * 5.1 forbids a message that does not align with one.
 *
 * <need> is the least total a complete hello can take from here: the current
 * record header or record, and once the handshake length is known, every
 * payload byte still missing plus at least one more record header. Each call
 * then covers a fixed share of what is left, so a caller that waits for
 * <need> makes O(log) calls even for 1-byte records, instead of re-walking
 * thousands of records once per record. The price: a broken header inside
 * that span is reported only once <need> bytes are there. */
static enum sg_sniff_result find_hello(const uint8_t *buf, size_t len, struct hello_span *span,
                                       struct sg_sniffed *out)
{
    uint8_t hs[TLS_HANDSHAKE_HEADER]; /* the handshake header, itself possibly fragmented */
    size_t before = 0;                /* handshake bytes in the records already walked */
    size_t msg_len = 0;               /* 0 until the handshake header is known */
    size_t pos = 0;                   /* start of the current record; always <= len */

    for (;;) {
        /* Checked before the header so that a prefix and the whole input
         * reach this verdict in the same order. */
        if (pos + TLS_RECORD_HEADER + 1 > SG_TLS_SNIFF_MAX)
            return verdict(out, SG_SNIFF_TOO_LARGE, "ClientHello records over the sniff limit");
        size_t have = len - pos;
        if (have >= 1 && buf[pos] != TLS_CONTENT_HANDSHAKE) {
            if (pos == 0)
                return not_tls(buf[0], out);
            return verdict(out, SG_SNIFF_MALFORMED, "non-handshake record inside the ClientHello");
        }
        if (have >= 2 && buf[pos + 1] != 3)
            return verdict(out, SG_SNIFF_MALFORMED, "record version is not 3.x");
        if (have < TLS_RECORD_HEADER)
            return need_more(out, pos + TLS_RECORD_HEADER + (msg_len ? msg_len - before : 0),
                             "incomplete record header");
        size_t rlen = be16(buf + pos + 3);
        if (rlen == 0)
            return verdict(out, SG_SNIFF_MALFORMED, "empty handshake record");
        if (rlen > TLS_RECORD_MAX)
            return verdict(out, SG_SNIFF_MALFORMED, "record length over 2^14");
        size_t payload = pos + TLS_RECORD_HEADER;
        size_t rec_end = payload + rlen;
        if (rec_end > SG_TLS_SNIFF_MAX)
            return verdict(out, SG_SNIFF_TOO_LARGE, "ClientHello records over the sniff limit");
        if (pos == 0)
            span->first_payload = payload;

        if (msg_len == 0) {
            size_t avail = (len < rec_end ? len : rec_end) - payload;
            size_t i;
            for (i = 0; before + i < TLS_HANDSHAKE_HEADER && i < avail; i++)
                hs[before + i] = buf[payload + i];
            size_t hs_have = before + i;
            if (hs_have >= 1 && hs[0] != TLS_CLIENT_HELLO)
                return verdict(out, SG_SNIFF_MALFORMED,
                               "first handshake message is not a ClientHello");
            if (hs_have == TLS_HANDSHAKE_HEADER) {
                msg_len = TLS_HANDSHAKE_HEADER + ((size_t)hs[1] << 16 | (size_t)hs[2] << 8 | hs[3]);
                if (msg_len > SG_TLS_HELLO_MAX)
                    return verdict(out, SG_SNIFF_TOO_LARGE, "ClientHello over 32 KiB");
            }
        }
        if (msg_len != 0 && msg_len < before + rlen)
            return verdict(out, SG_SNIFF_MALFORMED, "data after the ClientHello in its record");
        /* What the message still needs past this record, in at least one more. */
        size_t rest = msg_len > before + rlen ? TLS_RECORD_HEADER + msg_len - before - rlen : 0;
        if (rec_end + rest > SG_TLS_SNIFF_MAX)
            return verdict(out, SG_SNIFF_TOO_LARGE, "ClientHello records over the sniff limit");
        if (rec_end > len)
            return need_more(out, rec_end + rest, "incomplete record");
        if (msg_len == before + rlen) {
            span->msg_len = msg_len;
            span->fragmented = pos != 0;
            return SG_SNIFF_FOUND;
        }
        before += rlen;
        pos = rec_end;
    }
}

/* Copies the payloads of the records that find_hello() validated into
 * <scratch>, which holds SG_TLS_SCRATCH_SIZE >= msg_len bytes. */
static void join_fragments(const uint8_t *buf, size_t msg_len, uint8_t *scratch)
{
    size_t pos = 0, have = 0;
    while (have < msg_len) {
        size_t rlen = be16(buf + pos + 3);
        memcpy(scratch + have, buf + pos + TLS_RECORD_HEADER, rlen);
        have += rlen;
        pos += TLS_RECORD_HEADER + rlen;
    }
}

/* Reads the ServerNameList of a server_name extension (RFC 6066 3). Entries of
 * unknown types are skipped, as the RFC asks, but a second host_name is an
 * error: "MUST NOT contain more than one name of the same name_type". */
static enum sg_sniff_result parse_server_name(struct reader ext, struct sg_sniffed *out)
{
    unsigned list_len;
    if (!take_u16(&ext, &list_len) || list_len != ext.left)
        return verdict(out, SG_SNIFF_MALFORMED, "server_name list length mismatch");
    if (list_len == 0)
        return verdict(out, SG_SNIFF_MALFORMED, "empty server_name list");

    struct reader host = {NULL, 0};
    while (ext.left > 0) {
        unsigned type, name_len;
        struct reader name;
        if (!take_u8(&ext, &type) || !take_u16(&ext, &name_len) ||
            !take_span(&ext, name_len, &name))
            return verdict(out, SG_SNIFF_MALFORMED, "server name length over its list");
        if (type != TLS_NAME_TYPE_HOST_NAME)
            continue;
        if (name_len == 0)
            return verdict(out, SG_SNIFF_MALFORMED, "empty host_name");
        if (host.p != NULL)
            return verdict(out, SG_SNIFF_MALFORMED, "more than one host_name");
        host = name;
    }
    if (host.p == NULL)
        return verdict(out, SG_SNIFF_NO_NAME, "server_name without a host_name");

    enum sg_name_status st = sg_name_normalize((const char *)host.p, host.left, 0, &out->name);
    if (st != SG_NAME_OK) {
        out->name.len = 0;
        out->name.s[0] = '\0';
        /* For the access log: points into buf or scratch, like the header says. */
        out->raw_name = (const char *)host.p;
        out->raw_name_len = host.left;
        return verdict(out, SG_SNIFF_BAD_NAME, sg_name_status_str(st));
    }
    return verdict(out, SG_SNIFF_FOUND, NULL);
}

/* Checks every extension's framing and refuses duplicates, whichever type they
 * are (RFC 8446 4.2): a proxy that routes on the first server_name while the
 * backend reads the second could be steered past its routing. */
static enum sg_sniff_result parse_extensions(struct reader exts, struct sg_sniffed *out)
{
    uint64_t seen[65536 / 64]; /* one bit per extension type: 8 KiB of stack */
    struct reader sni = {NULL, 0};
    bool have_sni = false;

    memset(seen, 0, sizeof(seen));
    while (exts.left > 0) {
        unsigned type, ext_len;
        struct reader body;
        if (!take_u16(&exts, &type) || !take_u16(&exts, &ext_len) ||
            !take_span(&exts, ext_len, &body))
            return verdict(out, SG_SNIFF_MALFORMED, "extension length over the extensions block");
        uint64_t bit = (uint64_t)1 << (type % 64);
        if (seen[type / 64] & bit)
            return verdict(out, SG_SNIFF_MALFORMED, "duplicate extension");
        seen[type / 64] |= bit;
        if (type == TLS_EXT_SERVER_NAME) {
            sni = body;
            have_sni = true;
        }
    }
    if (!have_sni)
        return verdict(out, SG_SNIFF_NO_NAME, "no server_name extension");
    return parse_server_name(sni, out);
}

/* Parses a ClientHello body (after the 4-byte handshake header). Every
 * length must fit its container and the body must end with the extensions:
 * anything left over means the client and sixgate disagree on the framing. */
static enum sg_sniff_result parse_hello(const uint8_t *body, size_t body_len,
                                        struct sg_sniffed *out)
{
    struct reader r = {body, body_len};
    struct reader exts;
    unsigned v;

    if (!take_u16(&r, &v))
        return verdict(out, SG_SNIFF_MALFORMED, "ClientHello too short for its version");
    if (v >> 8 != 3)
        return verdict(out, SG_SNIFF_MALFORMED, "ClientHello version is not 3.x");
    if (!take_span(&r, TLS_RANDOM_LEN, NULL))
        return verdict(out, SG_SNIFF_MALFORMED, "ClientHello too short for its random");
    if (!take_u8(&r, &v) || v > TLS_SESSION_ID_MAX || !take_span(&r, v, NULL))
        return verdict(out, SG_SNIFF_MALFORMED, "bad session_id length");
    if (!take_u16(&r, &v) || v < 2 || v % 2 != 0 || !take_span(&r, v, NULL))
        return verdict(out, SG_SNIFF_MALFORMED, "bad cipher_suites length");
    if (!take_u8(&r, &v) || v < 1 || !take_span(&r, v, NULL))
        return verdict(out, SG_SNIFF_MALFORMED, "bad compression_methods length");
    /* Extensions were optional before TLS 1.2 (RFC 5246 7.4.1.2). */
    if (r.left == 0)
        return verdict(out, SG_SNIFF_NO_NAME, "ClientHello without extensions");
    if (!take_u16(&r, &v) || !take_span(&r, v, &exts))
        return verdict(out, SG_SNIFF_MALFORMED, "extensions length over the ClientHello");
    if (r.left != 0)
        return verdict(out, SG_SNIFF_MALFORMED, "data after the extensions");
    return parse_extensions(exts, out);
}

enum sg_sniff_result sg_sniff_tls(const uint8_t *buf, size_t len, uint8_t *scratch,
                                  struct sg_sniffed *out)
{
    struct hello_span span = {0, 0, false};
    const uint8_t *msg;

    out->name.len = 0;
    out->name.s[0] = '\0';
    out->raw_name = NULL;
    out->raw_name_len = 0;
    out->spoken = SG_SPOKE_UNKNOWN;
    enum sg_sniff_result r = find_hello(buf, len, &span, out);
    if (r != SG_SNIFF_FOUND)
        return r;
    if (span.fragmented) {
        /* Documented: a caller that never expects fragmentation may pass NULL
         * and gets a refusal instead of a crash when a client does it anyway. */
        if (scratch == NULL)
            return verdict(out, SG_SNIFF_TOO_LARGE, "fragmented ClientHello and no scratch buffer");
        join_fragments(buf, span.msg_len, scratch);
        msg = scratch;
    } else {
        msg = buf + span.first_payload;
    }
    return parse_hello(msg + TLS_HANDSHAKE_HEADER, span.msg_len - TLS_HANDSHAKE_HEADER, out);
}

size_t sg_tls_alert(uint8_t description, uint8_t out[SG_TLS_ALERT_LEN])
{
    /* TLS 1.2 record version: what a TLS 1.3 server also sends before its
     * ServerHello (RFC 8446 5.1), and what every TLS 1.2 client accepts. */
    out[0] = TLS_CONTENT_ALERT;
    out[1] = 3;
    out[2] = 3;
    out[3] = 0;
    out[4] = 2;
    out[5] = TLS_ALERT_LEVEL_FATAL;
    out[6] = description;
    return SG_TLS_ALERT_LEN;
}
