/* Reads the server_name (SNI) from a TLS ClientHello without terminating TLS. */
#ifndef SIXGATE_SNIFF_TLS_H
#define SIXGATE_SNIFF_TLS_H

#include <stddef.h>
#include <stdint.h>

#include "sixgate/sniff.h"

/* The largest ClientHello handshake message accepted (body plus 4-byte header). */
#define SG_TLS_HELLO_MAX (32u * 1024u)
/* The most raw bytes (records with their 5-byte headers) worth buffering to
 * find the ClientHello; past this the result is SG_SNIFF_TOO_LARGE. */
#define SG_TLS_SNIFF_MAX (SG_TLS_HELLO_MAX + 8u * 1024u)
/* The caller's scratch buffer for joining a handshake message that spans
 * several records must be at least this big. */
#define SG_TLS_SCRATCH_SIZE SG_TLS_HELLO_MAX

/* Parses the first <len> bytes a client sent on a TLS port. Stateless: call it
 * again with all bytes received so far (buf grows, never changes) when it says
 * NEED_MORE, once at least out->need bytes are there. Never reads past <len>.
 * <scratch> (SG_TLS_SCRATCH_SIZE bytes, contents irrelevant) is used only when
 * the ClientHello is fragmented over several records; one scratch buffer can be
 * shared by all connections of a thread. <scratch> may be NULL: a fragmented
 * ClientHello then gives TOO_LARGE instead of being joined.
 *
 * Results: FOUND with the normalised host_name; NO_NAME for a complete hello
 * without a server_name extension; BAD_NAME for a host_name that is not a
 * valid DNS name; WRONG_PROTOCOL when the first byte is not a TLS handshake
 * record (plain HTTP, SSLv2-style hello); MALFORMED for broken lengths,
 * versions, duplicate extensions or a first message other than ClientHello;
 * TOO_LARGE past the limits above. */
enum sg_sniff_result sg_sniff_tls(const uint8_t *buf, size_t len, uint8_t *scratch,
                                  struct sg_sniffed *out);

/* TLS alert descriptions sixgate sends when it refuses a connection. */
#define SG_TLS_ALERT_HANDSHAKE_FAILURE 40
#define SG_TLS_ALERT_DECODE_ERROR 50
#define SG_TLS_ALERT_INTERNAL_ERROR 80
#define SG_TLS_ALERT_UNRECOGNIZED_NAME 112

#define SG_TLS_ALERT_LEN 7
/* Writes a fatal alert record with <description> to <out>; returns SG_TLS_ALERT_LEN. */
size_t sg_tls_alert(uint8_t description, uint8_t out[SG_TLS_ALERT_LEN]);

#endif
