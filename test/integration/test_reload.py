"""Live reload: the map and the main file change under traffic.

What must hold: a change is live within a second; a broken file is never
applied; an established connection is never dropped or disturbed."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import socket
import threading
import time

import pytest

from clients import (connect, http_exchange, http_request, json_body, read_http_response,
                     wait_refused)
from configs import http_listener, main_config, routes_map, tcp_listener
from process import MiB, free_ports, scaled, wait_until


def reloads_done(sg) -> int:
    return len(re.findall(r"reload \([^)]*\): generation \d+", sg.stderr_text()))


def reloads_refused(sg) -> int:
    return len(re.findall(r"reload \([^)]*\) refused", sg.stderr_text()))


def who(port: int, name: str, host: str = "127.0.0.1") -> str:
    """Which backend answers a new HTTP connection for <name>."""
    status, _, body = http_exchange(port, http_request(name, extra="Connection: close"), host)
    if not status.startswith("HTTP/1.1 200"):
        return status
    return json_body(body)["backend"]


def write_atomically(path, text: str):
    """As a control panel should: a new file renamed over the old one."""
    tmp = path.parent / (path.name + ".tmp")
    tmp.write_text(text)
    os.rename(tmp, path)


def test_transfer_survives_100_reloads_and_new_connections_follow(sixgate, backends):
    """A 32 MiB transfer each way stays byte-exact while the map is reloaded
    100 times under it; after each reload, a new connection goes where the
    new map says."""
    a, b = backends.http("A"), backends.http("B")
    bulk = backends.hash(32 * MiB)
    http_port, tcp_port = free_ports(2)
    sixgate.start(main_config([http_listener("web", http_port),
                               tcp_listener("bulk", tcp_port, bulk.addr)]),
                  routes_map({"site.example": a.addr}, version="0"))

    data = hashlib.shake_128(b"client").digest(32 * MiB)
    s = connect(tcp_port)
    s.settimeout(scaled(120))
    got = hashlib.sha256()
    received = [0]

    def reader():
        while chunk := s.recv(1 << 18):
            got.update(chunk)
            received[0] += len(chunk)

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    sent = 0
    step = len(data) // 100
    for i in range(1, 101):
        # a slice of the upload, then a reload that moves site.example
        s.sendall(data[sent:sent + step])
        sent += step
        backend = b if i % 2 else a
        (sixgate.folder / "routes.yaml").write_text(
            routes_map({"site.example": backend.addr}, version=str(i)))
        sixgate.reload()
        wait_until(lambda: reloads_done(sixgate) >= i, scaled(10), what=f"reload {i}")
        assert who(http_port, "site.example") == backend.ident, f"after reload {i}"
    s.sendall(data[sent:])
    s.shutdown(socket.SHUT_WR)
    t.join(scaled(120))
    s.close()
    res = wait_until(lambda: bulk.results.get(0, {}).get("done") and bulk.results[0],
                     scaled(60), what="backend finished")
    assert res["received"] == len(data)
    assert res["sha256"] == hashlib.sha256(data).hexdigest()
    assert received[0] == bulk.nbytes
    assert got.hexdigest() == bulk.send_sha256
    assert reloads_refused(sixgate) == 0
    log = [e for e in sixgate.wait_access(101, timeout=10) if e["listener"] == "bulk"]
    assert len(log) == 1 and log[0]["outcome"] == "ok"
    assert log[0]["bytes_from_client"] == len(data)


def test_established_connection_keeps_its_backend(sixgate, backends):
    """A keep-alive connection routed before a reload goes on to the same
    backend after it; a new connection follows the new map."""
    a, b = backends.http("A"), backends.http("B")
    (port,) = free_ports(1)
    sixgate.start(main_config([http_listener("web", port)]),
                  routes_map({"site.example": a.addr}))
    with connect(port) as s:
        s.sendall(http_request("site.example"))
        assert json_body(read_http_response(s)[2])["backend"] == "A"
        (sixgate.folder / "routes.yaml").write_text(routes_map({"site.example": b.addr}))
        sixgate.reload()
        sixgate.wait_log(r"reload \(SIGHUP\): generation 2")
        assert who(port, "site.example") == "B"
        s.sendall(http_request("site.example"))
        body = json_body(read_http_response(s)[2])
        assert body["backend"] == "A" and body["seq"] == 1


BROKEN_MAPS = {
    "syntax": ("routes:\n  a.example: [oops\n", r"routes\.yaml:\d+:\d+: YAML syntax error"),
    "bad backend": ('routes:\n  site.example: "[::1]:99999"\n',
                    r"routes\.yaml:2:17: backend '\[::1\]:99999': invalid port"),
    "empty": ("", r"routes\.yaml: the map is empty"),
    "no routes": ("routes: {}\n", r"routes\.yaml:1:1: the map has no routes and no fallback"),
    "non-ascii": ('routes:\n  "bücher.example": "[::1]:80"\n',
                  r"routes\.yaml:2:3: route 'bücher\.example': non-ASCII name"),
    "duplicate": ('routes:\n  a.example: "[::1]:80"\n  A.example.: "[::1]:81"\n',
                  r"routes\.yaml:3:3: duplicate route 'a\.example'"),
}


@pytest.mark.parametrize("case", sorted(BROKEN_MAPS))
def test_broken_map_is_refused_and_the_old_one_serves(sixgate, backends, case):
    a = backends.http("A")
    (port,) = free_ports(1)
    sixgate.start(main_config([http_listener("web", port)]),
                  routes_map({"site.example": a.addr}))
    text, pattern = BROKEN_MAPS[case]
    (sixgate.folder / "routes.yaml").write_text(text)
    sixgate.reload()
    sixgate.wait_log(r"reload \(SIGHUP\) refused.*the map in use stays")
    assert re.search(pattern, sixgate.stderr_text()), sixgate.stderr_text()
    assert who(port, "site.example") == "A"
    assert reloads_done(sixgate) == 0


def test_all_errors_are_reported_in_one_reload(sixgate, backends):
    a = backends.http("A")
    (port,) = free_ports(1)
    sixgate.start(main_config([http_listener("web", port)]),
                  routes_map({"site.example": a.addr}))
    (sixgate.folder / "routes.yaml").write_text(
        'routes:\n  "a b.example": "[::1]:80"\n  c.example: "nope:0"\n'
        '  d.example: {backend: "[::1]:80", weight: 1}\n')
    sixgate.reload()
    sixgate.wait_log(r"refused")
    text = sixgate.stderr_text()
    assert "routes.yaml:2:3: route 'a b.example': invalid character" in text
    assert "routes.yaml:3:14: backend 'nope:0': invalid port" in text
    assert "routes.yaml:4:36: unknown key 'weight'" in text
    assert who(port, "site.example") == "A"


def watched_config(port, debounce="100ms"):
    return main_config([http_listener("web", port)],
                       reload={"watch": True, "debounce": debounce})


def test_rename_over_is_picked_up_without_sighup(sixgate, backends):
    a, b = backends.http("A"), backends.http("B")
    (port,) = free_ports(1)
    sixgate.start(watched_config(port), routes_map({"site.example": a.addr}))
    t0 = time.monotonic()
    write_atomically(sixgate.folder / "routes.yaml", routes_map({"site.example": b.addr}))
    sixgate.wait_log(r"reload \(map file changed\): generation 2", timeout=5)
    assert time.monotonic() - t0 < scaled(1.0)
    assert who(port, "site.example") == "B"
    # and again: the watch survives the replaced inode
    write_atomically(sixgate.folder / "routes.yaml", routes_map({"site.example": a.addr}))
    sixgate.wait_log(r"reload \(map file changed\): generation 3", timeout=5)
    assert who(port, "site.example") == "A"


def test_in_place_rewrite_is_picked_up(sixgate, backends):
    a, b = backends.http("A"), backends.http("B")
    (port,) = free_ports(1)
    sixgate.start(watched_config(port), routes_map({"site.example": a.addr}))
    with open(sixgate.folder / "routes.yaml", "w") as f:  # truncate and write, same inode
        f.write(routes_map({"site.example": b.addr}))
    sixgate.wait_log(r"reload \(map file changed\): generation 2", timeout=5)
    assert who(port, "site.example") == "B"


def test_a_burst_of_writes_is_one_reload(sixgate, backends):
    a, b = backends.http("A"), backends.http("B")
    (port,) = free_ports(1)
    sixgate.start(watched_config(port, debounce="300ms"), routes_map({"site.example": a.addr}))
    path = sixgate.folder / "routes.yaml"
    text = routes_map({"site.example": b.addr})
    with open(path, "w") as f:  # written in pieces, 30 ms apart
        for i in range(0, len(text), 8):
            f.write(text[i:i + 8])
            f.flush()
            time.sleep(0.03)
    sixgate.wait_log(r"generation 2", timeout=5)
    time.sleep(scaled(1.0))
    assert reloads_done(sixgate) == 1
    assert reloads_refused(sixgate) == 0
    assert who(port, "site.example") == "B"


def test_a_map_written_in_place_slowly_is_read_only_when_complete(sixgate, backends):
    """A writer that rewrites the map in place, stops halfway for longer
    than the debounce and then finishes: sixgate reads it once, complete.
    (A reload reacts to the file being closed after the write, or renamed
    into place; never to a write still in progress.)"""
    a, b = backends.http("A"), backends.http("B")
    (port,) = free_ports(1)
    sixgate.start(watched_config(port, debounce="100ms"), routes_map({"site.example": a.addr}))
    routes = {f"r{i}.example": b.addr for i in range(2000)}
    routes["site.example"] = b.addr
    text = routes_map(routes)
    half = text.index("\n", len(text) // 2) + 1
    with open(sixgate.folder / "routes.yaml", "w") as f:
        f.write(text[:half])
        f.flush()
        time.sleep(scaled(0.6))  # six debounce times with half a map on disk
        assert "generation 2" not in sixgate.stderr_text()
        f.write(text[half:])
    m = sixgate.wait_log(r"reload \(map file changed\): generation 2, (\d+) routes", timeout=5)
    assert int(m.group(1)) == 2001
    time.sleep(scaled(0.3))
    assert "generation 3" not in sixgate.stderr_text()
    assert who(port, "site.example") == "B"


def test_other_files_in_the_folder_are_ignored(sixgate, backends):
    a = backends.http("A")
    (port,) = free_ports(1)
    sixgate.start(watched_config(port), routes_map({"site.example": a.addr}))
    (sixgate.folder / "notes.txt").write_text("hello")
    (sixgate.folder / "routes.yaml.tmp").write_text("garbage")
    time.sleep(scaled(0.8))
    assert reloads_done(sixgate) == 0 and reloads_refused(sixgate) == 0


def test_deleted_map_keeps_the_old_one(sixgate, backends):
    a, b = backends.http("A"), backends.http("B")
    (port,) = free_ports(1)
    sixgate.start(watched_config(port), routes_map({"site.example": a.addr}))
    (sixgate.folder / "routes.yaml").unlink()
    sixgate.wait_log(r"routes\.yaml: cannot read the map: No such file or directory", timeout=5)
    assert who(port, "site.example") == "A"
    # the control panel writes it again: picked up
    write_atomically(sixgate.folder / "routes.yaml", routes_map({"site.example": b.addr}))
    sixgate.wait_log(r"generation 2", timeout=5)
    assert who(port, "site.example") == "B"


def test_sighup_storm(sixgate, backends):
    """200 SIGHUPs in a burst: no crash, reloads are coalesced, the last map
    wins, traffic goes on throughout."""
    a, b = backends.http("A"), backends.http("B")
    (port,) = free_ports(1)
    sixgate.start(main_config([http_listener("web", port)]),
                  routes_map({"site.example": a.addr}))
    stop = threading.Event()
    failures = []

    def client():
        while not stop.is_set():
            try:
                if who(port, "site.example") not in ("A", "B"):
                    failures.append("bad answer")
            except OSError as e:
                failures.append(repr(e))

    t = threading.Thread(target=client, daemon=True)
    t.start()
    for i in range(200):
        if i == 100:
            (sixgate.folder / "routes.yaml").write_text(routes_map({"site.example": b.addr}))
        sixgate.signal(signal.SIGHUP)
    wait_until(lambda: who(port, "site.example") == "B", scaled(10), what="the last map")
    time.sleep(scaled(1.0))
    stop.set()
    t.join(scaled(10))
    assert failures == []
    assert sixgate.running()
    n = reloads_done(sixgate)
    assert 1 <= n < 200, n


def test_listener_added_and_removed(sixgate, backends):
    """A reload opens an added listener and closes a removed one; a
    connection established on the removed one goes on."""
    echo = backends.echo()
    keep, gone, new = free_ports(3)
    listeners = [tcp_listener("keep", keep, echo.addr), tcp_listener("gone", gone, echo.addr)]
    sixgate.start(main_config(listeners, map=None))
    old = connect(gone)
    old.sendall(b"before")
    assert old.recv(6) == b"before"
    kept = connect(keep)
    kept.sendall(b"kept")
    assert kept.recv(4) == b"kept"

    sixgate.main_path.write_text(main_config(
        [tcp_listener("keep", keep, echo.addr), tcp_listener("new", new, echo.addr)], map=None))
    sixgate.reload()
    sixgate.wait_log(r"generation 2")
    sixgate.wait_log(r"listener new: now listening on 127\.0\.0\.1:%d" % new)
    sixgate.wait_log(r"listener on \[::1\]:%d removed" % gone)

    with connect(new) as s:
        s.sendall(b"new")
        assert s.recv(3) == b"new"

    wait_refused(gone)
    for s, msg in ((old, b"after"), (kept, b"still")):
        s.sendall(msg)
        assert s.recv(len(msg)) == msg
        s.close()


def test_listener_that_cannot_bind_is_reported_and_the_rest_goes_on(sixgate, backends):
    echo = backends.echo()
    a, taken = free_ports(2)
    blocker = socket.socket(socket.AF_INET)
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    blocker.bind(("127.0.0.1", taken))
    blocker.listen(1)
    try:
        sixgate.start(main_config([tcp_listener("a", a, echo.addr)], map=None))
        sixgate.main_path.write_text(main_config(
            [tcp_listener("a", a, echo.addr), tcp_listener("b", taken, echo.addr)], map=None))
        sixgate.reload()
        sixgate.wait_log(r"generation 2")
        text = sixgate.stderr_text()
        assert re.search(r"listener b: cannot listen on 127\.0\.0\.1:%d: Address already in use "
                         r"\(the other listeners go on\)" % taken, text), text
        with connect(a) as s:  # the old listener is untouched
            s.sendall(b"x")
            assert s.recv(1) == b"x"
        with connect(taken, host="::1") as s:  # b's other address works
            s.sendall(b"y")
            assert s.recv(1) == b"y"
    finally:
        blocker.close()


def test_main_file_errors_on_reload_keep_everything(sixgate, backends):
    a = backends.http("A")
    (port,) = free_ports(1)
    sixgate.start(main_config([http_listener("web", port)]),
                  routes_map({"site.example": a.addr}))
    sixgate.main_path.write_text("listeners:\n  - name: web\n    protocol: ftp\n")
    sixgate.reload()
    sixgate.wait_log(r"refused")
    text = sixgate.stderr_text()
    assert "main.yaml:3:15: protocol must be tls, http or tcp, not 'ftp'" in text
    assert "main.yaml:2:5: listener needs 'listen'" in text
    assert who(port, "site.example") == "A"


def test_large_map_reload_keeps_serving(sixgate, backends):
    """A 100,000-route map reloads off the event loop: requests keep being
    answered during the reload, and the new map is complete afterwards."""
    a, b = backends.http("A"), backends.http("B")
    (port,) = free_ports(1)

    def big(backend, n=100_000):
        lines = ["routes:"]
        lines += [f'  site{i}.example: "{backend.addr}"' for i in range(n)]
        return "\n".join(lines) + "\n"
    sixgate.start(main_config([http_listener("web", port)]), big(a))
    assert who(port, "site99999.example") == "A"
    (sixgate.folder / "routes.yaml").write_text(big(b))
    sixgate.reload()
    answered = 0
    deadline = time.monotonic() + scaled(30)
    while reloads_done(sixgate) < 1 and time.monotonic() < deadline:
        assert who(port, "site5.example") in ("A", "B")
        answered += 1
    assert reloads_done(sixgate) == 1
    m = re.search(r"generation 2, (\d+) routes.*loaded in ([\d.]+) ms", sixgate.stderr_text())
    assert int(m.group(1)) == 100_000
    assert who(port, "site0.example") == "B" and who(port, "site99999.example") == "B"
    assert answered >= 1


@pytest.mark.skipif("ASAN_OPTIONS" in os.environ or "TSAN_OPTIONS" in os.environ,
                    reason="a sanitizer's allocator keeps freed memory on purpose")
def test_rss_stays_flat_over_many_reloads_of_a_large_map(sixgate, backends):
    """Forty reloads of a 100,000-route map: sixgate's RSS stays within half
    again of what it was with the first map (freed maps go back to the
    kernel; they used to pile up in malloc's heaps, 2.5 times over)."""
    a = backends.http("A")
    (port,) = free_ports(1)
    lines = ["routes:"] + [f'  site{i}.example: "{a.addr}"' for i in range(100_000)]
    sixgate.start(main_config([http_listener("web", port)]), "\n".join(lines) + "\n")

    def rss_kib() -> int:
        with open(f"/proc/{sixgate.pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    assert who(port, "site99999.example") == "A"
    first = rss_kib()
    for generation in range(2, 42):
        sixgate.reload()
        sixgate.wait_log(rf"generation {generation}\b", timeout=30)
    assert who(port, "site99999.example") == "A"
    time.sleep(scaled(0.3))  # the old map is freed on the control thread
    last = rss_kib()
    assert last <= first * 1.5, f"RSS {first} KiB with the first map, {last} KiB after 40 reloads"


def test_two_workers_reload_under_concurrent_traffic(sixgate, backends):
    """Two worker threads, eight clients at once, twenty reloads that move
    the name between two backends and add and remove a listener: every
    request gets an answer from one of the two, and after the last reload
    only the last map's backend answers, on every worker."""
    a, b = backends.http("A"), backends.http("B")
    echo = backends.echo()
    web, extra = free_ports(2)

    def config(with_extra: bool):
        ls = [http_listener("web", web)]
        if with_extra:
            ls.append(tcp_listener("extra", extra, echo.addr))
        return main_config(ls, workers=2)
    sixgate.start(config(False), routes_map({"site.example": a.addr}))
    assert "2 workers" in sixgate.stderr_text()
    stop = threading.Event()
    failures: list[str] = []
    answered = [0]

    def client():
        while not stop.is_set():
            try:
                r = who(web, "site.example")
                if r not in ("A", "B"):
                    failures.append(r)
                answered[0] += 1
            except OSError as e:
                failures.append(repr(e))

    threads = [threading.Thread(target=client, daemon=True) for _ in range(8)]
    for t in threads:
        t.start()
    for i in range(1, 21):
        backend = b if i % 2 else a
        sixgate.main_path.write_text(config(i % 2 == 1))
        (sixgate.folder / "routes.yaml").write_text(routes_map({"site.example": backend.addr}))
        sixgate.reload()
        wait_until(lambda: reloads_done(sixgate) >= i, scaled(10), what=f"reload {i}")
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join(scaled(10))
    assert failures == []
    assert answered[0] > 50
    # generation 21 maps to A; each new connection, whichever worker takes it
    assert {who(web, "site.example") for _ in range(20)} == {"A"}
    with pytest.raises(ConnectionRefusedError):
        connect(extra, timeout=2).close()
