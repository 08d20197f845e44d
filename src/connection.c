#include "sixgate/connection.h"

#include <assert.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sixgate/access_log.h"
#include "sixgate/protocol.h"
#include "sixgate/proxy_header.h"
#include "sixgate/pump.h"
#include "sixgate/resolver.h"
#include "util.h"

/* How long a refused client may keep sending before it is cut off. */
#define LINGER_MS 2000
/* The early-bytes buffer starts at this size and doubles up to its limit. */
#define EARLY_BUF_START 4096
/* The most of a name from the wire kept for the access log. */
#define RAW_NAME_MAX 255

enum sg_conn_state {
    SG_CONN_ACCEPTED,     /* [transient] set up, nothing read yet */
    SG_CONN_PROXY_HEADER, /* reading a PROXY header from a trusted upstream */
    SG_CONN_SNIFFING,     /* reading the hello or the request head */
    SG_CONN_RESOLVING,    /* [transient] the backend's name is being resolved */
    SG_CONN_CONNECTING,   /* [transient] connecting to the backend */
    SG_CONN_SPLICING,     /* both pumps run until both directions are done */
    SG_CONN_REFUSING,     /* writing a refusal, then lingering */
    SG_CONN_CLOSED,       /* handles are closing; freed when the last one is */
    SG_CONN_NSTATES
};

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

/* One socket of the connection. Who reads it: see side_read_start(). */
struct sg_conn_side {
    uv_tcp_t tcp;
    bool open;    /* initialised, and uv_close() not yet called */
    bool reading; /* a read is registered with libuv */
    bool eof;     /* client: EOF read before splicing began */
};

/* Everything the client sent before its backend was connected, replayed to
 * the backend first: a PROXY header from a trusted upstream (the first
 * <header_len> bytes, read but never forwarded), the hello or request head,
 * and what followed it. Freed once written. */
struct sg_early_bytes {
    uint8_t *buf;
    size_t len, cap;
    size_t max;        /* the protocol's limit plus room for a PROXY header */
    size_t header_len; /* a received PROXY header at the start of <buf> */
};

struct sg_conn {
    struct sg_conn_env *env;
    struct sg_conn *prev, *next; /* env->conns */
    uint64_t id;
    enum sg_conn_state state;

    struct sg_conn_side client;
    struct sg_conn_side backend;
    uv_timer_t timer;
    unsigned open_handles; /* handles initialised and whose close callback has not run */

    struct sg_snapshot *snap; /* reference held until the struct is freed */
    const struct sg_listener_spec *listener; /* in <snap> */
    const struct sg_protocol_ops *proto;     /* the listener's protocol */
    struct sg_listener_stats *lstats;

    union sg_sockaddr peer;  /* the client; from a PROXY header when trusted */
    union sg_sockaddr local; /* where the client connected (or the PROXY header's target) */
    union sg_sockaddr via;   /* the TCP peer when a PROXY header replaced it */
    bool has_via;

    struct sg_early_bytes early;
    struct sg_sniff_state sniffer;
    enum sg_sniff_spoken spoken; /* after WRONG_PROTOCOL, for the refusal */

    /* the name and where it leads */
    bool has_name;
    struct sg_name name;
    char raw_name[RAW_NAME_MAX];
    size_t raw_name_len;
    struct sg_route_result route;
    uint16_t backend_port;
    union sg_sockaddr backend_addr;

    struct sg_resolve_waiter resolve; /* waiting for the backend's name */
    struct sockaddr_in6 addrs[SG_RESOLVE_MAX_ADDRS]; /* its addresses, tried in turn */
    uint8_t naddrs, next_addr;
    uv_connect_t connect_req;

    /* the first write to the backend: PROXY header and the early bytes */
    uv_write_t head_req;
    uint8_t proxy_hdr[SG_PROXY_HEADER_MAX];
    size_t proxy_hdr_len;

    struct sg_pump up;   /* client -> backend */
    struct sg_pump down; /* backend -> client */
    unsigned directions_done;

    uv_write_t refuse_req;
    uv_shutdown_t refuse_shutdown;
    uint8_t refusal[SG_REFUSAL_SCRATCH];

    uint64_t t_accept, t_routed, t_connected; /* uv_hrtime() */
    uint64_t last_activity;                   /* uv_now(), milliseconds */
    enum sg_outcome outcome;
    const char *reason;   /* static text */
    char reason_buf[96];  /* or this, for messages with values */
};

static void conn_close(struct sg_conn *c, enum sg_outcome outcome, const char *reason);
static void conn_close_ex(struct sg_conn *c, enum sg_outcome outcome, const char *reason,
                          bool reset_client);
static void refuse(struct sg_conn *c, enum sg_outcome outcome, const char *reason);
static void start_connect(struct sg_conn *c);
static void timer_cb(uv_timer_t *t);
static void client_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void client_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void backend_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void backend_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

#define CONN_OF(ptr, member) SG_CONTAINER_OF(ptr, struct sg_conn, member)

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
#define conn_set_state(c, to) conn_set_state_at((c), (to), __LINE__)

static void conn_set_state_at(struct sg_conn *c, enum sg_conn_state to, int line)
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
        refuse(c, SG_OUT_CONNECT_TIMEOUT, "backend did not answer in time");
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

/* ---- reading ------------------------------------------------------------ */

/* Who reads a socket: only the connection registers read callbacks, here,
 * and only these two pairs: client_read_cb from accept to close, whatever
 * the state (so that no state change restarts the read, which costs epoll
 * calls), and backend_read_cb from the start of the connect (one epoll
 * registration covers the connect and the reads). Both hand their reads
 * to the pumps while splicing; a pump asks for a pause and a resume under
 * backpressure through pump_reading_cb, which comes back here. */
static int side_read_start(struct sg_conn *c, struct sg_conn_side *s)
{
    if (s->reading)
        return 0;
    int err = s == &c->client
                  ? uv_read_start((uv_stream_t *)&s->tcp, client_alloc_cb, client_read_cb)
                  : uv_read_start((uv_stream_t *)&s->tcp, backend_alloc_cb, backend_read_cb);
    if (err == 0)
        s->reading = true;
    return err;
}

static void side_read_stop(struct sg_conn_side *s)
{
    if (!s->reading)
        return;
    uv_read_stop((uv_stream_t *)&s->tcp);
    s->reading = false;
}

static int pump_reading_cb(struct sg_pump *p, bool on)
{
    struct sg_conn *c = p->data;
    struct sg_conn_side *s = p == &c->up ? &c->client : &c->backend;
    if (on)
        return side_read_start(c, s);
    side_read_stop(s);
    return 0;
}

/* ---- the end ------------------------------------------------------------ */

static void format_reason(struct sg_conn *c, const char *what, int err)
{
    snprintf(c->reason_buf, sizeof(c->reason_buf), "%s: %s", what, uv_strerror(err));
    c->reason = c->reason_buf;
}

static void maybe_free(struct sg_conn *c)
{
    if (c->open_handles > 0)
        return;
    free(c->early.buf);
    c->proto->sniff_end(&c->sniffer);
    sg_snapshot_unref(c->snap);
    free(c);
}

static void client_closed_cb(uv_handle_t *h)
{
    struct sg_conn *c = CONN_OF(h, client.tcp);
    c->open_handles--;
    maybe_free(c);
}

static void backend_closed_cb(uv_handle_t *h)
{
    struct sg_conn *c = CONN_OF(h, backend.tcp);
    c->open_handles--;
    maybe_free(c);
}

static void timer_closed_cb(uv_handle_t *h)
{
    struct sg_conn *c = CONN_OF(h, timer);
    c->open_handles--;
    maybe_free(c);
}

static void close_backend(struct sg_conn *c, uv_close_cb cb)
{
    if (!c->backend.open)
        return;
    c->backend.open = false;
    c->backend.reading = false;
    uv_close((uv_handle_t *)&c->backend.tcp, cb);
}

/* What the access log and the counters say of the connection. */
static void fill_record(const struct sg_conn *c, struct sg_access_record *r)
{
    *r = (struct sg_access_record){
        .conn = c->id,
        .listener = c->listener,
        .client = &c->peer.sa,
        .via = c->has_via ? &c->via.sa : NULL,
        .local = &c->local.sa,
        .match = c->route.match,
        .route = c->route.pattern,
        .backend = c->route.backend,
        .backend_port = c->backend_port,
        .backend_addr = c->t_connected ? &c->backend_addr.sa : NULL,
        .bytes_from_client = c->up.bytes + c->early.len - c->early.header_len,
        .bytes_from_backend = c->down.bytes,
        .t_accept = c->t_accept,
        .t_routed = c->t_routed,
        .t_connected = c->t_connected,
        .t_end = uv_hrtime(),
        .outcome = c->outcome,
        .reason = c->reason,
    };
    if (c->has_name) {
        r->name = c->name.s;
        r->name_len = c->name.len;
    } else if (c->raw_name_len > 0) {
        r->name = c->raw_name;
        r->name_len = c->raw_name_len;
    }
}

/* The one door out: records the outcome, logs the connection, closes every
 * handle and cancels what is in flight. Safe to call again. <reset_client>
 * sends a TCP reset to the client instead of a FIN. */
static void conn_close_ex(struct sg_conn *c, enum sg_outcome outcome, const char *reason,
                          bool reset_client)
{
    if (c->state == SG_CONN_CLOSED)
        return;
    if (c->state != SG_CONN_REFUSING || reason != c->reason) {
        c->outcome = outcome;
        if (reason != c->reason_buf)
            c->reason = reason;
    }
    if (c->state == SG_CONN_SPLICING) {
        sg_pump_stop(&c->up);
        sg_pump_stop(&c->down);
    }
    conn_set_state(c, SG_CONN_CLOSED);
    struct sg_access_record rec;
    fill_record(c, &rec);
    sg_access_log(c->env->log, &rec);
    sg_access_account(c->lstats, &rec);

    struct sg_conn_env *env = c->env;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        env->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    env->nconns--;

    sg_resolve_cancel(&c->resolve); /* the lookup itself goes on, for the cache */
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, timer_closed_cb);
    c->client.open = false;
    if (reset_client)
        uv_tcp_close_reset(&c->client.tcp, client_closed_cb);
    else
        uv_close((uv_handle_t *)&c->client.tcp, client_closed_cb);
    close_backend(c, backend_closed_cb);
    if (env->nconns == 0 && env->on_empty != NULL)
        env->on_empty(env);
}

static void conn_close(struct sg_conn *c, enum sg_outcome outcome, const char *reason)
{
    conn_close_ex(c, outcome, reason, false);
}

void sg_conn_close_all(struct sg_conn_env *env)
{
    while (env->conns != NULL)
        conn_close_ex(env->conns, SG_OUT_STOPPED, "stopped after the drain time", true);
}

/* ---- refusals ----------------------------------------------------------- */

static void refuse_shutdown_cb(uv_shutdown_t *req, int status)
{
    struct sg_conn *c = CONN_OF(req, refuse_shutdown);
    if (status == UV_ECANCELED)
        return;
    if (status < 0)
        conn_close(c, c->outcome, c->reason);
}

static void refuse_write_cb(uv_write_t *req, int status)
{
    struct sg_conn *c = CONN_OF(req, refuse_req);
    if (status == UV_ECANCELED || c->state == SG_CONN_CLOSED)
        return;
    if (status < 0 || uv_shutdown(&c->refuse_shutdown, (uv_stream_t *)&c->client.tcp,
                                  refuse_shutdown_cb) < 0)
        conn_close(c, c->outcome, c->reason);
}

/* Ends the connection with a refusal the client can read, in the words of
 * the listener's protocol (a TLS alert, an HTTP error; nothing for tcp:
 * then it is closed). The backend, if any, is closed at once; the client
 * side is shut down after the refusal is written and read until EOF or the
 * linger time, so that the refusal is not lost to a reset. */
static void refuse(struct sg_conn *c, enum sg_outcome outcome, const char *reason)
{
    if (c->state == SG_CONN_CLOSED || c->state == SG_CONN_REFUSING)
        return;
    c->outcome = outcome;
    if (reason != c->reason_buf)
        c->reason = reason;
    struct sg_refusal_facts facts = {.name_seen = c->has_name || c->raw_name_len > 0,
                                     .spoken = c->spoken};
    size_t len = 0;
    const uint8_t *bytes = c->proto->refusal(outcome, &facts, c->refusal, &len);
    if (bytes == NULL || len == 0) {
        conn_close(c, outcome, c->reason);
        return;
    }
    close_backend(c, backend_closed_cb);
    conn_set_state(c, SG_CONN_REFUSING);
    uv_buf_t b = uv_buf_init((char *)bytes, (unsigned)len);
    if (uv_write(&c->refuse_req, (uv_stream_t *)&c->client.tcp, &b, 1, refuse_write_cb) < 0 ||
        side_read_start(c, &c->client) < 0)
        conn_close(c, outcome, c->reason);
}

/* ---- splicing ----------------------------------------------------------- */

static void pump_done_cb(struct sg_pump *p, int status, enum sg_pump_side failed)
{
    struct sg_conn *c = p->data;
    if (c->state != SG_CONN_SPLICING)
        return;
    if (status == 0) {
        if (++c->directions_done == 2)
            conn_close(c, SG_OUT_OK, NULL);
        else
            sg_pump_other_done(p == &c->up ? &c->down : &c->up);
        return;
    }
    /* The pump names the stream that failed. A reset is passed on as a
     * reset, so that a truncated transfer never looks complete to the
     * client. */
    bool from_client = p == &c->up;
    bool client_side = failed == SG_PUMP_FROM ? from_client : !from_client;
    /* A peer that already sent its EOF and then resets (it closed with our
     * last bytes unread) has simply finished: not an error. */
    struct sg_pump *peer_reader = client_side ? &c->up : &c->down;
    if (failed == SG_PUMP_TO && peer_reader->eof &&
        (status == UV_ENOTCONN || status == UV_EPIPE || status == UV_ECONNRESET)) {
        if (++c->directions_done == 2)
            conn_close(c, SG_OUT_OK, client_side ? "client closed first" : "backend closed first");
        return;
    }
    format_reason(c, client_side ? "client" : "backend", status);
    conn_close_ex(c, client_side ? SG_OUT_CLIENT_ERROR : SG_OUT_BACKEND_ERROR, c->reason_buf,
                  !client_side);
}

/* Called as soon as the backend is connected, with the head (PROXY header
 * and early bytes) already queued on it: libuv writes a stream's data in
 * the order it was given, so the pumps may start at once. Both sockets are
 * being read already (or the client paused on a full early buffer, or at
 * its EOF), so the pumps only take over what the read callbacks get. */
static void start_splicing(struct sg_conn *c)
{
    conn_set_state(c, SG_CONN_SPLICING);
    c->last_activity = uv_now(c->env->loop);
    sg_pump_init(&c->up, (uv_stream_t *)&c->client.tcp, (uv_stream_t *)&c->backend.tcp,
                 pump_done_cb, pump_reading_cb, c);
    sg_pump_init(&c->down, (uv_stream_t *)&c->backend.tcp, (uv_stream_t *)&c->client.tcp,
                 pump_done_cb, pump_reading_cb, c);
    c->up.last_activity = &c->last_activity;
    c->down.last_activity = &c->last_activity;
    int err = 0;
    if (c->client.eof)
        sg_pump_eof(&c->up); /* the client is done already: shut the backend's side */
    else
        err = side_read_start(c, &c->client);
    if (err == 0 && c->state == SG_CONN_SPLICING)
        err = side_read_start(c, &c->backend);
    if (err < 0) {
        format_reason(c, "start", err);
        conn_close(c, SG_OUT_INTERNAL, c->reason_buf);
    }
}

static void backend_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct sg_conn *c = CONN_OF(h, backend.tcp);
    *buf = c->env->read_buf;
}

/* Only the pump takes what the backend sends; before splicing begins
 * (between connect and the connect callback) nothing arrives. */
static void backend_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct sg_conn *c = CONN_OF(s, backend.tcp);
    if (c->state == SG_CONN_SPLICING)
        sg_pump_read(&c->down, nread, buf);
}

static void head_write_cb(uv_write_t *req, int status)
{
    struct sg_conn *c = CONN_OF(req, head_req);
    free(c->early.buf); /* written (or cancelled): nothing reads it any more */
    c->early.buf = NULL;
    c->early.cap = 0;
    if (status == UV_ECANCELED || c->state == SG_CONN_CLOSED)
        return;
    if (status < 0) {
        format_reason(c, "backend", status);
        conn_close_ex(c, SG_OUT_BACKEND_ERROR, c->reason_buf, true);
    }
}

/* Queues the PROXY header (when the backend wants one) and the early bytes
 * as the backend's first write. Returns false when the connection closed. */
static bool send_head(struct sg_conn *c)
{
    if (c->route.backend->proxy_protocol != SG_PROXY_NONE)
        c->proxy_hdr_len = sg_proxy_header_encode(
            c->route.backend->proxy_protocol, &c->peer.sa, &c->local.sa,
            c->has_name ? c->name.s : NULL, c->has_name ? c->name.len : 0, c->proxy_hdr,
            sizeof(c->proxy_hdr));
    uv_buf_t bufs[2];
    unsigned n = 0;
    if (c->proxy_hdr_len > 0)
        bufs[n++] = uv_buf_init((char *)c->proxy_hdr, (unsigned)c->proxy_hdr_len);
    if (c->early.len > c->early.header_len)
        bufs[n++] = uv_buf_init((char *)c->early.buf + c->early.header_len,
                                (unsigned)(c->early.len - c->early.header_len));
    if (n == 0) {
        free(c->early.buf);
        c->early.buf = NULL;
        c->early.cap = 0;
        return true;
    }
    int err = uv_write(&c->head_req, (uv_stream_t *)&c->backend.tcp, bufs, n, head_write_cb);
    if (err < 0) {
        format_reason(c, "backend", err);
        conn_close(c, SG_OUT_BACKEND_ERROR, c->reason_buf);
        return false;
    }
    return true;
}

/* ---- connecting --------------------------------------------------------- */

static void connect_failed(struct sg_conn *c, enum sg_outcome outcome, const char *what, int err)
{
    char backend[SG_NAME_MAX + 16];
    snprintf(c->reason_buf, sizeof(c->reason_buf), "%s %s: %s", what,
             sg_backend_format(c->route.backend, c->backend_port, backend, sizeof(backend)),
             err ? uv_strerror(err) : "no address");
    c->reason = c->reason_buf;
    refuse(c, outcome, c->reason_buf);
}

static void backend_retry_closed_cb(uv_handle_t *h)
{
    struct sg_conn *c = CONN_OF(h, backend.tcp);
    c->open_handles--;
    if (c->state == SG_CONN_CLOSED)
        maybe_free(c);
    else
        start_connect(c);
}

static void connect_cb(uv_connect_t *req, int status)
{
    struct sg_conn *c = CONN_OF(req, connect_req);
    if (status == UV_ECANCELED || c->state == SG_CONN_CLOSED)
        return;
    if (status < 0) {
        if (c->next_addr < c->naddrs) {
            /* Another address of the backend's name: a failed socket cannot
             * connect again, so close it and start afresh. */
            close_backend(c, backend_retry_closed_cb);
            return;
        }
        connect_failed(c, SG_OUT_CONNECT_FAILED, "connect", status);
        return;
    }
    c->t_connected = uv_hrtime();
    uv_tcp_nodelay(&c->backend.tcp, 1);
    sg_histogram_observe(&c->env->stats->connect, (c->t_connected - c->t_routed) / 1000);
    if (send_head(c))
        start_splicing(c);
}

/* Connects to c->backend_addr, or to the next resolved address. */
static void start_connect(struct sg_conn *c)
{
    if (c->next_addr < c->naddrs)
        c->backend_addr.in6 = c->addrs[c->next_addr++];
    conn_set_state(c, SG_CONN_CONNECTING);
    int err = uv_tcp_init(c->env->loop, &c->backend.tcp);
    if (err < 0) {
        connect_failed(c, SG_OUT_INTERNAL, "socket for", err);
        return;
    }
    c->backend.open = true;
    c->open_handles++;
    err = uv_tcp_connect(&c->connect_req, &c->backend.tcp, &c->backend_addr.sa, connect_cb);
    if (err < 0) {
        connect_failed(c, SG_OUT_CONNECT_FAILED, "connect", err);
        return;
    }
    side_read_start(c, &c->backend); /* a failure here shows again when splicing starts */
}

/* The backend's addresses, from the resolver's cache or a lookup. */
static void resolved(struct sg_conn *c, int status, const struct sockaddr_in6 *addrs,
                     size_t naddrs)
{
    if (status < 0 || naddrs == 0) {
        connect_failed(c, SG_OUT_RESOLVE_FAILED, "resolve", status);
        return;
    }
    c->naddrs = (uint8_t)naddrs;
    c->next_addr = 0;
    memcpy(c->addrs, addrs, naddrs * sizeof(addrs[0]));
    start_connect(c);
}

static void resolved_cb(struct sg_resolve_waiter *w, int status, const struct sockaddr_in6 *addrs,
                        size_t naddrs)
{
    struct sg_conn *c = CONN_OF(w, resolve);
    if (c->state == SG_CONN_RESOLVING)
        resolved(c, status, addrs, naddrs);
}

/* Routes by c->name (or by nothing: the fallback; or, for a listener that
 * does not sniff, to its fixed backend) and starts the connect. The client
 * is still read while the backend is being reached: what it sends joins
 * the early bytes, up to their limit, past which reading pauses and the
 * kernel holds the rest. */
static void route(struct sg_conn *c)
{
    /* The head is read: a keep-alive connection need not carry the HTTP
     * parser for the rest of its life. */
    c->proto->sniff_end(&c->sniffer);
    c->t_routed = uv_hrtime();
    sg_histogram_observe(&c->env->stats->sniff, (c->t_routed - c->t_accept) / 1000);
    if (!c->proto->sniffs) {
        c->route.match = SG_MATCH_EXACT;
        c->route.backend = &c->listener->backend;
        c->route.pattern = NULL;
    } else {
        struct sg_name empty = {0};
        sg_routes_lookup(c->snap->routes, c->has_name ? &c->name : &empty, &c->route);
        if (c->route.match == SG_MATCH_NONE) {
            refuse(c, SG_OUT_NO_ROUTE, c->has_name ? "no route for the name"
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

/* ---- sniffing ----------------------------------------------------------- */

static void keep_raw_name(struct sg_conn *c, const struct sg_sniffed *out)
{
    if (out->raw_name == NULL)
        return;
    c->raw_name_len = out->raw_name_len < RAW_NAME_MAX ? out->raw_name_len : RAW_NAME_MAX;
    memcpy(c->raw_name, out->raw_name, c->raw_name_len);
}

static void sniff_verdict(struct sg_conn *c, enum sg_sniff_result r, const struct sg_sniffed *out)
{
    switch (r) {
    case SG_SNIFF_NEED_MORE:
        return;
    case SG_SNIFF_FOUND:
        c->has_name = true;
        c->name = out->name;
        route(c);
        return;
    case SG_SNIFF_NO_NAME:
        route(c);
        return;
    case SG_SNIFF_BAD_NAME:
        keep_raw_name(c, out);
        refuse(c, SG_OUT_BAD_REQUEST, out->detail ? out->detail : "invalid name");
        return;
    case SG_SNIFF_MALFORMED:
        keep_raw_name(c, out);
        refuse(c, SG_OUT_BAD_REQUEST, out->detail ? out->detail : "malformed");
        return;
    case SG_SNIFF_TOO_LARGE:
        refuse(c, SG_OUT_TOO_LARGE, out->detail ? out->detail : "too large");
        return;
    case SG_SNIFF_WRONG_PROTOCOL:
        c->spoken = out->spoken;
        refuse(c, SG_OUT_WRONG_PROTOCOL, out->detail ? out->detail : "wrong protocol");
        return;
    }
}

/* Runs the sniffer over the client's stream so far, of which the last
 * <fresh> bytes are new. */
static void sniff_process(struct sg_conn *c, size_t fresh)
{
    struct sg_sniffed out = {0};
    size_t start = c->early.header_len;
    enum sg_sniff_result r = c->proto->sniff(&c->sniffer, c->early.buf + start,
                                             c->early.len - start, fresh, c->env->tls_scratch,
                                             &out);
    sniff_verdict(c, r, &out);
}

static void start_sniffing(struct sg_conn *c);

/* A PROXY header from a trusted upstream: the addresses it carries replace
 * the TCP peer's everywhere; what follows it is the client's stream. */
static void proxy_header_process(struct sg_conn *c)
{
    struct sg_proxy_info info;
    switch (sg_proxy_header_decode(c->early.buf, c->early.len, &info)) {
    case SG_PROXY_HDR_NEED_MORE:
        if (c->early.len >= SG_PROXY_DECODE_MAX)
            conn_close_ex(c, SG_OUT_PROXY_REFUSED, "PROXY header too long", true);
        return;
    case SG_PROXY_HDR_INVALID:
        conn_close_ex(c, SG_OUT_PROXY_REFUSED, info.detail, true);
        return;
    case SG_PROXY_HDR_OK:
        break;
    }
    c->early.header_len = info.header_len;
    if (info.has_addresses) {
        c->via = c->peer;
        c->has_via = true;
        c->peer = info.src;
        c->local = info.dst;
    }
    start_sniffing(c);
}

static void client_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct sg_conn *c = CONN_OF(h, client.tcp);
    if (c->state == SG_CONN_SPLICING || c->state == SG_CONN_REFUSING) {
        /* the pump's buffer, or bytes a refused client still sends: dropped */
        *buf = c->env->read_buf;
        return;
    }
    struct sg_early_bytes *e = &c->early;
    if (e->cap - e->len < 1024 && e->cap < e->max) {
        size_t cap = e->cap ? e->cap * 2 : EARLY_BUF_START;
        if (cap > e->max)
            cap = e->max;
        uint8_t *n = realloc(e->buf, cap);
        if (n != NULL) {
            e->buf = n;
            e->cap = cap;
        }
    }
    /* A full buffer gives a zero-length read: UV_ENOBUFS in the read callback. */
    *buf = uv_buf_init((char *)e->buf + e->len, (unsigned)(e->cap - e->len));
}

/* While the backend is being reached: bytes join the early bytes; a full
 * buffer pauses reading; an EOF is kept for the pump to pass on. */
static void read_while_connecting(struct sg_conn *c, ssize_t nread)
{
    if (nread == UV_ENOBUFS || nread == UV_EOF) {
        side_read_stop(&c->client);
        c->client.eof = nread == UV_EOF;
        return;
    }
    if (nread < 0) {
        format_reason(c, "client", (int)nread);
        conn_close(c, SG_OUT_CLIENT_GONE, c->reason_buf);
        return;
    }
    c->early.len += (size_t)nread;
}

/* Before routing: a PROXY header or the hello or head. */
static void read_while_sniffing(struct sg_conn *c, ssize_t nread)
{
    if (nread == UV_ENOBUFS) {
        struct sg_sniffed out = {.detail = "hello or head larger than the sniff buffer"};
        sniff_verdict(c, SG_SNIFF_TOO_LARGE, &out);
        return;
    }
    if (nread < 0) {
        if (nread == UV_EOF)
            conn_close(c, SG_OUT_CLIENT_GONE, "client closed before it was routed");
        else {
            format_reason(c, "client", (int)nread);
            conn_close(c, SG_OUT_CLIENT_GONE, c->reason_buf);
        }
        return;
    }
    c->early.len += (size_t)nread;
    if (c->state == SG_CONN_PROXY_HEADER)
        proxy_header_process(c);
    else
        sniff_process(c, (size_t)nread);
}

static void client_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct sg_conn *c = CONN_OF(s, client.tcp);
    if (nread == 0)
        return;
    switch (c->state) {
    case SG_CONN_SPLICING:
        sg_pump_read(&c->up, nread, buf);
        return;
    case SG_CONN_REFUSING: /* lingering: what the client sends is dropped */
        if (nread < 0)
            conn_close(c, c->outcome, c->reason);
        return;
    case SG_CONN_RESOLVING:
    case SG_CONN_CONNECTING:
        read_while_connecting(c, nread);
        return;
    case SG_CONN_PROXY_HEADER:
    case SG_CONN_SNIFFING:
        read_while_sniffing(c, nread);
        return;
    default:
        return;
    }
}

/* Sets the early bytes' limit for the listener's protocol, plus what a
 * PROXY header in front of them may take, and prepares the sniffer. */
static bool prepare_early(struct sg_conn *c)
{
    if (c->proto->sniffs && !c->proto->sniff_begin(&c->sniffer, c->snap))
        return false;
    size_t max = c->proto->early_max(c->snap);
    if (c->listener->accept_proxy.n > 0)
        max += SG_PROXY_DECODE_MAX;
    c->early.max = max > SG_PROXY_DECODE_MAX ? max : SG_PROXY_DECODE_MAX;
    return true;
}

static void start_sniffing(struct sg_conn *c)
{
    bool after_proxy_header = c->state == SG_CONN_PROXY_HEADER;
    int err = side_read_start(c, &c->client);
    if (err < 0) {
        format_reason(c, "client", err);
        conn_close(c, SG_OUT_CLIENT_GONE, c->reason_buf);
        return;
    }
    if (!c->proto->sniffs) {
        route(c);
        return;
    }
    conn_set_state(c, SG_CONN_SNIFFING);
    /* bytes after a PROXY header may already hold the hello or head */
    if (after_proxy_header && c->early.len > c->early.header_len)
        sniff_process(c, c->early.len - c->early.header_len);
}

/* The first read: a PROXY header when the listener expects one from this
 * peer, else the hello or head. */
static void start_reading(struct sg_conn *c)
{
    if (!prepare_early(c)) {
        conn_close(c, SG_OUT_INTERNAL, "out of memory");
        return;
    }
    if (c->listener->accept_proxy.n == 0) {
        start_sniffing(c);
        return;
    }
    if (!sg_cidr_list_match(&c->listener->accept_proxy, &c->peer.sa)) {
        conn_close_ex(c, SG_OUT_PROXY_REFUSED,
                      "this listener takes PROXY protocol connections only from accept_proxy",
                      true);
        return;
    }
    conn_set_state(c, SG_CONN_PROXY_HEADER);
    int err = side_read_start(c, &c->client);
    if (err < 0) {
        format_reason(c, "client", err);
        conn_close(c, SG_OUT_CLIENT_GONE, c->reason_buf);
    }
}

/* ---- accept ------------------------------------------------------------- */

void sg_conn_accept(struct sg_conn_env *env, uv_stream_t *server,
                    const struct sg_listener_spec *listener, struct sg_listener_stats *stats)
{
    struct sg_conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        /* Without memory the pending connection cannot even be accepted into
         * a handle; the listener's queue keeps it and the next attempt may
         * succeed. */
        sg_log_err(env->log, "accept on %s: out of memory", listener->name);
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
    uv_tcp_init(env->loop, &c->client.tcp);
    c->client.open = true;
    uv_timer_init(env->loop, &c->timer);
    c->open_handles = 2;

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

    int err = uv_accept(server, (uv_stream_t *)&c->client.tcp);
    int len = sizeof(c->peer);
    if (err == 0)
        err = uv_tcp_getpeername(&c->client.tcp, &c->peer.sa, &len);
    len = sizeof(c->local);
    if (err == 0)
        err = uv_tcp_getsockname(&c->client.tcp, &c->local.sa, &len);
    if (err < 0) {
        format_reason(c, "accept", err);
        conn_close(c, SG_OUT_CLIENT_GONE, c->reason_buf);
        return;
    }
    uv_tcp_nodelay(&c->client.tcp, 1);
    if (env->max_conns > 0 && env->nconns > env->max_conns) {
        conn_close_ex(c, SG_OUT_OVERLOAD, "connection limit reached", true);
        return;
    }
    start_reading(c);
}
