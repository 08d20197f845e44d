"""Integration harness for sixgate: the real binary, real clients, real backends.

Everything here talks to loopback only (127.0.0.1 and ::1); every wait and
every loop is bounded in count and in time.

What the tests build on:

Ports
    free_port(host)                 a port that was free on <host> a moment ago
    free_ports(n, hosts)            n distinct ports, each free on every host

Certificates (session fixture ``certs``)
    certs(name) -> (certfile, keyfile)
                                    self-signed, CN and subjectAltName = name
                                    ("*.zone" works); made once per session

Backends (function fixture ``backends``; every one is stopped at teardown)
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
    All listen on ::1 (IPv6-only, like real customers) unless host= says
    otherwise; ``.addr`` is the backend as the map writes it ("[::1]:PORT").

sixgate (function fixture ``sixgate``; ``make_sixgate`` for more instances)
    sixgate.start(main_yaml, map_yaml=None, extra_files={}, ...)
    sixgate.proc / .pid / .stderr_text() / .access_log() / .wait_access(n)
    sixgate.reload()  (SIGHUP)      sixgate.stop()  (SIGTERM, exit code)
    main_config(...), tls_listener(...), http_listener(...), tcp_listener(...)
    and routes_map(...) write the YAML.
    Teardown stops the process and fails the test if it printed a sanitizer
    report or a " bug: " line, or did not exit 0 on SIGTERM.

Clients
    tls_client(port, server_name)   Python ssl; returns the peer certificate's
                                    CN/SAN and the response bytes
    client_hello(server_name)       a real ClientHello made by ssl.MemoryBIO
    TlsOverSocket                   drives an ssl.SSLObject over a raw socket
                                    (so a test decides how bytes are sent)
    curl(...), s_client(...)        the command-line clients, with timeouts
    http_exchange(...), read_http_response(...), recv_all(...), ...

Environment
    SIXGATE_BIN     the binary (ctest sets it); default ../../build/sixgate
    SIXGATE_WRAP    a command prefixed to sixgate, e.g.
                    "valgrind --error-exitcode=1"
    SIXGATE_TIME_SCALE
                    multiplies every timeout of the harness (default 1, or 5
                    under SIXGATE_WRAP)
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
import select
import shlex
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest

TEST_DIR = Path(__file__).resolve().parent
REPO_ROOT = TEST_DIR.parent.parent

WRAP = shlex.split(os.environ.get("SIXGATE_WRAP", ""))
TIME_SCALE = float(os.environ.get("SIXGATE_TIME_SCALE", "5" if WRAP else "1"))

MiB = 1024 * 1024

# Lines that mean sixgate found a bug in itself (sanitizers, its own checks).
BAD_STDERR = (r"AddressSanitizer", r"runtime error:", r"LeakSanitizer", r" bug: ",
              r"ThreadSanitizer", r"Assertion `.*' failed", r"ERROR SUMMARY: [1-9]")

# Clients and helpers never go through a proxy from the environment.
CLEAN_ENV = {k: v for k, v in os.environ.items()
             if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")}


def scaled(seconds: float) -> float:
    """A harness timeout, stretched for slow wrappers (valgrind)."""
    return seconds * TIME_SCALE


def sixgate_bin() -> str:
    """The binary under test: $SIXGATE_BIN, else ../../build/sixgate."""
    path = os.environ.get("SIXGATE_BIN") or str(TEST_DIR / ".." / ".." / "build" / "sixgate")
    return str(Path(path).resolve())


def wait_until(pred, timeout: float, interval: float = 0.02, what: str = "condition"):
    """Polls pred() until it returns a true value (returned) or timeout
    seconds pass (AssertionError naming <what>)."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(interval)


# ---------------------------------------------------------------------------
# ports

def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _port_free(host: str, port: int) -> bool:
    s = socket.socket(_family(host), socket.SOCK_STREAM)
    try:
        if _family(host) == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def free_port(host: str = "127.0.0.1") -> int:
    """Binds port 0 on <host> (a loopback address), closes, returns the port."""
    s = socket.socket(_family(host), socket.SOCK_STREAM)
    try:
        s.bind((host, 0))
        return s.getsockname()[1]
    finally:
        s.close()


def free_ports(n: int, hosts=("127.0.0.1", "::1")) -> list[int]:
    """n distinct ports, each free on every one of <hosts> (listeners that
    listen on both 127.0.0.1 and [::1] with one port)."""
    ports: list[int] = []
    for _ in range(50 * n + 50):
        if len(ports) == n:
            return ports
        p = free_port(hosts[0])
        if p not in ports and all(_port_free(h, p) for h in hosts[1:]):
            ports.append(p)
    raise RuntimeError(f"could not find {n} free ports on {hosts}")


# ---------------------------------------------------------------------------
# certificates

class CertFactory:
    """certs(name) -> (certfile, keyfile): a self-signed EC certificate whose
    CN and only subjectAltName are <name>, made by the openssl command and
    kept for the whole session."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._made: dict[str, tuple[str, str]] = {}
        self._lock = threading.Lock()

    def __call__(self, name: str) -> tuple[str, str]:
        with self._lock:
            if name not in self._made:
                self._made[name] = self._make(name)
            return self._made[name]

    def _make(self, name: str) -> tuple[str, str]:
        stem = re.sub(r"[^A-Za-z0-9.-]", "_", name)
        cert = self.folder / f"{stem}.crt"
        key = self.folder / f"{stem}.key"
        try:
            ipaddress.ip_address(name)
            san = f"IP:{name}"
        except ValueError:
            san = f"DNS:{name}"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-days", "3", "-subj", f"/CN={name}", "-addext", f"subjectAltName={san}",
             "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True, timeout=30)
        return str(cert), str(key)


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    return CertFactory(tmp_path_factory.mktemp("certs"))


def cert_names(der: bytes) -> tuple[str | None, list[str]]:
    """(CN, [subjectAltName DNS/IP values]) of a DER certificate."""
    pem = ssl.DER_cert_to_PEM_cert(der)
    out = subprocess.run(["openssl", "x509", "-noout", "-subject", "-ext", "subjectAltName",
                          "-nameopt", "multiline"],
                         input=pem.encode(), capture_output=True, timeout=10, check=True).stdout
    text = out.decode()
    m = re.search(r"commonName\s*=\s*(\S+)", text)
    sans = re.findall(r"(?:DNS|IP Address):([^,\s]+)", text)
    return (m.group(1) if m else None), sans


# ---------------------------------------------------------------------------
# backends

def _listen(host: str, port: int, backlog: int = 1024) -> socket.socket:
    s = socket.socket(_family(host), socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if _family(host) == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind((host, port))
    s.listen(backlog)
    return s


def addr_text(host: str, port: int) -> str:
    """ip:port as sixgate writes it ([v6]:port)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


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


def read_http_head(f) -> tuple[bytes, bytes | None]:
    """Reads one HTTP head from a file-like (makefile('rb')) object:
    (head bytes, b'' at a clean EOF before any byte)."""
    lines = []
    total = 0
    while True:
        line = f.readline(65537)
        if not line:
            if lines:
                raise ConnectionError("EOF inside a request head")
            return b""
        lines.append(line)
        total += len(line)
        if total > 1 << 20:
            raise ValueError("head too large")
        if line in (b"\r\n", b"\n"):
            return b"".join(lines)


def parse_http_head(head: bytes) -> tuple[str, list[tuple[str, str]]]:
    """(first line, [(lower-case name, value)])."""
    text = head.decode("latin-1")
    lines = text.split("\r\n")
    first = lines[0]
    headers = []
    for ln in lines[1:]:
        if not ln:
            continue
        k, _, v = ln.partition(":")
        headers.append((k.strip().lower(), v.strip()))
    return first, headers


def header(headers, name: str, default=None):
    for k, v in headers:
        if k == name.lower():
            return v
    return default


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
            c = socket.socket(_family(host), socket.SOCK_STREAM)
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


@pytest.fixture
def backends(certs):
    pool = BackendPool(certs)
    yield pool
    errors = pool.stop_all()
    if errors:
        pytest.fail(f"a test backend raised: {errors[0]!r}")


# ---------------------------------------------------------------------------
# configuration text

def _yaml_scalar(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    return json.dumps(str(v))


def to_yaml(obj, indent: int = 0) -> str:
    """A small YAML writer for configs: mappings and lists of mappings in
    block style, lists of scalars in flow style, strings double-quoted."""
    pad = " " * indent
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            key = json.dumps(str(k)) if not re.fullmatch(r"[A-Za-z0-9_.-]+", str(k)) else str(k)
            if isinstance(v, dict):
                if not v:
                    out.append(f"{pad}{key}: {{}}")
                else:
                    out.append(f"{pad}{key}:")
                    out.append(to_yaml(v, indent + 2))
            elif isinstance(v, list) and any(isinstance(x, dict) for x in v):
                out.append(f"{pad}{key}:")
                out.append(to_yaml(v, indent + 2))
            elif isinstance(v, list):
                out.append(f"{pad}{key}: [" + ", ".join(_yaml_scalar(x) for x in v) + "]")
            else:
                out.append(f"{pad}{key}: {_yaml_scalar(v)}")
    elif isinstance(obj, list):
        for item in obj:
            if isinstance(item, dict):
                inner = to_yaml(item, indent + 2).splitlines()
                out.append(f"{pad}- " + inner[0].lstrip())
                out.extend(inner[1:])
            else:
                out.append(f"{pad}- {_yaml_scalar(item)}")
    else:
        out.append(pad + _yaml_scalar(obj))
    return "\n".join(out)


def _listen_list(port, hosts):
    return [addr_text(h, port) for h in hosts]


def tls_listener(name: str, port: int, hosts=("127.0.0.1", "::1"), **kw) -> dict:
    """A tls listener on <port> of each of <hosts>; kw adds keys
    (backend_port, accept_proxy, ...)."""
    return {"name": name, "listen": _listen_list(port, hosts), "protocol": "tls", **kw}


def http_listener(name: str, port: int, hosts=("127.0.0.1", "::1"), **kw) -> dict:
    return {"name": name, "listen": _listen_list(port, hosts), "protocol": "http", **kw}


def tcp_listener(name: str, port: int, backend: str, hosts=("127.0.0.1", "::1"), **kw) -> dict:
    return {"name": name, "listen": _listen_list(port, hosts), "protocol": "tcp",
            "backend": backend, **kw}


DEFAULT_TIMEOUTS = {"sniff": "5s", "connect": "5s", "idle": "60s", "drain": "2s"}


def main_config(listeners: list[dict], map: str | None = "routes.yaml",
                access: str = "access.log", level: str = "info", workers=1,
                timeouts: dict | None = None, reload: dict | None = None, **top) -> str:
    """The main file's text. Defaults suited to tests: one worker, the access
    log in access.log beside it, short drain, no map watch; <timeouts>
    overrides single keys of DEFAULT_TIMEOUTS; **top adds top-level keys
    (limits={...}, admin={...}, ...)."""
    cfg: dict = {"listeners": listeners}
    t = dict(DEFAULT_TIMEOUTS)
    t.update(timeouts or {})
    cfg["timeouts"] = t
    cfg["workers"] = workers
    cfg["log"] = {"level": level, "access": access}
    cfg["reload"] = reload if reload is not None else {"watch": False}
    if map is not None:
        cfg["map"] = map
    cfg.update(top)
    return to_yaml(cfg) + "\n"


def routes_map(routes: dict, fallback=None, version: str | None = None) -> str:
    """The map's text: routes is {name: backend or {backend:, proxy_protocol:}}."""
    m: dict = {}
    if version is not None:
        m["version"] = version
    m["routes"] = routes
    if fallback is not None:
        m["fallback"] = fallback if isinstance(fallback, dict) else {"backend": fallback}
    return to_yaml(m) + "\n"


# ---------------------------------------------------------------------------
# sixgate

_isolation_ok: bool | None = None


def resolver_isolation_available() -> bool:
    """True when sixgate can be started in a private mount namespace with its
    own /etc/hosts and /etc/nsswitch.conf (root and unshare(1) needed), so
    that name resolution is answered from a file and never goes to DNS."""
    global _isolation_ok
    if _isolation_ok is None:
        _isolation_ok = False
        if os.geteuid() == 0 and shutil.which("unshare") and shutil.which("mount"):
            try:
                r = subprocess.run(["unshare", "--mount", "--", "sh", "-c",
                                    "mount --bind /dev/null /etc/hosts"],
                                   capture_output=True, timeout=10)
                _isolation_ok = r.returncode == 0
            except (OSError, subprocess.TimeoutExpired):
                _isolation_ok = False
    return _isolation_ok


class Sixgate:
    """One sixgate process in a folder of its own (under tmp_path).

    start() writes the files and runs `[$SIXGATE_WRAP] $SIXGATE_BIN -c
    main.yaml` in that folder, stdout and stderr to sixgate.log, and waits
    (bounded) for the "started" line or the process's exit."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.proc: subprocess.Popen | None = None
        self.log_path = folder / "sixgate.log"
        self.main_path = folder / "main.yaml"
        self.access_path = folder / "access.log"
        self.exit_code: int | None = None
        self.stopped_by_us = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    def write_files(self, main_yaml: str, map_yaml: str | None = None, extra_files=None,
                    map_name: str = "routes.yaml"):
        self.folder.mkdir(parents=True, exist_ok=True)
        self.main_path.write_text(main_yaml)
        if map_yaml is not None:
            (self.folder / map_name).write_text(map_yaml)
        for rel, content in (extra_files or {}).items():
            p = self.folder / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                p.write_bytes(content)
            else:
                p.write_text(content)

    def command(self, args=None, hosts: dict | None = None, dns: bool = False) -> list[str]:
        cmd = WRAP + [sixgate_bin()] + (list(args) if args is not None
                                        else ["-c", str(self.main_path)])
        if hosts is None:
            return cmd
        # A private mount namespace whose /etc/hosts holds <hosts> and whose
        # nsswitch.conf resolves from files only: no DNS query leaves.
        hosts_file = self.folder / "etc-hosts"
        lines = []
        for name, ips in hosts.items():
            for ip in [ips] if isinstance(ips, str) else ips:
                lines.append(f"{ip} {name}\n")
        hosts_file.write_text("".join(lines) or "# empty\n")
        nss = self.folder / "etc-nsswitch.conf"
        nss.write_text("hosts: files dns\n" if dns else "hosts: files\n")
        resolv = self.folder / "etc-resolv.conf"
        resolv.write_text("nameserver 127.0.0.1\noptions timeout:5 attempts:1\n")
        script = ("mount --bind \"$1\" /etc/hosts && mount --bind \"$2\" /etc/nsswitch.conf && "
                  "mount --bind \"$3\" /etc/resolv.conf && shift 3 && exec \"$@\"")
        return ["unshare", "--mount", "--", "sh", "-c", script, "sh",
                str(hosts_file), str(nss), str(resolv)] + cmd

    def start(self, main_yaml: str, map_yaml: str | None = None, extra_files=None,
              expect_fail: bool = False, hosts: dict | None = None, dns: bool = False,
              args=None, timeout: float = 10.0):
        """Writes main.yaml (and routes.yaml when map_yaml is given, and
        extra_files: {relative path: text or bytes}) and starts sixgate.

        hosts: {name: ip or [ip, ...]} resolves names from a private
        /etc/hosts, in that order, and from nothing else (see
        resolver_isolation_available); the test is skipped where that is not
        possible. dns: names not in <hosts> are then asked of a DNS server on
        127.0.0.1:53 (see SlowDns), never of another address. expect_fail: the process is expected to exit by itself;
        start() then returns its exit code. Otherwise start() returns self
        once "started" is logged, and raises if the process exits first."""
        if self.proc is not None:
            raise RuntimeError("this Sixgate was started already")
        if dns and hosts is None:
            hosts = {}
        if hosts is not None and not resolver_isolation_available():
            pytest.skip("needs root and unshare(1) to give sixgate a private /etc/hosts")
        self.write_files(main_yaml, map_yaml, extra_files)
        self.logf = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.command(args, hosts, dns), cwd=self.folder,
                                     stdin=subprocess.DEVNULL, stdout=self.logf,
                                     stderr=subprocess.STDOUT, env=CLEAN_ENV)
        deadline = time.monotonic() + scaled(timeout)
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                self.exit_code = rc
                if expect_fail:
                    return rc
                raise AssertionError(f"sixgate exited with {rc} before it started:\n"
                                     + self.stderr_text())
            if not expect_fail and " started" in self.stderr_text():
                return self
            time.sleep(0.02)
        if expect_fail:
            raise AssertionError("sixgate was expected to exit but still runs:\n"
                                 + self.stderr_text())
        raise AssertionError(f"sixgate did not log 'started' within {scaled(timeout):.0f}s:\n"
                             + self.stderr_text())

    def stderr_text(self) -> str:
        try:
            return self.log_path.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    @staticmethod
    def _json_lines(text: str) -> list[dict]:
        out = []
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("{") and line.endswith("}"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def access_log(self) -> list[dict]:
        """Every access-log line so far: from access.log in the folder when
        it exists, else the JSON lines of stderr."""
        if self.access_path.exists():
            return self._json_lines(self.access_path.read_bytes().decode("utf-8", "replace"))
        return self._json_lines(self.stderr_text())

    def wait_access(self, n: int, timeout: float = 5.0) -> list[dict]:
        """Waits until at least n access-log lines exist; returns them all."""
        return wait_until(lambda: (lambda a: a if len(a) >= n else None)(self.access_log()),
                          scaled(timeout), what=f"{n} access log lines")

    def wait_log(self, pattern: str, timeout: float = 5.0) -> re.Match:
        """Waits until stderr matches the regex <pattern>."""
        return wait_until(lambda: re.search(pattern, self.stderr_text()), scaled(timeout),
                          what=f"/{pattern}/ in sixgate's stderr")

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int):
        self.proc.send_signal(sig)

    def reload(self):
        """SIGHUP: re-read both files."""
        self.signal(signal.SIGHUP)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, wait (bounded) for the exit and return its code; a process
        still running then is killed and the test fails."""
        if self.proc is None:
            raise RuntimeError("not started")
        if self.proc.poll() is None:
            self.stopped_by_us = True
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=scaled(timeout))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
                self.exit_code = self.proc.returncode
                pytest.fail(f"sixgate did not exit within {scaled(timeout):.0f}s of SIGTERM:\n"
                            + self.stderr_text()[-4000:])
        self.exit_code = self.proc.returncode
        return self.exit_code

    def rss_kib(self) -> int:
        """VmRSS of the process (KiB), from /proc/PID/status."""
        text = Path(f"/proc/{self.pid}/status").read_text()
        return int(re.search(r"^VmRSS:\s+(\d+)\s+kB", text, re.M).group(1))

    def problems(self) -> list[str]:
        text = self.stderr_text()
        found = [m for m in BAD_STDERR if re.search(m, text)]
        return found

    def finish(self) -> str | None:
        """Teardown: stop; a message when something is wrong, else None."""
        if self.proc is None:
            return None
        was_running = self.proc.poll() is None
        try:
            code = self.stop()
        finally:
            self.logf.close()
        msgs = []
        bad = self.problems()
        if bad:
            msgs.append(f"sixgate's stderr has {bad}")
        if was_running and code != 0:
            msgs.append(f"sixgate exited with {code} after SIGTERM")
        if msgs:
            return "; ".join(msgs) + ":\n" + self.stderr_text()[-8000:]
        return None


@pytest.fixture
def make_sixgate(tmp_path):
    """A factory of Sixgate instances, each in tmp_path/sixgateN; all are
    stopped and checked at teardown."""
    made: list[Sixgate] = []

    def make() -> Sixgate:
        s = Sixgate(tmp_path / f"sixgate{len(made)}")
        s.folder.mkdir(parents=True, exist_ok=True)
        made.append(s)
        return s

    yield make
    failures = [m for m in (s.finish() for s in made) if m]
    if failures:
        pytest.fail("\n\n".join(failures), pytrace=False)


@pytest.fixture
def sixgate(make_sixgate) -> Sixgate:
    return make_sixgate()


def run_sixgate(args, cwd=None, timeout: float = 20.0) -> subprocess.CompletedProcess:
    """Runs sixgate with <args> to completion (--check, --route, ...)."""
    return subprocess.run(WRAP + [sixgate_bin()] + list(args), cwd=cwd, capture_output=True,
                          text=True, timeout=scaled(timeout), env=CLEAN_ENV)


# ---------------------------------------------------------------------------
# clients: sockets

def connect(port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> socket.socket:
    """A TCP connection to host:port, TCP_NODELAY on, with a timeout."""
    s = socket.socket(_family(host), socket.SOCK_STREAM)
    s.settimeout(scaled(timeout))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.connect((host, port))
    return s


def wait_refused(port: int, host: str = "127.0.0.1", timeout: float = 5.0):
    """Waits (bounded) until nothing listens on host:port any more."""
    def refused():
        try:
            connect(port, host, timeout=1).close()
            return False
        except ConnectionRefusedError:
            return True
    wait_until(refused, scaled(timeout), what=f"{host}:{port} to refuse connections")


def recv_all(s: socket.socket, timeout: float = 10.0, limit: int = 256 * MiB) -> bytes:
    """Reads until EOF (or a reset after some bytes); bounded in time and size."""
    out = bytearray()
    deadline = time.monotonic() + scaled(timeout)
    while len(out) < limit:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no EOF within {scaled(timeout):.1f}s; got {bytes(out[:200])!r}")
        s.settimeout(left)
        try:
            chunk = s.recv(262144)
        except ConnectionResetError:
            break
        if not chunk:
            break
        out += chunk
    return bytes(out)


def recv_exact(s: socket.socket, n: int, timeout: float = 10.0) -> bytes:
    out = bytearray()
    deadline = time.monotonic() + scaled(timeout)
    while len(out) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"wanted {n} bytes, got {len(out)} in {scaled(timeout):.1f}s")
        s.settimeout(left)
        chunk = s.recv(n - len(out))
        if not chunk:
            raise AssertionError(f"EOF after {len(out)} of {n} bytes: {bytes(out[:200])!r}")
        out += chunk
    return bytes(out)


def wait_closed(s: socket.socket, timeout: float) -> tuple[str, bytes]:
    """Waits for the peer to end the connection: ("eof"|"reset", bytes read
    before it). Raises AssertionError if it is still open after timeout."""
    data = bytearray()
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"connection still open after {timeout:.1f}s")
        s.settimeout(left)
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            return "reset", bytes(data)
        if not chunk:
            return "eof", bytes(data)
        data += chunk


def trickle(s: socket.socket, data: bytes, delay: float = 0.002, max_time: float = 30.0):
    """Sends <data> one byte per TCP segment (TCP_NODELAY, a pause between)."""
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    deadline = time.monotonic() + scaled(max_time)
    for i in range(len(data)):
        if time.monotonic() > deadline:
            raise AssertionError("trickle took too long")
        s.sendall(data[i:i + 1])
        time.sleep(delay)


class HttpReader:
    """Reads HTTP responses one at a time from a socket, keeping what
    follows one response (a pipelined next one) for the next call."""

    def __init__(self, sock: socket.socket, timeout: float = 10.0):
        self.sock = sock
        self.buf = bytearray()
        self.timeout = timeout

    def _more(self, deadline: float, what: str) -> bool:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out reading {what}: {bytes(self.buf[:300])!r}")
        self.sock.settimeout(left)
        chunk = self.sock.recv(65536)
        if not chunk:
            return False
        self.buf += chunk
        return True

    def read_response(self) -> tuple[str, list, bytes]:
        """(status line, [(lower-case name, value)], body); the body is
        Content-Length bytes, or everything up to EOF without one."""
        deadline = time.monotonic() + scaled(self.timeout)
        while b"\r\n\r\n" not in self.buf:
            if not self._more(deadline, "a response head"):
                raise AssertionError(f"EOF inside a response head: {bytes(self.buf[:300])!r}")
        i = self.buf.index(b"\r\n\r\n")
        head = bytes(self.buf[:i + 2])
        del self.buf[:i + 4]
        status, headers = parse_http_head(head)
        length = header(headers, "content-length")
        if length is None:
            while self._more(deadline, "a body up to EOF"):
                pass
            body = bytes(self.buf)
            self.buf.clear()
            return status, headers, body
        n = int(length)
        while len(self.buf) < n:
            if not self._more(deadline, "a response body"):
                raise AssertionError(f"EOF after {len(self.buf)} of {n} body bytes")
        body = bytes(self.buf[:n])
        del self.buf[:n]
        return status, headers, body


def read_http_response(s: socket.socket, timeout: float = 10.0) -> tuple[str, list, bytes]:
    """Reads exactly one HTTP response (see HttpReader); fails if more bytes
    than that one response arrived."""
    r = HttpReader(s, timeout)
    resp = r.read_response()
    if r.buf:
        raise AssertionError(f"bytes after the response: {bytes(r.buf[:200])!r}")
    return resp


def http_request(host_header: str | None, target: str = "/", method: str = "GET",
                 extra: str = "", version: str = "HTTP/1.1") -> bytes:
    """A request head as bytes."""
    lines = [f"{method} {target} {version}"]
    if host_header is not None:
        lines.append(f"Host: {host_header}")
    if extra:
        lines.extend(extra.rstrip("\r\n").split("\r\n"))
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def http_exchange(port: int, request: bytes, host: str = "127.0.0.1",
                  timeout: float = 10.0) -> tuple[str, list, bytes]:
    """Connects, sends <request>, reads one response."""
    with connect(port, host, timeout) as s:
        s.sendall(request)
        return read_http_response(s, timeout)


def json_body(body: bytes) -> dict:
    return json.loads(body.decode())


# ---------------------------------------------------------------------------
# clients: TLS

def client_context(cafile: str | None = None, server_name_check: bool = True) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if cafile:
        ctx.load_verify_locations(cafile)
        ctx.check_hostname = server_name_check
        ctx.verify_mode = ssl.CERT_REQUIRED
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def client_hello(server_name: str | None, alpn=None) -> bytes:
    """The bytes of a real ClientHello for <server_name> (None: no SNI),
    produced by Python's ssl over a MemoryBIO (no socket)."""
    ctx = client_context()
    if alpn:
        ctx.set_alpn_protocols(alpn)
    obj = ctx.wrap_bio(ssl.MemoryBIO(), out := ssl.MemoryBIO(), server_hostname=server_name)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


class TlsResult:
    """What tls_client saw: .cn and .san of the peer certificate, .response
    (bytes up to EOF), .version, .cert_der."""

    def __init__(self, cn, san, response, version, der):
        self.cn, self.san, self.response, self.version, self.cert_der = cn, san, response, version, der

    def http(self) -> tuple[str, list, bytes]:
        head, _, body = self.response.partition(b"\r\n\r\n")
        status, headers = parse_http_head(head + b"\r\n")
        return status, headers, body

    def json(self) -> dict:
        return json_body(self.http()[2])


def tls_client(port: int, server_name: str | None, host: str = "127.0.0.1",
               request: bytes | None = None, cafile: str | None = None,
               timeout: float = 10.0) -> TlsResult:
    """A TLS connection with Python ssl through sixgate: SNI <server_name>,
    no verification (or against <cafile>, hostname checked). Sends <request>
    (default: GET / with Host <server_name> and Connection: close) and reads
    to EOF."""
    ctx = client_context(cafile)
    if request is None:
        request = http_request(server_name or "none", extra="Connection: close")
    with connect(port, host, timeout) as raw:
        with ctx.wrap_socket(raw, server_hostname=server_name) as s:
            der = s.getpeercert(binary_form=True)
            s.sendall(request)
            data = bytearray()
            while True:
                try:
                    chunk = s.recv(65536)
                except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                    break
                if not chunk:
                    break
                data += chunk
            version = s.version()
    cn, san = cert_names(der)
    return TlsResult(cn, san, bytes(data), version, der)


class TlsOverSocket:
    """A TLS client (ssl.SSLObject over memory BIOs) on a socket the test
    owns, so the test chooses how the first flight is sent.

        t = TlsOverSocket(sock, "a.test")
        hello = t.hello()                 # the ClientHello bytes
        trickle(sock, hello)              # ... sent however the test likes
        t.finish_handshake()              # the rest of the handshake
        t.send(b"GET / ..."); t.recv_all()
    """

    def __init__(self, sock: socket.socket, server_name: str | None, cafile: str | None = None):
        self.sock = sock
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.obj = client_context(cafile).wrap_bio(self.incoming, self.outgoing,
                                                   server_hostname=server_name)

    def hello(self) -> bytes:
        try:
            self.obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        return self.outgoing.read()

    def _flush(self):
        data = self.outgoing.read()
        if data:
            self.sock.sendall(data)

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        if not chunk:
            self.incoming.write_eof()
            return False
        self.incoming.write(chunk)
        return True

    def finish_handshake(self, timeout: float = 10.0):
        self.sock.settimeout(scaled(timeout))
        for _ in range(1000):
            try:
                self.obj.do_handshake()
                self._flush()
                return
            except ssl.SSLWantReadError:
                self._flush()
                if not self._fill():
                    raise ConnectionError("EOF during the TLS handshake")
        raise AssertionError("handshake did not finish")

    def peer_names(self) -> tuple[str | None, list[str]]:
        return cert_names(self.obj.getpeercert(binary_form=True))

    def send(self, data: bytes):
        self.obj.write(data)
        self._flush()

    def recv_all(self, timeout: float = 10.0) -> bytes:
        self.sock.settimeout(scaled(timeout))
        out = bytearray()
        for _ in range(100000):
            try:
                chunk = self.obj.read(65536)
                if not chunk:
                    break
                out += chunk
            except ssl.SSLWantReadError:
                if not self._fill():
                    try:
                        out += self.obj.read(65536)
                    except (ssl.SSLError, ssl.SSLZeroReturnError):
                        pass
                    break
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                break
        return bytes(out)


def reframe_hello(hello: bytes, size: int) -> bytes:
    """The same ClientHello handshake message cut into TLS records of at
    most <size> bytes of payload each (as a large hello arrives)."""
    assert hello[0] == 0x16
    n = int.from_bytes(hello[3:5], "big")
    msg = hello[5:5 + n]
    assert len(hello) == 5 + n, "one record expected"
    out = bytearray()
    for i in range(0, len(msg), size):
        part = msg[i:i + size]
        out += bytes([0x16]) + hello[1:3] + len(part).to_bytes(2, "big") + part
    return bytes(out)


def pad_hello(hello: bytes, size: int, record_max: int = 16384) -> bytes:
    """The ClientHello of <hello> (one record) grown to a handshake message
    of <size> bytes by a padding extension (RFC 7685) at the end, framed in
    records of at most <record_max> bytes: how a large (post-quantum) hello
    looks on the wire. Only for routing: a server's handshake would fail, as
    the client's transcript differs."""
    msg = bytearray(hello[5:])
    assert msg[0] == 1, "not a ClientHello"
    i = 4 + 2 + 32
    i += 1 + msg[i]                                    # session id
    i += 2 + int.from_bytes(msg[i:i + 2], "big")       # cipher suites
    i += 1 + msg[i]                                    # compression methods
    ext_len_at = i
    ext_len = int.from_bytes(msg[i:i + 2], "big")
    assert ext_len_at + 2 + ext_len == len(msg)
    # drop a padding extension the hello has already, then add ours
    j = ext_len_at + 2
    while j < len(msg):
        etype = int.from_bytes(msg[j:j + 2], "big")
        elen = int.from_bytes(msg[j + 2:j + 4], "big")
        if etype == 21:
            del msg[j:j + 4 + elen]
            ext_len -= 4 + elen
            continue
        j += 4 + elen
    pad = size - len(msg) - 4
    assert pad >= 0, "hello already larger"
    msg += (21).to_bytes(2, "big") + pad.to_bytes(2, "big") + bytes(pad)
    msg[ext_len_at:ext_len_at + 2] = (ext_len + 4 + pad).to_bytes(2, "big")
    msg[1:4] = (len(msg) - 4).to_bytes(3, "big")
    assert len(msg) == size
    out = bytearray()
    for j in range(0, len(msg), record_max):
        part = msg[j:j + record_max]
        out += bytes([0x16]) + hello[1:3] + len(part).to_bytes(2, "big") + part
    return bytes(out)


def tls_alert(description: int) -> bytes:
    """A fatal TLS alert record as sixgate writes it."""
    return bytes([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, description])


ALERT_HANDSHAKE_FAILURE = 40
ALERT_DECODE_ERROR = 50
ALERT_INTERNAL_ERROR = 80
ALERT_UNRECOGNIZED_NAME = 112


# ---------------------------------------------------------------------------
# clients: command line

def curl(url: str, resolve: list[str] | None = None, headers: list[str] | None = None,
         args: list[str] | None = None, timeout: float = 15.0) -> dict:
    """Runs curl -sv (-k for https) and returns {"rc", "status" (int or
    None), "headers" ([(name, value)]), "body" (bytes), "cert_subject",
    "stderr"}. resolve: curl --resolve values "NAME:PORT:ADDR"."""
    cmd = ["curl", "-sv", "--noproxy", "*", "--max-time", str(int(scaled(timeout))),
           "-D", "-", "-o", "-"]
    if url.startswith("https:"):
        cmd.append("-k")
    for r in resolve or []:
        cmd += ["--resolve", r]
    for h in headers or []:
        cmd += ["-H", h]
    cmd += list(args or []) + [url]
    p = subprocess.run(cmd, capture_output=True, timeout=scaled(timeout) + 5, env=CLEAN_ENV)
    out = p.stdout
    status = None
    hdrs: list = []
    body = out
    if out.startswith(b"HTTP/"):
        head, _, body = out.partition(b"\r\n\r\n")
        first, hdrs = parse_http_head(head + b"\r\n")
        status = int(first.split(" ")[1])
    err = p.stderr.decode("utf-8", "replace")
    m = re.search(r"^\*\s+subject:\s*(.*)$", err, re.M)
    return {"rc": p.returncode, "status": status, "headers": hdrs, "body": body,
            "cert_subject": m.group(1).strip() if m else None, "stderr": err}


def s_client(port: int, server_name: str | None, host: str = "127.0.0.1",
             request: bytes = b"", timeout: float = 15.0) -> dict:
    """Runs openssl s_client -servername, sends <request>, waits for the
    server to close (-ign_eof). Returns {"rc", "stdout", "stderr",
    "subject" (the peer certificate's subject line), "cn"}."""
    cmd = ["openssl", "s_client", "-connect", addr_text(host, port), "-ign_eof"]
    if server_name is not None:
        cmd += ["-servername", server_name]
    else:
        cmd += ["-noservername"]
    p = subprocess.run(cmd, input=request, capture_output=True, timeout=scaled(timeout),
                       env=CLEAN_ENV)
    out = p.stdout.decode("utf-8", "replace")
    m = re.search(r"^subject=(.*)$", out, re.M)
    cn = re.search(r"CN\s*=\s*([^,/\n]+)", m.group(1)) if m else None
    return {"rc": p.returncode, "stdout": out, "stderr": p.stderr.decode("utf-8", "replace"),
            "subject": m.group(1).strip() if m else None,
            "cn": cn.group(1).strip() if cn else None}
