/* The admin endpoint on the control loop: GET /metrics (Prometheus text) and
 * GET /healthz ("ok", or 503 "draining" during a graceful stop). It is meant
 * for loopback; config.c refuses another address unless told otherwise. */
#ifndef SIXGATE_ADMIN_H
#define SIXGATE_ADMIN_H

#include <stdbool.h>
#include <uv.h>

#include "sixgate/address.h"
#include "sixgate/log.h"
#include "sixgate/metrics.h"

struct sg_admin;

/* Fills <info> and up to SG_ADMIN_MAX_WORKERS worker stats pointers. */
#define SG_ADMIN_MAX_WORKERS 256
typedef void (*sg_admin_info_fn)(void *data, struct sg_metrics_info *info,
                                 struct sg_worker_stats **ws, size_t *nws);

/* Listens on <addr>; NULL after logging why. */
struct sg_admin *sg_admin_open(uv_loop_t *loop, const union sg_sockaddr *addr,
                               struct sg_logger *log, sg_admin_info_fn info, void *data);
void sg_admin_set_draining(struct sg_admin *a, bool draining);
/* Closes the listener and every admin connection; frees <a> once closed. */
void sg_admin_close(struct sg_admin *a);

#endif
