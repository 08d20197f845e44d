#!/usr/bin/env python3
"""Reload benchmark: sixgate runs with a map of N routes (default 100000);
a client pings an echo backend through a tcp listener every millisecond
while the map is reloaded R times (SIGHUP, each time with a new version).
Prints the reload times sixgate logs, the time from SIGHUP until the new map
is in use, and the ping round trips during reloads against those outside.
Only loopback is used; every wait is bounded.

usage: bench/reload_stall.py [--bin build/sixgate] [--routes 100000] [--reloads 10]"""
import argparse
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time


def free_port():
    with socket.socket(socket.AF_INET6) as s:
        s.bind(("::1", 0))
        return s.getsockname()[1]


def write_map(path, n, version):
    with open(path + ".tmp", "w") as f:
        f.write(f'version: "{version}"\nroutes:\n')
        for i in range(n):
            c = i // 20
            f.write(f'  site{i}.c{c}.example: "2001:db8:{c >> 16:x}:{c & 0xffff:x}::5"\n')
    os.rename(path + ".tmp", path)


def echo_server():
    ls = socket.socket(socket.AF_INET6)
    ls.bind(("::1", 0))
    ls.listen(8)

    def serve(c):
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with c:
            while data := c.recv(4096):
                c.sendall(data)

    def loop():
        while True:
            c, _ = ls.accept()
            threading.Thread(target=serve, args=(c,), daemon=True).start()
    threading.Thread(target=loop, daemon=True).start()
    return ls.getsockname()[1]


def loop_busy(port):
    """The cumulative buckets of sixgate_loop_busy_seconds from /metrics."""
    with socket.create_connection(("::1", port), timeout=5) as c:
        c.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while chunk := c.recv(65536):
            data += chunk
    out = {}
    for m in re.finditer(r'sixgate_loop_busy_seconds_bucket\{le="([^"]+)"\} (\d+)', data.decode()):
        out[m.group(1)] = int(m.group(2))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="build/sixgate")
    ap.add_argument("--routes", type=int, default=100000)
    ap.add_argument("--reloads", type=int, default=10)
    a = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="sixgate-reload-")
    echo = echo_server()
    port, tls_port, admin = free_port(), free_port(), free_port()
    with open(f"{tmp}/sixgate.yaml", "w") as f:
        f.write(f"""listeners:
  - name: ping
    listen: "[::1]:{port}"
    protocol: tcp
    backend: "[::1]:{echo}"
  - name: https
    listen: "[::1]:{tls_port}"
    protocol: tls
workers: 1
admin: {{listen: "[::1]:{admin}"}}
log: {{access: off}}
reload: {{watch: false}}
map: routes.yaml
backend_networks: ["::1/128", "2001:db8::/32"]
""")
    write_map(f"{tmp}/routes.yaml", a.routes, "v0")
    err = open(f"{tmp}/stderr", "w+")
    proc = subprocess.Popen([a.bin, "-c", f"{tmp}/sixgate.yaml"], stderr=err)
    try:
        deadline = time.time() + 60
        while "started" not in open(f"{tmp}/stderr").read():
            if time.time() > deadline or proc.poll() is not None:
                sys.exit("sixgate did not start: " + open(f"{tmp}/stderr").read())
            time.sleep(0.05)

        s = socket.create_connection(("::1", port), timeout=5)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        samples = []  # (start time, rtt)
        stop = threading.Event()

        def pinger():
            while not stop.is_set():
                t0 = time.perf_counter()
                s.sendall(b"x")
                if s.recv(1) != b"x":
                    break
                samples.append((t0, time.perf_counter() - t0))
                time.sleep(0.001)
        th = threading.Thread(target=pinger, daemon=True)
        th.start()
        time.sleep(2)

        busy_before = loop_busy(admin)
        windows, e2e, logged = [], [], []
        for r in range(1, a.reloads + 1):
            write_map(f"{tmp}/routes.yaml", a.routes, f"v{r}")
            time.sleep(0.5)
            t0 = time.perf_counter()
            n_before = open(f"{tmp}/stderr").read().count("reload (SIGHUP)")
            proc.send_signal(signal.SIGHUP)
            deadline = time.time() + 60
            while True:
                text = open(f"{tmp}/stderr").read()
                if text.count("reload (SIGHUP)") > n_before:
                    break
                if time.time() > deadline:
                    sys.exit("reload did not finish")
                time.sleep(0.0005)
            t1 = time.perf_counter()
            windows.append((t0, t1 + 0.05))
            e2e.append((t1 - t0) * 1000)
            m = re.findall(r"reload \(SIGHUP\): generation \d+, (\d+) routes.*loaded in ([\d.]+) ms", text)
            logged.append(float(m[-1][1]))
            time.sleep(0.5)
        busy_after = loop_busy(admin)
        time.sleep(1)
        stop.set()
        th.join(5)

        inside = [rtt for (t, rtt) in samples if any(w0 <= t <= w1 for w0, w1 in windows)]
        outside = [rtt for (t, rtt) in samples if not any(w0 <= t <= w1 for w0, w1 in windows)]

        def q(v, p):
            v = sorted(v)
            return v[min(len(v) - 1, int(p * len(v)))] * 1000

        rss = int(re.search(r"VmRSS:\s+(\d+)", open(f"/proc/{proc.pid}/status").read()).group(1))
        print(f"map: {a.routes} routes, {a.reloads} reloads, sixgate RSS now {rss / 1024:.1f} MiB")
        print(f"reload, read+parse+check (sixgate's log): median {statistics.median(logged):.1f} ms, "
              f"max {max(logged):.1f} ms")
        print(f"reload, SIGHUP until the new map is in use: median {statistics.median(e2e):.1f} ms, "
              f"max {max(e2e):.1f} ms")
        delta = {le: busy_after[le] - busy_before.get(le, 0) for le in busy_after}
        total = delta["+Inf"]
        bound = min((float(le) for le, n in delta.items() if le != "+Inf" and n == total),
                    default=float("inf"))
        print(f"worker loop during the reloads: {total} iterations, the longest took at most "
              f"{bound * 1000:g} ms (sixgate_loop_busy_seconds)")
        print(f"ping through sixgate outside reloads: {len(outside)} samples, p50 {q(outside, .5):.3f} ms, "
              f"p99 {q(outside, .99):.3f} ms, max {max(outside) * 1000:.3f} ms")
        print(f"ping through sixgate during reloads:  {len(inside)} samples, p50 {q(inside, .5):.3f} ms, "
              f"p99 {q(inside, .99):.3f} ms, max (the longest stall) {max(inside) * 1000:.3f} ms")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    main()
