"""Backends written as host names: answers are cached per worker, a name
being looked up is looked up once however many clients wait for it, and
failures are remembered briefly. sixgate runs with a private /etc/hosts and
a DNS server of the test's own on 127.0.0.1 (backends.SlowDns), so no query
leaves the machine."""

from __future__ import annotations

import re
import threading
import time

from clients import http_exchange, http_request, json_body
from configs import http_listener, main_config, routes_map
from process import free_ports, scaled


def dns_counts(sixgate, admin: int) -> dict[str, int]:
    _, _, body = http_exchange(admin, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    return {m.group(1): int(m.group(2)) for m in
            re.finditer(r'sixgate_dns_total\{result="(\w+)"\} (\d+)', body.decode())}


def start(sixgate, backend_port, resolver=None, **kw):
    web, admin = free_ports(2)
    extra = {"resolver": resolver} if resolver else {}
    sixgate.start(main_config([http_listener("web", web)], admin={"listen": f"127.0.0.1:{admin}"},
                              **extra),
                  routes_map({"site.test": f"app.backend.test:{backend_port}",
                              "gone.test": f"gone.backend.test:{backend_port}"}), **kw)
    return web, admin


def test_answers_are_cached(sixgate, backends):
    hb = backends.http("by-name")
    web, admin = start(sixgate, hb.port, hosts={"app.backend.test": "::1"})
    for _ in range(10):
        status, _, body = http_exchange(web, http_request("site.test", extra="Connection: close"))
        assert json_body(body)["backend"] == "by-name"
    assert dns_counts(sixgate, admin) == {"lookup": 1, "cached": 9, "joined": 0, "failed": 0}


def test_clients_waiting_for_one_name_share_one_lookup(sixgate, backends):
    hb = backends.http("by-name")
    dns = backends.slow_dns({"app.backend.test": "::1"}, delay=0.5)
    web, admin = start(sixgate, hb.port, dns=True)
    results = []

    def client():
        status, _, body = http_exchange(web, http_request("site.test", extra="Connection: close"))
        results.append(json_body(body)["backend"])
    threads = [threading.Thread(target=client, daemon=True) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(scaled(10))
    assert results == ["by-name"] * 10
    aaaa = [q for q in dns.queries if q == ("app.backend.test", 28)]
    assert len(aaaa) == 1, dns.queries
    c = dns_counts(sixgate, admin)
    assert c["lookup"] == 1 and c["joined"] + c["cached"] == 9 and c["failed"] == 0, c


def test_failures_are_remembered_briefly_and_answers_expire(sixgate, backends):
    hb = backends.http("by-name")
    dns = backends.slow_dns({"app.backend.test": "::1"})
    web, admin = start(sixgate, hb.port, dns=True,
                       resolver={"cache": "1s", "negative_cache": "1s"})
    for _ in range(3):
        status, _, _ = http_exchange(web, http_request("gone.test"))
        assert status == "HTTP/1.1 503 Service Unavailable"
    assert dns_counts(sixgate, admin)["lookup"] == 1
    assert json_body(http_exchange(web, http_request("site.test"))[2])["backend"] == "by-name"
    assert dns_counts(sixgate, admin)["lookup"] == 2
    time.sleep(1.3)  # both cache times are over: asked again
    assert http_exchange(web, http_request("gone.test"))[0] == "HTTP/1.1 503 Service Unavailable"
    assert json_body(http_exchange(web, http_request("site.test"))[2])["backend"] == "by-name"
    c = dns_counts(sixgate, admin)
    assert c["lookup"] == 4 and c["failed"] == 2, c
    gone = [e for e in sixgate.access_log() if e["name"] == "gone.test"]
    assert {e["outcome"] for e in gone} == {"resolve_failed"}
