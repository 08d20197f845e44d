/* What a listener's protocol (tls, http, tcp) contributes to a connection:
 * how many early bytes it may hold, how the sniffer is fed, and the bytes
 * that tell a refused client why. One const table per protocol, so the
 * connection's state machine never asks which protocol it serves
 * (sniproxy's struct Protocol is the model). Pure: no socket, no clock. */
#ifndef SIXGATE_PROTOCOL_H
#define SIXGATE_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sixgate/metrics.h"
#include "sixgate/sniff.h"
#include "sixgate/sniff_tls.h"
#include "sixgate/snapshot.h"

struct sg_http_sniffer;

/* A connection's sniffer state while it sniffs. */
struct sg_sniff_state {
    size_t need;                  /* tls: bytes worth waiting for before parsing again */
    struct sg_http_sniffer *http; /* http: the parser (heap), freed by sniff_end */
};

/* What a refusal may depend on, besides the outcome. */
struct sg_refusal_facts {
    bool name_seen;              /* the client sent a name, valid or not */
    enum sg_sniff_spoken spoken; /* after WRONG_PROTOCOL: what the client spoke */
};

/* Room for the refusals that are built rather than static (TLS alerts). */
#define SG_REFUSAL_SCRATCH SG_TLS_ALERT_LEN

struct sg_protocol_ops {
    enum sg_protocol id;
    /* false for tcp: nothing to sniff, the listener's backend is the route */
    bool sniffs;
    /* How many bytes the client may send before its backend is connected,
     * PROXY header not counted: the hello or head, and what follows it in
     * the same segments. Past it reading pauses (or the sniffer refuses). */
    size_t (*early_max)(const struct sg_snapshot *snap);
    /* Prepares <st>. Returns false when out of memory. */
    bool (*sniff_begin)(struct sg_sniff_state *st, const struct sg_snapshot *snap);
    /* Looks at the <len> bytes the client sent so far (after any PROXY
     * header), of which the last <fresh> are new since the previous call.
     * <scratch> is SG_TLS_SCRATCH_SIZE bytes shared by the loop. */
    enum sg_sniff_result (*sniff)(struct sg_sniff_state *st, const uint8_t *buf, size_t len,
                                  size_t fresh, uint8_t *scratch, struct sg_sniffed *out);
    /* Releases what sniff_begin took; safe to call twice. */
    void (*sniff_end)(struct sg_sniff_state *st);
    /* The bytes that tell a client refused with <outcome> why, or NULL (a
     * plain close). The result is static or points into <scratch>. */
    const uint8_t *(*refusal)(enum sg_outcome outcome, const struct sg_refusal_facts *facts,
                              uint8_t scratch[SG_REFUSAL_SCRATCH], size_t *len);
};

/* The table of <p>; never NULL for a valid protocol. */
const struct sg_protocol_ops *sg_protocol_ops(enum sg_protocol p);

#endif
