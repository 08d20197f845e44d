"""The data path: heads split over many segments, the first bytes forwarded
unchanged, half-close and resets passed on both ways, bulk transfers checked
by hash, many clients at once, backpressure, and the tcp listener."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
import fcntl
import hashlib
import re
import signal
import socket
import struct
import termios
import threading
import time

from backends import Backend, payload
from clients import (TlsOverSocket, client_hello, connect, http_request, json_body,
                     read_http_response, recv_all, recv_exact, trickle, wait_closed)
from configs import http_listener, main_config, routes_map, tcp_listener, tls_listener
from process import MiB, V4, V6, free_ports, one_access, scaled, wait_until


# ---------------------------------------------------------------------------
# split heads, exact forwarding

def test_trickled_client_hello(sixgate, backends):
    """A ClientHello sent one byte per segment still routes, and the backend
    gets every byte unchanged; a real handshake completes after it."""
    raw = backends.raw()
    tb = backends.tls("whole.test")
    port = free_ports(1)[0]
    sixgate.start(main_config([tls_listener("https", port)]),
                  routes_map({"raw.test": raw.addr, "whole.test": tb.addr}))
    hello = client_hello("raw.test")
    with connect(port) as s:
        trickle(s, hello)
        assert raw.wait_data(len(hello)) == hello
    with connect(port, V6) as s:
        t = TlsOverSocket(s, "whole.test")
        trickle(s, t.hello())
        t.finish_handshake()
        assert t.peer_names() == ("whole.test", ["whole.test"])
        t.send(http_request("whole.test", extra="Connection: close"))
        resp = t.recv_all()
    assert resp.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b'"backend": "whole.test"' in resp


def test_trickled_http_head(sixgate, backends):
    raw = backends.raw()
    hb = backends.http("answer")
    port = free_ports(1)[0]
    sixgate.start(main_config([http_listener("http", port)]),
                  routes_map({"raw.test": raw.addr, "answer.test": hb.addr}))
    req = http_request("raw.test", target="/trickle", extra="X-A: 1\r\nX-B: two")
    with connect(port) as s:
        trickle(s, req)
        assert raw.wait_data(len(req)) == req
    req2 = http_request("answer.test", target="/t2")
    with connect(port, V6) as s:
        trickle(s, req2)
        status, _, body = read_http_response(s)
    assert status == "HTTP/1.1 200 OK" and json_body(body)["target"] == "/t2"
    assert hb.requests[0][1] == req2


def test_first_bytes_unchanged_tls(sixgate, backends):
    raw = backends.raw()
    port = free_ports(1)[0]
    sixgate.start(main_config([tls_listener("https", port)]),
                  routes_map({"raw.test": raw.addr}))
    hello = client_hello("raw.test", alpn=["h2", "http/1.1"])
    after = bytes(range(256)) * 4
    with connect(port) as s:
        s.sendall(hello + after)  # the hello and more, in one write
        got = raw.wait_data(len(hello) + len(after))
        s.shutdown(socket.SHUT_WR)
        raw.wait_eof()
    assert got == hello + after and bytes(raw.data[0]) == hello + after


def test_first_bytes_unchanged_http(sixgate, backends):
    raw = backends.raw()
    port = free_ports(1)[0]
    sixgate.start(main_config([http_listener("http", port)]),
                  routes_map({"raw.test": raw.addr}))
    body = b"x=\x00\xff\r\n" * 100
    req = (http_request("raw.test", method="POST", target="/p",
                        extra=f"Content-Length: {len(body)}\r\nX-Odd:  spaced  ")
           + body + http_request("other.test", target="/second"))
    with connect(port, V6) as s:
        s.sendall(req)
        s.shutdown(socket.SHUT_WR)
        assert raw.wait_eof() == req


def test_large_post_unchanged(sixgate, backends):
    """A head and 4 MiB of body in one burst: the part read while sniffing
    and the rest that follows reach the backend in order, unchanged."""
    raw = backends.raw()
    port = free_ports(1)[0]
    sixgate.start(main_config([http_listener("http", port)]),
                  routes_map({"post.test": raw.addr}))
    body, _ = payload(b"post", 4 * MiB)
    req = http_request("post.test", method="POST", target="/upload",
                       extra=f"Content-Length: {len(body)}") + body
    with connect(port) as s:
        s.sendall(req)
        s.shutdown(socket.SHUT_WR)
        got = raw.wait_eof(timeout=30)
    assert len(got) == len(req) and got == req


# ---------------------------------------------------------------------------
# half-close and resets

def test_half_close_client_first(sixgate, backends):
    """The client sends a request and shuts its side; it still gets all of
    the response, then EOF. The same through a tcp listener with an echo
    backend that finishes echoing after the client's EOF."""
    hb = backends.http("half")
    echo = backends.echo()
    ph, pc = free_ports(2)
    sixgate.start(main_config([http_listener("http", ph), tcp_listener("echo", pc, echo.addr)]),
                  routes_map({"half.test": hb.addr}))
    with connect(ph) as s:
        s.sendall(http_request("half.test", target="/half"))
        s.shutdown(socket.SHUT_WR)
        data = recv_all(s)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert json_body(body)["target"] == "/half"
    assert int(re.search(rb"Content-Length: (\d+)", head).group(1)) == len(body)

    sent, _ = payload(b"echo", 3 * MiB + 7)
    with connect(pc, V6) as s:
        def send():
            s.sendall(sent)
            s.shutdown(socket.SHUT_WR)
        t = threading.Thread(target=send, daemon=True)
        t.start()
        got = recv_all(s, timeout=30)
        t.join(scaled(30))
    assert got == sent
    assert echo.received[0] == len(sent)
    log = sixgate.wait_access(2)
    assert all(a["outcome"] == "ok" for a in log)
    tcp = one_access(sixgate, listener="echo")
    assert tcp["bytes_from_client"] == tcp["bytes_from_backend"] == len(sent)


def test_backend_closes_first(sixgate, backends):
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    raw = backends.raw(reply=reply, reply_after=b"\r\n\r\n", close_after_reply=True)
    port = free_ports(1)[0]
    sixgate.start(main_config([http_listener("http", port)]),
                  routes_map({"closer.test": raw.addr}))
    req = http_request("closer.test")
    with connect(port) as s:
        s.sendall(req)
        kind, data = wait_closed(s, scaled(5))
        assert (kind, data) == ("eof", reply)
        # our side is still open: the backend is gone, so writes are either
        # taken or end in an error, but nothing hangs
    a = one_access(sixgate, name="closer.test")
    assert a["outcome"] == "ok" and a["bytes_from_backend"] == len(reply)
    assert a["bytes_from_client"] == len(req)


def test_backend_half_closes_first(sixgate, backends):
    """The backend sends its banner and shuts its sending side, but goes on
    reading: the client gets the banner and EOF, and what it sends after
    that still reaches the backend."""
    raw = backends.raw(greeting=b"220 ready\r\n", shut_after_reply=True)
    port = free_ports(1)[0]
    sixgate.start(main_config([tcp_listener("tcp", port, raw.addr)], map=None))
    with connect(port) as s:
        assert recv_all(s) == b"220 ready\r\n"  # EOF after the banner
        late = b"sent after the backend's EOF" * 1000
        s.sendall(late)
        s.shutdown(socket.SHUT_WR)
        assert raw.wait_eof() == late
    a = one_access(sixgate, listener="tcp")
    assert a["outcome"] == "ok" and a["bytes_from_client"] == len(late)


def test_backend_reset_is_passed_on(sixgate, backends):
    """A backend that resets after part of a response: the client sees a
    reset, never a clean EOF that would make the truncated data look whole."""
    part = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\npartial"
    raw = backends.raw(reply=part, reply_after=b"\r\n\r\n", reset_after_reply=True,
                       end_delay=0.3)
    port = free_ports(1)[0]
    sixgate.start(main_config([http_listener("http", port)]),
                  routes_map({"reset.test": raw.addr}))
    with connect(port) as s:
        s.sendall(http_request("reset.test"))
        assert recv_exact(s, len(part)) == part
        kind, data = wait_closed(s, scaled(5))
    assert (kind, data) == ("reset", b"")
    a = one_access(sixgate, name="reset.test")
    assert a["outcome"] == "backend_error" and a["bytes_from_backend"] == len(part), a


def test_backend_reset_during_an_upload_is_the_backends_fault(sixgate, backends):
    """A backend that resets while the client is still uploading: the write
    to the backend fails, and that is the backend's error (not a read error
    of the client's): the log names the backend and the client gets the
    reset."""
    raw = backends.raw(reply=b"", reply_after=256 * 1024, reset_after_reply=True)
    port = free_ports(1)[0]
    sixgate.start(main_config([tcp_listener("tcp", port, raw.addr)], map=None))
    s = connect(port)
    chunk = b"u" * 65536
    outcome = None
    deadline = time.monotonic() + scaled(10)
    try:
        while time.monotonic() < deadline:
            s.sendall(chunk)
    except (ConnectionResetError, BrokenPipeError) as e:
        outcome = type(e).__name__
    s.close()
    assert outcome is not None, "the upload was never cut off"
    a = one_access(sixgate, listener="tcp")
    assert a["outcome"] == "backend_error", a
    assert a["reason"].startswith("backend: "), a
    assert a["bytes_from_client"] >= 256 * 1024


class StallThenResetBackend(Backend):
    """Sends until its data stops draining for 0.5 s (the proxy stopped
    reading from it because its client does not read), then resets."""

    kind = "stall-reset"

    def __init__(self, **kw):
        super().__init__(**kw)
        self.sent = 0
        self.reset_done = threading.Event()

    def handle(self, conn, peer, index):
        conn.setblocking(False)
        chunk = b"x" * 65536
        stuck_since = None
        deadline = time.monotonic() + scaled(20)
        while time.monotonic() < deadline:
            try:
                self.sent += conn.send(chunk)
                stuck_since = None
            except BlockingIOError:
                if stuck_since is None:
                    stuck_since = time.monotonic()
                elif time.monotonic() - stuck_since > 0.5:
                    break
                time.sleep(0.01)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.reset_done.set()


def test_backend_reset_while_client_slow(sixgate, backends):
    """The same as above when the reset arrives while sixgate is held back
    by a slow client: data and reset are then pending together."""
    b = backends.add(StallThenResetBackend())
    port = free_ports(1)[0]
    sixgate.start(main_config([tcp_listener("tcp", port, b.addr)], map=None))
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    s.connect((V4, port))
    with s:
        assert b.reset_done.wait(scaled(25))
        time.sleep(0.2)
        s.settimeout(scaled(10))
        got, kind = 0, None
        while kind is None:
            try:
                d = s.recv(1 << 20)
                got += len(d)
                kind = None if d else "eof"
            except ConnectionResetError:
                kind = "reset"
        assert 0 < got < b.sent
        assert kind == "reset", f"{kind} after {got} of the {b.sent} bytes the backend sent"


class FinThenResetBackend(Backend):
    """Answers the first bytes it gets with <reply>, shuts its sending side
    (FIN), waits until the FIN is acknowledged, then resets (closing with
    bytes unread, as an HTTP server that does not read a request body does).
    .done is set after the reset."""

    kind = "fin-reset"

    def __init__(self, reply: bytes, **kw):
        super().__init__(**kw)
        self.reply = reply
        self.go = threading.Event()
        self.done = threading.Event()

    def handle(self, conn, peer, index):
        conn.recv(1)  # the rest of the request stays unread
        assert self.go.wait(scaled(10))
        conn.sendall(self.reply)
        conn.shutdown(socket.SHUT_WR)
        wait_until(lambda: fcntl.ioctl(conn.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
                   == b"\0\0\0\0", scaled(5), what="the FIN to be acknowledged")
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()
        self.done.set()


def test_backend_resets_after_its_eof(sixgate, backends):
    """A backend sends its whole response and FIN, then a reset: the
    response was complete, so the client gets it all and a clean EOF, and
    the connection is not logged as an error (of the client, least of all).
    sixgate is stopped (SIGSTOP) meanwhile, so that the data, the FIN and
    the reset are all waiting when it reads again."""
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\ndone"
    b = backends.add(FinThenResetBackend(reply))
    port = free_ports(1)[0]
    sixgate.start(main_config([http_listener("http", port)]),
                  routes_map({"finreset.test": b.addr}))
    with connect(port) as s:
        s.sendall(http_request("finreset.test", method="POST",
                               extra="Content-Length: 5") + b"body!")
        b.wait_accepted(1)
        time.sleep(0.2)
        sixgate.signal(signal.SIGSTOP)
        try:
            b.go.set()
            assert b.done.wait(scaled(10))
        finally:
            sixgate.signal(signal.SIGCONT)
        kind, data = wait_closed(s, scaled(5))
        assert (kind, data) == ("eof", reply)
    a = one_access(sixgate, name="finreset.test")
    assert a["outcome"] == "ok", a
    assert a["bytes_from_backend"] == len(reply)


def test_client_reset_is_logged(sixgate, backends):
    echo = backends.echo()
    port = free_ports(1)[0]
    sixgate.start(main_config([tcp_listener("tcp", port, echo.addr)], map=None))
    s = connect(port)
    s.sendall(b"abc")
    assert recv_exact(s, 3) == b"abc"
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    a = one_access(sixgate, listener="tcp")
    assert a["outcome"] == "client_error", a
    assert a["bytes_from_client"] == a["bytes_from_backend"] == 3
    wait_until(lambda: echo.accepted == 1 and not echo._conns, scaled(5),
               what="the backend connection to end")


# ---------------------------------------------------------------------------
# bulk, many clients, backpressure

def _bulk(port, host, prefix: bytes, nbytes: int, hb):
    """Sends prefix + nbytes of known data and reads to EOF; returns
    (sha256 of what was read, its length)."""
    data, _ = payload(b"client", nbytes)
    with connect(port, host, timeout=120) as s:
        err = []

        def send():
            try:
                s.sendall(prefix)
                s.sendall(data)
                s.shutdown(socket.SHUT_WR)
            except OSError as e:
                err.append(e)
        t = threading.Thread(target=send, daemon=True)
        t.start()
        h = hashlib.sha256()
        n = 0
        buf = bytearray(1 << 20)
        s.settimeout(scaled(120))
        while True:
            k = s.recv_into(buf)
            if not k:
                break
            h.update(memoryview(buf)[:k])
            n += k
        t.join(scaled(120))
        assert not err, err
    return h.hexdigest(), n


def test_bulk_64mib_each_way_tcp(sixgate, backends):
    n = 64 * MiB
    hb = backends.hash(n, seed=b"backend")
    port = free_ports(1)[0]
    sixgate.start(main_config([tcp_listener("bulk", port, hb.addr)], map=None))
    sha, got = _bulk(port, V4, b"", n, hb)
    assert got == n and sha == hb.send_sha256
    wait_until(lambda: hb.results.get(0, {}).get("done"), scaled(30), what="backend done")
    assert hb.results[0]["received"] == n
    assert hb.results[0]["sha256"] == payload(b"client", n)[1]
    a = one_access(sixgate, listener="bulk")
    assert (a["bytes_from_client"], a["bytes_from_backend"], a["outcome"]) == (n, n, "ok")


def test_bulk_64mib_each_way_tls_listener(sixgate, backends):
    """A real ClientHello routes the connection; then 64 MiB each way
    (not TLS records: sixgate only splices bytes once routed)."""
    n = 64 * MiB
    hb = backends.hash(n, seed=b"tls-backend")
    port = free_ports(1)[0]
    sixgate.start(main_config([tls_listener("https", port)]),
                  routes_map({"bulk.test": hb.addr}))
    hello = client_hello("bulk.test")
    sha, got = _bulk(port, V6, hello, n, hb)
    assert got == n and sha == hb.send_sha256
    wait_until(lambda: hb.results.get(0, {}).get("done"), scaled(30), what="backend done")
    assert hb.results[0]["received"] == len(hello) + n
    assert hb.results[0]["sha256"] == hashlib.sha256(hello + payload(b"client", n)[0]).hexdigest()
    a = one_access(sixgate, listener="https")
    assert (a["bytes_from_client"], a["bytes_from_backend"]) == (len(hello) + n, n)


def test_250_concurrent_http_clients(sixgate, backends):
    nb, nclients = 5, 250
    bs = [backends.http(f"site{i}") for i in range(nb)]
    port = free_ports(1)[0]
    sixgate.start(main_config([http_listener("http", port)], workers=2,
                              limits={"connections": 1000}),
                  routes_map({f"site{i}.test": b.addr for i, b in enumerate(bs)}))
    barrier = threading.Barrier(nclients, timeout=scaled(30))
    socks: list = [None] * nclients

    def client(i):
        s = connect(port, V4 if i % 2 else V6, timeout=60)
        socks[i] = s
        barrier.wait()  # every client connected before any sends
        s.sendall(http_request(f"site{i % nb}.test", target=f"/client/{i}",
                               extra="Connection: close"))
        status, _, body = read_http_response(s, timeout=60)
        s.close()
        return status, json_body(body)

    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=nclients) as ex:
        results = list(ex.map(client, range(nclients), timeout=scaled(90)))
    took = time.monotonic() - t0
    for i, (status, d) in enumerate(results):
        assert status == "HTTP/1.1 200 OK"
        assert d["backend"] == f"site{i % nb}" and d["target"] == f"/client/{i}"
    assert sum(b.accepted for b in bs) == nclients
    assert took < scaled(60)
    log = sixgate.wait_access(nclients, timeout=20)
    # one line per connection: ports of IPv4 and IPv6 clients may coincide
    assert len({(a["client"], a["client_port"]) for a in log}) == nclients
    assert all(a["outcome"] == "ok" for a in log)


def test_slow_reader_backpressure(sixgate, backends):
    """The client stops reading while the backend sends 64 MiB: sixgate
    stops reading from the backend instead of buffering (its RSS stays
    within 32 MiB of where it was), and every byte arrives once the client
    reads again."""
    n = 64 * MiB
    hb = backends.hash(n, seed=b"slow", chunk=64 * 1024)
    port = free_ports(1)[0]
    sixgate.start(main_config([tcp_listener("slow", port, hb.addr)], map=None))
    time.sleep(0.2)
    base = sixgate.rss_kib()
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    s.settimeout(scaled(60))
    s.connect((V4, port))
    s.shutdown(socket.SHUT_WR)  # nothing to send: the backend reads EOF
    # wait until the backend's sends stall: the buffers between are full
    last, stable_since = -1, time.monotonic()
    deadline = time.monotonic() + scaled(30)
    while time.monotonic() < deadline:
        cur = hb.sent_progress
        if cur != last:
            last, stable_since = cur, time.monotonic()
        elif time.monotonic() - stable_since > 1.0:
            break
        time.sleep(0.05)
    stalled_at = hb.sent_progress
    peak = sixgate.rss_kib()
    print(f"rss base {base} KiB, stalled {peak} KiB, backend sent {stalled_at} bytes")
    assert stalled_at < n, "the backend sent everything: no backpressure reached it"
    assert peak - base < 32 * 1024, (base, peak, stalled_at)
    h = hashlib.sha256()
    got = 0
    while True:
        chunk = s.recv(1 << 20)
        if not chunk:
            break
        h.update(chunk)
        got += len(chunk)
    s.close()
    assert got == n and h.hexdigest() == hb.send_sha256


# ---------------------------------------------------------------------------
# tcp listener

def test_tcp_listener_banner_backend(sixgate, backends):
    banner = b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n"
    ssh = backends.raw(greeting=banner)
    port = free_ports(1)[0]
    sixgate.start(main_config([tcp_listener("ssh", port, ssh.addr)], map=None))
    mine = b"SSH-2.0-test_client\r\n" + bytes(range(256)) * 64
    for i, client in enumerate((V4, V6)):
        with connect(port, client) as s:
            assert recv_exact(s, len(banner)) == banner
            s.sendall(mine)
            assert ssh.wait_data(len(mine), index=i) == mine
            local = s.getsockname()
        a = one_access(sixgate, client_port=local[1])
        assert a["client"] == client and a["listener"] == "ssh" and a["protocol"] == "tcp"
        assert "match" not in a and a["route"] is None and a["name"] is None
        assert a["backend"] == ssh.addr
        assert (a["bytes_from_client"], a["bytes_from_backend"]) == (len(mine), len(banner))
        assert a["outcome"] == "ok"
