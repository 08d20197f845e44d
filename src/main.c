/* sixgate: routes TLS by SNI, HTTP by Host and TCP by port to IPv6 backends,
 * without terminating TLS. This file only reads the command line. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sixgate/config.h"
#include "sixgate/server.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: sixgate [-c FILE]            run with the main config FILE\n"
            "       sixgate --check [-c FILE]    validate FILE and its map, print a summary\n"
            "       sixgate --route NAME [-c FILE]\n"
            "                                    show which backend NAME goes to, and why\n"
            "       sixgate --help | --version\n"
            "\n"
            "FILE defaults to %s. Signals: SIGHUP reloads, SIGTERM stops gracefully,\n"
            "SIGUSR1 reopens the access log. See docs/config.md.\n",
            SG_CONFIG_DEFAULT_PATH);
}

static struct sg_snapshot *load(const char *path)
{
    struct sg_diag d;
    sg_diag_init(&d);
    struct sg_snapshot *s = sg_config_load(path, &d);
    if (s == NULL) {
        /* FILE:LINE:COL first, as compilers print it, so editors can jump there */
        sg_diag_print(&d, stderr, "");
        if (sg_diag_errors(&d) > 1)
            fprintf(stderr, "sixgate: %zu errors in %s or its map; nothing was loaded\n",
                    sg_diag_errors(&d), path);
    }
    sg_diag_free(&d);
    return s;
}

static int check(const char *path)
{
    struct sg_snapshot *s = load(path);
    if (s == NULL)
        return 1;
    size_t addrs = 0;
    for (size_t i = 0; i < s->nlisteners; i++)
        addrs += s->listeners[i].naddrs;
    printf("%s: ok: %zu listeners on %zu addresses, %zu routes%s, %zu distinct backends, "
           "map %s sha256 %.16s%s%s\n",
           path, s->nlisteners, addrs, sg_routes_count(s->routes),
           sg_routes_has_fallback(s->routes) ? " and a fallback" : "",
           sg_routes_backends(s->routes), s->map_path ? s->map_path : "(none)", s->map_sha256,
           s->map_version ? " version " : "", s->map_version ? s->map_version : "");
    sg_snapshot_unref(s);
    return 0;
}

static int route(const char *path, const char *input)
{
    struct sg_name name;
    enum sg_name_status st =
        sg_name_normalize(input, strlen(input), SG_NAME_ALLOW_PORT | SG_NAME_ALLOW_IP, &name);
    if (st != SG_NAME_OK) {
        printf("%s: refused: %s\n", input, sg_name_status_str(st));
        return 1;
    }
    struct sg_snapshot *s = load(path);
    if (s == NULL)
        return 2;
    struct sg_route_result r;
    sg_routes_lookup(s->routes, &name, &r);
    int status = 0;
    switch (r.match) {
    case SG_MATCH_NONE:
        printf("%s: refused: no route matches and the map has no fallback\n", name.s);
        status = 1;
        break;
    case SG_MATCH_EXACT:
        printf("%s: exact route '%s'\n", name.s, r.pattern);
        break;
    case SG_MATCH_WILDCARD:
        printf("%s: wildcard route '%s' (the most specific wildcard that matches)\n", name.s,
               r.pattern);
        break;
    case SG_MATCH_FALLBACK:
        printf("%s: no route matches: the fallback\n", name.s);
        break;
    }
    for (size_t i = 0; r.backend != NULL && i < s->nlisteners; i++) {
        const struct sg_listener_spec *l = &s->listeners[i];
        if (l->protocol == SG_PROTO_TCP || l->naddrs == 0)
            continue;
        uint16_t port = l->backend_port ? l->backend_port : sg_sockaddr_port(&l->addrs[0].addr.sa);
        char buf[SG_NAME_MAX + 16];
        printf("  %s listener %s (%s): %s%s%s\n", sg_protocol_str(l->protocol), l->name,
               l->addrs[0].text, sg_backend_format(r.backend, port, buf, sizeof(buf)),
               r.backend->host ? " (resolved to AAAA when a client connects)" : "",
               r.backend->proxy_protocol ? r.backend->proxy_protocol == 1 ? ", PROXY v1"
                                                                          : ", PROXY v2"
                                         : "");
    }
    sg_snapshot_unref(s);
    return status;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"check", no_argument, NULL, 't'},
        {"route", required_argument, NULL, 'r'},  {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},      {NULL, 0, NULL, 0},
    };
    const char *path = SG_CONFIG_DEFAULT_PATH, *name = NULL;
    bool do_check = false;
    int c;
    while ((c = getopt_long(argc, argv, "c:thV", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            path = optarg;
            break;
        case 't':
            do_check = true;
            break;
        case 'r':
            name = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("sixgate %s\n", SIXGATE_VERSION);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "sixgate: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    if (name != NULL)
        return route(path, name);
    if (do_check)
        return check(path);
    struct sg_snapshot *s = load(path);
    if (s == NULL)
        return 1;
    return sg_server_run(path, s);
}
