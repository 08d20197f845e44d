"""Timeouts and limits: the connect time (also while a name resolves), the
sniff time, a client that leaves before it is routed, the connection limit,
the drain time on SIGTERM and the idle time."""

from __future__ import annotations

import select
import signal
import socket
import time

import pytest

from backends import Backend
from clients import (ALERT_INTERNAL_ERROR, client_hello, connect, http_exchange, http_request,
                     recv_all, recv_exact, tls_alert, wait_closed)
from configs import http_listener, main_config, routes_map, tcp_listener, tls_listener
from http1 import header
from process import V4, V6, free_ports, one_access, scaled, wait_until


# ---------------------------------------------------------------------------
# connect

def test_connect_timeout_504(sixgate, backends):
    hole = backends.blackhole()
    if not hole.full:
        pytest.skip("could not fill a loopback accept queue here")
    ph, pt, pc = free_ports(3)
    sixgate.start(main_config([http_listener("http", ph), tls_listener("https", pt),
                               tcp_listener("tcp", pc, hole.addr)],
                              timeouts={"connect": "1s"}),
                  routes_map({"slow.test": hole.addr}))
    t0 = time.monotonic()
    status, headers, body = http_exchange(ph, http_request("slow.test"))
    took = time.monotonic() - t0
    assert status == "HTTP/1.1 504 Gateway Timeout"
    assert header(headers, "connection") == "close"
    assert body == b"504 Gateway Timeout: the site's server did not answer in time\n"
    assert 0.9 <= took <= scaled(3.0), took
    with connect(pt) as s:
        s.sendall(client_hello("slow.test"))
        assert recv_all(s) == tls_alert(ALERT_INTERNAL_ERROR)
    with connect(pc, V6) as s:
        t0 = time.monotonic()
        kind, data = wait_closed(s, scaled(5))
        assert data == b"" and 0.9 <= time.monotonic() - t0 <= scaled(3.0)
    log = sixgate.wait_access(3)
    assert all(a["outcome"] == "connect_timeout" and a["backend"] == hole.addr for a in log)


@pytest.mark.parametrize("proto", ["http", "tls"])
def test_resolution_slower_than_connect_timeout(sixgate, backends, proto):
    """The name resolves only after the connect time is over: the client got
    its refusal, and the late answer must not revive the connection."""
    hb = backends.http("late")
    tb = backends.tls("late.test")
    dns = backends.slow_dns({"late.backend.test": "::1"}, delay=1.5)
    ph, pt = free_ports(2)
    sixgate.start(main_config([http_listener("http", ph), tls_listener("https", pt)],
                              timeouts={"connect": "1s"}),
                  routes_map({"late.test": f"late.backend.test:{hb.port}",
                              "late-tls.test": f"late.backend.test:{tb.port}"}),
                  dns=True)
    if proto == "http":
        s = connect(ph)
        s.sendall(http_request("late.test"))
        expect = b"HTTP/1.1 504 Gateway Timeout\r\n"
    else:
        s = connect(pt)
        s.sendall(client_hello("late-tls.test"))
        expect = tls_alert(ALERT_INTERNAL_ERROR)
    with s:
        # read the refusal but keep the connection open past the DNS answer
        got = recv_exact(s, len(expect))
        assert got == expect
        wait_until(lambda: dns.queries, scaled(5), what="the DNS query")
        time.sleep(1.0)
        kind, rest = wait_closed(s, scaled(5))
    a = one_access(sixgate, outcome="connect_timeout")
    assert a["name"] in ("late.test", "late-tls.test")
    time.sleep(0.3)
    assert hb.accepted == 0 and tb.accepted == 0
    assert " bug: " not in sixgate.stderr_text()
    assert sixgate.running()


# ---------------------------------------------------------------------------
# sniff

def select_readable(s, timeout):
    return select.select([s], [], [], timeout)


def test_sniff_timeout(sixgate):
    ph, pt = free_ports(2)
    sixgate.start(main_config([http_listener("http", ph), tls_listener("https", pt)],
                              timeouts={"sniff": "1s"}),
                  routes_map({"x.test": "[::1]:9"}))
    # a client that sends nothing
    with connect(pt) as s:
        t0 = time.monotonic()
        kind, data = wait_closed(s, scaled(5))
        took = time.monotonic() - t0
    assert data == b"" and 0.8 <= took <= scaled(3.0), (kind, took)
    # a client that trickles a hello, one byte per 300 ms
    hello = client_hello("x.test")
    with connect(pt, V6) as s:
        t0 = time.monotonic()
        closed = None
        for i in range(20):  # 6 s at most
            try:
                s.sendall(hello[i:i + 1])
            except OSError:
                closed = time.monotonic() - t0
                break
            r, _, _ = select_readable(s, 0.3)
            if r:
                try:
                    if s.recv(100) == b"":
                        closed = time.monotonic() - t0
                        break
                except ConnectionResetError:
                    closed = time.monotonic() - t0
                    break
        assert closed is not None and 0.8 <= closed <= scaled(3.0), closed
    # the same for an HTTP head
    with connect(ph) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHo")
        t0 = time.monotonic()
        kind, data = wait_closed(s, scaled(5))
        assert data == b"" and time.monotonic() - t0 <= scaled(3.0)
    log = sixgate.wait_access(3)
    assert all(a["outcome"] == "sniff_timeout" for a in log), log
    assert [a["bytes_from_client"] for a in log][0] == 0


def test_client_leaves_before_routing(sixgate):
    """Half a hello, then EOF: closed at once, logged as client_gone."""
    port = free_ports(1)[0]
    sixgate.start(main_config([tls_listener("https", port)]), routes_map({"x.test": "[::1]:9"}))
    hello = client_hello("x.test")
    with connect(port) as s:
        s.sendall(hello[:100])
        s.shutdown(socket.SHUT_WR)
        t0 = time.monotonic()
        kind, data = wait_closed(s, scaled(5))
        assert data == b"" and time.monotonic() - t0 < scaled(1.0)
    a = sixgate.wait_access(1)[0]
    assert a["outcome"] == "client_gone" and a["bytes_from_client"] == 100


# ---------------------------------------------------------------------------
# the connection limit

def test_connection_limit(sixgate, backends):
    """limits.connections: past it a new connection is reset (overload)
    and the established ones go on."""
    echo = backends.echo()
    port = free_ports(1)[0]
    sixgate.start(main_config([tcp_listener("tcp", port, echo.addr)], map=None,
                              limits={"connections": 2}))
    a, b = connect(port), connect(port)
    for s in (a, b):
        s.sendall(b"hi")
        assert recv_exact(s, 2) == b"hi"
    try:
        with connect(port) as c:  # the reset may come before connect() returns
            kind, data = wait_closed(c, scaled(5))
            assert data == b""
    except ConnectionResetError:
        pass
    over = sixgate.wait_access(1)
    assert [x["outcome"] for x in over] == ["overload"]
    a.sendall(b"still")
    assert recv_exact(a, 5) == b"still"
    a.close()
    b.close()
    sixgate.wait_access(3)
    with connect(port) as d:  # room again
        d.sendall(b"again")
        assert recv_exact(d, 5) == b"again"


# ---------------------------------------------------------------------------
# SIGTERM and the drain time

def test_sigterm_drains(sixgate, backends):
    """SIGTERM: no new connections, the established one goes on, and the
    process exits 0 as soon as it ends (before the drain time)."""
    echo = backends.echo()
    port = free_ports(1)[0]
    sixgate.start(main_config([tcp_listener("tcp", port, echo.addr, hosts=(V4,))], map=None,
                              timeouts={"drain": "20s"}))
    s = connect(port)
    s.sendall(b"before")
    assert recv_exact(s, 6) == b"before"
    sixgate.signal(signal.SIGTERM)
    sixgate.wait_log("stopping")

    def refused():
        try:
            connect(port, timeout=1).close()
            return False
        except (ConnectionRefusedError, socket.timeout, OSError):
            return True
    wait_until(refused, scaled(5), what="new connections to be refused")
    s.sendall(b"during")
    assert recv_exact(s, 6) == b"during"
    assert sixgate.running()
    t0 = time.monotonic()
    s.close()
    sixgate.proc.wait(timeout=scaled(5))
    assert sixgate.proc.returncode == 0 and time.monotonic() - t0 < scaled(3)
    a = sixgate.access_log()
    assert [x["outcome"] for x in a] == ["ok"]
    assert a[0]["bytes_from_client"] == 12


def test_sigterm_drain_time_over(sixgate, backends):
    echo = backends.echo()
    port = free_ports(1)[0]
    sixgate.start(main_config([tcp_listener("tcp", port, echo.addr)], map=None,
                              timeouts={"drain": "1s"}))
    with connect(port, V6) as s:
        s.sendall(b"x")
        assert recv_exact(s, 1) == b"x"
        t0 = time.monotonic()
        assert sixgate.stop() == 0
        assert 0.9 <= time.monotonic() - t0 <= scaled(4)
        kind, data = wait_closed(s, scaled(2))
        assert data == b""
    assert [x["outcome"] for x in sixgate.access_log()] == ["stopped"]


def test_stop_while_resolving(sixgate, backends):
    """SIGTERM while a connection waits for DNS: after the drain time the
    connection is closed and sixgate exits 0 (no leak, no use after free)."""
    hb = backends.http("never")
    backends.slow_dns({"stuck.backend.test": "::1"}, delay=3.0)
    port = free_ports(1)[0]
    sixgate.start(main_config([http_listener("http", port)],
                              timeouts={"connect": "10s", "drain": "500ms"}),
                  routes_map({"stuck.test": f"stuck.backend.test:{hb.port}"}), dns=True)
    with connect(port) as s:
        s.sendall(http_request("stuck.test"))
        time.sleep(0.3)
        t0 = time.monotonic()
        assert sixgate.stop() == 0
        assert time.monotonic() - t0 < scaled(6)
    a = one_access(sixgate, name="stuck.test")
    assert a["outcome"] == "stopped"
    assert hb.accepted == 0


# ---------------------------------------------------------------------------
# idle

def test_idle_timeout(sixgate, backends):
    echo = backends.echo()
    port = free_ports(1)[0]
    sixgate.start(main_config([tcp_listener("idle", port, echo.addr)],
                              timeouts={"idle": "1s"}, map=None))
    with connect(port) as s:
        s.sendall(b"ping")
        assert recv_exact(s, 4) == b"ping"
        # traffic keeps it alive past the idle time
        for _ in range(3):
            time.sleep(0.5)
            s.sendall(b"x")
            assert recv_exact(s, 1) == b"x"
        t0 = time.monotonic()
        kind, data = wait_closed(s, scaled(5))
        took = time.monotonic() - t0
    assert data == b"" and 0.8 <= took <= scaled(3.0), (kind, took)
    a = one_access(sixgate, listener="idle")
    assert a["outcome"] == "idle_timeout"
    assert a["bytes_from_client"] == a["bytes_from_backend"] == 7


class DripBackend(Backend):
    """Sends one byte every <interval> seconds, <count> times, then closes."""

    kind = "drip"

    def __init__(self, interval: float, count: int, **kw):
        super().__init__(**kw)
        self.interval, self.count = interval, count

    def handle(self, conn, peer, index):
        for _ in range(self.count):
            time.sleep(self.interval)
            conn.sendall(b".")
        conn.shutdown(socket.SHUT_WR)
        conn.recv(1)


def test_idle_timeout_counts_either_direction(sixgate, backends):
    """A download that trickles (one byte every 0.4 s for 2.4 s) is never
    idle, although the client sends nothing after its request."""
    drip = backends.add(DripBackend(0.4, 6))
    port = free_ports(1)[0]
    sixgate.start(main_config([http_listener("http", port)], timeouts={"idle": "1s"}),
                  routes_map({"drip.test": drip.addr}))
    with connect(port) as s:
        s.sendall(http_request("drip.test"))
        assert recv_all(s, timeout=10) == b"......"
    a = one_access(sixgate, name="drip.test")
    assert a["outcome"] == "ok" and a["bytes_from_backend"] == 6
