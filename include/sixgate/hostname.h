/* Host names as sixgate compares them: validated and normalised once, at the
 * edge (SNI, Host header, config keys), so that every later comparison is a
 * plain byte comparison. */
#ifndef SIXGATE_HOSTNAME_H
#define SIXGATE_HOSTNAME_H

#include <stdbool.h>
#include <stddef.h>

/* A DNS name is at most 253 bytes in text form; a bracketed IPv6 literal
 * ("[" + 45 + "]") fits as well. */
#define SG_NAME_MAX 253

/* A normalised name: lower-case ASCII, no port, no trailing dot, NUL-terminated. */
struct sg_name {
    size_t len;
    char s[SG_NAME_MAX + 1];
};

enum sg_name_status {
    SG_NAME_OK = 0,
    SG_NAME_EMPTY,
    SG_NAME_TOO_LONG,
    SG_NAME_NON_ASCII,
    SG_NAME_BAD_CHAR,
    SG_NAME_BAD_LABEL,
    SG_NAME_BAD_PORT,
    SG_NAME_BAD_WILDCARD,
    SG_NAME_BAD_IP_LITERAL,
};

/* Flags for sg_name_normalize(). */
#define SG_NAME_ALLOW_PORT 0x1u     /* accept and drop ":port" (a Host header) */
#define SG_NAME_ALLOW_WILDCARD 0x2u /* accept "*." as the whole first label (a config key) */
#define SG_NAME_ALLOW_IP 0x4u       /* accept a "[v6]" literal (canonicalised) */

/* Validates <in> (not NUL-terminated, <len> bytes) and writes its normal form
 * to <out>. Accepted: labels of letters, digits, '-' and '_', 1 to 63 bytes
 * each, 253 bytes in all, one optional trailing dot (dropped); ASCII letters
 * are lower-cased. With the flags above, also a port, a leading "*." or an
 * IPv6 literal in brackets. Everything else is refused with a status that
 * says why; <out> is then undefined. */
enum sg_name_status sg_name_normalize(const char *in, size_t len, unsigned flags,
                                      struct sg_name *out);

/* A short English phrase for a status, for diagnostics. */
const char *sg_name_status_str(enum sg_name_status st);

/* Whether <n> is a wildcard pattern ("*.example.org"). */
bool sg_name_is_wildcard(const struct sg_name *n);

#endif
