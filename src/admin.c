#include "sixgate/admin.h"
#include "sixgate/listener.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REQUEST_MAX 8192
#define ADMIN_TIMEOUT_MS 5000
/* Connections served at once; more are accepted and closed at once, so a
 * local client that holds connections open cannot grow sixgate's memory
 * (each holds a REQUEST_MAX buffer) and cannot stall the accept queue. */
#define ADMIN_MAX_CONNS 64

struct admin_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t wreq;
    struct sg_admin *admin;
    struct admin_conn *prev, *next;
    char req[REQUEST_MAX];
    size_t len;
    char *resp;
    int open_handles;
    bool responded;
};

struct sg_admin {
    uv_tcp_t listener;
    struct sg_logger *log;
    sg_admin_info_fn info;
    void *data;
    bool draining;
    bool closing;
    struct admin_conn *conns;
    unsigned nconns;
    uv_tcp_t spare;     /* accepts a connection that is refused, to close it */
    bool spare_busy;    /* <spare> is closing */
    bool refuse_queued; /* a connection waits for <spare> (libuv stops the listener meanwhile) */
};

static void conn_freed(struct admin_conn *c)
{
    if (--c->open_handles > 0)
        return;
    free(c->resp);
    free(c);
}

static void tcp_closed_cb(uv_handle_t *h)
{
    conn_freed(h->data);
}

static void admin_conn_close(struct admin_conn *c)
{
    if (uv_is_closing((uv_handle_t *)&c->tcp))
        return;
    if (c->prev)
        c->prev->next = c->next;
    else
        c->admin->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->admin->nconns--;
    uv_close((uv_handle_t *)&c->tcp, tcp_closed_cb);
    uv_close((uv_handle_t *)&c->timer, tcp_closed_cb);
}

static void write_cb(uv_write_t *req, int status)
{
    (void)status;
    admin_conn_close(req->data);
}

static void respond(struct admin_conn *c, int code, const char *reason, const char *type,
                    const char *body, size_t len)
{
    c->responded = true;
    char head[256];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n",
                     code, reason, type, len);
    c->resp = malloc((size_t)n + len);
    if (c->resp == NULL) {
        admin_conn_close(c);
        return;
    }
    memcpy(c->resp, head, (size_t)n);
    memcpy(c->resp + n, body, len);
    uv_buf_t b = uv_buf_init(c->resp, (unsigned)((size_t)n + len));
    c->wreq.data = c;
    uv_read_stop((uv_stream_t *)&c->tcp);
    if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, write_cb) < 0)
        admin_conn_close(c);
}

static void serve(struct admin_conn *c)
{
    struct sg_admin *a = c->admin;
    char *sp1 = memchr(c->req, ' ', c->len);
    char *sp2 = sp1 ? memchr(sp1 + 1, ' ', c->len - (size_t)(sp1 + 1 - c->req)) : NULL;
    if (sp1 == NULL || sp2 == NULL) {
        static const char msg[] = "bad request\n";
        respond(c, 400, "Bad Request", "text/plain", msg, sizeof(msg) - 1);
        return;
    }
    size_t mlen = (size_t)(sp1 - c->req), plen = (size_t)(sp2 - sp1 - 1);
    const char *path = sp1 + 1;
    bool get = mlen == 3 && memcmp(c->req, "GET", 3) == 0;
    if (get && plen == 8 && memcmp(path, "/healthz", 8) == 0) {
        if (a->draining)
            respond(c, 503, "Service Unavailable", "text/plain", "draining\n", 9);
        else
            respond(c, 200, "OK", "text/plain", "ok\n", 3);
        return;
    }
    if (get && plen == 8 && memcmp(path, "/metrics", 8) == 0) {
        struct sg_metrics_info info = {0};
        struct sg_worker_stats *ws[SG_ADMIN_MAX_WORKERS];
        size_t nws = 0;
        a->info(a->data, &info, ws, &nws);
        char *body = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&body, &len);
        if (f == NULL) {
            respond(c, 500, "Internal Server Error", "text/plain", "out of memory\n", 14);
            return;
        }
        sg_metrics_render(f, ws, nws, &info);
        fclose(f);
        respond(c, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", body, len);
        free(body);
        return;
    }
    static const char msg[] = "not found: try /metrics or /healthz\n";
    respond(c, 404, "Not Found", "text/plain", msg, sizeof(msg) - 1);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct admin_conn *c = h->data;
    *buf = uv_buf_init(c->req + c->len, (unsigned)(REQUEST_MAX - c->len));
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    struct admin_conn *c = s->data;
    if (nread < 0) {
        if (nread == UV_ENOBUFS && !c->responded) {
            static const char msg[] = "request too large\n";
            respond(c, 431, "Request Header Fields Too Large", "text/plain", msg,
                    sizeof(msg) - 1);
            return;
        }
        admin_conn_close(c);
        return;
    }
    /* the request line is all that matters; wait for the end of the head,
     * looking only at the new bytes (and the 3 before them) */
    size_t from = c->len >= 3 ? c->len - 3 : 0;
    c->len += (size_t)nread;
    if (memmem(c->req + from, c->len - from, "\r\n\r\n", 4) != NULL)
        serve(c);
}

static void timeout_cb(uv_timer_t *t)
{
    admin_conn_close(t->data);
}

static void refuse_connection(struct sg_admin *a, uv_stream_t *server);

static void spare_closed_cb(uv_handle_t *h)
{
    struct sg_admin *a = h->data;
    a->spare_busy = false;
    if (a->refuse_queued && !a->closing) {
        a->refuse_queued = false;
        refuse_connection(a, (uv_stream_t *)&a->listener);
    }
}

/* A connection that will not be served: accepted (libuv watches the
 * listener again only once the pending one is taken) and closed. */
static void refuse_connection(struct sg_admin *a, uv_stream_t *server)
{
    if (a->spare_busy) {
        a->refuse_queued = true; /* taken when the one before has closed */
        return;
    }
    uv_tcp_init(server->loop, &a->spare);
    a->spare.data = a;
    a->spare_busy = true;
    uv_accept(server, (uv_stream_t *)&a->spare);
    uv_close((uv_handle_t *)&a->spare, spare_closed_cb);
}

static void accept_cb(uv_stream_t *server, int status)
{
    struct sg_admin *a = server->data;
    if (status < 0)
        return;
    struct admin_conn *c = a->nconns < ADMIN_MAX_CONNS ? calloc(1, sizeof(*c)) : NULL;
    if (c == NULL) {
        refuse_connection(a, server);
        return;
    }
    a->nconns++;
    c->admin = a;
    uv_tcp_init(server->loop, &c->tcp);
    uv_timer_init(server->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->open_handles = 2;
    c->next = a->conns;
    if (a->conns)
        a->conns->prev = c;
    a->conns = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0 ||
        uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) < 0) {
        admin_conn_close(c);
        return;
    }
    uv_timer_start(&c->timer, timeout_cb, ADMIN_TIMEOUT_MS, 0);
}

struct sg_admin *sg_admin_open(uv_loop_t *loop, const union sg_sockaddr *addr,
                               struct sg_logger *log, sg_admin_info_fn info, void *data)
{
    char text[SG_ADDR_TEXT_MAX];
    struct sg_admin *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return NULL;
    a->log = log;
    a->info = info;
    a->data = data;
    uv_tcp_init(loop, &a->listener);
    a->listener.data = a;
    int err = uv_tcp_bind(&a->listener, &addr->sa, addr->sa.sa_family == AF_INET6 ? UV_TCP_IPV6ONLY : 0);
    if (err == 0)
        err = uv_listen((uv_stream_t *)&a->listener, SG_LISTEN_BACKLOG, accept_cb);
    if (err < 0) {
        sg_log_err(log, "admin: cannot listen on %s: %s",
                   sg_sockaddr_format(&addr->sa, text, sizeof(text)), uv_strerror(err));
        a->closing = true;
        uv_close((uv_handle_t *)&a->listener, (uv_close_cb)free);
        return NULL;
    }
    return a;
}

void sg_admin_set_draining(struct sg_admin *a, bool draining)
{
    if (a != NULL)
        a->draining = draining;
}

static void listener_closed_cb(uv_handle_t *h)
{
    free(h->data);
}

void sg_admin_close(struct sg_admin *a)
{
    if (a == NULL || a->closing)
        return;
    a->closing = true;
    while (a->conns != NULL)
        admin_conn_close(a->conns);
    uv_close((uv_handle_t *)&a->listener, listener_closed_cb);
}
