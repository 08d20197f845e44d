/* Socket addresses as they are written in the config ("[2001:db8::5]:443",
 * "192.0.2.1:80", "shop.backends.example") and in logs. */
#ifndef SIXGATE_ADDRESS_H
#define SIXGATE_ADDRESS_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "sixgate/hostname.h"

union sg_sockaddr {
    struct sockaddr sa;
    struct sockaddr_in in;
    struct sockaddr_in6 in6;
};

enum sg_addr_kind {
    SG_ADDR_IP,      /* a literal; the port is in <ip> as well when given */
    SG_ADDR_HOSTNAME /* a DNS name, resolved to AAAA when used */
};

struct sg_addr {
    enum sg_addr_kind kind;
    union sg_sockaddr ip; /* SG_ADDR_IP */
    struct sg_name host;  /* SG_ADDR_HOSTNAME */
    uint16_t port;        /* 0 when no port was written */
};

enum sg_addr_status {
    SG_ADDR_OK = 0,
    SG_ADDR_EMPTY,
    SG_ADDR_BAD_PORT,
    SG_ADDR_MISSING_PORT,
    SG_ADDR_BAD_IP,
    SG_ADDR_BAD_HOSTNAME,
    SG_ADDR_HOSTNAME_NOT_ALLOWED,
};

#define SG_ADDR_REQUIRE_PORT 0x1u   /* a listen address */
#define SG_ADDR_ALLOW_HOSTNAME 0x2u /* a backend may be a DNS name */

/* Parses "[v6]", "[v6]:port", "v6" (no port), "v4", "v4:port", and with
 * SG_ADDR_ALLOW_HOSTNAME "name" and "name:port". Ports are 1..65535. */
enum sg_addr_status sg_addr_parse(const char *text, size_t len, unsigned flags,
                                  struct sg_addr *out);

const char *sg_addr_status_str(enum sg_addr_status st);

/* "[2001:db8::1]:443" needs at most this many bytes with its NUL. */
#define SG_ADDR_TEXT_MAX 56

/* Formats <sa> (AF_INET or AF_INET6; others give "?") as "ip:port" or
 * "[ip]:port" into <buf>; returns <buf>. */
char *sg_sockaddr_format(const struct sockaddr *sa, char *buf, size_t cap);

/* Formats only the address of <sa>, without its port: "192.0.2.1", and
 * "2001:db8::1" or, with <brackets>, "[2001:db8::1]". Returns <buf>. */
char *sg_sockaddr_format_ip(const struct sockaddr *sa, bool brackets, char *buf, size_t cap);

/* The length of <sa> for bind() and connect(). */
socklen_t sg_sockaddr_len(const struct sockaddr *sa);

uint16_t sg_sockaddr_port(const struct sockaddr *sa);
void sg_sockaddr_set_port(union sg_sockaddr *sa, uint16_t port);

/* Whether two addresses are the same family, address and port. */
bool sg_sockaddr_equal(const struct sockaddr *a, const struct sockaddr *b);

#endif
