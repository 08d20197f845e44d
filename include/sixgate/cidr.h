/* Address ranges ("192.0.2.0/24", "2001:db8::/32"): who may send a PROXY
 * protocol header to a listener. */
#ifndef SIXGATE_CIDR_H
#define SIXGATE_CIDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct sg_cidr {
    int family; /* AF_INET or AF_INET6 */
    uint8_t addr[16];
    uint8_t prefix;
};

struct sg_cidr_list {
    size_t n;
    struct sg_cidr *items; /* malloc'd; freed by sg_cidr_list_free() */
};

/* Why a range was refused; sg_cidr_status_str() says it in English. */
enum sg_cidr_status {
    SG_CIDR_OK = 0,
    SG_CIDR_BAD_RANGE,       /* empty, or longer than any range can be */
    SG_CIDR_BAD_IP,          /* the part before '/' is no IPv4 or IPv6 address */
    SG_CIDR_BAD_PREFIX,      /* not 1 to 3 digits after '/' */
    SG_CIDR_PREFIX_TOO_LONG, /* more than 32 (IPv4) or 128 (IPv6) bits */
    SG_CIDR_HOST_BITS,       /* bits set past the prefix */
};

/* Parses "addr/prefix" or a bare address (a /32 or /128). Bits past the
 * prefix must be zero, so that a typo like "10.1.2.3/8" is caught. On
 * anything but SG_CIDR_OK, <out> is undefined. */
enum sg_cidr_status sg_cidr_parse(const char *text, size_t len, struct sg_cidr *out);

/* A short English phrase for a status, for diagnostics. */
const char *sg_cidr_status_str(enum sg_cidr_status st);

bool sg_cidr_list_add(struct sg_cidr_list *l, const struct sg_cidr *c);
void sg_cidr_list_free(struct sg_cidr_list *l);

/* Whether <sa> lies in any range of <l>. An IPv4-mapped IPv6 address
 * (::ffff:192.0.2.1) is matched as the IPv4 address it carries. */
bool sg_cidr_list_match(const struct sg_cidr_list *l, const struct sockaddr *sa);

#endif
