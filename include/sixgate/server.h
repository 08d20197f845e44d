/* The control thread: it binds listeners, starts the workers, and then only
 * reacts: to signals (SIGHUP reload, SIGTERM/SIGQUIT/SIGINT graceful stop,
 * SIGUSR1 reopen the access log), to changes of the map file, and to the
 * admin endpoint. It carries no client bytes. It holds the one published
 * snapshot, which reloads replace. */
#ifndef SIXGATE_SERVER_H
#define SIXGATE_SERVER_H

#include "sixgate/snapshot.h"

/* Runs sixgate with <snap> (loaded from <config_path>; the reference is
 * taken over) until it is stopped. Returns the process exit status. */
int sg_server_run(const char *config_path, struct sg_snapshot *snap);

#endif
