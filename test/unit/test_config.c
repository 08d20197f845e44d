/* Config parsing: every directory under fixtures/config/ is a case with a
 * sixgate.yaml (and usually a map). good_* must load; bad_* must fail with
 * exactly the lines of its expected.txt, all errors in one pass. */
#include <dirent.h>
#include <unistd.h>

#include "sixgate/config.h"
#include "test.h"

#define FIXTURES "fixtures/config"

static char *diag_text(const struct sg_diag *d)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    sg_diag_print(d, f, "");
    fclose(f);
    return buf;
}

/* Loads <dir>/sixgate.yaml with paths relative to <dir>, as the messages
 * should show them. */
static struct sg_snapshot *load_case(const char *dir, struct sg_diag *d)
{
    char cwd[4096];
    if (getcwd(cwd, sizeof(cwd)) == NULL || chdir(dir) != 0)
        return NULL;
    struct sg_snapshot *s = sg_config_load("sixgate.yaml", d);
    if (chdir(cwd) != 0)
        abort();
    return s;
}

TEST(every_fixture_case)
{
    DIR *dir = opendir(FIXTURES);
    CHECK(dir != NULL);
    struct dirent *e;
    int cases = 0, bad = 0;
    bool update = getenv("SG_UPDATE_EXPECTED") != NULL;
    while ((e = readdir(dir)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[512];
        snprintf(path, sizeof(path), FIXTURES "/%s", e->d_name);
        struct sg_diag d;
        sg_diag_init(&d);
        struct sg_snapshot *s = load_case(path, &d);
        char *got = diag_text(&d);
        cases++;
        if (strncmp(e->d_name, "good_", 5) == 0) {
            if (s == NULL) {
                fprintf(stderr, "  %s: unexpected errors:\n%s", e->d_name, got);
                bad++;
            }
        } else {
            char exp_path[600];
            snprintf(exp_path, sizeof(exp_path), "%s/expected.txt", path);
            size_t n = 0;
            unsigned char *exp = test_read_file(exp_path, &n);
            if (update) {
                FILE *f = fopen(exp_path, "w");
                fputs(got, f);
                fclose(f);
            } else if (s != NULL || exp == NULL || strlen(got) != n || memcmp(got, exp, n) != 0) {
                fprintf(stderr, "  %s: %s\n--- expected\n%.*s--- got\n%s", e->d_name,
                        s ? "loaded but must fail" : "wrong messages", (int)n,
                        exp ? (char *)exp : "", got);
                bad++;
            }
            free(exp);
        }
        free(got);
        sg_diag_free(&d);
        sg_snapshot_unref(s);
    }
    closedir(dir);
    CHECK_INT(cases, >=, 15);
    CHECK_EQ(bad, 0);
}

static const char *route(const struct sg_snapshot *s, const char *name, enum sg_match *m)
{
    static char buf[128];
    struct sg_name n;
    if (sg_name_normalize(name, strlen(name), SG_NAME_ALLOW_IP, &n) != SG_NAME_OK)
        return "invalid";
    struct sg_route_result r;
    sg_routes_lookup(s->routes, &n, &r);
    *m = r.match;
    if (r.backend == NULL)
        return "-";
    snprintf(buf, sizeof(buf), "%s pp%u", sg_backend_format(r.backend, 443, buf + 64, 64),
             r.backend->proxy_protocol);
    return buf;
}

TEST(full_config_values)
{
    struct sg_diag d;
    sg_diag_init(&d);
    struct sg_snapshot *s = load_case(FIXTURES "/good_full", &d);
    CHECK(s != NULL);
    CHECK_EQ(s->workers, 2);
    CHECK_EQ(s->nlisteners, 3);
    CHECK_STR(s->listeners[0].name, "https");
    CHECK_EQ(s->listeners[0].protocol, SG_PROTO_TLS);
    CHECK_EQ(s->listeners[0].naddrs, 2);
    CHECK_STR(s->listeners[0].addrs[1].text, "[::]:8443");
    CHECK_EQ(s->listeners[1].protocol, SG_PROTO_HTTP);
    CHECK_EQ(s->listeners[1].accept_proxy.n, 2);
    CHECK_EQ(s->listeners[2].protocol, SG_PROTO_TCP);
    char buf[64];
    CHECK_STR(sg_backend_format(&s->listeners[2].backend, 2201, buf, sizeof(buf)),
              "[2001:db8:42::5]:22");
    CHECK_EQ(s->listeners[2].backend.proxy_protocol, SG_PROXY_V2);
    CHECK_EQ(s->timeouts.sniff_ms, 10000);
    CHECK_EQ(s->timeouts.connect_ms, 5000);
    CHECK_EQ(s->timeouts.idle_ms, 300000);
    CHECK_EQ(s->timeouts.drain_ms, 30000);
    CHECK_EQ(s->http_head_max, 16384);
    CHECK_EQ(s->max_connections, 50000);
    CHECK_EQ(s->log_level, SG_LOG_DEBUG);
    CHECK_STR(s->access_log, "logs/access.log");
    CHECK(s->has_admin);
    CHECK(!s->watch_map);
    CHECK_EQ(s->watch_debounce_ms, 250);
    CHECK_EQ(s->dns_ttl_ms, 60000);
    CHECK_EQ(s->dns_negative_ttl_ms, 2000);
    CHECK(s->has_backend_networks);
    CHECK_EQ(s->backend_networks.n, 2);
    CHECK(s->backend_policy.networks == &s->backend_networks);
    CHECK_EQ(s->backend_policy.nlisten, 6);
    CHECK_STR(s->user, "sixgate");
    CHECK_STR(s->map_path, "maps/routes.yaml");
    CHECK_STR(s->map_version, "2026-11-28.7");
    CHECK_EQ(strlen(s->map_sha256), 64);
    CHECK_EQ(sg_routes_count(s->routes), 4);
    enum sg_match m;
    CHECK_STR(route(s, "www.example.org", &m), "[2001:db8:10::5]:443 pp0");
    CHECK_EQ(m, SG_MATCH_EXACT);
    CHECK_STR(route(s, "a.pi.example.net", &m), "[2001:db8:20::7]:8443 pp1");
    CHECK_EQ(m, SG_MATCH_WILDCARD);
    CHECK_STR(route(s, "shop.example.com", &m), "shop.backends.example:443 pp0");
    CHECK_STR(route(s, "short.example.com", &m), "[2001:db8:30::1]:8080 pp0");
    CHECK_STR(route(s, "nobody.example", &m), "[2001:db8::1]:443 pp0");
    CHECK_EQ(m, SG_MATCH_FALLBACK);
    sg_snapshot_unref(s);
    sg_diag_free(&d);
}

TEST(defaults)
{
    struct sg_diag d;
    sg_diag_init(&d);
    struct sg_snapshot *s = load_case(FIXTURES "/good_minimal", &d);
    CHECK(s != NULL);
    CHECK_EQ(s->timeouts.sniff_ms, 10000);
    CHECK_EQ(s->timeouts.idle_ms, 300000);
    CHECK_EQ(s->http_head_max, 16384);
    CHECK_EQ(s->workers, 0);
    CHECK_EQ(s->dns_ttl_ms, 30000);
    CHECK_EQ(s->dns_negative_ttl_ms, 5000);
    CHECK_STR(s->access_log, "stderr");
    CHECK(!s->has_admin);
    CHECK(s->watch_map);
    CHECK(s->map_version == NULL);
    CHECK(!sg_routes_has_fallback(s->routes));
    sg_snapshot_unref(s);
    sg_diag_free(&d);
}

TEST(durations_and_sizes)
{
    uint64_t ms;
    size_t n;
    CHECK(sg_parse_duration("250ms", &ms) && ms == 250);
    CHECK(sg_parse_duration("10s", &ms) && ms == 10000);
    CHECK(sg_parse_duration("5m", &ms) && ms == 300000);
    CHECK(sg_parse_duration("1h", &ms) && ms == 3600000);
    CHECK(sg_parse_duration("168h", &ms));
    CHECK(!sg_parse_duration("169h", &ms));
    CHECK(!sg_parse_duration("10", &ms));
    CHECK(!sg_parse_duration("s", &ms));
    CHECK(!sg_parse_duration("-1s", &ms));
    CHECK(!sg_parse_duration("1.5s", &ms));
    CHECK(!sg_parse_duration("99999999999999999999999s", &ms));
    CHECK(sg_parse_size("16384", &n) && n == 16384);
    CHECK(sg_parse_size("16KiB", &n) && n == 16384);
    CHECK(sg_parse_size("16k", &n) && n == 16384);
    CHECK(sg_parse_size("1MiB", &n) && n == 1048576);
    CHECK(!sg_parse_size("1GiB", &n));
    CHECK(!sg_parse_size("", &n));
    CHECK(!sg_parse_size("x", &n));
}

/* The shipped configs (config/ and examples/) must pass validation. */
TEST(shipped_configs_validate)
{
    static const char *const dirs[] = {"../config", "../examples"};
    for (size_t i = 0; i < 2; i++) {
        struct sg_diag d;
        sg_diag_init(&d);
        struct sg_snapshot *s = load_case(dirs[i], &d);
        if (s == NULL) {
            char *t = diag_text(&d);
            fprintf(stderr, "%s", t);
            free(t);
        }
        CHECK(s != NULL);
        CHECK_INT(s->nlisteners, >=, 3);
        sg_snapshot_unref(s);
        sg_diag_free(&d);
    }
}

TEST_MAIN(T(every_fixture_case), T(full_config_values), T(defaults), T(durations_and_sizes),
          T(shipped_configs_validate))
