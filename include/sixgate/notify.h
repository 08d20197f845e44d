/* systemd's readiness protocol (sd_notify(3)) without libsystemd: one
 * datagram per state change to the socket named by $NOTIFY_SOCKET. */
#ifndef SIXGATE_NOTIFY_H
#define SIXGATE_NOTIFY_H

/* Sends <state> (e.g. "READY=1") when $NOTIFY_SOCKET is set; returns 0, or a
 * negative errno (also when the variable is unset: -ENOENT). */
int sg_notify(const char *state);

#endif
