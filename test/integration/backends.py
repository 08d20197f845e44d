"""Test backends: TCP servers in daemon threads of the pytest process that
identify themselves (their own certificate, a JSON body naming them) or
record exactly what they received. Made through the ``backends`` fixture
(BackendPool); every one is stopped at teardown.

    backends.http(ident)            HttpBackend: JSON body naming itself, the
                                    Host it saw and the client address
    backends.tls(certname)          TlsBackend: completes TLS with its own
                                    certificate, then answers like http()
    backends.echo()                 EchoBackend: echoes, honours half-close
    backends.hash(nbytes)           HashBackend: hashes what it receives
                                    until EOF while sending nbytes known bytes
    backends.raw(greeting=..., reply=...)
                                    RawBackend: records every byte received
    backends.blackhole()            BlackholeBackend: a listener whose accept
                                    queue is full, so a connect never completes
    backends.slow_dns(answers, delay)
                                    SlowDns: a slow DNS server on 127.0.0.1:53
    backends.add(b)                 starts a Backend subclass of the test's own
    All listen on ::1 (IPv6-only, like real customers) unless host= says
    otherwise; ``.addr`` is the backend as the map writes it ("[::1]:PORT").
    payload(seed, nbytes) gives known bytes and their sha256.
"""

from __future__ import annotations

import hashlib
import json
import select
import socket
import ssl
import struct
import threading
import time

import pytest

from certs import CertFactory
from http1 import header, parse_http_head, read_http_head
from process import MiB, addr_text, scaled, socket_family, wait_until


def _listen(host: str, port: int, backlog: int = 1024) -> socket.socket:
    s = socket.socket(socket_family(host), socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if socket_family(host) == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind((host, port))
    s.listen(backlog)
    return s


class Backend:
    """A TCP server in daemon threads of the pytest process: one thread
    accepts, one thread per connection runs handle(). stop() closes the
    listener and every connection and joins the threads (bounded).

    .host, .port, .addr ("[::1]:PORT"), .accepted (count), .clients
    (the (ip, port) of each accepted connection), .errors (exceptions
    raised by handle(), other than the peer going away)."""

    kind = "backend"

    def __init__(self, host: str = "::1", port: int = 0, backlog: int = 1024):
        self.host = host
        self.sock = _listen(host, port, backlog)
        self.port = self.sock.getsockname()[1]
        self.addr = addr_text(host, self.port)
        self.accepted = 0
        self.clients: list[tuple[str, int]] = []
        self.errors: list[BaseException] = []
        self._conns: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.sock.settimeout(0.1)
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True,
                                          name=f"{self.kind}-{self.port}-accept")

    def start(self):
        self._acceptor.start()
        return self

    def _accept_loop(self):
        while not self._stopping.is_set():
            try:
                conn, peer = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            conn.settimeout(None)
            with self._lock:
                if self._stopping.is_set():
                    conn.close()
                    return
                index = self.accepted
                self.accepted += 1
                self.clients.append(peer[:2])
                self._conns.add(conn)
                t = threading.Thread(target=self._run, args=(conn, peer, index), daemon=True,
                                     name=f"{self.kind}-{self.port}-conn")
                self._threads.append(t)
            t.start()

    def _run(self, conn: socket.socket, peer, index: int):
        try:
            conn.settimeout(scaled(60))
            self.handle(conn, peer, index)
        except (ConnectionError, BrokenPipeError, socket.timeout, ssl.SSLError, OSError) as e:
            if not self._stopping.is_set():
                self.on_peer_error(e)
        except BaseException as e:  # a bug in the test backend
            self.errors.append(e)
        finally:
            with self._lock:
                self._conns.discard(conn)
            try:
                conn.close()
            except OSError:
                pass

    def on_peer_error(self, e: BaseException):
        """A connection ended with a socket error; kept for tests that care."""
        with self._lock:
            self.peer_errors = getattr(self, "peer_errors", []) + [e]

    def handle(self, conn: socket.socket, peer, index: int):
        """Serves one connection; <index> counts connections from 0."""
        raise NotImplementedError

    def stop(self):
        self._stopping.set()
        try:
            self.sock.close()
        except OSError:
            pass
        with self._lock:
            conns = list(self._conns)
            threads = list(self._threads)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                c.close()
            except OSError:
                pass
        if self._acceptor.is_alive():
            self._acceptor.join(timeout=2)
        deadline = time.monotonic() + 5
        for t in threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))

    def wait_accepted(self, n: int, timeout: float = 5.0):
        wait_until(lambda: self.accepted >= n, scaled(timeout), what=f"{n} connections to {self.addr}")


class HttpBackend(Backend):
    """Answers every HTTP/1.1 request (keep-alive too) with 200 and a JSON
    body: {"backend": ident, "host": the Host it saw (null if none), "method",
    "target", "client": the peer's IP, "client_port", "conn": the index of
    the connection on this backend, "seq": the request's number on it}.
    A request with "Connection: close" is answered and the connection closed.
    .requests holds (conn index, request head bytes) of each request."""

    kind = "http"

    def __init__(self, ident: str, host: str = "::1", port: int = 0, **kw):
        super().__init__(host, port, **kw)
        self.ident = ident
        self.requests: list[tuple[int, bytes]] = []

    def body_for(self, head: bytes, peer, conn_index: int, seq: int, extra=None) -> bytes:
        first, headers = parse_http_head(head)
        parts = first.split(" ")
        d = {"backend": self.ident, "host": header(headers, "host"),
             "method": parts[0] if parts else None,
             "target": parts[1] if len(parts) > 1 else None,
             "client": peer[0], "client_port": peer[1], "conn": conn_index, "seq": seq}
        if extra:
            d.update(extra)
        return (json.dumps(d, sort_keys=True) + "\n").encode()

    def serve_http(self, stream, write, peer, conn_index, extra=None):
        f = stream
        seq = 0
        while True:
            head = read_http_head(f)
            if not head:
                return
            with self._lock:
                self.requests.append((conn_index, head))
            first, headers = parse_http_head(head)
            length = int(header(headers, "content-length", "0") or 0)
            if length:
                f.read(length)
            body = self.body_for(head, peer, conn_index, seq, extra)
            close = (header(headers, "connection", "") or "").lower() == "close"
            write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                  + f"Content-Length: {len(body)}\r\n".encode()
                  + (b"Connection: close\r\n" if close else b"")
                  + b"\r\n" + body)
            seq += 1
            if close:
                return

    def handle(self, conn, peer, index):
        f = conn.makefile("rb")
        try:
            self.serve_http(f, conn.sendall, peer, index)
        finally:
            f.close()


class TlsBackend(HttpBackend):
    """Completes a TLS handshake with the certificate of <certname> (made by
    the certs fixture), then answers HTTP like HttpBackend, with "backend":
    certname and "sni": the server name the handshake carried.
    .snis lists the SNI of every handshake."""

    kind = "tls"

    def __init__(self, certname: str, certs: CertFactory, host: str = "::1", port: int = 0, **kw):
        super().__init__(certname, host, port, **kw)
        self.certname = certname
        certfile, keyfile = certs(certname)
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(certfile, keyfile)
        self._sni = threading.local()
        self.snis: list[str | None] = []

        def on_sni(sslobj, name, ctx):
            self._sni.name = name
            return None
        self.ctx.sni_callback = on_sni

    def handle(self, conn, peer, index):
        self._sni.name = None
        tls = self.ctx.wrap_socket(conn, server_side=True)
        sni = self._sni.name
        with self._lock:
            self.snis.append(sni)
        f = tls.makefile("rb")
        try:
            self.serve_http(f, tls.sendall, peer, index, extra={"sni": sni})
            # close_notify, without waiting for the client's: a client that
            # never sends one must still see the connection end
            tls.setblocking(False)
            try:
                tls.unwrap()
            except (ssl.SSLError, OSError):
                pass
        finally:
            f.close()


class EchoBackend(Backend):
    """Sends back every byte it receives. After the client's EOF it has
    echoed everything, then shuts its side down (half-close both ways).
    .received counts the bytes of each connection."""

    kind = "echo"

    def __init__(self, host: str = "::1", port: int = 0, **kw):
        super().__init__(host, port, **kw)
        self.received: dict[int, int] = {}

    def handle(self, conn, peer, index):
        self.received[index] = 0
        while True:
            data = conn.recv(65536)
            if not data:
                break
            self.received[index] += len(data)
            conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)
        # until the other side closes too
        conn.settimeout(scaled(10))
        try:
            while conn.recv(65536):
                pass
        except OSError:
            pass


_payload_cache: dict[tuple[bytes, int], tuple[bytes, str]] = {}


def payload(seed: bytes, nbytes: int) -> tuple[bytes, str]:
    """nbytes of deterministic pseudo-random data and their sha256 (hex)."""
    key = (seed, nbytes)
    if key not in _payload_cache:
        data = hashlib.shake_128(seed).digest(nbytes)
        _payload_cache[key] = (data, hashlib.sha256(data).hexdigest())
    return _payload_cache[key]


class HashBackend(Backend):
    """Reads until EOF hashing what it gets (sha256), while it sends
    <nbytes> pseudo-random bytes (payload(seed, nbytes), so their sha256 is
    known: .send_sha256) and then shuts its side down.

    .results: one dict per connection, filled as it goes:
    {"received": bytes read, "sha256": of them (at EOF), "sent": bytes sent,
    "done": both directions finished}. .sent_progress is the sent count of
    the newest connection (for backpressure tests)."""

    kind = "hash"

    def __init__(self, nbytes: int = 64 * MiB, seed: bytes = b"backend", host: str = "::1",
                 port: int = 0, chunk: int = 256 * 1024, **kw):
        super().__init__(host, port, **kw)
        self.nbytes = nbytes
        self.data, self.send_sha256 = payload(seed, nbytes)
        self.chunk = chunk
        self.results: dict[int, dict] = {}

    def handle(self, conn, peer, index):
        res = {"received": 0, "sha256": None, "sent": 0, "done": False, "send_error": None}
        self.results[index] = res

        def sender():
            view = memoryview(self.data)
            try:
                while res["sent"] < self.nbytes:
                    n = conn.send(view[res["sent"]:res["sent"] + self.chunk])
                    res["sent"] += n
                conn.shutdown(socket.SHUT_WR)
            except OSError as e:
                res["send_error"] = e

        t = threading.Thread(target=sender, daemon=True, name=f"hash-{self.port}-send")
        t.start()
        h = hashlib.sha256()
        buf = bytearray(256 * 1024)
        conn.settimeout(scaled(120))
        try:
            while True:
                n = conn.recv_into(buf)
                if n == 0:
                    break
                h.update(memoryview(buf)[:n])
                res["received"] += n
            res["sha256"] = h.hexdigest()
        finally:
            t.join(timeout=scaled(120))
        res["done"] = True

    @property
    def sent_progress(self) -> int:
        return self.results[max(self.results)]["sent"] if self.results else 0


class RawBackend(Backend):
    """Records exactly the bytes each connection sends (.data[i], a
    bytearray), optionally:
      greeting: bytes sent as soon as a connection is accepted (a banner);
      reply: bytes sent once <reply_after> is seen in what was received (a
             bytes marker) or once that many bytes arrived (an int), or, when
             reply_after is None, on the first data;
      close_after_reply: close the connection (both directions) right after
             the reply, without waiting for the client's EOF;
      shut_after_reply: shut down only the sending side after the reply (or
             the greeting, when there is no reply) and go on recording;
      reset_after_reply: end with a TCP reset (SO_LINGER 0) after the reply;
      end_delay: seconds to wait after the reply before any of these.
    .eof[i] is set when connection i saw EOF (or closed)."""

    kind = "raw"

    def __init__(self, host: str = "::1", port: int = 0, greeting: bytes = b"",
                 reply: bytes | None = None, reply_after=None, close_after_reply: bool = False,
                 shut_after_reply: bool = False, reset_after_reply: bool = False,
                 end_delay: float = 0.0, **kw):
        super().__init__(host, port, **kw)
        self.greeting = greeting
        self.shut_after_reply = shut_after_reply
        self.reset_after_reply = reset_after_reply
        self.end_delay = end_delay
        self.reply = reply
        self.reply_after = reply_after
        self.close_after_reply = close_after_reply
        self.data: dict[int, bytearray] = {}
        self.eof: dict[int, threading.Event] = {}

    def _reply_due(self, data: bytearray) -> bool:
        if self.reply_after is None:
            return len(data) > 0
        if isinstance(self.reply_after, int):
            return len(data) >= self.reply_after
        return self.reply_after in data

    def handle(self, conn, peer, index):
        data = bytearray()
        ev = threading.Event()
        self.data[index] = data
        self.eof[index] = ev
        try:
            if self.greeting:
                conn.sendall(self.greeting)
            replied = self.reply is None
            if replied and self.greeting:
                self._after_reply(conn)
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
                if not replied and self._reply_due(data):
                    conn.sendall(self.reply)
                    replied = True
                    if self._after_reply(conn):
                        return
        finally:
            ev.set()

    def _after_reply(self, conn) -> bool:
        """True when the connection is to end now."""
        if self.end_delay:
            time.sleep(self.end_delay)
        if self.reset_after_reply:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return True
        if self.close_after_reply:
            return True
        if self.shut_after_reply:
            conn.shutdown(socket.SHUT_WR)
        return False

    def wait_data(self, nbytes: int, index: int = 0, timeout: float = 5.0) -> bytes:
        """Waits until connection <index> has received nbytes; returns them all."""
        wait_until(lambda: index in self.data and len(self.data[index]) >= nbytes,
                   scaled(timeout), what=f"{nbytes} bytes at {self.addr}")
        return bytes(self.data[index])

    def wait_eof(self, index: int = 0, timeout: float = 5.0) -> bytes:
        wait_until(lambda: index in self.eof and self.eof[index].is_set(), scaled(timeout),
                   what=f"EOF at {self.addr}")
        return bytes(self.data[index])


class BlackholeBackend:
    """A listening socket whose accept queue is full and never accepted from:
    a connect to it gets no SYN-ACK, so it neither succeeds nor fails (what a
    dead or overloaded host looks like). Filled by connecting to it until a
    connect does not complete (bounded)."""

    def __init__(self, host: str = "::1"):
        self.host = host
        self.sock = _listen(host, 0, backlog=0)
        self.port = self.sock.getsockname()[1]
        self.addr = addr_text(host, self.port)
        self.fillers: list[socket.socket] = []
        self.full = False
        for _ in range(64):
            c = socket.socket(socket_family(host), socket.SOCK_STREAM)
            c.setblocking(False)
            c.connect_ex((host, self.port))
            self.fillers.append(c)
            _, w, _ = select.select([], [c], [], 0.3)
            if not w:
                self.full = True
                break

    def start(self):
        return self

    def stop(self):
        for c in self.fillers:
            c.close()
        self.sock.close()


class SlowDns:
    """A DNS server on 127.0.0.1:53 (UDP) that answers AAAA queries for the
    names in <answers> ({name: IPv6 address}) after <delay> seconds, and
    every other query with NXDOMAIN after the same delay. For sixgate started
    with Sixgate.start(dns=True), whose private resolv.conf points here.
    .queries lists (name, qtype) as they arrive."""

    def __init__(self, answers: dict[str, str], delay: float = 0.0):
        self.answers = {k.lower().rstrip("."): v for k, v in answers.items()}
        self.delay = delay
        self.queries: list[tuple[str, int]] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 53))  # OSError when not root or taken
        self.sock.settimeout(0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="slow-dns")

    def start(self):
        self._thread.start()
        return self

    def _loop(self):
        while not self._stop.is_set():
            try:
                q, peer = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            t = threading.Timer(self.delay, self._answer, args=(q, peer))
            t.daemon = True
            t.start()

    def _answer(self, q: bytes, peer):
        if self._stop.is_set() or len(q) < 12:
            return
        labels, i = [], 12
        while i < len(q) and q[i] != 0:
            labels.append(q[i + 1:i + 1 + q[i]].decode("ascii", "replace"))
            i += 1 + q[i]
        question = q[12:i + 5]
        qtype = int.from_bytes(q[i + 1:i + 3], "big")
        name = ".".join(labels).lower()
        self.queries.append((name, qtype))
        ip = self.answers.get(name)
        flags = 0x8180 if ip else 0x8183  # response, RD, RA; rcode 0 or NXDOMAIN
        ancount = 1 if ip and qtype == 28 else 0
        out = q[:2] + flags.to_bytes(2, "big") + (1).to_bytes(2, "big") + \
            ancount.to_bytes(2, "big") + bytes(4) + question
        if ancount:
            out += (b"\xc0\x0c" + (28).to_bytes(2, "big") + (1).to_bytes(2, "big")
                    + (30).to_bytes(4, "big") + (16).to_bytes(2, "big")
                    + socket.inet_pton(socket.AF_INET6, ip))
        try:
            self.sock.sendto(out, peer)
        except OSError:
            pass

    def stop(self):
        self._stop.set()
        self.sock.close()
        self._thread.join(timeout=2)


class BackendPool:
    """The ``backends`` fixture: makes backends and stops them all at teardown."""

    def __init__(self, certs: CertFactory):
        self._certs = certs
        self.all: list = []

    def add(self, b):
        self.all.append(b)
        return b.start()

    def http(self, ident: str, host: str = "::1", port: int = 0, **kw) -> HttpBackend:
        return self.add(HttpBackend(ident, host, port, **kw))

    def tls(self, certname: str, host: str = "::1", port: int = 0, **kw) -> TlsBackend:
        return self.add(TlsBackend(certname, self._certs, host, port, **kw))

    def echo(self, host: str = "::1", port: int = 0, **kw) -> EchoBackend:
        return self.add(EchoBackend(host, port, **kw))

    def hash(self, nbytes: int = 64 * MiB, seed: bytes = b"backend", host: str = "::1",
             port: int = 0, **kw) -> HashBackend:
        return self.add(HashBackend(nbytes, seed, host, port, **kw))

    def raw(self, host: str = "::1", port: int = 0, **kw) -> RawBackend:
        return self.add(RawBackend(host, port, **kw))

    def blackhole(self, host: str = "::1") -> BlackholeBackend:
        return self.add(BlackholeBackend(host))

    def slow_dns(self, answers: dict[str, str], delay: float = 0.0) -> SlowDns:
        """A SlowDns on 127.0.0.1:53. The port may be held by another test
        run for a while (waited for, bounded); the test is skipped if it
        cannot be had (not root)."""
        deadline = time.monotonic() + scaled(30)
        while True:
            try:
                d = SlowDns(answers, delay)
                break
            except PermissionError as e:
                pytest.skip(f"cannot serve DNS on 127.0.0.1:53: {e}")
            except OSError as e:
                if time.monotonic() > deadline:
                    pytest.skip(f"cannot serve DNS on 127.0.0.1:53: {e}")
                time.sleep(0.2)
        return self.add(d)

    def stop_all(self):
        for b in reversed(self.all):
            b.stop()
        errors = [e for b in self.all for e in getattr(b, "errors", [])]
        self.all.clear()
        return errors
