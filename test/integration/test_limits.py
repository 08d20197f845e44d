"""Resource limits: what sixgate does when the process runs out of file
descriptors. It must neither spin nor flood its log, must keep the
connections it has, and must serve again as soon as descriptors are free."""

from __future__ import annotations

import os
import subprocess
import time

from clients import connect, http_request, recv_all, recv_exact
from configs import http_listener, main_config, routes_map, tcp_listener, tls_listener
from process import free_ports, scaled, wait_until

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def test_out_of_descriptors_pauses_accepting_instead_of_spinning(sixgate, backends):
    """With two workers and 120 descriptors, 200 clients that connect and
    stay silent exhaust the table: the listeners stop accepting for a
    while (one warning, not one per attempt), the process stays nearly
    idle, a connection established before keeps working, and once the
    clients leave new connections are served again."""
    echo = backends.echo()
    tls_port, tcp_port = free_ports(2)
    sixgate.start(main_config([tls_listener("tls", tls_port), tcp_listener("tcp", tcp_port,
                                                                             echo.addr)],
                              workers=2, timeouts={"sniff": "30s"}),
                  routes_map({"site.example": echo.addr}))
    before = connect(tcp_port)
    before.sendall(b"hi")
    assert recv_exact(before, 2) == b"hi"
    subprocess.run(["prlimit", f"--pid={sixgate.pid}", "--nofile=120:120"], check=True)
    clients = []
    try:
        for _ in range(200):  # the kernel queues what sixgate cannot accept
            clients.append(connect(tls_port))
        sixgate.wait_log(r"not accepting for 500 ms", timeout=10)
        t0, c0 = time.monotonic(), cpu_seconds(sixgate.pid)
        time.sleep(scaled(2.0))
        busy = (cpu_seconds(sixgate.pid) - c0) / (time.monotonic() - t0)
        assert busy < 0.25, f"sixgate used {busy:.0%} of a CPU while out of descriptors"
        warnings = sixgate.stderr_text().lower().count("too many open files")
        assert 1 <= warnings <= 4, f"{warnings} warnings in about 3 s"
        before.sendall(b"still")  # what was established goes on
        assert recv_exact(before, 5) == b"still"
    finally:
        for c in clients:
            c.close()
    # descriptors come back as the silent clients' connections close
    def served():
        try:
            with connect(tcp_port, timeout=scaled(2)) as s:
                s.sendall(b"again")
                return recv_exact(s, 5, timeout=scaled(2)) == b"again"
        except (OSError, AssertionError):
            return False
    wait_until(served, scaled(15), what="a new connection served after the clients left")
    before.close()


def test_the_connection_limit_follows_the_descriptor_limit(sixgate, backends, monkeypatch):
    """Without limits.connections, sixgate derives it from the descriptor
    limit (two per connection, 128 kept aside), says so at start, warns when
    the limit is low, and resets what comes past it."""
    import process

    echo = backends.echo()
    (port,) = free_ports(1)
    monkeypatch.setattr(process, "WRAP", ["prlimit", "--nofile=300:300", "--"] + process.WRAP)
    sixgate.start(main_config([tcp_listener("tcp", port, echo.addr)], map=None))
    sixgate.wait_log(r"connection limit 86 \(limits.connections not set: from the descriptor "
                     r"limit 300\)")
    sixgate.wait_log(r"the descriptor limit is low \(300\)")
    held = []
    try:
        for _ in range(86):
            s = connect(port)
            s.sendall(b"x")
            assert recv_exact(s, 1) == b"x"
            held.append(s)
        with connect(port) as over:
            try:
                over.settimeout(scaled(5))
                assert over.recv(1) == b""
            except ConnectionResetError:
                pass
        overload = [e for e in sixgate.wait_access(1) if e["outcome"] == "overload"]
        assert len(overload) == 1
    finally:
        for s in held:
            s.close()


def test_limits_per_client_address(sixgate, backends):
    """limits.per_client: a client (an IPv4 address, an IPv6 /64) gets at
    most <connections> at once and at most <sniffing> not yet routed; past
    either it is reset and counted as client_limit, while another client
    is served. Closing a connection makes room again."""
    echo = backends.echo()
    a = backends.http("A")
    tcp, web = free_ports(2)
    sixgate.start(main_config([tcp_listener("tcp", tcp, echo.addr),
                               http_listener("web", web)],
                              limits={"per_client": {"connections": 2, "sniffing": 1}}),
                  routes_map({"site.example": a.addr}))

    def refused(port, host="127.0.0.1"):
        try:  # the reset may come before connect() returns
            with connect(port, host) as s:
                s.settimeout(scaled(5))
                s.sendall(b"x")
                return s.recv(1) == b""
        except (ConnectionResetError, BrokenPipeError):
            return True

    held = []
    for _ in range(2):
        s = connect(tcp)
        s.sendall(b"x")
        assert recv_exact(s, 1) == b"x"
        held.append(s)
    assert refused(tcp)                      # a third from 127.0.0.1
    other = connect(tcp, "::1")              # another client
    other.sendall(b"y")
    assert recv_exact(other, 1) == b"y"
    other.close()

    def ended_ok(n):
        wait_until(lambda: len([e for e in sixgate.access_log()
                                if e["listener"] == "tcp" and e["outcome"] == "ok"]) >= n,
                   scaled(5), what=f"{n} tcp connections ended")
    held.pop().close()
    ended_ok(2)
    assert not refused(tcp)  # room for one more
    held.pop().close()
    ended_ok(4)
    # sniffing: one silent connection to the http listener holds the only slot
    silent = connect(web)
    time.sleep(scaled(0.2))
    assert refused(web)
    silent.sendall(http_request("site.example", extra="Connection: close"))
    assert recv_all(silent).startswith(b"HTTP/1.1 200")
    silent.close()
    def reasons():
        return {e["reason"] for e in sixgate.access_log() if e["outcome"] == "client_limit"}
    wait_until(lambda: len(reasons()) == 2, scaled(5), what="both refusals logged")
    assert reasons() == {"too many connections from this client",
                         "too many connections from this client not yet routed"}
