"""Resource limits: what sixgate does when the process runs out of file
descriptors. It must neither spin nor flood its log, must keep the
connections it has, and must serve again as soon as descriptors are free."""

from __future__ import annotations

import os
import subprocess
import time

from clients import connect, recv_exact
from configs import main_config, routes_map, tcp_listener, tls_listener
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
