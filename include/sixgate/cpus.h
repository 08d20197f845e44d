/* How many CPUs this process may use: what "workers: auto" means. The
 * machine's online CPUs overstate it in a container or under taskset: the
 * process's affinity mask and its cgroup's CPU quota say how many it gets. */
#ifndef SIXGATE_CPUS_H
#define SIXGATE_CPUS_H

#include <stdbool.h>
#include <stddef.h>

/* The CPUs of the affinity mask, capped by the cgroup quota (rounded up);
 * at least 1, at most <max>. */
unsigned sg_cpus_available(unsigned max);

/* The quota of a cgroup v2 "cpu.max" file ("max 100000", "150000 100000")
 * in CPUs, rounded up; 0 when there is none or the text is not one. */
unsigned sg_cpu_quota_v2(const char *text);

/* The same from cgroup v1's cpu.cfs_quota_us and cpu.cfs_period_us
 * (a quota of -1 is none). */
unsigned sg_cpu_quota_v1(long quota_us, long period_us);

/* The cgroup path of controller <controller> ("" for cgroup v2's unified
 * hierarchy) in the text of /proc/self/cgroup, into <out>; false if absent. */
bool sg_cgroup_path(const char *proc_cgroup, const char *controller, char *out, size_t cap);

#endif
