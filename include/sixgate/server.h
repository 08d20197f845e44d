/* The control thread (the main thread) and its loop: it binds listeners
 * (through reload.c, which keeps them), drops privileges, starts the workers,
 * and then only reacts: to SIGTERM/SIGQUIT/SIGINT (graceful stop), to SIGUSR1
 * (reopen the access log) and to the admin endpoint. Reloads (SIGHUP, the map
 * watch, the reload thread, publishing) are reload.c's, on the same loop. It
 * carries no client bytes. */
#ifndef SIXGATE_SERVER_H
#define SIXGATE_SERVER_H

#include "sixgate/snapshot.h"

/* Runs sixgate with <snap> (loaded from <config_path>; the reference is
 * taken over) until it is stopped. Returns the process exit status. */
int sg_server_run(const char *config_path, struct sg_snapshot *snap);

#endif
