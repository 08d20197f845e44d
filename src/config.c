/* The config module's entry points: reading the files, hashing the map, and
 * putting a snapshot together from the main file (config_main.c) and the map
 * (config_map.c). */
#include "sixgate/config.h"

#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config_internal.h"

/* Defaults, documented in docs/config.md. */
#define DEFAULT_SNIFF_MS 10000
#define DEFAULT_CONNECT_MS 5000
#define DEFAULT_IDLE_MS 300000
#define DEFAULT_DRAIN_MS 30000
#define DEFAULT_HTTP_HEAD (16 * 1024)
#define DEFAULT_DEBOUNCE_MS 200
#define DEFAULT_DNS_TTL_MS 30000
#define DEFAULT_DNS_NEGATIVE_TTL_MS 5000

/* ---- files -------------------------------------------------------------- */

/* Reads <fd> to its end into a malloc'd buffer that starts at <cap> bytes
 * and doubles up to SG_CONFIG_FILE_MAX. Returns 0 or a negative errno. */
static int read_to_eof(int fd, size_t cap, unsigned char **buf, size_t *len)
{
    size_t n = 0;
    unsigned char *b = malloc(cap);
    if (b == NULL)
        return -ENOMEM;
    for (;;) {
        if (n == cap) {
            if (cap >= SG_CONFIG_FILE_MAX) {
                free(b);
                return -EFBIG;
            }
            unsigned char *nb = realloc(b, cap * 2);
            if (nb == NULL) {
                free(b);
                return -ENOMEM;
            }
            b = nb;
            cap *= 2;
        }
        ssize_t got = read(fd, b + n, cap - n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            int err = -errno;
            free(b);
            return err;
        }
        if (got == 0)
            break;
        n += (size_t)got;
    }
    *buf = b;
    *len = n;
    return 0;
}

int sg_config_read_file(void *ctx, const char *path, unsigned char **buf, size_t *len)
{
    (void)ctx;
    int err = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        err = -errno;
        goto out_close;
    }
    if (!S_ISREG(st.st_mode)) {
        err = -EINVAL;
        goto out_close;
    }
    if ((uint64_t)st.st_size > SG_CONFIG_FILE_MAX) {
        err = -EFBIG;
        goto out_close;
    }
    /* The file may grow while it is read (a writer not using rename): read
     * until EOF within the limit rather than trusting st_size. */
    err = read_to_eof(fd, (size_t)st.st_size + 1, buf, len);
out_close:
    close(fd);
    return err;
}

static void sha256_hex(const unsigned char *buf, size_t len, char out[65])
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    if (!EVP_Digest(buf, len, md, &mdlen, EVP_sha256(), NULL) || mdlen != 32) {
        memset(out, '0', 64);
        out[64] = '\0';
        return;
    }
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* ---- this host --------------------------------------------------------- */

int sg_host_addrs_collect(struct sg_host_addrs *out)
{
    *out = (struct sg_host_addrs){0};
    struct ifaddrs *list;
    if (getifaddrs(&list) != 0)
        return -errno;
    size_t n = 0;
    for (const struct ifaddrs *i = list; i != NULL; i = i->ifa_next)
        n += i->ifa_addr != NULL &&
             (i->ifa_addr->sa_family == AF_INET || i->ifa_addr->sa_family == AF_INET6);
    if (n > 0 && (out->addrs = calloc(n, sizeof(*out->addrs))) == NULL) {
        freeifaddrs(list);
        return -ENOMEM;
    }
    for (const struct ifaddrs *i = list; i != NULL; i = i->ifa_next) {
        if (i->ifa_addr == NULL)
            continue;
        union sg_sockaddr *a = &out->addrs[out->n];
        if (i->ifa_addr->sa_family == AF_INET)
            memcpy(&a->in, i->ifa_addr, sizeof(a->in));
        else if (i->ifa_addr->sa_family == AF_INET6)
            memcpy(&a->in6, i->ifa_addr, sizeof(a->in6));
        else
            continue;
        sg_sockaddr_set_port(a, 0);
        out->n++;
    }
    freeifaddrs(list);
    return 0;
}

void sg_host_addrs_free(struct sg_host_addrs *h)
{
    free(h->addrs);
    *h = (struct sg_host_addrs){0};
}

/* ---- the snapshot ------------------------------------------------------- */

/* Returns a snapshot holding every default, or NULL. */
static struct sg_snapshot *snapshot_with_defaults(void)
{
    struct sg_snapshot *s = sg_snapshot_new();
    if (s == NULL)
        return NULL;
    s->timeouts = (struct sg_timeouts){DEFAULT_SNIFF_MS, DEFAULT_CONNECT_MS, DEFAULT_IDLE_MS,
                                       DEFAULT_DRAIN_MS};
    s->http_head_max = DEFAULT_HTTP_HEAD;
    s->splice = SG_SPLICE_AUTO;
    s->per_client = (struct sg_client_limits){.ipv4_prefix = 32, .ipv6_prefix = 64};
    s->log_level = SG_LOG_INFO;
    s->access_log = "stderr";
    s->watch_map = true;
    s->watch_debounce_ms = DEFAULT_DEBOUNCE_MS;
    s->dns_ttl_ms = DEFAULT_DNS_TTL_MS;
    s->dns_negative_ttl_ms = DEFAULT_DNS_NEGATIVE_TTL_MS;
    return s;
}

/* Reads the map the main file names (if it names one) with <reader>, hashes
 * it and parses it into c->snap and c->routes. */
static void read_map(struct config_ctx *c, sg_config_read_fn reader, void *reader_ctx)
{
    const struct sg_snapshot *s = c->snap;
    bool routed = false;
    for (size_t i = 0; i < s->nlisteners; i++)
        routed |= s->listeners[i].protocol != SG_PROTO_TCP;
    if (s->map_path == NULL) {
        if (routed)
            sg_diag_add(c->diag, c->main_path, 0, 0,
                        "tls and http listeners need a routing map: add 'map: routes.yaml'");
        return;
    }
    unsigned char *map = NULL;
    size_t map_len = 0;
    int err = reader(reader_ctx, s->map_path, &map, &map_len);
    c->file = s->map_path;
    if (err < 0) {
        sg_diag_add(c->diag, s->map_path, 0, 0, "cannot read the map: %s", strerror(-err));
        return;
    }
    sha256_hex(map, map_len, c->snap->map_sha256);
    config_parse_map(c, map, map_len);
    free(map);
}

struct sg_snapshot *sg_config_parse(const char *main_path, const unsigned char *main_buf,
                                    size_t main_len, sg_config_read_fn reader, void *reader_ctx,
                                    const struct sg_host_addrs *host, struct sg_diag *diag)
{
    size_t errors_before = sg_diag_errors(diag);
    struct config_ctx c = {.file = main_path, .main_path = main_path, .diag = diag, .host = host};
    c.snap = snapshot_with_defaults();
    if (c.snap == NULL) {
        sg_diag_add(diag, main_path, 0, 0, "out of memory");
        return NULL;
    }
    c.routes = sg_routes_builder_new();
    if (c.routes == NULL) {
        sg_diag_add(diag, main_path, 0, 0, "out of memory");
        goto out_unref;
    }

    config_parse_main(&c, main_buf, main_len);
    read_map(&c, reader, reader_ctx);
    if (sg_diag_errors(diag) > errors_before)
        goto out_free_routes;
    /* sg_routes_build() frees the builder, whatever it returns. */
    c.snap->routes = sg_routes_build(c.routes);
    if (c.snap->routes == NULL) {
        sg_diag_add(diag, main_path, 0, 0, "out of memory");
        goto out_unref;
    }
    return c.snap;

out_free_routes:
    sg_routes_builder_free(c.routes);
out_unref:
    sg_snapshot_unref(c.snap);
    return NULL;
}

struct sg_snapshot *sg_config_load(const char *main_path, struct sg_diag *diag)
{
    unsigned char *buf = NULL;
    size_t len = 0;
    int err = sg_config_read_file(NULL, main_path, &buf, &len);
    if (err < 0) {
        sg_diag_add(diag, main_path, 0, 0, "cannot read the config: %s", strerror(-err));
        return NULL;
    }
    /* Without the host's addresses, loops are still caught through
     * loopback and the listeners' own addresses. */
    struct sg_host_addrs host;
    (void)sg_host_addrs_collect(&host);
    struct sg_snapshot *s =
        sg_config_parse(main_path, buf, len, sg_config_read_file, NULL, &host, diag);
    sg_host_addrs_free(&host);
    free(buf);
    return s;
}
