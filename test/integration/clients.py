"""Clients: raw sockets, HTTP/1.1 over them, TLS (Python ssl) and the
command-line clients, curl and openssl s_client. Every read is bounded in
time.

Sockets
    connect(port, host), recv_all, recv_exact, wait_closed, wait_refused,
    send_then_wait_closed, trickle (one byte per segment)
HTTP
    http_request (a request head), HttpReader, read_http_response,
    http_exchange, json_body
TLS
    tls_client(port, server_name)   Python ssl; returns the peer certificate's
                                    CN/SAN and the response bytes
    client_hello(server_name)       a real ClientHello made by ssl.MemoryBIO
    reframe_hello, pad_hello        the same hello in other records or larger
    TlsOverSocket                   drives an ssl.SSLObject over a raw socket
                                    (so a test decides how bytes are sent)
    tls_alert(ALERT_...)            a fatal alert record as sixgate sends it
Command line
    curl(...), s_client(...)        with timeouts, no proxy from the environment
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import subprocess
import time

from certs import cert_names
from http1 import header, parse_http_head
from process import CLEAN_ENV, MiB, addr_text, scaled, socket_family, wait_until


# ---------------------------------------------------------------------------
# clients: sockets


def connect(port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> socket.socket:
    """A TCP connection to host:port, TCP_NODELAY on, with a timeout."""
    s = socket.socket(socket_family(host), socket.SOCK_STREAM)
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


def send_then_wait_closed(s: socket.socket, data: bytes, timeout: float) -> tuple[str, bytes]:
    """Sends <data> to a peer that may end the connection before it has
    taken all of it (an error sending is then no failure), and waits for
    that end: what wait_closed returns."""
    try:
        s.sendall(data)
    except OSError:
        pass
    return wait_closed(s, timeout)


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
