/* Map benchmark: for 1k, 100k and 1M routes, the time to load and check the
 * files (what a reload does off the event loop), the peak memory of a load,
 * the memory the frozen table keeps, and lookups per second (exact hits,
 * wildcard hits, misses). Each size runs in a child process of its own, so
 * that its peak memory is its own. Usage: map_bench [DIR] [SIZES...] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sixgate/config.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    while (f && fgets(line, sizeof(line), f)) {
        if (strncmp(line, "VmRSS:", 6) == 0)
            v = strtol(line + 6, NULL, 10);
    }
    if (f)
        fclose(f);
    return v;
}

static long peak_kib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/* One customer in twenty has a wildcard zone; about twenty sites share a
 * backend, as sites of one customer share a server. */
static void write_files(const char *dir, unsigned n)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/sixgate.yaml", dir);
    FILE *f = fopen(path, "w");
    fprintf(f, "listeners:\n  - name: https\n    listen: \"[::1]:8443\"\n    protocol: tls\n"
               "map: routes.yaml\n");
    fclose(f);
    snprintf(path, sizeof(path), "%s/routes.yaml", dir);
    f = fopen(path, "w");
    fprintf(f, "version: \"bench-%u\"\nroutes:\n", n);
    for (unsigned i = 0; i < n; i++) {
        unsigned cust = i / 20;
        if (i % 20 == 19)
            fprintf(f, "  \"*.c%u.example\":\n    backend: \"[2001:db8:%x:%x::5]:443\"\n", cust,
                    cust >> 16, cust & 0xffff);
        else
            fprintf(f, "  site%u.c%u.example:\n    backend: \"2001:db8:%x:%x::5\"\n", i, cust,
                    cust >> 16, cust & 0xffff);
    }
    fprintf(f, "fallback:\n  backend: \"[2001:db8::1]\"\n");
    fclose(f);
}

static void run_size(const char *dir, unsigned n)
{
    char main_path[512];
    snprintf(main_path, sizeof(main_path), "%s/sixgate.yaml", dir);
    long base = rss_kib();
    long first_peak = 0;
    double best = 1e9;
    struct sg_snapshot *s = NULL;
    int runs = n >= 1000000 ? 2 : 5;
    for (int r = 0; r < runs; r++) {
        struct sg_diag d;
        sg_diag_init(&d);
        double t0 = now();
        struct sg_snapshot *t = sg_config_load(main_path, &d);
        double dt = now() - t0;
        if (t == NULL) {
            sg_diag_print(&d, stderr, "map_bench: ");
            exit(1);
        }
        sg_diag_free(&d);
        if (dt < best)
            best = dt;
        if (r == 0)
            first_peak = peak_kib() - base;
        /* as in a reload, the old snapshot is alive while the new one loads */
        sg_snapshot_unref(s);
        s = t;
    }
    long peak = peak_kib() - base;

    /* Lookups: names prepared beforehand, a third each exact, wildcard, miss. */
    enum { NAMES = 1 << 16 };
    struct sg_name *names = malloc(NAMES * sizeof(*names));
    unsigned seed = 12345;
    for (unsigned i = 0; i < NAMES; i++) {
        seed = seed * 1103515245u + 12345u;
        unsigned k = (seed >> 8) % n, cust = k / 20;
        char buf[128];
        switch (i % 3) {
        case 0:
            k -= (k % 20 == 19);
            snprintf(buf, sizeof(buf), "site%u.c%u.example", k, k / 20);
            break;
        case 1:
            snprintf(buf, sizeof(buf), "www.shop%u.c%u.example", i, cust);
            break;
        default:
            snprintf(buf, sizeof(buf), "nosuch%u.other.example", k);
            break;
        }
        sg_name_normalize(buf, strlen(buf), 0, &names[i]);
    }
    unsigned long hits[4] = {0};
    long lookups = n >= 1000000 ? 3000000 : 6000000;
    double t0 = now();
    for (long i = 0; i < lookups; i++) {
        struct sg_route_result r;
        sg_routes_lookup(s->routes, &names[i & (NAMES - 1)], &r);
        hits[r.match]++;
    }
    double lt = now() - t0;
    printf("%9u routes  load+check %8.1f ms  peak: load +%6.1f MiB, reload +%6.1f MiB  "
           "routes %6.1f MiB (%zu backends)  %5.2f M lookups/s  (exact %lu, wildcard %lu, "
           "fallback %lu)\n",
           n, best * 1e3, (double)first_peak / 1024, (double)peak / 1024,
           (double)sg_routes_memory(s->routes) / (1024 * 1024), sg_routes_backends(s->routes),
           (double)lookups / lt / 1e6, hits[1], hits[2], hits[3]);
    fflush(stdout);
    free(names);
    t0 = now();
    sg_snapshot_unref(s);
    printf("%9u routes  freeing the snapshot took %.2f ms\n", n, (now() - t0) * 1e3);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "/tmp/sixgate-map-bench";
    mkdir(dir, 0755);
    unsigned sizes[8] = {1000, 100000, 1000000};
    int nsizes = 3;
    if (argc > 2) {
        nsizes = 0;
        for (int i = 2; i < argc && nsizes < 8; i++)
            sizes[nsizes++] = (unsigned)strtoul(argv[i], NULL, 10);
    }
    for (int i = 0; i < nsizes; i++) {
        write_files(dir, sizes[i]);
        pid_t pid = fork();
        if (pid == 0) {
            run_size(dir, sizes[i]);
            _exit(0);
        }
        int st;
        waitpid(pid, &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            return 1;
    }
    return 0;
}
