/* The two configuration files — the operator's main file and the routing map
 * the control panel writes — parsed and validated into a snapshot. Every
 * error is reported, with FILE:LINE:COLUMN, and a file with any error yields
 * no snapshot at all: a broken map is never applied. docs/config.md is the
 * contract this module implements. */
#ifndef SIXGATE_CONFIG_H
#define SIXGATE_CONFIG_H

#include <stddef.h>

#include "sixgate/diag.h"
#include "sixgate/snapshot.h"

/* Where sixgate looks when no -c is given. */
#define SG_CONFIG_DEFAULT_PATH "/etc/sixgate/sixgate.yaml"

/* Reads a whole file into a malloc'd buffer (*buf, freed by the caller).
 * Returns 0 or a negative errno. */
typedef int (*sg_config_read_fn)(void *ctx, const char *path, unsigned char **buf, size_t *len);

/* The default reader: the file system, at most SG_CONFIG_FILE_MAX bytes. */
#define SG_CONFIG_FILE_MAX (512u * 1024u * 1024u)
int sg_config_read_file(void *ctx, const char *path, unsigned char **buf, size_t *len);

/* This host's addresses (ports 0): a backend on one of them, on one of
 * sixgate's own listening ports, is a loop. */
struct sg_host_addrs {
    size_t n;
    union sg_sockaddr *addrs; /* malloc'd; freed by sg_host_addrs_free() */
};

/* Fills <out> with the IPv4 and IPv6 addresses of every interface
 * (getifaddrs). Returns 0 or a negative errno (then <out> is empty). */
int sg_host_addrs_collect(struct sg_host_addrs *out);
void sg_host_addrs_free(struct sg_host_addrs *h);

/* Parses the main file (<main_path> names it in messages and anchors the map
 * path) and the map it refers to, which <reader> fetches (called with
 * <reader_ctx>). <host> (may be NULL: none) is this host's addresses, for
 * the backend policy; they are copied. Returns a snapshot with one
 * reference, or NULL with every error in <diag>. Pure apart from <reader>:
 * no logging, no sockets, no global state. */
struct sg_snapshot *sg_config_parse(const char *main_path, const unsigned char *main_buf,
                                    size_t main_len, sg_config_read_fn reader, void *reader_ctx,
                                    const struct sg_host_addrs *host, struct sg_diag *diag);

/* sg_config_parse() on the files themselves, with this host's addresses. */
struct sg_snapshot *sg_config_load(const char *main_path, struct sg_diag *diag);

/* Parses a duration: "250ms", "10s", "5m", "1h" (one number, one unit). */
bool sg_parse_duration(const char *s, uint64_t *ms);

/* Parses a size: "16384", "16KiB", "16k", "1MiB", "1M". */
bool sg_parse_size(const char *s, size_t *bytes);

#endif
