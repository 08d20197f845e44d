"""Reload paths that test_reload.py leaves out: what a publication applies
besides the routes (the access log, the log level), the settings that only
a restart applies, and reloads around a stop.

What must hold: a published snapshot's access log and log level take effect
with it; a change to 'workers' is reported, not applied; once a stop has
begun, no trigger reloads, and a reload still running is dropped."""

from __future__ import annotations

import os
import re
import signal
import time

from clients import connect, http_exchange, http_request, json_body, recv_exact
from configs import http_listener, main_config, routes_map, tcp_listener
from process import free_ports, scaled, wait_until


def who(port: int, name: str) -> str:
    status, _, body = http_exchange(port, http_request(name, extra="Connection: close"))
    if not status.startswith("HTTP/1.1 200"):
        return status
    return json_body(body)["backend"]


def lines(path) -> int:
    return path.read_text().count("\n") if path.exists() else 0


def test_reload_moves_the_access_log(sixgate, backends):
    """The access log follows the published snapshot: a new file, then
    stderr; each connection is logged once, where the map in use said."""
    a = backends.http("A")
    (port,) = free_ports(1)
    first, second = sixgate.folder / "access.log", sixgate.folder / "other.log"
    sixgate.start(main_config([http_listener("web", port)]), routes_map({"site.example": a.addr}))
    assert who(port, "site.example") == "A"
    wait_until(lambda: lines(first) == 1, scaled(5), what="a line in access.log")

    sixgate.main_path.write_text(main_config([http_listener("web", port)], access="other.log"))
    sixgate.reload()
    sixgate.wait_log(r"reload \(SIGHUP\): generation 2")
    assert who(port, "site.example") == "A"
    wait_until(lambda: lines(second) == 1, scaled(5), what="a line in other.log")

    sixgate.main_path.write_text(main_config([http_listener("web", port)], access="stderr"))
    sixgate.reload()
    sixgate.wait_log(r"reload \(SIGHUP\): generation 3")
    assert who(port, "site.example") == "A"
    sixgate.wait_log(r'\{"time":[^\n]*"listener":"web"')
    assert lines(first) == 1 and lines(second) == 1


def test_access_log_off_and_on_again_keeps_one_descriptor(sixgate, backends):
    """Reloads that switch the access log from a file to off and back, five
    times: sixgate's descriptors stay as many as after the first switch,
    and each connection is logged in the file while the file is on."""
    a = backends.http("A")
    (port,) = free_ports(1)
    log = sixgate.folder / "access.log"
    sixgate.start(main_config([http_listener("web", port)]), routes_map({"site.example": a.addr}))

    def fds() -> int:
        return len(os.listdir(f"/proc/{sixgate.pid}/fd"))

    generation, counts = 1, []
    for round_ in range(5):
        for access in ("off", "access.log"):
            sixgate.main_path.write_text(main_config([http_listener("web", port)], access=access))
            sixgate.reload()
            generation += 1
            sixgate.wait_log(rf"reload \(SIGHUP\): generation {generation}\b")
        assert who(port, "site.example") == "A"
        wait_until(lambda: lines(log) == round_ + 1, scaled(5), what=f"{round_ + 1} lines")
        counts.append(fds())
    assert len(set(counts)) == 1, f"descriptors after each round: {counts}"


def test_reload_changes_the_log_level(sixgate, backends):
    """The level of a published snapshot holds from its own reload line on:
    at 'error' that line is not written; back at 'info' the next one is."""
    a, b = backends.http("A"), backends.http("B")
    (port,) = free_ports(1)
    sixgate.start(main_config([http_listener("web", port)]), routes_map({"site.example": a.addr}))
    sixgate.main_path.write_text(main_config([http_listener("web", port)], level="error"))
    (sixgate.folder / "routes.yaml").write_text(routes_map({"site.example": b.addr}))
    sixgate.reload()
    wait_until(lambda: who(port, "site.example") == "B", scaled(10), what="generation 2")

    sixgate.main_path.write_text(main_config([http_listener("web", port)]))
    (sixgate.folder / "routes.yaml").write_text(routes_map({"site.example": a.addr}))
    sixgate.reload()
    sixgate.wait_log(r"reload \(SIGHUP\): generation 3")
    assert who(port, "site.example") == "A"
    text = sixgate.stderr_text()
    assert "generation 2" not in text, text


def test_workers_change_is_reported_and_waits_for_a_restart(sixgate, backends):
    a, b = backends.http("A"), backends.http("B")
    (port,) = free_ports(1)
    sixgate.start(main_config([http_listener("web", port)]), routes_map({"site.example": a.addr}))
    sixgate.main_path.write_text(main_config([http_listener("web", port)], workers=2))
    (sixgate.folder / "routes.yaml").write_text(routes_map({"site.example": b.addr}))
    sixgate.reload()
    sixgate.wait_log(r"reload \(SIGHUP\): generation 2")
    assert "reload: 'workers' changed; it takes effect at the next start" in sixgate.stderr_text()
    assert who(port, "site.example") == "B"


def test_no_reload_once_a_stop_has_begun(sixgate, backends):
    """During the drain neither SIGHUP nor a change of the watched map
    reloads; the established connection goes on and the exit is clean."""
    echo = backends.echo()
    a, b = backends.http("A"), backends.http("B")
    web, tcp = free_ports(2)
    listeners = [http_listener("web", web), tcp_listener("tcp", tcp, echo.addr)]
    sixgate.start(main_config(listeners, timeouts={"drain": "20s"},
                              reload={"watch": True, "debounce": "50ms"}),
                  routes_map({"site.example": a.addr}))
    s = connect(tcp)
    s.sendall(b"before")
    assert recv_exact(s, 6) == b"before"
    sixgate.signal(signal.SIGTERM)
    sixgate.wait_log("stopping")
    (sixgate.folder / "routes.yaml").write_text(routes_map({"site.example": b.addr}))
    sixgate.reload()
    sixgate.wait_log(r"SIGHUP: reloading")
    time.sleep(scaled(0.5))  # ten debounce times
    s.sendall(b"during")
    assert recv_exact(s, 6) == b"during"
    assert sixgate.running()
    s.close()
    sixgate.proc.wait(timeout=scaled(5))
    assert sixgate.proc.returncode == 0
    text = sixgate.stderr_text()
    assert not re.search(r"reload \([^)]*\)", text), text


def test_stop_during_a_reload_drops_its_result(sixgate, backends):
    """SIGTERM while a large map is being read: the process waits for the
    reload thread, publishes nothing after the stop, and exits 0."""
    a, b = backends.http("A"), backends.http("B")
    (port,) = free_ports(1)

    def big(backend, n=200_000):
        return "routes:\n" + "".join(f'  site{i}.example: "{backend.addr}"\n' for i in range(n))
    sixgate.start(main_config([http_listener("web", port)]), big(a))
    (sixgate.folder / "routes.yaml").write_text(big(b))
    sixgate.reload()
    sixgate.signal(signal.SIGTERM)
    sixgate.proc.wait(timeout=scaled(30))
    assert sixgate.proc.returncode == 0
    text = sixgate.stderr_text()
    stop = text.index("stopping")
    # the reload may have finished before SIGTERM was read; never after
    assert not re.search(r"reload \(SIGHUP\)", text[stop:]), text
    assert "all connections are done; exiting" in text
