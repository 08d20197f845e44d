/* What "workers: auto" counts: the cgroup quota parsers and the lookup of
 * a controller's path in /proc/self/cgroup. */
#include "sixgate/cpus.h"
#include "test.h"

TEST(quota_v2)
{
    CHECK_EQ(sg_cpu_quota_v2("max 100000\n"), 0);
    CHECK_EQ(sg_cpu_quota_v2("100000 100000\n"), 1);
    CHECK_EQ(sg_cpu_quota_v2("150000 100000\n"), 2); /* 1.5 CPUs: two workers */
    CHECK_EQ(sg_cpu_quota_v2("400000 100000"), 4);
    CHECK_EQ(sg_cpu_quota_v2("50000 100000"), 1);
    CHECK_EQ(sg_cpu_quota_v2(""), 0);
    CHECK_EQ(sg_cpu_quota_v2("garbage"), 0);
    CHECK_EQ(sg_cpu_quota_v2("100000"), 0);
}

TEST(quota_v1)
{
    CHECK_EQ(sg_cpu_quota_v1(-1, 100000), 0);
    CHECK_EQ(sg_cpu_quota_v1(200000, 100000), 2);
    CHECK_EQ(sg_cpu_quota_v1(250000, 100000), 3);
    CHECK_EQ(sg_cpu_quota_v1(100000, 0), 0);
}

TEST(cgroup_paths)
{
    const char *v1 = "12:cpu,cpuacct:/system.slice/sixgate.service\n"
                     "4:memory:/system.slice/sixgate.service\n"
                     "0::/system.slice/sixgate.service\n";
    char out[128];
    CHECK(sg_cgroup_path(v1, "cpu", out, sizeof(out)));
    CHECK_STR(out, "/system.slice/sixgate.service");
    CHECK(sg_cgroup_path(v1, "cpuacct", out, sizeof(out)));
    CHECK(sg_cgroup_path(v1, "", out, sizeof(out)));
    CHECK_STR(out, "/system.slice/sixgate.service");
    CHECK(!sg_cgroup_path(v1, "cpuset", out, sizeof(out)));
    CHECK(!sg_cgroup_path("4:memory:/x\n", "", out, sizeof(out)));
    CHECK(!sg_cgroup_path(v1, "cpu", out, 4)); /* too long for <out> */
    CHECK(sg_cgroup_path("0::/", "", out, sizeof(out)));
    CHECK_STR(out, "/");
}

TEST(available_is_at_least_one_and_capped)
{
    unsigned n = sg_cpus_available(64);
    CHECK(n >= 1 && n <= 64);
    CHECK_EQ(sg_cpus_available(1), 1);
}

TEST_MAIN(T(quota_v2), T(quota_v1), T(cgroup_paths), T(available_is_at_least_one_and_capped))
