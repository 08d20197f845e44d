"""The command line: --version and --help, --check of the shipped configs
and of a broken map (FILE:LINE:COL errors), --route, and the errors of a
start that cannot work (a port in use, a missing config file)."""

from __future__ import annotations

import re
import socket

import pytest

from configs import http_listener, main_config, routes_map, tls_listener
from process import REPO_ROOT, V4, run_sixgate


def test_version_and_help():
    r = run_sixgate(["--version"])
    assert r.returncode == 0 and re.fullmatch(r"sixgate \d+\.\d+\.\d+\n", r.stdout), r.stdout
    r = run_sixgate(["--help"])
    assert r.returncode == 0 and r.stdout.startswith("usage: sixgate")
    assert "--check" in r.stdout and "--route" in r.stdout
    r = run_sixgate(["--no-such-option"])
    assert r.returncode != 0 and "usage:" in r.stderr


@pytest.mark.parametrize("folder", ["config", "examples"])
def test_check_repo_configs(folder):
    r = run_sixgate(["--check", "-c", f"{folder}/sixgate.yaml"], cwd=REPO_ROOT)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 1, r.stdout
    assert re.match(rf"{folder}/sixgate\.yaml: ok: \d+ listeners on \d+ addresses, \d+ routes",
                    lines[0]), lines[0]
    assert r.stderr == ""


def test_check_broken_map(tmp_path):
    (tmp_path / "main.yaml").write_text(main_config([tls_listener("https", 8443)]))
    (tmp_path / "routes.yaml").write_text(
        "routes:\n"
        "  ok.test: \"[::1]:1\"\n"
        "  OK.test.: \"[::1]:2\"\n"
        "  bad.test: \"[2001:db8::zz]:1\"\n"
        "  \"www.*.test\": \"[::1]:3\"\n")
    r = run_sixgate(["--check", "-c", str(tmp_path / "main.yaml")])
    assert r.returncode == 1
    assert r.stdout == ""
    path = str(tmp_path / "routes.yaml")
    want = [
        f"{path}:3:3: duplicate route 'ok.test' (names are compared case-insensitively, "
        "without a trailing dot)",
        f"{path}:4:13: backend '[2001:db8::zz]:1': invalid IP address",
        f"{path}:5:3: route 'www.*.test': '*' is only allowed as the whole first label",
    ]
    lines = r.stderr.splitlines()
    assert len(lines) == len(want) + 1, r.stderr
    for line, w in zip(lines, want):
        # FILE:LINE:COL: message at the start of the line, as compilers print it
        assert line.startswith(w), (line, w)
    assert lines[-1] == (f"sixgate: 3 errors in {tmp_path / 'main.yaml'} or its map; "
                         "nothing was loaded")


def test_route_command(tmp_path):
    doc = ("2001:db8::/32",)  # the routes' documentation addresses
    (tmp_path / "main.yaml").write_text(main_config(
        [tls_listener("https", 8443, backend_port=443), http_listener("http", 8080)],
        backend_networks=doc))
    (tmp_path / "routes.yaml").write_text(routes_map(
        {"www.example.test": "2001:db8::10", "*.example.test": "[2001:db8::20]:8443",
         "*.deep.example.test": "[2001:db8::30]:9000"}, fallback="[2001:db8::1]"))
    (tmp_path / "nofb.yaml").write_text(main_config([tls_listener("https", 8443)],
                                                    map="nofb-routes.yaml",
                                                    backend_networks=doc))
    (tmp_path / "nofb-routes.yaml").write_text(routes_map({"www.example.test": "2001:db8::10"}))
    main = str(tmp_path / "main.yaml")

    def route(name, cfg=main):
        return run_sixgate(["--route", name, "-c", cfg])

    r = route("WWW.Example.Test.")
    assert r.returncode == 0
    assert r.stdout.splitlines() == [
        "www.example.test: exact route 'www.example.test'",
        "  tls listener https (127.0.0.1:8443): [2001:db8::10]:443",
        "  http listener http (127.0.0.1:8080): [2001:db8::10]:8080"]
    r = route("a.deep.example.test")
    assert r.returncode == 0
    assert r.stdout.splitlines()[0] == ("a.deep.example.test: wildcard route "
                                        "'*.deep.example.test' (the most specific wildcard "
                                        "that matches)")
    assert "[2001:db8::30]:9000" in r.stdout
    r = route("deep.example.test")
    assert r.returncode == 0 and "wildcard route '*.example.test'" in r.stdout
    r = route("example.test")
    assert r.returncode == 0
    assert r.stdout.splitlines()[0] == "example.test: no route matches: the fallback"
    assert "[2001:db8::1]:443" in r.stdout
    r = route("other.test", str(tmp_path / "nofb.yaml"))
    assert r.returncode == 1
    assert r.stdout.startswith("other.test: refused")
    r = route("bad name")
    assert r.returncode == 1 and "refused" in r.stdout


def test_port_in_use(sixgate):
    busy = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    busy.bind((V4, 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    try:
        rc = sixgate.start(main_config([http_listener("http", port, hosts=(V4,))]),
                           routes_map({"a.test": "[::1]:1"}), expect_fail=True)
    finally:
        busy.close()
    assert rc != 0
    lines = [ln for ln in sixgate.stderr_text().splitlines() if f"127.0.0.1:{port}" in ln]
    assert len(lines) == 1, sixgate.stderr_text()
    assert "in use" in lines[0].lower()
    assert "started" not in sixgate.stderr_text()


def test_missing_config_file(tmp_path):
    missing = tmp_path / "nowhere.yaml"
    r = run_sixgate(["-c", str(missing)])
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and str(missing) in lines[0], r.stderr
    assert "No such file" in lines[0]
