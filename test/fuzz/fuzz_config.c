/* Fuzzes the map parser (the control panel's input) through the whole
 * config path: a fixed main file, and the input as the map it refers to.
 * Invariants: a snapshot comes back exactly when no error was reported, and
 * every route in it can be looked up. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sixgate/config.h"

struct input {
    const uint8_t *data;
    size_t size;
};

static int read_input(void *ctx, const char *path, unsigned char **buf, size_t *len)
{
    (void)path;
    const struct input *in = ctx;
    *buf = malloc(in->size ? in->size : 1);
    if (*buf == NULL)
        return -12;
    memcpy(*buf, in->data, in->size);
    *len = in->size;
    return 0;
}

static const char main_yaml[] = "listeners:\n"
                                "  - name: https\n"
                                "    listen: \"[::1]:8443\"\n"
                                "    protocol: tls\n"
                                "map: routes.yaml\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct input in = {data, size};
    struct sg_diag d;
    sg_diag_init(&d);
    struct sg_snapshot *s = sg_config_parse("sixgate.yaml", (const unsigned char *)main_yaml,
                                            sizeof(main_yaml) - 1, read_input, &in, NULL, &d);
    if ((s == NULL) != (sg_diag_errors(&d) > 0))
        abort();
    if (s != NULL) {
        struct sg_name n;
        struct sg_route_result r;
        sg_name_normalize("www.example.org", 15, 0, &n);
        sg_routes_lookup(s->routes, &n, &r);
        if (r.match != SG_MATCH_NONE && r.backend == NULL)
            abort();
    }
    sg_snapshot_unref(s);
    sg_diag_free(&d);
    return 0;
}
