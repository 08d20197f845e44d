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

/* Parses "addr/prefix" or a bare address (a /32 or /128). Bits past the
 * prefix must be zero, so that a typo like "10.1.2.3/8" is caught. */
bool sg_cidr_parse(const char *text, size_t len, struct sg_cidr *out, const char **why);

bool sg_cidr_list_add(struct sg_cidr_list *l, const struct sg_cidr *c);
void sg_cidr_list_free(struct sg_cidr_list *l);

/* Whether <sa> lies in any range of <l>. An IPv4-mapped IPv6 address
 * (::ffff:192.0.2.1) is matched as the IPv4 address it carries. */
bool sg_cidr_list_match(const struct sg_cidr_list *l, const struct sockaddr *sa);

#endif
