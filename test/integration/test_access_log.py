"""The access log: one JSON line per connection with every field right
(addresses, the name and how it matched, bytes each way at the TCP level,
times, outcome), and no log at all when it is off."""

from __future__ import annotations

import re
import ssl
import time

from clients import TlsOverSocket, connect, http_exchange, http_request, recv_all
from configs import http_listener, main_config, routes_map, tls_listener
from process import V4, V6, free_ports, one_access, scaled


def test_access_log_fields(sixgate, backends):
    tb = backends.tls("site.test")
    hb = backends.http("zone")
    ph, pt = free_ports(2)
    sixgate.start(main_config([http_listener("web", ph), tls_listener("tls", pt)]),
                  routes_map({"site.test": tb.addr, "*.zone.test": hb.addr}))
    # TLS, exact, IPv4: count what went each way at the TCP level
    with connect(pt, V4) as raw:
        t = TlsOverSocket(raw, "site.test")
        hello = t.hello()
        raw.sendall(hello)
        sent = len(hello)
        recvd = 0
        # drive the handshake by hand to count bytes
        raw.settimeout(scaled(10))
        while True:
            try:
                t.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                out = t.outgoing.read()
                raw.sendall(out)
                sent += len(out)
                chunk = raw.recv(65536)
                assert chunk
                recvd += len(chunk)
                t.incoming.write(chunk)
        out = t.outgoing.read()
        raw.sendall(out)
        sent += len(out)
        t.obj.write(http_request("site.test", extra="Connection: close"))
        out = t.outgoing.read()
        raw.sendall(out)
        sent += len(out)
        while True:
            chunk = raw.recv(65536)
            if not chunk:
                break
            recvd += len(chunk)
        local_port = raw.getsockname()[1]
    a = one_access(sixgate, client_port=local_port)
    assert a["listener"] == "tls" and a["protocol"] == "tls"
    assert a["client"] == V4 and a["local"] == f"127.0.0.1:{pt}"
    assert a["name"] == "site.test" and a["match"] == "exact" and a["route"] == "site.test"
    assert a["backend"] == tb.addr and a["outcome"] == "ok" and a["reason"] is None
    assert a["bytes_from_client"] == sent and a["bytes_from_backend"] == recvd
    for k in ("sniff_ms", "connect_ms", "duration_ms"):
        assert isinstance(a[k], (int, float)) and a[k] >= 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", a["time"])
    assert isinstance(a["conn"], int)

    # HTTP, wildcard, IPv6
    req = http_request("Deep.Zone.Test.", extra="Connection: close")
    with connect(ph, V6) as s:
        s.sendall(req)
        resp = recv_all(s)
        local_port = s.getsockname()[1]
    a = one_access(sixgate, client_port=local_port)
    assert a["listener"] == "web" and a["protocol"] == "http"
    assert a["client"] == V6 and a["local"] == f"[::1]:{ph}"
    assert a["name"] == "deep.zone.test" and a["match"] == "wildcard"
    assert a["route"] == "*.zone.test" and a["backend"] == hb.addr
    assert a["bytes_from_client"] == len(req) and a["bytes_from_backend"] == len(resp)
    assert a["outcome"] == "ok"

    # refused: no route; an invalid name is logged as received
    with connect(ph) as s:
        s.sendall(http_request("nope.test"))
        recv_all(s)
        p1 = s.getsockname()[1]
    a = one_access(sixgate, client_port=p1)
    assert (a["match"], a["route"], a["backend"], a["outcome"]) == ("none", None, None, "no_route")
    assert "sniff_ms" in a and "connect_ms" not in a
    with connect(ph) as s:
        s.sendall(b'GET / HTTP/1.1\r\nHost: a "b\\.test\r\n\r\n')
        recv_all(s)
        p2 = s.getsockname()[1]
    a = one_access(sixgate, client_port=p2)
    assert a["outcome"] == "bad_request" and a["name"] == 'a "b\\.test'
    # one line per connection, every line complete
    log = sixgate.access_log()
    assert len(log) == 4
    assert len({a["conn"] for a in log}) == 4
    assert "\"conn\"" not in sixgate.stderr_text()  # the access log went to the file only

def test_access_log_off(sixgate, backends):
    hb = backends.http("quiet")
    port = free_ports(1)[0]
    sixgate.start(main_config([http_listener("http", port)], access="off"),
                  routes_map({"q.test": hb.addr}))
    assert http_exchange(port, http_request("q.test"))[0] == "HTTP/1.1 200 OK"
    time.sleep(0.3)
    assert sixgate.access_log() == [] and not sixgate.access_path.exists()


def test_a_reader_that_falls_behind_costs_lines_not_service(tmp_path, backends):
    """log.access: stderr, and stderr is a pipe nobody reads (a stuck
    supervisor): once the pipe is full, lines are dropped and counted, and
    every client is still served at once. No line is ever cut."""
    import os
    import subprocess

    from process import CLEAN_ENV, WRAP, sixgate_bin, wait_until
    from test_production import metric, scrape

    a = backends.http("A")
    web, admin = free_ports(2)
    (tmp_path / "main.yaml").write_text(main_config(
        [http_listener("web", web)], access="stderr", admin={"listen": f"127.0.0.1:{admin}"}))
    (tmp_path / "routes.yaml").write_text(routes_map({"site.example": a.addr}))
    r, w = os.pipe()
    proc = subprocess.Popen(WRAP + [sixgate_bin(), "-c", str(tmp_path / "main.yaml")],
                            cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=w, stderr=w,
                            env=CLEAN_ENV)
    os.close(w)
    got = bytearray()
    try:
        os.set_blocking(r, False)

        def started():
            try:
                got.extend(os.read(r, 65536))
            except BlockingIOError:
                pass
            return b" started: " in got
        wait_until(started, scaled(10), what="sixgate's start")
        # from here on nobody reads: 64 KiB of pipe hold some 250 lines
        t0 = time.monotonic()
        for _ in range(1500):
            status, _, _ = http_exchange(web, http_request("site.example",
                                                           extra="Connection: close"))
            assert status == "HTTP/1.1 200 OK"
        served = time.monotonic() - t0
        assert served < scaled(30), f"1500 requests took {served:.1f} s"
        wait_until(lambda: metric(scrape(admin), "sixgate_access_log_dropped_total") > 0,
                   scaled(5), what="dropped lines counted")
        dropped = metric(scrape(admin), "sixgate_access_log_dropped_total")
        assert dropped < 1500
    finally:
        # read what the pipe holds, so that sixgate's last lines can go out
        os.set_blocking(r, False)
        proc.terminate()
        deadline = time.monotonic() + scaled(15)
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                got.extend(os.read(r, 65536))
            except BlockingIOError:
                time.sleep(0.01)
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        try:
            while chunk := os.read(r, 65536):
                got.extend(chunk)
        except BlockingIOError:
            pass
        os.close(r)
    assert proc.returncode == 0
    lines = [line for line in got.decode().splitlines() if line.startswith("{")]
    assert 0 < len(lines) <= 1500 - dropped
    for line in lines:  # every line whole
        assert line.endswith("}"), line
        assert '"listener":"web"' in line
