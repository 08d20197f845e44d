#include "sixgate/cpus.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

unsigned sg_cpu_quota_v1(long quota_us, long period_us)
{
    if (quota_us <= 0 || period_us <= 0)
        return 0;
    return (unsigned)((quota_us + period_us - 1) / period_us);
}

unsigned sg_cpu_quota_v2(const char *text)
{
    char *end;
    if (strncmp(text, "max", 3) == 0)
        return 0;
    long quota = strtol(text, &end, 10);
    if (end == text || *end != ' ')
        return 0;
    const char *p = end + 1;
    long period = strtol(p, &end, 10);
    if (end == p)
        return 0;
    return sg_cpu_quota_v1(quota, period);
}

bool sg_cgroup_path(const char *proc_cgroup, const char *controller, char *out, size_t cap)
{
    size_t clen = strlen(controller);
    for (const char *line = proc_cgroup; *line;) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        /* "ID:controllers:path"; v2's unified hierarchy has no controllers */
        const char *c1 = memchr(line, ':', len);
        const char *c2 = c1 ? memchr(c1 + 1, ':', len - (size_t)(c1 + 1 - line)) : NULL;
        if (c2 != NULL) {
            const char *list = c1 + 1;
            size_t llen = (size_t)(c2 - list);
            bool match = clen == 0 ? llen == 0 : false;
            for (const char *w = list; clen > 0 && w < c2;) {
                const char *comma = memchr(w, ',', (size_t)(c2 - w));
                size_t wlen = comma ? (size_t)(comma - w) : (size_t)(c2 - w);
                if (wlen == clen && memcmp(w, controller, clen) == 0)
                    match = true;
                w += wlen + 1;
            }
            size_t plen = len - (size_t)(c2 + 1 - line);
            if (match && plen < cap) {
                memcpy(out, c2 + 1, plen);
                out[plen] = '\0';
                return true;
            }
        }
        if (nl == NULL)
            break;
        line = nl + 1;
    }
    return false;
}

static bool read_text(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return false;
    size_t n = fread(buf, 1, cap - 1, f);
    fclose(f);
    buf[n] = '\0';
    return n > 0;
}

static long read_long(const char *path)
{
    char buf[64];
    return read_text(path, buf, sizeof(buf)) ? strtol(buf, NULL, 10) : -1;
}

/* The quota of this process's cgroup, v2 first, then v1; 0: none. */
static unsigned cgroup_quota(void)
{
    char self[4096], path[512], file[1024], text[128];
    if (!read_text("/proc/self/cgroup", self, sizeof(self)))
        return 0;
    if (sg_cgroup_path(self, "", path, sizeof(path))) {
        snprintf(file, sizeof(file), "/sys/fs/cgroup%s/cpu.max", path);
        if (read_text(file, text, sizeof(text)))
            return sg_cpu_quota_v2(text);
    }
    if (sg_cgroup_path(self, "cpu", path, sizeof(path))) {
        static const char *const mounts[] = {"/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"};
        for (size_t i = 0; i < sizeof(mounts) / sizeof(mounts[0]); i++) {
            snprintf(file, sizeof(file), "%s%s/cpu.cfs_quota_us", mounts[i], path);
            long quota = read_long(file);
            snprintf(file, sizeof(file), "%s%s/cpu.cfs_period_us", mounts[i], path);
            long period = read_long(file);
            if (period > 0)
                return sg_cpu_quota_v1(quota, period);
        }
    }
    return 0;
}

unsigned sg_cpus_available(unsigned max)
{
    cpu_set_t set;
    unsigned n = 0;
    if (sched_getaffinity(0, sizeof(set), &set) == 0)
        n = (unsigned)CPU_COUNT(&set);
    if (n == 0)
        n = 1;
    unsigned quota = cgroup_quota();
    if (quota > 0 && quota < n)
        n = quota;
    return n > max ? max : n;
}
