#include "sixgate/connection.h"

#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "connection_internal.h"
#include "sixgate/access_log.h"
#include "sixgate/proxy_header.h"

static const char *const state_names[] = {"ACCEPTED",   "PROXY_HEADER", "SNIFFING", "RESOLVING",
                                          "CONNECTING", "SPLICING",     "REFUSING", "CLOSED"};

#define BIT(s) (1u << (s))
/* Allowed moves: allowed[from] has bit <to> set. CLOSED is always allowed. */
static const unsigned allowed[SG_CONN_NSTATES] = {
    [SG_CONN_ACCEPTED] = BIT(SG_CONN_PROXY_HEADER) | BIT(SG_CONN_SNIFFING) |
                         BIT(SG_CONN_RESOLVING) | BIT(SG_CONN_CONNECTING),
    [SG_CONN_PROXY_HEADER] = BIT(SG_CONN_SNIFFING) | BIT(SG_CONN_RESOLVING) |
                             BIT(SG_CONN_CONNECTING) | BIT(SG_CONN_REFUSING),
    [SG_CONN_SNIFFING] = BIT(SG_CONN_RESOLVING) | BIT(SG_CONN_CONNECTING) | BIT(SG_CONN_REFUSING),
    [SG_CONN_RESOLVING] = BIT(SG_CONN_CONNECTING) | BIT(SG_CONN_REFUSING),
    [SG_CONN_CONNECTING] = BIT(SG_CONN_CONNECTING) | BIT(SG_CONN_SPLICING) | BIT(SG_CONN_REFUSING),
    [SG_CONN_SPLICING] = 0,
    [SG_CONN_REFUSING] = 0,
    [SG_CONN_CLOSED] = 0,
};

static void start_connect(struct sg_conn *c);
static void timer_cb(uv_timer_t *t);
static void client_event_cb(struct sg_watch *w, uint32_t events);
static void backend_event_cb(struct sg_watch *w, uint32_t events);


/* ---- state and timer ---------------------------------------------------- */

static uint64_t state_timeout_ms(const struct sg_conn *c, enum sg_conn_state s)
{
    const struct sg_timeouts *t = &c->snap->timeouts;
    switch (s) {
    case SG_CONN_PROXY_HEADER:
    case SG_CONN_SNIFFING:
        return t->sniff_ms;
    case SG_CONN_RESOLVING:
    case SG_CONN_CONNECTING:
        return t->connect_ms;
    case SG_CONN_SPLICING:
        return t->idle_ms;
    case SG_CONN_REFUSING:
        return LINGER_MS;
    default:
        return 0;
    }
}

/* The only writer of c->state. The timer gets the new state's meaning,
 * except between states that share one budget (PROXY_HEADER and SNIFFING
 * share the sniff time; RESOLVING and CONNECTING share the connect time). */
void conn_set_state_at(struct sg_conn *c, enum sg_conn_state to, int line)
{
    enum sg_conn_state from = c->state;
    if (to != SG_CONN_CLOSED && !(allowed[from] & BIT(to))) {
        sg_log_err(c->env->log, "conn#%llu: bug: %s -> %s is not an allowed move (line %d)",
                   (unsigned long long)c->id, state_names[from], state_names[to], line);
        assert(!"state move not allowed");
    }
    sg_log_debug(c->env->log, "conn#%llu %s -> %s (connection.c:%d)", (unsigned long long)c->id,
                 state_names[from], state_names[to], line);
    c->state = to;
    if (to == SG_CONN_CLOSED)
        return;
    bool same_budget =
        (from == SG_CONN_PROXY_HEADER && to == SG_CONN_SNIFFING) ||
        (from == SG_CONN_RESOLVING && to == SG_CONN_CONNECTING) ||
        (from == SG_CONN_CONNECTING && to == SG_CONN_CONNECTING);
    if (!same_budget)
        uv_timer_start(&c->timer, timer_cb, state_timeout_ms(c, to), 0);
}

static void timer_cb(uv_timer_t *t)
{
    struct sg_conn *c = CONN_OF(t, timer);
    switch (c->state) {
    case SG_CONN_PROXY_HEADER:
        conn_close(c, SG_OUT_SNIFF_TIMEOUT, "no complete PROXY header in time");
        break;
    case SG_CONN_SNIFFING:
        conn_close(c, SG_OUT_SNIFF_TIMEOUT,
                   c->early.len ? "incomplete hello or head in time" : "client sent nothing");
        break;
    case SG_CONN_RESOLVING:
    case SG_CONN_CONNECTING:
        conn_refuse(c, SG_OUT_CONNECT_TIMEOUT, "backend did not answer in time");
        break;
    case SG_CONN_SPLICING: {
        /* Reads only record the time; the timer checks it when it fires, so
         * the hot path never touches the timer heap. */
        uint64_t now = uv_now(c->env->loop), idle = c->snap->timeouts.idle_ms;
        if (now - c->last_activity >= idle)
            conn_close(c, SG_OUT_IDLE_TIMEOUT, "no data in either direction");
        else
            uv_timer_start(&c->timer, timer_cb, idle - (now - c->last_activity), 0);
        break;
    }
    case SG_CONN_REFUSING:
        conn_close(c, c->outcome, c->reason);
        break;
    default:
        break;
    }
}

/* ---- the end ------------------------------------------------------------ */

void conn_format_reason(struct sg_conn *c, const char *what, int err)
{
    snprintf(c->reason_buf, sizeof(c->reason_buf), "%s: %s", what, uv_strerror(err));
    c->reason = c->reason_buf;
}

/* The timer is the last handle: the sockets are plain descriptors, closed
 * at once, and an event for them still in the batch being dispatched finds
 * the struct CLOSED, not freed (libuv runs close callbacks after I/O). */
static void timer_closed_cb(uv_handle_t *h)
{
    struct sg_conn *c = CONN_OF(h, timer);
    free(c->early.buf);
    free(c->addrs);
    c->proto->sniff_end(&c->sniffer);
    sg_snapshot_unref(c->snap);
    free(c);
}

static void close_fd(struct sg_conn_side *s, bool reset)
{
    if (s->watch.fd >= 0)
        sg_sock_close(s->watch.fd, reset);
    s->watch.fd = -1;
}

/* The address the client connected to, asked of the kernel only when the
 * listener is bound to a wildcard address and something needs it. */
static const union sg_sockaddr *local_addr(struct sg_conn *c)
{
    if (!c->local_known && c->client.watch.fd >= 0) {
        socklen_t len = sizeof(c->local);
        if (getsockname(c->client.watch.fd, &c->local.sa, &len) == 0)
            c->local_known = true;
    }
    return &c->local;
}

/* What the access log and the counters say of the connection. */
static void fill_record(struct sg_conn *c, struct sg_access_record *r, bool logging)
{
    *r = (struct sg_access_record){
        .conn = c->id,
        .listener = c->listener,
        .client = &c->peer.sa,
        .via = c->has_via ? &c->via.sa : NULL,
        .local = logging ? &local_addr(c)->sa : &c->local.sa,
        .match = c->route.match,
        .route = c->route.pattern,
        .backend = c->route.backend,
        .backend_port = c->backend_port,
        .backend_addr = c->t_connected ? &c->backend_addr.sa : NULL,
        .bytes_from_client = c->up.bytes + c->early.sent,
        .bytes_from_backend = c->down.bytes,
        .t_accept = c->t_accept,
        .t_routed = c->t_routed,
        .t_connected = c->t_connected,
        .t_end = uv_hrtime(),
        .outcome = c->outcome,
        .reason = c->reason,
    };
    if (c->has_name) {
        r->name = c->n.name.s;
        r->name_len = c->n.name.len;
    } else if (c->raw_name_len > 0) {
        r->name = c->n.raw;
        r->name_len = c->raw_name_len;
    }
}

static void access_flush_cb(uv_timer_t *t)
{
    struct sg_conn_env *env = SG_CONTAINER_OF(t, struct sg_conn_env, access_timer);
    sg_access_buf_flush(&env->access, env->log);
}

int sg_conn_env_init(struct sg_conn_env *env)
{
    int err = uv_timer_init(env->loop, &env->access_timer);
    if (err < 0)
        return err;
    uv_unref((uv_handle_t *)&env->access_timer); /* a batch never keeps the loop alive */
    if (!sg_access_buf_init(&env->access))
        sg_log_warn(env->log, "access log: no memory for a batch; writing line by line");
    return 0;
}

void sg_conn_env_close(struct sg_conn_env *env)
{
    sg_access_buf_flush(&env->access, env->log);
    sg_access_buf_free(&env->access);
    uv_close((uv_handle_t *)&env->access_timer, NULL);
}

/* The one door out: records the outcome, logs the connection, closes both
 * sockets and cancels what is in flight. Safe to call again. <reset_client>
 * sends a TCP reset to the client instead of a FIN. */
void conn_close_ex(struct sg_conn *c, enum sg_outcome outcome, const char *reason,
                          bool reset_client)
{
    if (c->state == SG_CONN_CLOSED)
        return;
    if (c->state != SG_CONN_REFUSING || reason != c->reason) {
        c->outcome = outcome;
        if (reason != c->reason_buf)
            c->reason = reason;
    }
    if (c->state == SG_CONN_RESOLVING || c->state == SG_CONN_CONNECTING ||
        c->state == SG_CONN_SNIFFING || c->state == SG_CONN_PROXY_HEADER)
        c->early.sent = c->early.len - c->early.header_len;
    conn_set_state(c, SG_CONN_CLOSED);
    struct sg_access_record rec;
    bool logging = sg_access_log_on(c->env->log);
    fill_record(c, &rec, logging);
    if (logging && sg_access_buf_add(&c->env->access, c->env->log, &rec) &&
        !uv_is_active((uv_handle_t *)&c->env->access_timer))
        uv_timer_start(&c->env->access_timer, access_flush_cb, SG_ACCESS_FLUSH_MS, 0);
    sg_access_account(c->lstats, &rec);
    if (c->up.spliced + c->down.spliced > 0)
        sg_stat_add(&c->env->stats->spliced_bytes, c->up.spliced + c->down.spliced);

    struct sg_conn_env *env = c->env;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        env->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    env->nconns--;

    sg_pump_release(&c->up, env->pump.pipes);
    sg_pump_release(&c->down, env->pump.pipes);
    sg_resolve_cancel(&c->resolve); /* the lookup itself goes on, for the cache */
    if (c->client_entry != NULL)
        sg_client_release(env->clients, c->client_entry, c->client_sniffing);
    sg_events_forget(env->events, &c->client.watch);
    close_fd(&c->client, reset_client);
    close_fd(&c->backend, false);
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, timer_closed_cb);
    if (env->nconns == 0 && env->on_empty != NULL)
        env->on_empty(env);
}

void conn_close(struct sg_conn *c, enum sg_outcome outcome, const char *reason)
{
    conn_close_ex(c, outcome, reason, false);
}

void sg_conn_close_all(struct sg_conn_env *env)
{
    while (env->conns != NULL)
        conn_close_ex(env->conns, SG_OUT_STOPPED, "stopped after the drain time", true);
}

/* ---- refusals ----------------------------------------------------------- */

/* REFUSING: writes the rest of the refusal, shuts the client's side down,
 * then drops what the client still sends until its EOF. */
static void refusing_run(struct sg_conn *c)
{
    if (sg_sock_last_word(c->client.watch.fd, &c->client.ready, &c->refusal, &c->refusal_len,
                          &c->refusal_sent, c->env->pump.buf, SG_PUMP_READ_MAX))
        conn_close(c, c->outcome, c->reason);
}

/* Ends the connection with a refusal the client can read, in the words of
 * the listener's protocol (a TLS alert, an HTTP error; nothing for tcp:
 * then it is closed). The backend, if any, is closed at once; the client
 * side is shut down after the refusal is written and read until EOF or the
 * linger time, so that the refusal is not lost to a reset. */
void conn_refuse(struct sg_conn *c, enum sg_outcome outcome, const char *reason)
{
    if (c->state == SG_CONN_CLOSED || c->state == SG_CONN_REFUSING)
        return;
    c->outcome = outcome;
    if (reason != c->reason_buf)
        c->reason = reason;
    struct sg_refusal_facts facts = {.name_seen = c->has_name || c->raw_name_len > 0,
                                     .spoken = c->spoken};
    size_t len = 0;
    const uint8_t *bytes = c->proto->refusal(outcome, &facts, c->refusal_scratch, &len);
    if (bytes == NULL || len == 0) {
        conn_close(c, outcome, c->reason);
        return;
    }
    c->early.sent = c->early.len - c->early.header_len;
    close_fd(&c->backend, false);
    conn_set_state(c, SG_CONN_REFUSING);
    c->refusal = bytes;
    c->refusal_len = len;
    refusing_run(c);
}

/* ---- splicing ----------------------------------------------------------- */

/* A pump has finished: both done is the end; an error ends it at once. */
static void pump_finished(struct sg_conn *c, struct sg_pump *p)
{
    if (p->error == 0) {
        if (++c->directions_done == 2)
            conn_close(c, SG_OUT_OK, NULL);
        else
            (p == &c->up ? &c->down : &c->up)->other_done = true;
        return;
    }
    /* The pump names the socket that failed. A reset is passed on as a
     * reset, so that a truncated transfer never looks complete to the
     * client. */
    bool from_client = p == &c->up;
    bool client_side = p->failed == SG_PUMP_FROM ? from_client : !from_client;
    /* A peer that already sent its EOF and then resets (it closed with our
     * last bytes unread) has simply finished: not an error. */
    struct sg_pump *peer_reader = client_side ? &c->up : &c->down;
    int err = p->error;
    if (p->failed == SG_PUMP_TO && peer_reader->eof &&
        (err == -ENOTCONN || err == -EPIPE || err == -ECONNRESET)) {
        if (++c->directions_done == 2)
            conn_close(c, SG_OUT_OK, client_side ? "client closed first" : "backend closed first");
        return;
    }
    conn_format_reason(c, client_side ? "client" : "backend", uv_translate_sys_error(-err));
    conn_close_ex(c, client_side ? SG_OUT_CLIENT_ERROR : SG_OUT_BACKEND_ERROR, c->reason_buf,
                  !client_side);
}

/* Runs both directions after an event of either socket. */
static void splicing_run(struct sg_conn *c)
{
    uint64_t before = c->up.bytes + c->down.bytes;
    struct sg_pump *pumps[2] = {&c->up, &c->down};
    for (int i = 0; i < 2 && c->state == SG_CONN_SPLICING; i++) {
        struct sg_pump *p = pumps[i];
        if (!p->finished && sg_pump_run(p, &c->env->pump))
            pump_finished(c, p);
    }
    if (c->state != SG_CONN_SPLICING)
        return;
    if (c->up.bytes + c->down.bytes != before)
        c->last_activity = uv_now(c->env->loop);
    if (c->up.more || c->down.more)
        sg_events_again(c->env->events, &c->client.watch);
}

/* Connected: the PROXY header (when the backend wants one) and the early
 * bytes go first, in one write; what the backend does not take at once
 * is the up pump's first bytes. Then both directions run. */
static void start_splicing(struct sg_conn *c)
{
    uint8_t hdr[SG_PROXY_HEADER_MAX];
    size_t hlen = 0;
    if (c->route.backend->proxy_protocol != SG_PROXY_NONE)
        hlen = sg_proxy_header_encode(c->route.backend->proxy_protocol, &c->peer.sa,
                                      &local_addr(c)->sa, c->has_name ? c->n.name.s : NULL,
                                      c->has_name ? c->n.name.len : 0, hdr, sizeof(hdr));
    struct sg_early_bytes *e = &c->early;
    size_t body = e->len - e->header_len;
    e->sent = body;
    conn_set_state(c, SG_CONN_SPLICING);
    c->last_activity = uv_now(c->env->loop);
    sg_pump_init(&c->up, c->client.watch.fd, &c->client.ready, c->backend.watch.fd,
                 &c->backend.ready);
    sg_pump_init(&c->down, c->backend.watch.fd, &c->backend.ready, c->client.watch.fd,
                 &c->client.ready);
    int err = sg_pump_send_first(&c->up, hdr, hlen, body ? e->buf + e->header_len : NULL, body);
    if (err < 0) {
        conn_format_reason(c, "backend", uv_translate_sys_error(-err));
        conn_close_ex(c, err == -ENOMEM ? SG_OUT_INTERNAL : SG_OUT_BACKEND_ERROR, c->reason_buf,
                      true);
        return;
    }
    free(e->buf);
    e->buf = NULL;
    e->cap = e->len = 0;
    if (c->client.eof)
        sg_pump_eof(&c->up); /* the client is done already: shut the backend's side */
    splicing_run(c);
}

/* ---- connecting --------------------------------------------------------- */

static void connect_failed(struct sg_conn *c, enum sg_outcome outcome, const char *what, int err)
{
    char backend[SG_NAME_MAX + 16];
    snprintf(c->reason_buf, sizeof(c->reason_buf), "%s %s: %s", what,
             sg_backend_format(c->route.backend, c->backend_port, backend, sizeof(backend)),
             err ? uv_strerror(err) : "no address");
    c->reason = c->reason_buf;
    conn_refuse(c, outcome, c->reason_buf);
}

/* The connect failed with <err> (a negative errno): the next address of
 * the backend's name, or a refusal. */
static void connect_error(struct sg_conn *c, int err)
{
    close_fd(&c->backend, false);
    if (c->next_addr < c->naddrs) {
        start_connect(c);
        return;
    }
    connect_failed(c, SG_OUT_CONNECT_FAILED, "connect", uv_translate_sys_error(-err));
}

static void connected(struct sg_conn *c)
{
    c->t_connected = uv_hrtime();
    sg_histogram_observe(&c->env->stats->connect, (c->t_connected - c->t_routed) / 1000);
    start_splicing(c);
}

/* Connects to c->backend_addr, or to the next resolved address: one call
 * makes a non-blocking socket; it joins the event set once, and its first
 * writable event says the connect is done (an error event that it failed). */
static void start_connect(struct sg_conn *c)
{
    if (c->next_addr < c->naddrs)
        c->backend_addr.in6 = c->addrs[c->next_addr++];
    conn_set_state(c, SG_CONN_CONNECTING);
    struct sg_conn_side *b = &c->backend;
    b->ready = (struct sg_ready){0};
    int r = sg_sock_connect(&c->backend_addr, &b->watch.fd);
    if (r == -EMFILE || r == -ENFILE || r == -ENOBUFS || r == -ENOMEM) {
        connect_failed(c, SG_OUT_INTERNAL, "socket for", uv_translate_sys_error(-r));
        return;
    }
    if (r < 0) {
        connect_error(c, r);
        return;
    }
    int err = sg_events_add(c->env->events, &b->watch);
    if (err < 0) {
        close_fd(b, false);
        connect_failed(c, SG_OUT_INTERNAL, "watch for", uv_translate_sys_error(-err));
        return;
    }
    if (r == 1) {
        b->ready.can_write = true;
        connected(c);
    }
}

static void backend_event_cb(struct sg_watch *w, uint32_t events)
{
    struct sg_conn *c = CONN_OF(w, backend.watch);
    if (c->state == SG_CONN_CLOSED || w->fd < 0)
        return;
    sg_ready_note(&c->backend.ready, events);
    if (c->state == SG_CONN_SPLICING) {
        splicing_run(c);
        return;
    }
    if (c->state != SG_CONN_CONNECTING || !c->backend.ready.can_write)
        return;
    if (events & (EPOLLERR | EPOLLHUP)) {
        /* only a failure is worth a question: the kernel keeps its reason */
        connect_error(c, sg_sock_error(w->fd));
        return;
    }
    connected(c);
}

/* The backend's addresses, from the resolver's cache or a lookup. A name
 * may resolve to anything, so each address is judged by the snapshot's
 * backend policy (as an IP literal was when the map loaded); those it
 * refuses are left out, and with none left the connection is refused. */
static void resolved(struct sg_conn *c, int status, const struct sockaddr_in6 *addrs,
                     size_t naddrs)
{
    if (status < 0 || naddrs == 0) {
        connect_failed(c, SG_OUT_RESOLVE_FAILED, "resolve", status);
        return;
    }
    free(c->addrs);
    if ((c->addrs = malloc(naddrs * sizeof(addrs[0]))) == NULL) {
        connect_failed(c, SG_OUT_INTERNAL, "resolve", UV_ENOMEM);
        return;
    }
    size_t kept = 0;
    enum sg_backend_verdict first = SG_BACKEND_OK;
    size_t first_at = 0;
    for (size_t i = 0; i < naddrs; i++) {
        enum sg_backend_verdict v =
            sg_backend_check(&c->snap->backend_policy, (const struct sockaddr *)&addrs[i]);
        if (v == SG_BACKEND_OK)
            c->addrs[kept++] = addrs[i];
        else if (first == SG_BACKEND_OK) {
            first = v;
            first_at = i;
        }
    }
    if (kept == 0) {
        char addr[SG_ADDR_TEXT_MAX];
        snprintf(c->reason_buf, sizeof(c->reason_buf), "%s: %s",
                 sg_sockaddr_format((const struct sockaddr *)&addrs[first_at], addr, sizeof(addr)),
                 sg_backend_verdict_str(first));
        c->reason = c->reason_buf;
        conn_refuse(c, SG_OUT_BACKEND_REFUSED, c->reason_buf);
        return;
    }
    c->naddrs = (uint8_t)kept;
    c->next_addr = 0;
    start_connect(c);
}

static void resolved_cb(struct sg_resolve_waiter *w, int status, const struct sockaddr_in6 *addrs,
                        size_t naddrs)
{
    struct sg_conn *c = CONN_OF(w, resolve);
    if (c->state == SG_CONN_RESOLVING)
        resolved(c, status, addrs, naddrs);
}

/* Routes by the name (or by nothing: the fallback; or, for a listener that
 * does not sniff, to its fixed backend) and starts the connect. The client
 * is still read while the backend is being reached: what it sends joins
 * the early bytes, up to their limit, past which the kernel holds the rest. */
void conn_route(struct sg_conn *c)
{
    /* The head is read: a keep-alive connection need not carry the HTTP
     * parser for the rest of its life. */
    c->proto->sniff_end(&c->sniffer);
    if (c->client_sniffing) {
        sg_client_routed(c->env->clients, c->client_entry);
        c->client_sniffing = false;
    }
    c->t_routed = uv_hrtime();
    sg_histogram_observe(&c->env->stats->sniff, (c->t_routed - c->t_accept) / 1000);
    if (!c->proto->sniffs) {
        c->route.match = SG_MATCH_EXACT;
        c->route.backend = &c->listener->backend;
        c->route.pattern = NULL;
    } else {
        static const struct sg_name empty;
        sg_routes_lookup(c->snap->routes, c->has_name ? &c->n.name : &empty, &c->route);
        if (c->route.match == SG_MATCH_NONE) {
            conn_refuse(c, SG_OUT_NO_ROUTE, c->has_name ? "no route for the name"
                                                   : "no name and no fallback");
            return;
        }
    }
    const struct sg_backend *b = c->route.backend;
    c->backend_port = b->port ? b->port
                      : c->listener->backend_port ? c->listener->backend_port
                                                  : sg_sockaddr_port(&c->local.sa);
    if (b->host == NULL) {
        c->backend_addr = b->ip;
        sg_sockaddr_set_port(&c->backend_addr, c->backend_port);
        start_connect(c);
        return;
    }
    conn_set_state(c, SG_CONN_RESOLVING);
    struct sockaddr_in6 addrs[SG_RESOLVE_MAX_ADDRS];
    size_t naddrs = 0;
    int status = 0;
    if (sg_resolve(c->env->resolver, b->host, c->backend_port, &c->resolve, resolved_cb, &status,
                   addrs, &naddrs) == SG_RESOLVE_DONE)
        resolved(c, status, addrs, naddrs);
}

/* Every event of the client's socket, whatever the state: the one place
 * that decides who reads it. */
static void client_event_cb(struct sg_watch *w, uint32_t events)
{
    struct sg_conn *c = CONN_OF(w, client.watch);
    if (c->state == SG_CONN_CLOSED)
        return;
    sg_ready_note(&c->client.ready, events);
    switch (c->state) {
    case SG_CONN_SPLICING:
        splicing_run(c);
        return;
    case SG_CONN_REFUSING:
        refusing_run(c);
        return;
    default:
        conn_early_run(c);
        return;
    }
}

/* ---- accept ------------------------------------------------------------- */

bool conn_admit_client(struct sg_conn *c)
{
    const struct sg_client_limits *l = &c->snap->per_client;
    if (c->env->clients == NULL || !sg_client_limits_on(l))
        return true;
    enum sg_client_verdict v = sg_client_admit(c->env->clients, l, &c->peer.sa, c->proto->sniffs,
                                               uv_now(c->env->loop), &c->client_entry);
    if (v == SG_CLIENT_OK) {
        c->client_sniffing = c->proto->sniffs;
        return true;
    }
    c->client_entry = NULL;
    conn_close_ex(c, v == SG_CLIENT_NO_MEMORY ? SG_OUT_INTERNAL : SG_OUT_CLIENT_LIMIT,
                  sg_client_verdict_str(v), true);
    return false;
}

static bool is_wildcard(const union sg_sockaddr *a)
{
    if (a->sa.sa_family == AF_INET6)
        return memcmp(&a->in6.sin6_addr, &in6addr_any, sizeof(in6addr_any)) == 0;
    return a->in.sin_addr.s_addr == htonl(INADDR_ANY);
}

void sg_conn_accept(struct sg_conn_env *env, int fd, const union sg_sockaddr *peer,
                    const union sg_sockaddr *bound, const struct sg_listener_spec *listener,
                    struct sg_listener_stats *stats)
{
    struct sg_conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        /* accepted already, so the listener goes on; this one is dropped */
        close(fd);
        sg_log_err(env->log, "accept on %s: out of memory", listener->name);
        if (stats != NULL) {
            sg_stat_add(&stats->accepted, 1);
            sg_stat_add(&stats->outcomes[SG_OUT_INTERNAL], 1);
        }
        return;
    }
    c->env = env;
    c->id = ((uint64_t)env->worker_id << 48) | ++env->next_id;
    c->t_accept = uv_hrtime();
    c->snap = sg_snapshot_ref(env->snap);
    c->listener = listener;
    c->proto = sg_protocol_ops(listener->protocol);
    c->lstats = stats;
    c->state = SG_CONN_ACCEPTED;
    c->peer = *peer;
    if (!is_wildcard(bound)) {
        c->local = *bound;
        c->local_known = true;
    } else {
        c->local = *bound; /* the port is right; the address is asked for when needed */
    }
    c->client.watch = (struct sg_watch){.fd = fd, .cb = client_event_cb};
    c->client.ready.can_write = true;
    c->backend.watch = (struct sg_watch){.fd = -1, .cb = backend_event_cb};
    uv_timer_init(env->loop, &c->timer);

    /* linked before anything can close it */
    c->next = env->conns;
    if (env->conns != NULL)
        env->conns->prev = c;
    env->conns = c;
    env->nconns++;
    if (stats != NULL) {
        sg_stat_add(&stats->accepted, 1);
        sg_stat_add(&stats->active, 1);
    }
    if (env->max_conns > 0 && env->nconns > env->max_conns) {
        conn_close_ex(c, SG_OUT_OVERLOAD, "connection limit reached", true);
        return;
    }
    /* behind a PROXY header the client is the address it carries */
    if (listener->accept_proxy.n == 0 && !conn_admit_client(c))
        return;
    int err = sg_events_add(env->events, &c->client.watch);
    if (err < 0) {
        conn_format_reason(c, "watch", uv_translate_sys_error(-err));
        conn_close(c, SG_OUT_INTERNAL, c->reason_buf);
        return;
    }
    conn_start_reading(c);
}
