"""What a hosting company needs before sixgate replaces HAProxy: PROXY
protocol both ways, the JSON access log, /metrics, systemd's notify
protocol, privilege dropping and a graceful stop."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import pwd
import re
import signal
import socket
import struct
import time
from pathlib import Path

import pytest

import process
from backends import payload
from clients import (client_hello, connect, http_exchange, http_request, json_body,
                     read_http_response, recv_all, wait_refused)
from configs import http_listener, main_config, routes_map, tcp_listener, tls_listener
from process import MiB, free_ports, scaled, wait_until

V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def v2_header(src: tuple[str, int], dst: tuple[str, int], authority: bytes | None = None) -> bytes:
    """The PROXY v2 header as the protocol's text lays it out."""
    s, d = ipaddress.ip_address(src[0]), ipaddress.ip_address(dst[0])
    fam = 0x11 if s.version == 4 else 0x21
    body = s.packed + d.packed + struct.pack("!HH", src[1], dst[1])
    if authority is not None:
        body += struct.pack("!BH", 0x02, len(authority)) + authority
    return V2_SIG + bytes([0x21, fam]) + struct.pack("!H", len(body)) + body


def v1_header(src: tuple[str, int], dst: tuple[str, int]) -> bytes:
    fam = "TCP4" if ipaddress.ip_address(src[0]).version == 4 else "TCP6"
    return f"PROXY {fam} {src[0]} {dst[0]} {src[1]} {dst[1]}\r\n".encode()


# ---------------------------------------------------------------------------
# PROXY protocol towards backends

@pytest.mark.parametrize("client_host", ["127.0.0.1", "::1"])
@pytest.mark.parametrize("version", ["v1", "v2"])
def test_proxy_header_on_tcp_listener(sixgate, backends, client_host, version):
    raw = backends.raw()
    (port,) = free_ports(1)
    sixgate.start(main_config([tcp_listener("ssh", port, raw.addr, proxy_protocol=version)],
                              map=None))
    with connect(port, client_host) as s:
        s.sendall(b"SSH-2.0-client\r\n")
        me = s.getsockname()[:2]
        data = raw.wait_data(1)
        src, dst = (me[0], me[1]), (client_host, port)
        header = v1_header(src, dst) if version == "v1" else v2_header(src, dst)
        data = raw.wait_data(len(header) + 16)
    assert data == header + b"SSH-2.0-client\r\n"


@pytest.mark.parametrize("client_host", ["127.0.0.1", "::1"])
def test_proxy_v2_on_tls_route_carries_the_sni(sixgate, backends, client_host):
    raw = backends.raw()
    (port,) = free_ports(1)
    sixgate.start(main_config([tls_listener("https", port)]),
                  routes_map({"shop.example": {"backend": raw.addr, "proxy_protocol": "v2"}}))
    hello = client_hello("shop.example")
    with connect(port, client_host) as s:
        s.sendall(hello)
        me = s.getsockname()[:2]
        header = v2_header((me[0], me[1]), (client_host, port), b"shop.example")
        data = raw.wait_data(len(header) + len(hello))
    assert data[:len(header)] == header
    assert data[len(header):] == hello


@pytest.mark.parametrize("client_host", ["127.0.0.1", "::1"])
def test_proxy_v1_on_http_route(sixgate, backends, client_host):
    raw = backends.raw()
    (port,) = free_ports(1)
    sixgate.start(main_config([http_listener("web", port)]),
                  routes_map({"blog.example": {"backend": raw.addr, "proxy_protocol": "v1"}}))
    req = http_request("Blog.Example:%d" % port)
    with connect(port, client_host) as s:
        s.sendall(req)
        me = s.getsockname()[:2]
        header = v1_header((me[0], me[1]), (client_host, port))
        data = raw.wait_data(len(header) + len(req))
    assert data == header + req


def test_proxy_header_is_sent_once_even_when_the_client_sends_nothing_more(sixgate, backends):
    """A tcp listener with a PROXY header: written once, before the first
    client byte, also when the backend speaks first."""
    raw = backends.raw(greeting=b"220 hello\r\n")
    (port,) = free_ports(1)
    sixgate.start(main_config([tcp_listener("smtp", port, raw.addr, proxy_protocol="v2")],
                              map=None))
    with connect(port) as s:
        assert s.recv(11) == b"220 hello\r\n"
        me = s.getsockname()[:2]
        header = v2_header((me[0], me[1]), ("127.0.0.1", port))
        assert raw.wait_data(len(header)) == header
        s.sendall(b"EHLO x\r\n")
        assert raw.wait_data(len(header) + 8) == header + b"EHLO x\r\n"
    raw.wait_eof()
    assert bytes(raw.data[0]).count(V2_SIG) == 1


# ---------------------------------------------------------------------------
# PROXY protocol from a trusted upstream

def send_expect_refusal(port: int, data: bytes) -> bytes:
    """Sends <data> and reads to the end; a refusal may come as a reset at
    any point, even before connect() returns. Returns what was read."""
    try:
        with connect(port) as s:
            s.sendall(data)
            return recv_all(s, timeout=5)
    except (ConnectionResetError, BrokenPipeError):
        return b""

def test_trusted_upstream_v1_becomes_the_client(sixgate, backends):
    raw = backends.raw()
    (port,) = free_ports(1)
    sixgate.start(main_config([http_listener("edge", port, accept_proxy=["127.0.0.0/8", "::1"])]),
                  routes_map({"site.example": {"backend": raw.addr, "proxy_protocol": "v2"}}))
    req = http_request("site.example")
    with connect(port) as s:
        s.sendall(b"PROXY TCP4 203.0.113.7 192.0.2.10 51812 443\r\n" + req)
        upstream = s.getsockname()
        want = v2_header(("203.0.113.7", 51812), ("192.0.2.10", 443), b"site.example")
        data = raw.wait_data(len(want) + len(req))
    assert data == want + req
    (entry,) = sixgate.wait_access(1)
    assert entry["client"] == "203.0.113.7" and entry["client_port"] == 51812
    assert entry["via"] == f"127.0.0.1:{upstream[1]}"
    assert entry["local"] == "192.0.2.10:443"
    assert entry["name"] == "site.example"


def test_trusted_upstream_v2_ipv6_with_tlvs(sixgate, backends):
    raw = backends.raw()
    (port,) = free_ports(1)
    sixgate.start(main_config([tls_listener("edge", port, hosts=("::1",), accept_proxy="::1/128")]),
                  routes_map({"shop.example": {"backend": raw.addr, "proxy_protocol": "v1"}}))
    hello = client_hello("shop.example")
    # a v2 header from the upstream with an extra TLV (type 0xEE) that is skipped
    upstream = v2_header(("2001:db8::7", 40000), ("2001:db8::10", 443), b"ignored")
    upstream = upstream[:14] + struct.pack("!H", struct.unpack("!H", upstream[14:16])[0] + 5) \
        + upstream[16:] + b"\xee\x00\x02ab"
    with connect(port, "::1") as s:
        s.sendall(upstream + hello)
        want = b"PROXY TCP6 2001:db8::7 2001:db8::10 40000 443\r\n"
        data = raw.wait_data(len(want) + len(hello))
    assert data == want + hello
    (entry,) = sixgate.wait_access(1)
    assert entry["client"] == "2001:db8::7" and entry["name"] == "shop.example"


def test_untrusted_upstream_is_refused(sixgate, backends):
    a = backends.http("A")
    (port,) = free_ports(1)
    sixgate.start(main_config([http_listener("edge", port, accept_proxy="10.0.0.0/8")]),
                  routes_map({"site.example": a.addr}))
    rest = send_expect_refusal(port, b"PROXY TCP4 203.0.113.7 192.0.2.10 51812 443\r\n"
                               + http_request("site.example"))
    assert rest == b""
    assert a.requests == []
    (entry,) = sixgate.wait_access(1)
    assert entry["outcome"] == "proxy_refused" and entry["client"] == "127.0.0.1"


@pytest.mark.parametrize("first", [b"GET / HTTP/1.1\r\nHost: site.example\r\n\r\n",
                                   b"PROXY TCP4 1.2.3.4\r\n",
                                   b"\r\n\r\n\x00\r\nQUIT\n\x31\x11\x00\x0c" + bytes(12)])
def test_trusted_upstream_without_a_valid_header_is_refused(sixgate, backends, first):
    a = backends.http("A")
    (port,) = free_ports(1)
    sixgate.start(main_config([http_listener("edge", port, accept_proxy="127.0.0.1")]),
                  routes_map({"site.example": a.addr}))
    rest = send_expect_refusal(port, first)
    assert rest == b"" and a.requests == []
    (entry,) = sixgate.wait_access(1)
    assert entry["outcome"] == "proxy_refused"
    # and the listener goes on serving a proper upstream
    with connect(port) as s:
        s.sendall(b"PROXY TCP4 198.51.100.1 192.0.2.1 1000 80\r\n" + http_request("site.example"))
        assert json_body(read_http_response(s)[2])["backend"] == "A"


# ---------------------------------------------------------------------------
# access log

def test_hostile_names_cannot_forge_log_lines(sixgate, backends):
    a = backends.http("A")
    tls_port, http_port = free_ports(2)
    sixgate.start(main_config([tls_listener("https", tls_port), http_listener("web", http_port)]),
                  routes_map({"site.example": a.addr}))
    evil = b'x"}\n{"outcome":"ok","name":"\xff\x01'
    # as an SNI host_name: sent raw, the TLS layer carries any byte
    hello = bytearray(client_hello("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"))
    i = hello.index(b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
    hello[i:i + 37] = evil + b"b" * (37 - len(evil))
    with connect(tls_port) as s:
        s.sendall(bytes(hello))
        alert = recv_all(s, timeout=5)
    assert alert == bytes([0x15, 3, 3, 0, 2, 2, 112])
    # as a Host header (what HTTP allows of it)
    status, _, _ = http_exchange(http_port, b'GET / HTTP/1.1\r\nHost: a"b<\xc3\xa9>\r\n\r\n')
    assert status.startswith("HTTP/1.1 400")
    lines = (sixgate.folder / "access.log").read_bytes()
    wait_until(lambda: (sixgate.folder / "access.log").read_bytes().count(b"\n") >= 2, scaled(5))
    lines = (sixgate.folder / "access.log").read_bytes().splitlines()
    assert len(lines) == 2
    entries = [json.loads(l) for l in lines]  # every line is valid JSON
    assert all(set(l) <= set(range(0x20, 0x7f)) for l in lines)  # printable ASCII only
    tls_entry = next(e for e in entries if e["listener"] == "https")
    assert tls_entry["outcome"] == "bad_request"
    assert tls_entry["name"].encode("latin-1").startswith(evil)
    http_entry = next(e for e in entries if e["listener"] == "web")
    assert http_entry["name"].encode("latin-1") == b'a"b<\xc3\xa9>'


def test_access_log_is_reopened_on_sigusr1(sixgate, backends):
    a = backends.http("A")
    (port,) = free_ports(1)
    sixgate.start(main_config([http_listener("web", port)]), routes_map({"site.example": a.addr}))
    http_exchange(port, http_request("site.example", extra="Connection: close"))
    sixgate.wait_access(1)
    log = sixgate.folder / "access.log"
    log.rename(sixgate.folder / "access.log.1")  # what logrotate does
    sixgate.signal(signal.SIGUSR1)
    sixgate.wait_log(r"reopened the access log")
    http_exchange(port, http_request("site.example", extra="Connection: close"))
    wait_until(lambda: log.exists() and log.read_text().count("\n") == 1, scaled(5),
               what="a line in the new file")
    assert (sixgate.folder / "access.log.1").read_text().count("\n") == 1


# ---------------------------------------------------------------------------
# metrics

def scrape(port: int) -> dict:
    """/metrics parsed: {(name, frozenset(labels.items())): value}; also
    checks the text format line by line."""
    status, headers, body = http_exchange(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == "HTTP/1.1 200 OK"
    assert dict(headers)["content-type"].startswith("text/plain; version=0.0.4")
    out = {}
    typed = set()
    label = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*"'
    line_re = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(' + label + r'(?:,' + label +
                         r')*)\})? (-?[0-9.e+]+|\+Inf)$')
    for line in body.decode().splitlines():
        if line.startswith("# TYPE "):
            typed.add(line.split()[2])
            continue
        if line.startswith("# HELP "):
            continue
        m = line_re.match(line)
        assert m, f"not Prometheus text: {line!r}"
        labels = frozenset(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"',
                                      m.group(3) or ""))
        base = re.sub(r"_(bucket|sum|count)$", "", m.group(1))
        assert m.group(1) in typed or base in typed, f"no TYPE for {m.group(1)}"
        out[(m.group(1), labels)] = float(m.group(4))
    return out


def metric(m: dict, name: str, **labels) -> float:
    return m[(name, frozenset(labels.items()))]


def test_metrics_move_with_traffic(sixgate, backends):
    a = backends.http("A")
    web, admin = free_ports(2)
    map_text = routes_map({"site.example": a.addr}, version="cp-17")
    sixgate.start(main_config([http_listener("web", web)],
                              admin={"listen": f"127.0.0.1:{admin}"}), map_text)
    before = scrape(admin)
    assert metric(before, "sixgate_connections_accepted_total", listener="web") == 0
    for _ in range(5):
        http_exchange(web, http_request("site.example", extra="Connection: close"))
    for _ in range(3):
        assert http_exchange(web, http_request("nobody.example"))[0].startswith("HTTP/1.1 421")
    sixgate.wait_access(8)
    m = scrape(admin)
    assert metric(m, "sixgate_connections_accepted_total", listener="web") == 8
    assert metric(m, "sixgate_connections_total", listener="web", outcome="ok") == 5
    assert metric(m, "sixgate_connections_total", listener="web", outcome="no_route") == 3
    assert metric(m, "sixgate_connections_active", listener="web") == 0
    sent = sum(e["bytes_from_client"] for e in sixgate.access_log())
    got = sum(e["bytes_from_backend"] for e in sixgate.access_log())
    assert metric(m, "sixgate_bytes_total", listener="web", direction="from_client") == sent
    assert metric(m, "sixgate_bytes_total", listener="web", direction="from_backend") == got
    assert metric(m, "sixgate_sniff_duration_seconds_count") == 8
    assert metric(m, "sixgate_sniff_duration_seconds_bucket", le="+Inf") == 8
    assert metric(m, "sixgate_connect_duration_seconds_count") == 5
    assert metric(m, "sixgate_routes") == 1
    assert metric(m, "sixgate_config_generation") == 1
    digest = hashlib.sha256(map_text.encode()).hexdigest()
    assert metric(m, "sixgate_map_info", sha256=digest, version="cp-17") == 1
    assert metric(m, "sixgate_reloads_total", result="ok") == 1
    # an open connection is active
    s = connect(web)
    s.sendall(http_request("site.example"))
    read_http_response(s)
    assert metric(scrape(admin), "sixgate_connections_active", listener="web") == 1
    s.close()
    # reloads, good and bad
    (sixgate.folder / "routes.yaml").write_text("routes: [\n")
    sixgate.reload()
    sixgate.wait_log("refused")
    (sixgate.folder / "routes.yaml").write_text(
        routes_map({"site.example": a.addr, "two.example": a.addr}, version="cp-18"))
    sixgate.reload()
    sixgate.wait_log("generation 2")
    m = scrape(admin)
    assert metric(m, "sixgate_reloads_total", result="ok") == 2
    assert metric(m, "sixgate_reloads_total", result="failed") == 1
    assert metric(m, "sixgate_routes") == 2
    assert metric(m, "sixgate_config_generation") == 2


def test_healthz_and_unknown_paths(sixgate, backends):
    a = backends.http("A")
    web, admin = free_ports(2)
    sixgate.start(main_config([http_listener("web", web)],
                              admin={"listen": f"127.0.0.1:{admin}"}),
                  routes_map({"site.example": a.addr}))
    status, _, body = http_exchange(admin, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (status, body) == ("HTTP/1.1 200 OK", b"ok\n")
    status, _, _ = http_exchange(admin, b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == "HTTP/1.1 404 Not Found"


# ---------------------------------------------------------------------------
# systemd

def test_notify_datagrams(sixgate, backends, tmp_path, monkeypatch):
    a = backends.http("A")
    (port,) = free_ports(1)
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(scaled(10))
    monkeypatch.setitem(process.CLEAN_ENV, "NOTIFY_SOCKET", path)
    try:
        sixgate.start(main_config([http_listener("web", port)]),
                      routes_map({"site.example": a.addr}))
        assert sock.recv(256) == b"READY=1"
        sixgate.reload()
        assert sock.recv(256) == b"RELOADING=1"
        assert sock.recv(256) == b"READY=1"
        sixgate.stop()
        assert sock.recv(256) == b"STOPPING=1"
    finally:
        sock.close()


def test_systemd_unit_in_examples():
    unit = (Path(__file__).parents[2] / "examples" / "sixgate.service").read_text()
    for line in ("Type=notify", "ExecReload=/bin/kill -HUP $MAINPID",
                 "AmbientCapabilities=CAP_NET_BIND_SERVICE", "KillSignal=SIGTERM"):
        assert line in unit.splitlines(), line


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
def test_drops_root_for_the_configured_user(sixgate, backends):
    a = backends.http("A")
    (port,) = free_ports(1)
    nobody = pwd.getpwnam("nobody")
    os.chmod(sixgate.folder, 0o755)
    os.chmod(sixgate.folder.parent, 0o755)
    sixgate.start(main_config([http_listener("web", port)], user="nobody", access="stderr"),
                  routes_map({"site.example": a.addr}))
    status = Path(f"/proc/{sixgate.pid}/status").read_text()
    uids = re.search(r"^Uid:\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)", status, re.M).groups()
    assert set(uids) == {str(nobody.pw_uid)}, status
    assert re.search(r"^CapEff:\s+0+$", status, re.M), status
    assert "running as user nobody" in sixgate.stderr_text()
    assert json_body(http_exchange(port, http_request("site.example"))[2])["backend"] == "A"


# ---------------------------------------------------------------------------
# graceful stop

def test_drain_lets_a_slow_transfer_finish(sixgate, backends):
    bulk = backends.hash(16 * MiB)
    port, admin = free_ports(2)
    sixgate.start(main_config([tcp_listener("bulk", port, bulk.addr)], map=None,
                              timeouts={"drain": "30s"}, admin={"listen": f"127.0.0.1:{admin}"}))
    s = connect(port)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    s.sendall(b"upload")
    s.shutdown(socket.SHUT_WR)
    first = s.recv(65536)
    sixgate.signal(signal.SIGTERM)
    sixgate.wait_log(r"stopping: no new connections")

    wait_refused(port)
    status, _, body = http_exchange(admin, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (status, body) == ("HTTP/1.1 503 Service Unavailable", b"draining\n")
    h = hashlib.sha256(first)
    n = len(first)
    s.settimeout(scaled(60))
    while True:  # a slow reader: small reads with pauses
        chunk = s.recv(256 * 1024)
        if not chunk:
            break
        h.update(chunk)
        n += len(chunk)
        time.sleep(0.001)
    s.close()
    assert n == bulk.nbytes and h.hexdigest() == bulk.send_sha256
    sixgate.proc.wait(timeout=scaled(15))
    assert sixgate.proc.returncode == 0
    entry = sixgate.access_log()[-1]
    assert entry["outcome"] == "ok"
    assert "all connections are done; exiting" in sixgate.stderr_text()


def test_drain_time_is_a_limit(sixgate, backends):
    echo = backends.echo()
    (port,) = free_ports(1)
    sixgate.start(main_config([tcp_listener("echo", port, echo.addr)], map=None,
                              timeouts={"drain": "1s"}))
    s = connect(port)
    s.sendall(b"x")
    assert s.recv(1) == b"x"
    t0 = time.monotonic()
    sixgate.signal(signal.SIGTERM)
    sixgate.proc.wait(timeout=scaled(10))
    assert sixgate.proc.returncode == 0
    assert 0.8 <= time.monotonic() - t0 < scaled(5)
    try:
        assert s.recv(1) == b""
    except ConnectionResetError:
        pass
    s.close()
    (entry,) = sixgate.access_log()
    assert entry["outcome"] == "stopped"
    assert "drain time is over" in sixgate.stderr_text()


# ---------------------------------------------------------------------------
# splice

@pytest.mark.parametrize("mode", ["off", "auto", "always"])
def test_splice_mode_decides_who_moves_the_bytes(sixgate, backends, mode):
    """splice: off copies every byte through user space; always splices
    them all (socket -> pipe -> socket) but the head the client sent before
    the backend was connected; auto splices a direction once it has moved
    64 KiB. The bytes arrive exactly in each mode, and
    sixgate_spliced_bytes_total says which path carried them."""
    n = 4 * MiB
    hb = backends.hash(n, seed=b"splice")
    port, admin = free_ports(2)
    sixgate.start(main_config([tcp_listener("bulk", port, hb.addr)], map=None, splice=mode,
                              admin={"listen": f"127.0.0.1:{admin}"}))
    data, sha = payload(b"client", n)
    s = connect(port)
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    got = recv_all(s, timeout=scaled(30))
    s.close()
    assert hashlib.sha256(got).hexdigest() == hb.send_sha256
    wait_until(lambda: hb.results.get(0, {}).get("done"), scaled(10), what="the backend's end")
    assert hb.results[0]["received"] == n and hb.results[0]["sha256"] == sha
    (entry,) = sixgate.wait_access(1)
    assert entry["outcome"] == "ok"
    assert entry["bytes_from_client"] == n and entry["bytes_from_backend"] == n
    spliced = metric(scrape(admin), "sixgate_spliced_bytes_total")
    if mode == "off":
        assert spliced == 0
    elif mode == "always":  # all but what the client sent before the connect (the head)
        assert 2 * n - 16 * 1024 <= spliced <= 2 * n
    else:  # the first 64 to 128 KiB of each direction were copied, the rest spliced
        assert 2 * n - 2 * 128 * 1024 <= spliced <= 2 * n - 2 * 64 * 1024


# ---------------------------------------------------------------------------
# workers: auto

def test_workers_auto_counts_the_cpus_it_may_run_on(make_sixgate, backends):
    """workers: auto is one worker per CPU of the process's affinity mask
    (and cgroup quota), not per CPU of the machine: under a one-CPU mask
    sixgate starts one worker."""
    echo = backends.echo()
    mine = sorted(os.sched_getaffinity(0))
    cases = [{mine[0]}]
    if len(mine) >= 2:
        cases.append({mine[0], mine[1]})
    for cpus in cases:
        sg = make_sixgate()
        (port,) = free_ports(1)
        os.sched_setaffinity(0, cpus)
        try:
            sg.start(main_config([tcp_listener("tcp", port, echo.addr)], map=None,
                                 workers="auto"))
        finally:
            os.sched_setaffinity(0, mine)
        m = sg.wait_log(r"started: (\d+) workers")
        assert 1 <= int(m.group(1)) <= len(cpus)
        if len(cpus) == 1:
            assert int(m.group(1)) == 1
        s = connect(port)
        s.sendall(b"ping")
        assert s.recv(4) == b"ping"
        s.close()
        sg.stop()


def test_admin_serves_64_connections_at_once_and_closes_the_rest(sixgate, backends):
    """A local client that holds admin connections open gets 64 of them;
    the rest are closed at once, and once it lets go /metrics answers."""
    a = backends.http("A")
    web, admin = free_ports(2)
    sixgate.start(main_config([http_listener("web", web)], admin={"listen": f"127.0.0.1:{admin}"}),
                  routes_map({"site.example": a.addr}))
    held = [connect(admin) for _ in range(80)]
    try:
        closed = 0
        for s in held:
            s.settimeout(scaled(0.05))
            try:
                if s.recv(1) == b"":
                    closed += 1
            except (socket.timeout, TimeoutError):
                pass
            except ConnectionResetError:
                closed += 1
        assert closed == 80 - 64, f"{closed} of 80 closed"
    finally:
        for s in held:
            s.close()
    wait_until(lambda: http_exchange(admin, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")[0]
               == "HTTP/1.1 200 OK", scaled(5), what="/healthz again")
    assert metric(scrape(admin), "sixgate_connections_accepted_total", listener="web") == 0
