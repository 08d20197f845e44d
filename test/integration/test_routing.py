"""Routing: TLS by SNI, HTTP by Host, and backends written as addresses
without a port or as host names; with Python ssl, openssl s_client and curl,
from IPv4 and IPv6 clients, against backends that identify themselves."""

from __future__ import annotations

import threading
import time

import pytest

from clients import (HttpReader, TlsOverSocket, client_hello, connect, curl, http_exchange,
                     http_request, json_body, pad_hello, recv_all, reframe_hello, s_client,
                     tls_client)
from configs import http_listener, main_config, routes_map, tls_listener
from process import V4, V6, free_ports, one_access, scaled, wait_until


BOTH = pytest.mark.parametrize("client", [V4, V6], ids=["ipv4", "ipv6"])


# ---------------------------------------------------------------------------
# TLS routing by SNI

# name the client asks for -> the certificate name of the backend that must answer
TLS_CASES = [
    ("a.example.test", "a.example.test", "exact"),
    ("A.Example.TEST", "a.example.test", "exact"),
    ("x.example.test", "*.example.test", "wildcard"),
    ("deep.example.test", "*.example.test", "wildcard"),  # *.deep... does not match deep itself
    ("y.deep.example.test", "*.deep.example.test", "wildcard"),  # longest suffix wins
    ("x.y.deep.example.test", "*.deep.example.test", "wildcard"),
    ("example.test", "fallback.test", "fallback"),
    ("other.org", "fallback.test", "fallback"),
]


def start_tls_routing(sixgate, backends):
    """A tls listener (both families) over four TLS backends; returns the
    port and {certname: backend}."""
    names = ["a.example.test", "*.example.test", "*.deep.example.test", "fallback.test"]
    bs = {n: backends.tls(n) for n in names}
    port = free_ports(1)[0]
    sixgate.start(main_config([tls_listener("https", port)]),
                  routes_map({"a.example.test": bs["a.example.test"].addr,
                              "*.example.test": bs["*.example.test"].addr,
                              "*.deep.example.test": {"backend": bs["*.deep.example.test"].addr}},
                             fallback=bs["fallback.test"].addr))
    return port, bs


@BOTH
def test_tls_routing_python_ssl(sixgate, backends, certs, client):
    port, bs = start_tls_routing(sixgate, backends)
    for sni, want, match in TLS_CASES:
        r = tls_client(port, sni, host=client)
        assert r.cn == want, (sni, r.cn)
        assert r.san == [want]
        status, headers, body = r.http()
        assert status == "HTTP/1.1 200 OK"
        d = json_body(body)
        assert d["backend"] == want and d["sni"] == sni and d["host"] == sni
    # the certificate verifies against the exact backend's own certificate
    r = tls_client(port, "a.example.test", host=client, cafile=certs("a.example.test")[0])
    assert r.json()["backend"] == "a.example.test"
    assert r.version in ("TLSv1.2", "TLSv1.3")
    log = sixgate.wait_access(len(TLS_CASES) + 1)
    seen = sorted((a["name"], a["match"], a["backend"], a["client"], a["outcome"]) for a in log)
    want = sorted([(sni.lower(), match, bs[cert].addr, client, "ok")
                   for sni, cert, match in TLS_CASES]
                  + [("a.example.test", "exact", bs["a.example.test"].addr, client, "ok")])
    assert seen == want


def test_tls_routing_openssl_s_client(sixgate, backends):
    port, bs = start_tls_routing(sixgate, backends)
    for sni, want, _ in TLS_CASES[::2] + [TLS_CASES[5]]:
        for client in (V4, V6):
            r = s_client(port, sni, host=client,
                         request=http_request(sni, extra="Connection: close"))
            assert r["rc"] == 0, r["stderr"]
            assert r["cn"] == want, r["stdout"][:2000]
            assert f'"backend": "{want}"' in r["stdout"]
            assert f'"sni": "{sni}"' in r["stdout"]


@BOTH
def test_tls_routing_curl(sixgate, backends, client):
    port, bs = start_tls_routing(sixgate, backends)
    addr = f"[{client}]" if ":" in client else client
    for sni, want, _ in TLS_CASES:
        if sni != sni.lower():
            continue  # curl lower-cases the name itself
        r = curl(f"https://{sni}:{port}/path?q=1", resolve=[f"{sni}:{port}:{addr}"])
        assert r["rc"] == 0, r["stderr"]
        assert r["status"] == 200
        assert r["cert_subject"] == f"CN={want}"
        d = json_body(r["body"])
        assert d == {**d, "backend": want, "sni": sni, "host": f"{sni}:{port}",
                     "target": "/path?q=1", "method": "GET"}
    assert {a["client"] for a in sixgate.wait_access(6)} == {client}


def test_tls_without_sni(sixgate, backends, make_sixgate):
    """A ClientHello without SNI has no name: the fallback takes it; without
    a fallback it is refused with a fatal alert."""
    fb = backends.tls("fallback.test")
    named = backends.tls("named.test")
    p1, p2 = free_ports(2)
    sixgate.start(main_config([tls_listener("https", p1)]),
                  routes_map({"named.test": named.addr}, fallback=fb.addr))
    r = tls_client(p1, None, request=http_request("x", extra="Connection: close"))
    assert r.cn == "fallback.test" and r.json()["sni"] is None
    a = sixgate.wait_access(1)[0]
    assert (a["name"], a["match"], a["backend"]) == (None, "fallback", fb.addr)

    other = make_sixgate()
    other.start(main_config([tls_listener("https", p2)]), routes_map({"named.test": named.addr}))
    with connect(p2) as s:
        s.sendall(client_hello(None))
        reply = recv_all(s)
    assert len(reply) == 7 and reply[:6] == bytes.fromhex("150303000202"), reply
    a = other.wait_access(1)[0]
    assert (a["outcome"], a["match"]) == ("no_route", "none")
    assert named.accepted == 0


@pytest.mark.parametrize("size", [1, 64, 512])
def test_tls_fragmented_hello(sixgate, backends, size):
    """One ClientHello message spread over many TLS records (as large
    post-quantum hellos arrive) routes, and the TLS handshake then completes
    with the backend, which receives the records unchanged."""
    tb = backends.tls("frag.test")
    raw = backends.raw()
    port = free_ports(1)[0]
    sixgate.start(main_config([tls_listener("https", port)]),
                  routes_map({"frag.test": tb.addr, "raw.test": raw.addr}))
    with connect(port, V6) as s:
        t = TlsOverSocket(s, "frag.test")
        s.sendall(reframe_hello(t.hello(), size))
        t.finish_handshake()
        assert t.peer_names()[0] == "frag.test"
        t.send(http_request("frag.test", extra="Connection: close"))
        assert b'"sni": "frag.test"' in t.recv_all()
    framed = reframe_hello(client_hello("raw.test"), size)
    with connect(port) as s:
        s.sendall(framed)
        assert raw.wait_data(len(framed)) == framed


@pytest.mark.parametrize("size", [6000, 20000, 32 * 1024])
def test_large_client_hello_routes(sixgate, backends, size):
    """A hello as large as post-quantum key shares make it, over several
    records and several segments, routes by its SNI and reaches the backend
    unchanged."""
    raw = backends.raw()
    port = free_ports(1)[0]
    sixgate.start(main_config([tls_listener("https", port)]),
                  routes_map({"big.test": raw.addr}))
    hello = pad_hello(client_hello("big.test"), size)
    with connect(port, V6) as s:
        for i in range(0, len(hello), 1400):
            s.sendall(hello[i:i + 1400])
            time.sleep(0.001)
        assert raw.wait_data(len(hello)) == hello
    a = sixgate.wait_access(1)[0]
    assert (a["name"], a["outcome"], a["bytes_from_client"]) == ("big.test", "ok", len(hello))


# ---------------------------------------------------------------------------
# HTTP routing by Host

def start_http_routing(sixgate, backends, **cfg):
    names = ["a.example.test", "*.example.test", "fallback"]
    bs = {n: backends.http(n) for n in names}
    port = free_ports(1)[0]
    sixgate.start(main_config([http_listener("http", port)], **cfg),
                  routes_map({"a.example.test": bs["a.example.test"].addr,
                              "*.example.test": bs["*.example.test"].addr},
                             fallback=bs["fallback"].addr))
    return port, bs


@BOTH
def test_http_routing_curl(sixgate, backends, client):
    port, bs = start_http_routing(sixgate, backends)
    addr = f"[{client}]" if ":" in client else client
    url_host = addr
    cases = [("a.example.test", "a.example.test"), ("b.example.test", "*.example.test"),
             ("example.test", "fallback"), ("nothing.org", "fallback")]
    for name, want in cases:
        # -H Host: to the address
        r = curl(f"http://{url_host}:{port}/x", headers=[f"Host: {name}"])
        assert r["status"] == 200, r["stderr"]
        d = json_body(r["body"])
        assert d["backend"] == want and d["host"] == name and d["target"] == "/x"
        # --resolve: curl's own Host header, with the port
        r = curl(f"http://{name}:{port}/y", resolve=[f"{name}:{port}:{addr}"])
        assert r["status"] == 200, r["stderr"]
        d = json_body(r["body"])
        assert d["backend"] == want and d["host"] == f"{name}:{port}"
    log = sixgate.wait_access(2 * len(cases))
    assert all(a["client"] == client and a["outcome"] == "ok" for a in log)
    assert [a["match"] for a in log] == ["exact"] * 2 + ["wildcard"] * 2 + ["fallback"] * 4


@BOTH
def test_http_host_forms(sixgate, backends, client):
    """Host with a port, in upper case, with a trailing dot, and the
    authority of an absolute-form target (which wins over Host)."""
    port, bs = start_http_routing(sixgate, backends)
    cases = [
        (http_request("a.example.test:8080"), "a.example.test"),
        (http_request("A.EXAMPLE.Test"), "a.example.test"),
        (http_request("a.example.test."), "a.example.test"),
        (http_request("A.Example.Test.:80"), "a.example.test"),
        (http_request("other.test", target="http://a.example.test/abs"), "a.example.test"),
        (http_request("a.example.test", target="http://Z.Example.Test:81/abs"), "*.example.test"),
        (http_request(None, version="HTTP/1.0"), "fallback"),  # no name: the fallback
    ]
    for req, want in cases:
        status, headers, body = http_exchange(port, req, host=client)
        assert status == "HTTP/1.1 200 OK"
        d = json_body(body)
        assert d["backend"] == want, (req, d)
    # the backend saw exactly what was sent (the head is forwarded unchanged)
    assert bs["a.example.test"].requests[0][1] == cases[0][0]
    assert bs["a.example.test"].requests[4][1] == cases[4][0]


def test_backend_port_forms(sixgate, backends):
    """Backends written without a port get the listener's backend_port, or
    else the port the client connected to; an IPv4 backend works too."""
    p_http, p_tls, p_bp, p_v4 = free_ports(4, hosts=("127.0.0.1", "::1"))
    backends.http("own-port", port=p_http)          # [::1]:<listener port>
    backends.tls("tls.test", port=p_tls)
    backends.http("backend-port", port=p_bp)        # [::1]:<backend_port>
    v4 = backends.http("ipv4", host=V4)
    port_h2 = free_ports(1)[0]
    sixgate.start(main_config([
        http_listener("http", p_http, hosts=(V4,)),
        tls_listener("https", p_tls, hosts=(V4,)),
        http_listener("http-alt", port_h2, backend_port=p_bp)]),
        routes_map({"site.test": "::1", "tls.test": "[::1]", "v4.test": v4.addr}))
    st, _, body = http_exchange(p_http, http_request("site.test"))
    assert json_body(body)["backend"] == "own-port"
    assert tls_client(p_tls, "tls.test").cn == "tls.test"
    st, _, body = http_exchange(port_h2, http_request("site.test"), host=V6)
    assert json_body(body)["backend"] == "backend-port"
    st, _, body = http_exchange(port_h2, http_request("v4.test"))
    d = json_body(body)
    assert d["backend"] == "ipv4" and d["client"] == "127.0.0.1"
    log = sixgate.wait_access(4)
    assert sorted(a["backend"] for a in log) == sorted(
        [f"[::1]:{p_http}", f"[::1]:{p_tls}", f"[::1]:{p_bp}", f"127.0.0.1:{v4.port}"])


def test_http_keepalive_stays_on_first_backend(sixgate, backends):
    """Documented: only the first request of a connection is routed; a later
    request on the same connection goes to the same backend whatever its
    Host says."""
    port, bs = start_http_routing(sixgate, backends)
    with connect(port) as s:
        r = HttpReader(s)
        s.sendall(http_request("a.example.test", target="/one"))
        st1, _, b1 = r.read_response()
        s.sendall(http_request("zzz.example.test", target="/two"))
        st2, _, b2 = r.read_response()
    d1, d2 = json_body(b1), json_body(b2)
    assert st1 == st2 == "HTTP/1.1 200 OK"
    assert d1["backend"] == d2["backend"] == "a.example.test"
    assert (d1["conn"], d1["seq"]) == (0, 0) and (d2["conn"], d2["seq"]) == (0, 1)
    assert d2["host"] == "zzz.example.test"
    assert bs["*.example.test"].accepted == 0


def test_http_pipelined_requests_same_backend(sixgate, backends):
    port, bs = start_http_routing(sixgate, backends)
    reqs = (http_request("b.example.test", target="/1")
            + http_request("a.example.test", target="/2", extra="Connection: close"))
    with connect(port) as s:
        s.sendall(reqs)
        r = HttpReader(s)
        responses = [r.read_response(), r.read_response()]
        assert recv_all(s) == b""
    ds = [json_body(b) for _, _, b in responses]
    assert [d["backend"] for d in ds] == ["*.example.test"] * 2
    assert [d["target"] for d in ds] == ["/1", "/2"]
    assert bs["a.example.test"].accepted == 0
    assert b"".join(h for _, h in bs["*.example.test"].requests) == reqs


# ---------------------------------------------------------------------------
# backends written as host names

def test_hostname_backend(sixgate, backends):
    """A backend written as a host name is resolved (AAAA) when a client
    connects. sixgate runs with a private /etc/hosts (localhost -> ::1)."""
    hb = backends.http("by-name")
    tb = backends.tls("tls.test")
    ph, pt = free_ports(2)
    sixgate.start(main_config([http_listener("http", ph), tls_listener("https", pt)]),
                  routes_map({"name.test": f"localhost:{hb.port}",
                              "tls.test": f"localhost:{tb.port}"}),
                  hosts={"localhost": "::1"})
    status, _, body = http_exchange(ph, http_request("name.test"))
    assert status == "HTTP/1.1 200 OK" and json_body(body)["backend"] == "by-name"
    r = tls_client(pt, "tls.test")
    assert r.cn == "tls.test" and r.json()["backend"] == "tls.test"
    log = sixgate.wait_access(2)
    assert {a["backend"] for a in log} == {hb.addr, tb.addr}  # the address it resolved to
    assert all(a["outcome"] == "ok" for a in log)


def test_hostname_backend_tries_every_address(sixgate, backends):
    """A name with two addresses: the first refuses, the second answers.
    (::1 sorts first; the backend listens on ::ffff:127.0.0.1 only.)"""
    port = free_ports(1)[0]
    hb = backends.http("second-address", host=V4, port=port)
    ph = free_ports(1)[0]
    sixgate.start(main_config([http_listener("http", ph)]),
                  routes_map({"multi.test": f"multi.test:{port}"}),
                  hosts={"multi.test": ["::1", "::ffff:127.0.0.1"]})
    status, _, body = http_exchange(ph, http_request("multi.test"))
    assert status == "HTTP/1.1 200 OK" and json_body(body)["backend"] == "second-address"
    a = sixgate.wait_access(1)[0]
    assert a["outcome"] == "ok" and a["backend"] == f"[::ffff:127.0.0.1]:{port}"
    assert hb.accepted == 1


def test_resolution_does_not_block(sixgate, backends):
    """A name that takes 1 s to resolve (a DNS server on 127.0.0.1:53)
    reaches its backend; meanwhile other connections are served at once."""
    hb = backends.http("slow-name")
    fast = backends.http("fast")
    dns = backends.slow_dns({"slow.backend.test": "::1"}, delay=1.0)
    port = free_ports(1)[0]
    sixgate.start(main_config([http_listener("http", port)]),
                  routes_map({"slow.test": f"slow.backend.test:{hb.port}", "fast.test": fast.addr}),
                  dns=True)
    result = {}

    def slow():
        t0 = time.monotonic()
        result["slow"] = http_exchange(port, http_request("slow.test"))
        result["slow_s"] = time.monotonic() - t0
    t = threading.Thread(target=slow, daemon=True)
    t.start()
    wait_until(lambda: dns.queries, scaled(5), what="the DNS query")
    t0 = time.monotonic()
    st, _, body = http_exchange(port, http_request("fast.test"))
    assert json_body(body)["backend"] == "fast" and time.monotonic() - t0 < 0.5
    t.join(scaled(10))
    assert json_body(result["slow"][2])["backend"] == "slow-name"
    assert result["slow_s"] >= 0.9
    assert ("slow.backend.test", 28) in dns.queries  # AAAA
    a = one_access(sixgate, name="slow.test")
    assert a["backend"] == hb.addr and a["outcome"] == "ok"
