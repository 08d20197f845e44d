"""Where backends may be: a map from a customer-fed control panel must not
route to sixgate itself (a loop), its admin endpoint or, without
backend_networks, to loopback and the like. IP literals are refused when the
map loads (--check, start, reload: the old map keeps serving); a host name's
DNS answers are judged per connection, which is then refused like a failed
connect (HTTP 502, TLS alert) and counted as backend_refused."""

from __future__ import annotations

import re

from clients import (ALERT_INTERNAL_ERROR, client_hello, connect, http_exchange, http_request,
                     json_body, recv_all, tls_alert)
from configs import http_listener, main_config, routes_map, tls_listener
from process import free_ports, run_sixgate
from test_reload import reloads_done, who


def outcome_count(admin: int, listener: str, outcome: str) -> int:
    _, _, body = http_exchange(admin, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    m = re.search(rf'sixgate_connections_total\{{listener="{listener}",outcome="{outcome}"\}} '
                  r'(\d+)', body.decode())
    return int(m.group(1)) if m else 0


def check(tmp_path, main: str, routes: str):
    (tmp_path / "main.yaml").write_text(main)
    (tmp_path / "routes.yaml").write_text(routes)
    return run_sixgate(["--check", "-c", str(tmp_path / "main.yaml")])


def test_a_route_to_sixgate_itself_is_refused_by_check(tmp_path):
    """backend_networks allows loopback, but never sixgate's own TLS
    listener, nor the admin address (also written v4-mapped)."""
    pt, admin = free_ports(2)
    r = check(tmp_path, main_config([tls_listener("https", pt)],
                                    admin={"listen": f"127.0.0.1:{admin}"}),
              routes_map({"loop.test": f"[::1]:{pt}",
                          "admin.test": f"[::ffff:127.0.0.1]:{admin}",
                          "fine.test": f"[::1]:{pt + 1}"}))
    assert r.returncode == 1, r.stdout + r.stderr
    path = tmp_path / "routes.yaml"
    lines = r.stderr.splitlines()
    assert lines[:2] == [
        f"{path}:2:14: backend '[::1]:{pt}' refused: a loop to sixgate's own listener",
        f"{path}:3:15: backend '[::ffff:127.0.0.1]:{admin}' refused: the admin address",
    ], r.stderr
    assert len(lines) == 3 and lines[2].startswith("sixgate: 2 errors"), r.stderr


def test_a_route_to_sixgate_itself_is_refused_by_reload(sixgate, backends):
    a = backends.http("A")
    web, pt = free_ports(2)
    sixgate.start(main_config([http_listener("web", web), tls_listener("https", pt)]),
                  routes_map({"site.example": a.addr}))
    (sixgate.folder / "routes.yaml").write_text(
        routes_map({"site.example": a.addr, "loop.example": f"[::1]:{pt}"}))
    sixgate.reload()
    sixgate.wait_log(r"reload \(SIGHUP\) refused.*the map in use stays")
    assert (f"routes.yaml:3:17: backend '[::1]:{pt}' refused: a loop to sixgate's own "
            "listener") in sixgate.stderr_text()
    assert who(web, "site.example") == "A"
    assert reloads_done(sixgate) == 0


def test_without_backend_networks_loopback_is_refused(tmp_path, sixgate, backends):
    a = backends.http("A")
    (web,) = free_ports(1)
    main = main_config([http_listener("web", web)], backend_networks=None)
    routes = routes_map({"site.example": a.addr})
    r = check(tmp_path, main, routes)
    assert r.returncode == 1
    assert r.stderr.splitlines()[0] == (
        f"{tmp_path / 'routes.yaml'}:2:17: backend '{a.addr}' refused: loopback "
        "(set backend_networks to allow it)"), r.stderr
    # a start refuses it too: nothing is served
    assert sixgate.start(main, routes, expect_fail=True) != 0
    assert "refused: loopback" in sixgate.stderr_text()


def test_a_host_name_outside_backend_networks_is_refused_per_connection(sixgate, backends):
    hb = backends.http("by-name")
    web, pt, admin = free_ports(3)
    sixgate.start(main_config([http_listener("web", web), tls_listener("https", pt)],
                              admin={"listen": f"127.0.0.1:{admin}"}),
                  routes_map({"out.example": f"outside.test:{hb.port}",
                              "self.example": f"self.test:{pt}",
                              "mixed.example": f"mixed.test:{hb.port}",
                              "ok.example": f"ok.test:{hb.port}"}),
                  hosts={"outside.test": "2001:db8::7", "self.test": "::1",
                         "mixed.test": ["2001:db8::8", "::1"], "ok.test": "::1"})
    status, _, body = http_exchange(web, http_request("out.example"))
    assert status == "HTTP/1.1 502 Bad Gateway", (status, body)
    with connect(pt) as s:
        s.sendall(client_hello("out.example"))
        assert recv_all(s) == tls_alert(ALERT_INTERNAL_ERROR)
    # a name that resolves to sixgate's own listener: a loop, refused
    with connect(pt) as s:
        s.sendall(client_hello("self.example"))
        assert recv_all(s) == tls_alert(ALERT_INTERNAL_ERROR)
    # refused addresses are left out, the allowed ones are used
    for name in ("mixed.example", "ok.example"):
        status, _, body = http_exchange(web, http_request(name, extra="Connection: close"))
        assert status == "HTTP/1.1 200 OK" and json_body(body)["backend"] == "by-name", name
    log = sixgate.wait_access(5)
    refused = sorted((a["listener"], a["name"], a["reason"]) for a in log
                     if a["outcome"] == "backend_refused")
    assert refused == [
        ("https", "out.example", f"[2001:db8::7]:{hb.port}: outside backend_networks"),
        ("https", "self.example", f"[::1]:{pt}: a loop to sixgate's own listener"),
        ("web", "out.example", f"[2001:db8::7]:{hb.port}: outside backend_networks"),
    ], log
    assert all(a["backend"] == f"outside.test:{hb.port}" for a in log
               if a["name"] == "out.example")
    assert outcome_count(admin, "web", "backend_refused") == 1
    assert outcome_count(admin, "https", "backend_refused") == 2
    assert hb.accepted == 2
