"""The sixgate process under test and the harness's bounds.

Environment
    SIXGATE_BIN     the binary (ctest sets it); default ../../build/sixgate
    SIXGATE_WRAP    a command prefixed to sixgate, e.g.
                    "valgrind --error-exitcode=1"
    SIXGATE_TIME_SCALE
                    multiplies every timeout of the harness (default 1, or 5
                    under SIXGATE_WRAP)

Bounds
    scaled(seconds)                 a harness timeout, stretched under wrappers
    wait_until(pred, timeout, what=...)
                                    polls, bounded; AssertionError naming <what>

Addresses and ports (loopback only)
    V4, V6                          "127.0.0.1" and "::1"
    free_port(host)                 a port that was free on <host> a moment ago
    free_ports(n, hosts)            n distinct ports, each free on every host
    addr_text(host, port)           "ip:port" as sixgate writes it ("[v6]:port")

sixgate (fixtures ``sixgate`` and ``make_sixgate`` in conftest.py)
    Sixgate.start(main_yaml, map_yaml=None, extra_files={}, ...)
    .proc / .pid / .stderr_text() / .access_log() / .wait_access(n)
    .reload()  (SIGHUP)      .stop()  (SIGTERM, exit code)
    one_access(sg, **fields)        the single access-log line with those fields
    run_sixgate(args)               runs it to completion (--check, --route, ...)
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
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
# addresses and ports

V4, V6 = "127.0.0.1", "::1"


def socket_family(host: str) -> int:
    """AF_INET6 for an IPv6 address, else AF_INET."""
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _port_free(host: str, port: int) -> bool:
    s = socket.socket(socket_family(host), socket.SOCK_STREAM)
    try:
        if socket_family(host) == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def free_port(host: str = "127.0.0.1") -> int:
    """Binds port 0 on <host> (a loopback address), closes, returns the port."""
    s = socket.socket(socket_family(host), socket.SOCK_STREAM)
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


def addr_text(host: str, port: int) -> str:
    """ip:port as sixgate writes it ([v6]:port)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


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


def run_sixgate(args, cwd=None, timeout: float = 20.0) -> subprocess.CompletedProcess:
    """Runs sixgate with <args> to completion (--check, --route, ...)."""
    return subprocess.run(WRAP + [sixgate_bin()] + list(args), cwd=cwd, capture_output=True,
                          text=True, timeout=scaled(timeout), env=CLEAN_ENV)


def one_access(sg: Sixgate, timeout: float = 5.0, **match) -> dict:
    """The single access-log line whose fields equal <match> (waited for,
    bounded); fails when there is none or more than one."""
    def find():
        hits = [a for a in sg.access_log() if all(a.get(k) == v for k, v in match.items())]
        return hits if hits else None
    hits = wait_until(find, scaled(timeout), what=f"an access log line with {match}")
    assert len(hits) == 1, hits
    return hits[0]
