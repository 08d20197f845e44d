/* What the sniffers (sniff_tls, sniff_http) report about the first bytes of a
 * client connection. Both are pure: they read bytes and never touch a socket. */
#ifndef SIXGATE_SNIFF_H
#define SIXGATE_SNIFF_H

#include <stddef.h>

#include "sixgate/hostname.h"

enum sg_sniff_result {
    SG_SNIFF_NEED_MORE = 0, /* a valid prefix: wait for out->need bytes in total */
    SG_SNIFF_FOUND,         /* out->name holds the normalised name to route by */
    SG_SNIFF_NO_NAME,       /* well formed, but it carries no name (fallback or refuse) */
    SG_SNIFF_BAD_NAME,      /* a name is present but is not a valid host name */
    SG_SNIFF_MALFORMED,     /* broken framing or structure */
    SG_SNIFF_TOO_LARGE,     /* over the configured or built-in limit */
    SG_SNIFF_WRONG_PROTOCOL /* e.g. plain HTTP on a TLS port, or TLS on an HTTP port */
};

/* WRONG_PROTOCOL: what the client seems to speak instead, so that a refusal
 * can be written in its language. */
enum sg_sniff_spoken { SG_SPOKE_UNKNOWN = 0, SG_SPOKE_HTTP, SG_SPOKE_TLS };

struct sg_sniffed {
    struct sg_name name; /* valid when FOUND */
    size_t need;   /* when NEED_MORE: total bytes received before another call can progress */
    const char *detail; /* static text for logs when not FOUND (e.g. "bad record length") */
    enum sg_sniff_spoken spoken; /* WRONG_PROTOCOL: what the client spoke */
    /* BAD_NAME: the name as received, for the access log (escaped there);
     * points into the caller's or the sniffer's buffer, valid until the next call */
    const char *raw_name;
    size_t raw_name_len;
};

/* A short stable token for logs and metrics: "need_more", "found", "no_name", ... */
const char *sg_sniff_result_str(enum sg_sniff_result r);

#endif
