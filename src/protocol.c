#include "sixgate/protocol.h"

#include <stdlib.h>

#include "sixgate/sniff_http.h"
#include "sixgate/sniff_tls.h"

/* What a tcp listener's client may send before its backend is connected. */
#define TCP_EARLY_MAX (16u * 1024u)

static void no_sniff_end(struct sg_sniff_state *st)
{
    (void)st;
}

/* ---- tls ---------------------------------------------------------------- */

static size_t tls_early_max(const struct sg_snapshot *snap)
{
    (void)snap;
    return SG_TLS_SNIFF_MAX;
}

static bool tls_sniff_begin(struct sg_sniff_state *st, const struct sg_snapshot *snap)
{
    (void)snap;
    st->need = 0;
    return true;
}

/* sniff_tls is stateless and parses from the start each time: waiting for
 * the byte count it asked for keeps a hello sent a byte at a time O(n). */
static enum sg_sniff_result tls_sniff(struct sg_sniff_state *st, const uint8_t *buf, size_t len,
                                      size_t fresh, uint8_t *scratch, struct sg_sniffed *out)
{
    (void)fresh;
    if (len < st->need) {
        out->need = st->need;
        return SG_SNIFF_NEED_MORE;
    }
    enum sg_sniff_result r = sg_sniff_tls(buf, len, scratch, out);
    if (r == SG_SNIFF_NEED_MORE)
        st->need = out->need;
    return r;
}

static const uint8_t *tls_refusal(enum sg_outcome outcome, const struct sg_refusal_facts *facts,
                                  uint8_t scratch[SG_REFUSAL_SCRATCH], size_t *len)
{
    uint8_t desc;
    switch (outcome) {
    case SG_OUT_NO_ROUTE:
    case SG_OUT_BAD_REQUEST:
        desc = facts->name_seen ? SG_TLS_ALERT_UNRECOGNIZED_NAME : SG_TLS_ALERT_DECODE_ERROR;
        break;
    case SG_OUT_TOO_LARGE:
        desc = SG_TLS_ALERT_HANDSHAKE_FAILURE;
        break;
    case SG_OUT_WRONG_PROTOCOL:
        /* Plain HTTP on a TLS port gets an answer it can read; anything
         * else would not understand an alert either. */
        if (facts->spoken == SG_SPOKE_HTTP)
            return (const uint8_t *)sg_http_refusal_bytes(SG_HTTP_400_BAD_REQUEST, len);
        *len = 0;
        return NULL;
    default:
        desc = SG_TLS_ALERT_INTERNAL_ERROR;
        break;
    }
    *len = sg_tls_alert(desc, scratch);
    return scratch;
}

/* ---- http --------------------------------------------------------------- */

static size_t http_early_max(const struct sg_snapshot *snap)
{
    /* the head, plus room for what may follow it in the same segment */
    return snap->http_head_max + 4096;
}

static bool http_sniff_begin(struct sg_sniff_state *st, const struct sg_snapshot *snap)
{
    if (st->http == NULL && (st->http = malloc(sizeof(*st->http))) == NULL)
        return false;
    sg_http_sniffer_init(st->http, snap->http_head_max);
    return true;
}

/* llhttp is incremental: it gets only the new bytes. */
static enum sg_sniff_result http_sniff(struct sg_sniff_state *st, const uint8_t *buf, size_t len,
                                       size_t fresh, uint8_t *scratch, struct sg_sniffed *out)
{
    (void)scratch;
    return sg_http_sniffer_feed(st->http, buf + (len - fresh), fresh, out);
}

static void http_sniff_end(struct sg_sniff_state *st)
{
    free(st->http);
    st->http = NULL;
}

static const uint8_t *http_refusal(enum sg_outcome outcome, const struct sg_refusal_facts *facts,
                                   uint8_t scratch[SG_REFUSAL_SCRATCH], size_t *len)
{
    enum sg_http_refusal r;
    switch (outcome) {
    case SG_OUT_NO_ROUTE:
        r = SG_HTTP_421_MISDIRECTED;
        break;
    case SG_OUT_TOO_LARGE:
        r = SG_HTTP_431_TOO_LARGE;
        break;
    case SG_OUT_CONNECT_FAILED:
    case SG_OUT_BACKEND_REFUSED:
        r = SG_HTTP_502_BAD_GATEWAY;
        break;
    case SG_OUT_RESOLVE_FAILED:
    case SG_OUT_OVERLOAD:
        r = SG_HTTP_503_UNAVAILABLE;
        break;
    case SG_OUT_CONNECT_TIMEOUT:
        r = SG_HTTP_504_GATEWAY_TIMEOUT;
        break;
    case SG_OUT_WRONG_PROTOCOL:
        /* a TLS hello on an HTTP port: answer in TLS */
        if (facts->spoken == SG_SPOKE_TLS) {
            *len = sg_tls_alert(SG_TLS_ALERT_HANDSHAKE_FAILURE, scratch);
            return scratch;
        }
        r = SG_HTTP_400_BAD_REQUEST;
        break;
    default:
        r = SG_HTTP_400_BAD_REQUEST;
        break;
    }
    return (const uint8_t *)sg_http_refusal_bytes(r, len);
}

/* ---- tcp ---------------------------------------------------------------- */

static size_t tcp_early_max(const struct sg_snapshot *snap)
{
    (void)snap;
    return TCP_EARLY_MAX;
}

/* A tcp client has said nothing that could be answered: it is closed. */
static const uint8_t *tcp_refusal(enum sg_outcome outcome, const struct sg_refusal_facts *facts,
                                  uint8_t scratch[SG_REFUSAL_SCRATCH], size_t *len)
{
    (void)outcome;
    (void)facts;
    (void)scratch;
    *len = 0;
    return NULL;
}

static const struct sg_protocol_ops protocols[] = {
    [SG_PROTO_TLS] = {.id = SG_PROTO_TLS,
                      .sniffs = true,
                      .early_max = tls_early_max,
                      .sniff_begin = tls_sniff_begin,
                      .sniff = tls_sniff,
                      .sniff_end = no_sniff_end,
                      .refusal = tls_refusal},
    [SG_PROTO_HTTP] = {.id = SG_PROTO_HTTP,
                       .sniffs = true,
                       .early_max = http_early_max,
                       .sniff_begin = http_sniff_begin,
                       .sniff = http_sniff,
                       .sniff_end = http_sniff_end,
                       .refusal = http_refusal},
    [SG_PROTO_TCP] = {.id = SG_PROTO_TCP,
                      .sniffs = false,
                      .early_max = tcp_early_max,
                      .sniff_begin = NULL,
                      .sniff = NULL,
                      .sniff_end = no_sniff_end,
                      .refusal = tcp_refusal},
};

const struct sg_protocol_ops *sg_protocol_ops(enum sg_protocol p)
{
    return &protocols[p];
}
