"""Core integration tests: routing, refusals, the data path, timeouts, the
access log and the command line, with real clients and backends on loopback."""

from __future__ import annotations

import hashlib
import fcntl
import re
import select
import signal
import socket
import ssl
import struct
import termios
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from backends import Backend, payload
from clients import (ALERT_HANDSHAKE_FAILURE, ALERT_INTERNAL_ERROR, ALERT_UNRECOGNIZED_NAME,
                     HttpReader, TlsOverSocket, client_hello, connect, curl, http_exchange,
                     http_request, json_body, pad_hello, read_http_response, recv_all, recv_exact,
                     reframe_hello, s_client, tls_alert, tls_client, trickle, wait_closed)
from configs import http_listener, main_config, routes_map, tcp_listener, tls_listener
from http1 import header
from process import (MiB, REPO_ROOT, V4, V6, free_port, free_ports, one_access, run_sixgate,
                     scaled, wait_until)

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


def test_too_large_client_hello_refused(sixgate, backends):
    raw = backends.raw()
    port = free_ports(1)[0]
    sixgate.start(main_config([tls_listener("https", port)]),
                  routes_map({"big.test": raw.addr}))
    hello = pad_hello(client_hello("big.test"), 32 * 1024 + 1)
    with connect(port) as s:
        try:
            s.sendall(hello)
        except OSError:
            pass
        kind, reply = wait_closed(s, scaled(5))
    assert reply == tls_alert(ALERT_HANDSHAKE_FAILURE)
    a = sixgate.wait_access(1)[0]
    assert a["outcome"] == "too_large" and raw.accepted == 0


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
# unknown names

def test_tls_unknown_name_alert(sixgate, backends):
    b = backends.tls("known.test")
    port = free_ports(1)[0]
    sixgate.start(main_config([tls_listener("https", port)]),
                  routes_map({"known.test": b.addr}))
    # Python ssl reports the alert
    with pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME"):
        tls_client(port, "unknown.test")
    # the raw record after a real ClientHello, then EOF
    for client in (V4, V6):
        with connect(port, client) as s:
            s.sendall(client_hello("unknown.test"))
            assert recv_all(s) == tls_alert(ALERT_UNRECOGNIZED_NAME)
    # openssl s_client says so too
    r = s_client(port, "unknown.test")
    assert r["rc"] != 0
    assert "unrecognized name" in (r["stderr"] + r["stdout"]).lower()
    assert b.accepted == 0
    log = sixgate.wait_access(4)
    assert all(a["outcome"] == "no_route" and a["match"] == "none" and a["backend"] is None
               and a["name"] == "unknown.test" for a in log)


def test_http_unknown_name_421(sixgate, backends):
    b = backends.http("known")
    port = free_ports(1)[0]
    sixgate.start(main_config([http_listener("http", port)]),
                  routes_map({"known.test": b.addr}))
    for client in (V4, V6):
        with connect(port, client) as s:
            s.sendall(http_request("unknown.test"))
            raw = recv_all(s)
        body = b"421 Misdirected Request: no site is configured for this name\n"
        assert raw == (b"HTTP/1.1 421 Misdirected Request\r\n"
                       b"Content-Type: text/plain; charset=utf-8\r\n"
                       b"Content-Length: 61\r\nConnection: close\r\n\r\n" + body)
    r = curl(f"http://127.0.0.1:{port}/", headers=["Host: unknown.test"])
    assert r["status"] == 421 and ("connection", "close") in r["headers"]
    assert b.accepted == 0
    log = sixgate.wait_access(3)
    assert all(a["outcome"] == "no_route" for a in log)


# ---------------------------------------------------------------------------
# backend down, host names, connect timeout

def test_backend_down(sixgate):
    """Nothing listens at the backend: HTTP 502, TLS alert internal_error,
    tcp a plain close. (The access log goes to stderr here.)"""
    dead = f"[::1]:{free_port('::1')}"
    ph, pt, pc = free_ports(3)
    sixgate.start(main_config([http_listener("http", ph), tls_listener("https", pt),
                               tcp_listener("ssh", pc, dead)], access="stderr"),
                  routes_map({"down.test": dead}))
    status, headers, body = http_exchange(ph, http_request("down.test"))
    assert status == "HTTP/1.1 502 Bad Gateway"
    assert header(headers, "connection") == "close"
    assert body == b"502 Bad Gateway: the site's server could not be reached\n"
    with connect(pt) as s:
        s.sendall(client_hello("down.test"))
        assert recv_all(s) == bytes.fromhex("15030300020250")
    with connect(pc, V6) as s:
        kind, data = wait_closed(s, scaled(5))
        assert data == b""
    log = sixgate.wait_access(3)
    assert sorted(a["listener"] for a in log) == ["http", "https", "ssh"]
    for a in log:
        assert a["outcome"] == "connect_failed" and a["backend"] == dead, a
        assert "connection refused" in a["reason"]


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


def test_unresolvable_backend_503(sixgate):
    ph, pt = free_ports(2)
    sixgate.start(main_config([http_listener("http", ph), tls_listener("https", pt)]),
                  routes_map({"gone.test": "nonexistent.invalid:8080"}),
                  hosts={"localhost": "::1"})
    status, headers, body = http_exchange(ph, http_request("gone.test"))
    assert status == "HTTP/1.1 503 Service Unavailable"
    assert header(headers, "connection") == "close"
    assert body.startswith(b"503 Service Unavailable")
    with connect(pt) as s:
        s.sendall(client_hello("gone.test"))
        assert recv_all(s) == tls_alert(ALERT_INTERNAL_ERROR)
    log = sixgate.wait_access(2)
    assert all(a["outcome"] == "resolve_failed" for a in log)
    assert all(a["backend"] == "nonexistent.invalid:8080" for a in log)


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


@pytest.mark.parametrize("proto", ["http", "tls"])
def test_resolution_slower_than_connect_timeout(sixgate, backends, proto):
    """The name resolves only after the connect time is over: the client got
    its refusal, and the late answer must not revive the connection."""
    hb = backends.http("late")
    tb = backends.tls("late.test")
    dns = backends.slow_dns({"late.backend.test": "::1"}, delay=1.5)
    ph, pt = free_ports(2)
    sixgate.start(main_config([http_listener("http", ph), tls_listener("https", pt)],
                              timeouts={"connect": "1s"}),
                  routes_map({"late.test": f"late.backend.test:{hb.port}",
                              "late-tls.test": f"late.backend.test:{tb.port}"}),
                  dns=True)
    if proto == "http":
        s = connect(ph)
        s.sendall(http_request("late.test"))
        expect = b"HTTP/1.1 504 Gateway Timeout\r\n"
    else:
        s = connect(pt)
        s.sendall(client_hello("late-tls.test"))
        expect = tls_alert(ALERT_INTERNAL_ERROR)
    with s:
        # read the refusal but keep the connection open past the DNS answer
        got = recv_exact(s, len(expect))
        assert got == expect
        wait_until(lambda: dns.queries, scaled(5), what="the DNS query")
        time.sleep(1.0)
        kind, rest = wait_closed(s, scaled(5))
    a = one_access(sixgate, outcome="connect_timeout")
    assert a["name"] in ("late.test", "late-tls.test")
    time.sleep(0.3)
    assert hb.accepted == 0 and tb.accepted == 0
    assert " bug: " not in sixgate.stderr_text()
    assert sixgate.running()


def test_stop_while_resolving(sixgate, backends):
    """SIGTERM while a connection waits for DNS: after the drain time the
    connection is closed and sixgate exits 0 (no leak, no use after free)."""
    hb = backends.http("never")
    backends.slow_dns({"stuck.backend.test": "::1"}, delay=3.0)
    port = free_ports(1)[0]
    sixgate.start(main_config([http_listener("http", port)],
                              timeouts={"connect": "10s", "drain": "500ms"}),
                  routes_map({"stuck.test": f"stuck.backend.test:{hb.port}"}), dns=True)
    with connect(port) as s:
        s.sendall(http_request("stuck.test"))
        time.sleep(0.3)
        t0 = time.monotonic()
        assert sixgate.stop() == 0
        assert time.monotonic() - t0 < scaled(6)
    a = one_access(sixgate, name="stuck.test")
    assert a["outcome"] == "stopped"
    assert hb.accepted == 0


def test_connect_timeout_504(sixgate, backends):
    hole = backends.blackhole()
    if not hole.full:
        pytest.skip("could not fill a loopback accept queue here")
    ph, pt, pc = free_ports(3)
    sixgate.start(main_config([http_listener("http", ph), tls_listener("https", pt),
                               tcp_listener("tcp", pc, hole.addr)],
                              timeouts={"connect": "1s"}),
                  routes_map({"slow.test": hole.addr}))
    t0 = time.monotonic()
    status, headers, body = http_exchange(ph, http_request("slow.test"))
    took = time.monotonic() - t0
    assert status == "HTTP/1.1 504 Gateway Timeout"
    assert header(headers, "connection") == "close"
    assert body == b"504 Gateway Timeout: the site's server did not answer in time\n"
    assert 0.9 <= took <= scaled(3.0), took
    with connect(pt) as s:
        s.sendall(client_hello("slow.test"))
        assert recv_all(s) == tls_alert(ALERT_INTERNAL_ERROR)
    with connect(pc, V6) as s:
        t0 = time.monotonic()
        kind, data = wait_closed(s, scaled(5))
        assert data == b"" and 0.9 <= time.monotonic() - t0 <= scaled(3.0)
    log = sixgate.wait_access(3)
    assert all(a["outcome"] == "connect_timeout" and a["backend"] == hole.addr for a in log)


# ---------------------------------------------------------------------------
# the bytes: split heads, exact forwarding, half-close, bulk

def test_trickled_client_hello(sixgate, backends):
    """A ClientHello sent one byte per segment still routes, and the backend
    gets every byte unchanged; a real handshake completes after it."""
    raw = backends.raw()
    tb = backends.tls("whole.test")
    port = free_ports(1)[0]
    sixgate.start(main_config([tls_listener("https", port)]),
                  routes_map({"raw.test": raw.addr, "whole.test": tb.addr}))
    hello = client_hello("raw.test")
    with connect(port) as s:
        trickle(s, hello)
        assert raw.wait_data(len(hello)) == hello
    with connect(port, V6) as s:
        t = TlsOverSocket(s, "whole.test")
        trickle(s, t.hello())
        t.finish_handshake()
        assert t.peer_names() == ("whole.test", ["whole.test"])
        t.send(http_request("whole.test", extra="Connection: close"))
        resp = t.recv_all()
    assert resp.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b'"backend": "whole.test"' in resp


def test_trickled_http_head(sixgate, backends):
    raw = backends.raw()
    hb = backends.http("answer")
    port = free_ports(1)[0]
    sixgate.start(main_config([http_listener("http", port)]),
                  routes_map({"raw.test": raw.addr, "answer.test": hb.addr}))
    req = http_request("raw.test", target="/trickle", extra="X-A: 1\r\nX-B: two")
    with connect(port) as s:
        trickle(s, req)
        assert raw.wait_data(len(req)) == req
    req2 = http_request("answer.test", target="/t2")
    with connect(port, V6) as s:
        trickle(s, req2)
        status, _, body = read_http_response(s)
    assert status == "HTTP/1.1 200 OK" and json_body(body)["target"] == "/t2"
    assert hb.requests[0][1] == req2


def test_first_bytes_unchanged_tls(sixgate, backends):
    raw = backends.raw()
    port = free_ports(1)[0]
    sixgate.start(main_config([tls_listener("https", port)]),
                  routes_map({"raw.test": raw.addr}))
    hello = client_hello("raw.test", alpn=["h2", "http/1.1"])
    after = bytes(range(256)) * 4
    with connect(port) as s:
        s.sendall(hello + after)  # the hello and more, in one write
        got = raw.wait_data(len(hello) + len(after))
        s.shutdown(socket.SHUT_WR)
        raw.wait_eof()
    assert got == hello + after and bytes(raw.data[0]) == hello + after


def test_first_bytes_unchanged_http(sixgate, backends):
    raw = backends.raw()
    port = free_ports(1)[0]
    sixgate.start(main_config([http_listener("http", port)]),
                  routes_map({"raw.test": raw.addr}))
    body = b"x=\x00\xff\r\n" * 100
    req = (http_request("raw.test", method="POST", target="/p",
                        extra=f"Content-Length: {len(body)}\r\nX-Odd:  spaced  ")
           + body + http_request("other.test", target="/second"))
    with connect(port, V6) as s:
        s.sendall(req)
        s.shutdown(socket.SHUT_WR)
        assert raw.wait_eof() == req


def test_large_post_unchanged(sixgate, backends):
    """A head and 4 MiB of body in one burst: the part read while sniffing
    and the rest that follows reach the backend in order, unchanged."""
    raw = backends.raw()
    port = free_ports(1)[0]
    sixgate.start(main_config([http_listener("http", port)]),
                  routes_map({"post.test": raw.addr}))
    body, _ = payload(b"post", 4 * MiB)
    req = http_request("post.test", method="POST", target="/upload",
                       extra=f"Content-Length: {len(body)}") + body
    with connect(port) as s:
        s.sendall(req)
        s.shutdown(socket.SHUT_WR)
        got = raw.wait_eof(timeout=30)
    assert len(got) == len(req) and got == req


def test_half_close_client_first(sixgate, backends):
    """The client sends a request and shuts its side; it still gets all of
    the response, then EOF. The same through a tcp listener with an echo
    backend that finishes echoing after the client's EOF."""
    hb = backends.http("half")
    echo = backends.echo()
    ph, pc = free_ports(2)
    sixgate.start(main_config([http_listener("http", ph), tcp_listener("echo", pc, echo.addr)]),
                  routes_map({"half.test": hb.addr}))
    with connect(ph) as s:
        s.sendall(http_request("half.test", target="/half"))
        s.shutdown(socket.SHUT_WR)
        data = recv_all(s)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert json_body(body)["target"] == "/half"
    assert int(re.search(rb"Content-Length: (\d+)", head).group(1)) == len(body)

    sent, _ = payload(b"echo", 3 * MiB + 7)
    with connect(pc, V6) as s:
        def send():
            s.sendall(sent)
            s.shutdown(socket.SHUT_WR)
        t = threading.Thread(target=send, daemon=True)
        t.start()
        got = recv_all(s, timeout=30)
        t.join(scaled(30))
    assert got == sent
    assert echo.received[0] == len(sent)
    log = sixgate.wait_access(2)
    assert all(a["outcome"] == "ok" for a in log)
    tcp = one_access(sixgate, listener="echo")
    assert tcp["bytes_from_client"] == tcp["bytes_from_backend"] == len(sent)


def test_backend_closes_first(sixgate, backends):
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    raw = backends.raw(reply=reply, reply_after=b"\r\n\r\n", close_after_reply=True)
    port = free_ports(1)[0]
    sixgate.start(main_config([http_listener("http", port)]),
                  routes_map({"closer.test": raw.addr}))
    req = http_request("closer.test")
    with connect(port) as s:
        s.sendall(req)
        kind, data = wait_closed(s, scaled(5))
        assert (kind, data) == ("eof", reply)
        # our side is still open: the backend is gone, so writes are either
        # taken or end in an error, but nothing hangs
    a = one_access(sixgate, name="closer.test")
    assert a["outcome"] == "ok" and a["bytes_from_backend"] == len(reply)
    assert a["bytes_from_client"] == len(req)


def test_backend_half_closes_first(sixgate, backends):
    """The backend sends its banner and shuts its sending side, but goes on
    reading: the client gets the banner and EOF, and what it sends after
    that still reaches the backend."""
    raw = backends.raw(greeting=b"220 ready\r\n", shut_after_reply=True)
    port = free_ports(1)[0]
    sixgate.start(main_config([tcp_listener("tcp", port, raw.addr)], map=None))
    with connect(port) as s:
        assert recv_all(s) == b"220 ready\r\n"  # EOF after the banner
        late = b"sent after the backend's EOF" * 1000
        s.sendall(late)
        s.shutdown(socket.SHUT_WR)
        assert raw.wait_eof() == late
    a = one_access(sixgate, listener="tcp")
    assert a["outcome"] == "ok" and a["bytes_from_client"] == len(late)


def test_backend_reset_is_passed_on(sixgate, backends):
    """A backend that resets after part of a response: the client sees a
    reset, never a clean EOF that would make the truncated data look whole."""
    part = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\npartial"
    raw = backends.raw(reply=part, reply_after=b"\r\n\r\n", reset_after_reply=True,
                       end_delay=0.3)
    port = free_ports(1)[0]
    sixgate.start(main_config([http_listener("http", port)]),
                  routes_map({"reset.test": raw.addr}))
    with connect(port) as s:
        s.sendall(http_request("reset.test"))
        assert recv_exact(s, len(part)) == part
        kind, data = wait_closed(s, scaled(5))
    assert (kind, data) == ("reset", b"")
    a = one_access(sixgate, name="reset.test")
    assert a["outcome"] == "backend_error" and a["bytes_from_backend"] == len(part), a


class StallThenResetBackend(Backend):
    """Sends until its data stops draining for 0.5 s (the proxy stopped
    reading from it because its client does not read), then resets."""

    kind = "stall-reset"

    def __init__(self, **kw):
        super().__init__(**kw)
        self.sent = 0
        self.reset_done = threading.Event()

    def handle(self, conn, peer, index):
        conn.setblocking(False)
        chunk = b"x" * 65536
        stuck_since = None
        deadline = time.monotonic() + scaled(20)
        while time.monotonic() < deadline:
            try:
                self.sent += conn.send(chunk)
                stuck_since = None
            except BlockingIOError:
                if stuck_since is None:
                    stuck_since = time.monotonic()
                elif time.monotonic() - stuck_since > 0.5:
                    break
                time.sleep(0.01)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.reset_done.set()


def test_backend_reset_while_client_slow(sixgate, backends):
    """The same as above when the reset arrives while sixgate is held back
    by a slow client: data and reset are then pending together."""
    b = backends.add(StallThenResetBackend())
    port = free_ports(1)[0]
    sixgate.start(main_config([tcp_listener("tcp", port, b.addr)], map=None))
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    s.connect((V4, port))
    with s:
        assert b.reset_done.wait(scaled(25))
        time.sleep(0.2)
        s.settimeout(scaled(10))
        got, kind = 0, None
        while kind is None:
            try:
                d = s.recv(1 << 20)
                got += len(d)
                kind = None if d else "eof"
            except ConnectionResetError:
                kind = "reset"
        assert 0 < got < b.sent
        assert kind == "reset", f"{kind} after {got} of the {b.sent} bytes the backend sent"


class FinThenResetBackend(Backend):
    """Answers the first bytes it gets with <reply>, shuts its sending side
    (FIN), waits until the FIN is acknowledged, then resets (closing with
    bytes unread, as an HTTP server that does not read a request body does).
    .done is set after the reset."""

    kind = "fin-reset"

    def __init__(self, reply: bytes, **kw):
        super().__init__(**kw)
        self.reply = reply
        self.go = threading.Event()
        self.done = threading.Event()

    def handle(self, conn, peer, index):
        conn.recv(1)  # the rest of the request stays unread
        assert self.go.wait(scaled(10))
        conn.sendall(self.reply)
        conn.shutdown(socket.SHUT_WR)
        wait_until(lambda: fcntl.ioctl(conn.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
                   == b"\0\0\0\0", scaled(5), what="the FIN to be acknowledged")
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()
        self.done.set()


def test_backend_resets_after_its_eof(sixgate, backends):
    """A backend sends its whole response and FIN, then a reset: the
    response was complete, so the client gets it all and a clean EOF, and
    the connection is not logged as an error (of the client, least of all).
    sixgate is stopped (SIGSTOP) meanwhile, so that the data, the FIN and
    the reset are all waiting when it reads again."""
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\ndone"
    b = backends.add(FinThenResetBackend(reply))
    port = free_ports(1)[0]
    sixgate.start(main_config([http_listener("http", port)]),
                  routes_map({"finreset.test": b.addr}))
    with connect(port) as s:
        s.sendall(http_request("finreset.test", method="POST",
                               extra="Content-Length: 5") + b"body!")
        b.wait_accepted(1)
        time.sleep(0.2)
        sixgate.signal(signal.SIGSTOP)
        try:
            b.go.set()
            assert b.done.wait(scaled(10))
        finally:
            sixgate.signal(signal.SIGCONT)
        kind, data = wait_closed(s, scaled(5))
        assert (kind, data) == ("eof", reply)
    a = one_access(sixgate, name="finreset.test")
    assert a["outcome"] == "ok", a
    assert a["bytes_from_backend"] == len(reply)


def test_client_reset_is_logged(sixgate, backends):
    echo = backends.echo()
    port = free_ports(1)[0]
    sixgate.start(main_config([tcp_listener("tcp", port, echo.addr)], map=None))
    s = connect(port)
    s.sendall(b"abc")
    assert recv_exact(s, 3) == b"abc"
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    a = one_access(sixgate, listener="tcp")
    assert a["outcome"] == "client_error", a
    assert a["bytes_from_client"] == a["bytes_from_backend"] == 3
    wait_until(lambda: echo.accepted == 1 and not echo._conns, scaled(5),
               what="the backend connection to end")


def _bulk(port, host, prefix: bytes, nbytes: int, hb):
    """Sends prefix + nbytes of known data and reads to EOF; returns
    (sha256 of what was read, its length)."""
    data, _ = payload(b"client", nbytes)
    with connect(port, host, timeout=120) as s:
        err = []

        def send():
            try:
                s.sendall(prefix)
                s.sendall(data)
                s.shutdown(socket.SHUT_WR)
            except OSError as e:
                err.append(e)
        t = threading.Thread(target=send, daemon=True)
        t.start()
        h = hashlib.sha256()
        n = 0
        buf = bytearray(1 << 20)
        s.settimeout(scaled(120))
        while True:
            k = s.recv_into(buf)
            if not k:
                break
            h.update(memoryview(buf)[:k])
            n += k
        t.join(scaled(120))
        assert not err, err
    return h.hexdigest(), n


def test_bulk_64mib_each_way_tcp(sixgate, backends):
    n = 64 * MiB
    hb = backends.hash(n, seed=b"backend")
    port = free_ports(1)[0]
    sixgate.start(main_config([tcp_listener("bulk", port, hb.addr)], map=None))
    sha, got = _bulk(port, V4, b"", n, hb)
    assert got == n and sha == hb.send_sha256
    wait_until(lambda: hb.results.get(0, {}).get("done"), scaled(30), what="backend done")
    assert hb.results[0]["received"] == n
    assert hb.results[0]["sha256"] == payload(b"client", n)[1]
    a = one_access(sixgate, listener="bulk")
    assert (a["bytes_from_client"], a["bytes_from_backend"], a["outcome"]) == (n, n, "ok")


def test_bulk_64mib_each_way_tls_listener(sixgate, backends):
    """A real ClientHello routes the connection; then 64 MiB each way
    (not TLS records: sixgate only splices bytes once routed)."""
    n = 64 * MiB
    hb = backends.hash(n, seed=b"tls-backend")
    port = free_ports(1)[0]
    sixgate.start(main_config([tls_listener("https", port)]),
                  routes_map({"bulk.test": hb.addr}))
    hello = client_hello("bulk.test")
    sha, got = _bulk(port, V6, hello, n, hb)
    assert got == n and sha == hb.send_sha256
    wait_until(lambda: hb.results.get(0, {}).get("done"), scaled(30), what="backend done")
    assert hb.results[0]["received"] == len(hello) + n
    assert hb.results[0]["sha256"] == hashlib.sha256(hello + payload(b"client", n)[0]).hexdigest()
    a = one_access(sixgate, listener="https")
    assert (a["bytes_from_client"], a["bytes_from_backend"]) == (len(hello) + n, n)


def test_250_concurrent_http_clients(sixgate, backends):
    nb, nclients = 5, 250
    bs = [backends.http(f"site{i}") for i in range(nb)]
    port = free_ports(1)[0]
    sixgate.start(main_config([http_listener("http", port)], workers=2,
                              limits={"connections": 1000}),
                  routes_map({f"site{i}.test": b.addr for i, b in enumerate(bs)}))
    barrier = threading.Barrier(nclients, timeout=scaled(30))
    socks: list = [None] * nclients

    def client(i):
        s = connect(port, V4 if i % 2 else V6, timeout=60)
        socks[i] = s
        barrier.wait()  # every client connected before any sends
        s.sendall(http_request(f"site{i % nb}.test", target=f"/client/{i}",
                               extra="Connection: close"))
        status, _, body = read_http_response(s, timeout=60)
        s.close()
        return status, json_body(body)

    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=nclients) as ex:
        results = list(ex.map(client, range(nclients), timeout=scaled(90)))
    took = time.monotonic() - t0
    for i, (status, d) in enumerate(results):
        assert status == "HTTP/1.1 200 OK"
        assert d["backend"] == f"site{i % nb}" and d["target"] == f"/client/{i}"
    assert sum(b.accepted for b in bs) == nclients
    assert took < scaled(60)
    log = sixgate.wait_access(nclients, timeout=20)
    # one line per connection: ports of IPv4 and IPv6 clients may coincide
    assert len({(a["client"], a["client_port"]) for a in log}) == nclients
    assert all(a["outcome"] == "ok" for a in log)


def test_slow_reader_backpressure(sixgate, backends):
    """The client stops reading while the backend sends 64 MiB: sixgate
    stops reading from the backend instead of buffering (its RSS stays
    within 32 MiB of where it was), and every byte arrives once the client
    reads again."""
    n = 64 * MiB
    hb = backends.hash(n, seed=b"slow", chunk=64 * 1024)
    port = free_ports(1)[0]
    sixgate.start(main_config([tcp_listener("slow", port, hb.addr)], map=None))
    time.sleep(0.2)
    base = sixgate.rss_kib()
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    s.settimeout(scaled(60))
    s.connect((V4, port))
    s.shutdown(socket.SHUT_WR)  # nothing to send: the backend reads EOF
    # wait until the backend's sends stall: the buffers between are full
    last, stable_since = -1, time.monotonic()
    deadline = time.monotonic() + scaled(30)
    while time.monotonic() < deadline:
        cur = hb.sent_progress
        if cur != last:
            last, stable_since = cur, time.monotonic()
        elif time.monotonic() - stable_since > 1.0:
            break
        time.sleep(0.05)
    stalled_at = hb.sent_progress
    peak = sixgate.rss_kib()
    print(f"rss base {base} KiB, stalled {peak} KiB, backend sent {stalled_at} bytes")
    assert stalled_at < n, "the backend sent everything: no backpressure reached it"
    assert peak - base < 32 * 1024, (base, peak, stalled_at)
    h = hashlib.sha256()
    got = 0
    while True:
        chunk = s.recv(1 << 20)
        if not chunk:
            break
        h.update(chunk)
        got += len(chunk)
    s.close()
    assert got == n and h.hexdigest() == hb.send_sha256


# ---------------------------------------------------------------------------
# timeouts

def test_sniff_timeout(sixgate):
    ph, pt = free_ports(2)
    sixgate.start(main_config([http_listener("http", ph), tls_listener("https", pt)],
                              timeouts={"sniff": "1s"}),
                  routes_map({"x.test": "[::1]:9"}))
    # a client that sends nothing
    with connect(pt) as s:
        t0 = time.monotonic()
        kind, data = wait_closed(s, scaled(5))
        took = time.monotonic() - t0
    assert data == b"" and 0.8 <= took <= scaled(3.0), (kind, took)
    # a client that trickles a hello, one byte per 300 ms
    hello = client_hello("x.test")
    with connect(pt, V6) as s:
        t0 = time.monotonic()
        closed = None
        for i in range(20):  # 6 s at most
            try:
                s.sendall(hello[i:i + 1])
            except OSError:
                closed = time.monotonic() - t0
                break
            r, _, _ = select_readable(s, 0.3)
            if r:
                try:
                    if s.recv(100) == b"":
                        closed = time.monotonic() - t0
                        break
                except ConnectionResetError:
                    closed = time.monotonic() - t0
                    break
        assert closed is not None and 0.8 <= closed <= scaled(3.0), closed
    # the same for an HTTP head
    with connect(ph) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHo")
        t0 = time.monotonic()
        kind, data = wait_closed(s, scaled(5))
        assert data == b"" and time.monotonic() - t0 <= scaled(3.0)
    log = sixgate.wait_access(3)
    assert all(a["outcome"] == "sniff_timeout" for a in log), log
    assert [a["bytes_from_client"] for a in log][0] == 0


def test_client_leaves_before_routing(sixgate):
    """Half a hello, then EOF: closed at once, logged as client_gone."""
    port = free_ports(1)[0]
    sixgate.start(main_config([tls_listener("https", port)]), routes_map({"x.test": "[::1]:9"}))
    hello = client_hello("x.test")
    with connect(port) as s:
        s.sendall(hello[:100])
        s.shutdown(socket.SHUT_WR)
        t0 = time.monotonic()
        kind, data = wait_closed(s, scaled(5))
        assert data == b"" and time.monotonic() - t0 < scaled(1.0)
    a = sixgate.wait_access(1)[0]
    assert a["outcome"] == "client_gone" and a["bytes_from_client"] == 100


def test_connection_limit(sixgate, backends):
    """limits.connections: past it a new connection is reset (overload)
    and the established ones go on."""
    echo = backends.echo()
    port = free_ports(1)[0]
    sixgate.start(main_config([tcp_listener("tcp", port, echo.addr)], map=None,
                              limits={"connections": 2}))
    a, b = connect(port), connect(port)
    for s in (a, b):
        s.sendall(b"hi")
        assert recv_exact(s, 2) == b"hi"
    try:
        with connect(port) as c:  # the reset may come before connect() returns
            kind, data = wait_closed(c, scaled(5))
            assert data == b""
    except ConnectionResetError:
        pass
    over = sixgate.wait_access(1)
    assert [x["outcome"] for x in over] == ["overload"]
    a.sendall(b"still")
    assert recv_exact(a, 5) == b"still"
    a.close()
    b.close()
    sixgate.wait_access(3)
    with connect(port) as d:  # room again
        d.sendall(b"again")
        assert recv_exact(d, 5) == b"again"


def test_sigterm_drains(sixgate, backends):
    """SIGTERM: no new connections, the established one goes on, and the
    process exits 0 as soon as it ends (before the drain time)."""
    echo = backends.echo()
    port = free_ports(1)[0]
    sixgate.start(main_config([tcp_listener("tcp", port, echo.addr, hosts=(V4,))], map=None,
                              timeouts={"drain": "20s"}))
    s = connect(port)
    s.sendall(b"before")
    assert recv_exact(s, 6) == b"before"
    sixgate.signal(signal.SIGTERM)
    sixgate.wait_log("stopping")

    def refused():
        try:
            connect(port, timeout=1).close()
            return False
        except (ConnectionRefusedError, socket.timeout, OSError):
            return True
    wait_until(refused, scaled(5), what="new connections to be refused")
    s.sendall(b"during")
    assert recv_exact(s, 6) == b"during"
    assert sixgate.running()
    t0 = time.monotonic()
    s.close()
    sixgate.proc.wait(timeout=scaled(5))
    assert sixgate.proc.returncode == 0 and time.monotonic() - t0 < scaled(3)
    a = sixgate.access_log()
    assert [x["outcome"] for x in a] == ["ok"]
    assert a[0]["bytes_from_client"] == 12


def test_sigterm_drain_time_over(sixgate, backends):
    echo = backends.echo()
    port = free_ports(1)[0]
    sixgate.start(main_config([tcp_listener("tcp", port, echo.addr)], map=None,
                              timeouts={"drain": "1s"}))
    with connect(port, V6) as s:
        s.sendall(b"x")
        assert recv_exact(s, 1) == b"x"
        t0 = time.monotonic()
        assert sixgate.stop() == 0
        assert 0.9 <= time.monotonic() - t0 <= scaled(4)
        kind, data = wait_closed(s, scaled(2))
        assert data == b""
    assert [x["outcome"] for x in sixgate.access_log()] == ["stopped"]


def select_readable(s, timeout):
    return select.select([s], [], [], timeout)


def test_idle_timeout(sixgate, backends):
    echo = backends.echo()
    port = free_ports(1)[0]
    sixgate.start(main_config([tcp_listener("idle", port, echo.addr)],
                              timeouts={"idle": "1s"}, map=None))
    with connect(port) as s:
        s.sendall(b"ping")
        assert recv_exact(s, 4) == b"ping"
        # traffic keeps it alive past the idle time
        for _ in range(3):
            time.sleep(0.5)
            s.sendall(b"x")
            assert recv_exact(s, 1) == b"x"
        t0 = time.monotonic()
        kind, data = wait_closed(s, scaled(5))
        took = time.monotonic() - t0
    assert data == b"" and 0.8 <= took <= scaled(3.0), (kind, took)
    a = one_access(sixgate, listener="idle")
    assert a["outcome"] == "idle_timeout"
    assert a["bytes_from_client"] == a["bytes_from_backend"] == 7


class DripBackend(Backend):
    """Sends one byte every <interval> seconds, <count> times, then closes."""

    kind = "drip"

    def __init__(self, interval: float, count: int, **kw):
        super().__init__(**kw)
        self.interval, self.count = interval, count

    def handle(self, conn, peer, index):
        for _ in range(self.count):
            time.sleep(self.interval)
            conn.sendall(b".")
        conn.shutdown(socket.SHUT_WR)
        conn.recv(1)


def test_idle_timeout_counts_either_direction(sixgate, backends):
    """A download that trickles (one byte every 0.4 s for 2.4 s) is never
    idle, although the client sends nothing after its request."""
    drip = backends.add(DripBackend(0.4, 6))
    port = free_ports(1)[0]
    sixgate.start(main_config([http_listener("http", port)], timeouts={"idle": "1s"}),
                  routes_map({"drip.test": drip.addr}))
    with connect(port) as s:
        s.sendall(http_request("drip.test"))
        assert recv_all(s, timeout=10) == b"......"
    a = one_access(sixgate, name="drip.test")
    assert a["outcome"] == "ok" and a["bytes_from_backend"] == 6


# ---------------------------------------------------------------------------
# refusals of bad input; the process keeps serving

BAD_INPUT = {
    # id: (listener, bytes, expected reply (bytes, or a callable check), outcome)
    "http_head_too_large": (
        "http", http_request("ok.test", extra="X-Pad: " + "a" * 20000),
        b"HTTP/1.1 431 Request Header Fields Too Large\r\n", "too_large"),
    "http_malformed_head": (
        "http", b"GET / HTTP/1.1\r\nHost ok.test\r\n\r\n", b"HTTP/1.1 400 Bad Request\r\n",
        "bad_request"),
    "http_space_before_colon": (
        "http", b"GET / HTTP/1.1\r\nHost : ok.test\r\n\r\n", b"HTTP/1.1 400 Bad Request\r\n",
        "bad_request"),
    "http11_without_host": (
        "http", b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", b"HTTP/1.1 400 Bad Request\r\n",
        "bad_request"),
    "http_two_hosts": (
        "http", b"GET / HTTP/1.1\r\nHost: ok.test\r\nHost: other.test\r\n\r\n",
        b"HTTP/1.1 400 Bad Request\r\n", "bad_request"),
    "http_bad_host_name": (
        "http", b"GET / HTTP/1.1\r\nHost: bad name.test\r\n\r\n", b"HTTP/1.1 400 Bad Request\r\n",
        "bad_request"),
    "plain_http_to_tls": (
        "https", http_request("ok.test"), b"HTTP/1.1 400 Bad Request\r\n", "wrong_protocol"),
    "tls_hello_to_http": (
        "http", None, tls_alert(ALERT_HANDSHAKE_FAILURE), "wrong_protocol"),
    "garbage_to_tls": (
        "https", b"\x00\x01\x02\x03garbage\xff" * 8, None, "wrong_protocol"),
    "http2_preface": (
        "http", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", b"HTTP/1.1 400 Bad Request\r\n",
        "bad_request"),
    "http_connect": (
        "http", b"CONNECT ok.test:443 HTTP/1.1\r\nHost: ok.test:443\r\n\r\n",
        b"HTTP/1.1 400 Bad Request\r\n", "bad_request"),
    "http_bare_lf": (
        "http", b"GET / HTTP/1.1\nHost: ok.test\n\n", b"HTTP/1.1 400 Bad Request\r\n",
        "bad_request"),
    "tls_bad_sni": (
        "https", None, tls_alert(ALERT_UNRECOGNIZED_NAME), "bad_request"),
    "tls_hello_bad_length": (
        "https", b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00", None, "bad_request"),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_refusals_then_still_serving(sixgate, backends, case):
    listener, data, expect, outcome = BAD_INPUT[case]
    if data is None:
        data = client_hello("bad!name.test" if listener == "https" else "ok.test")
    hb = backends.http("ok")
    tb = backends.tls("ok.test")
    ph, pt = free_ports(2)
    sixgate.start(main_config([http_listener("http", ph), tls_listener("https", pt)]),
                  routes_map({"ok.test": hb.addr}, fallback=None))
    port = ph if listener == "http" else pt
    with connect(port) as s:
        try:
            s.sendall(data)
        except OSError:
            pass
        kind, reply = wait_closed(s, scaled(5))
    if expect is None:
        # an alert or a plain close: never anything else
        assert reply in (b"", tls_alert(50), tls_alert(40), tls_alert(80)), reply
    elif expect.startswith(b"HTTP/"):
        assert reply.startswith(expect), reply[:200]
        head = reply.partition(b"\r\n\r\n")[0]
        assert b"\r\nConnection: close" in head
    else:
        assert reply == expect
    assert hb.accepted == 0 and tb.accepted == 0
    a = sixgate.wait_access(1)[0]
    assert a["outcome"] == outcome, a
    # still serving
    status, _, body = http_exchange(ph, http_request("ok.test"))
    assert status == "HTTP/1.1 200 OK" and json_body(body)["backend"] == "ok"
    assert sixgate.running()


@pytest.mark.parametrize("limit", [1024, 16384])
def test_http_head_limit_boundary(sixgate, backends, limit):
    """limits.http_head: a head of exactly the limit (request line, headers
    and the empty line) is routed; one byte more gets 431."""
    hb = backends.http("ok")
    port = free_ports(1)[0]
    sixgate.start(main_config([http_listener("http", port)], limits={"http_head": limit}),
                  routes_map({"ok.test": hb.addr}))
    base = len(http_request("ok.test", extra="X-Pad: "))
    for total, want in ((limit, "HTTP/1.1 200 OK"),
                        (limit + 1, "HTTP/1.1 431 Request Header Fields Too Large")):
        req = http_request("ok.test", extra="X-Pad: " + "a" * (total - base))
        assert len(req) == total
        assert http_exchange(port, req)[0] == want, total
    assert hb.accepted == 1


# ---------------------------------------------------------------------------
# tcp listener

def test_tcp_listener_banner_backend(sixgate, backends):
    banner = b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n"
    ssh = backends.raw(greeting=banner)
    port = free_ports(1)[0]
    sixgate.start(main_config([tcp_listener("ssh", port, ssh.addr)], map=None))
    mine = b"SSH-2.0-test_client\r\n" + bytes(range(256)) * 64
    for i, client in enumerate((V4, V6)):
        with connect(port, client) as s:
            assert recv_exact(s, len(banner)) == banner
            s.sendall(mine)
            assert ssh.wait_data(len(mine), index=i) == mine
            local = s.getsockname()
        a = one_access(sixgate, client_port=local[1])
        assert a["client"] == client and a["listener"] == "ssh" and a["protocol"] == "tcp"
        assert "match" not in a and a["route"] is None and a["name"] is None
        assert a["backend"] == ssh.addr
        assert (a["bytes_from_client"], a["bytes_from_backend"]) == (len(mine), len(banner))
        assert a["outcome"] == "ok"


# ---------------------------------------------------------------------------
# the access log

def test_access_log_fields(sixgate, backends):
    tb = backends.tls("site.test")
    hb = backends.http("zone")
    ph, pt = free_ports(2)
    sixgate.start(main_config([http_listener("web", ph), tls_listener("tls", pt)]),
                  routes_map({"site.test": tb.addr, "*.zone.test": hb.addr}))
    # TLS, exact, IPv4: count what went each way at the TCP level
    with connect(pt, V4) as raw:
        t = TlsOverSocket(raw, "site.test")
        hello = t.hello()
        raw.sendall(hello)
        sent = len(hello)
        recvd = 0
        # drive the handshake by hand to count bytes
        raw.settimeout(scaled(10))
        while True:
            try:
                t.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                out = t.outgoing.read()
                raw.sendall(out)
                sent += len(out)
                chunk = raw.recv(65536)
                assert chunk
                recvd += len(chunk)
                t.incoming.write(chunk)
        out = t.outgoing.read()
        raw.sendall(out)
        sent += len(out)
        t.obj.write(http_request("site.test", extra="Connection: close"))
        out = t.outgoing.read()
        raw.sendall(out)
        sent += len(out)
        while True:
            chunk = raw.recv(65536)
            if not chunk:
                break
            recvd += len(chunk)
        local_port = raw.getsockname()[1]
    a = one_access(sixgate, client_port=local_port)
    assert a["listener"] == "tls" and a["protocol"] == "tls"
    assert a["client"] == V4 and a["local"] == f"127.0.0.1:{pt}"
    assert a["name"] == "site.test" and a["match"] == "exact" and a["route"] == "site.test"
    assert a["backend"] == tb.addr and a["outcome"] == "ok" and a["reason"] is None
    assert a["bytes_from_client"] == sent and a["bytes_from_backend"] == recvd
    for k in ("sniff_ms", "connect_ms", "duration_ms"):
        assert isinstance(a[k], (int, float)) and a[k] >= 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", a["time"])
    assert isinstance(a["conn"], int)

    # HTTP, wildcard, IPv6
    req = http_request("Deep.Zone.Test.", extra="Connection: close")
    with connect(ph, V6) as s:
        s.sendall(req)
        resp = recv_all(s)
        local_port = s.getsockname()[1]
    a = one_access(sixgate, client_port=local_port)
    assert a["listener"] == "web" and a["protocol"] == "http"
    assert a["client"] == V6 and a["local"] == f"[::1]:{ph}"
    assert a["name"] == "deep.zone.test" and a["match"] == "wildcard"
    assert a["route"] == "*.zone.test" and a["backend"] == hb.addr
    assert a["bytes_from_client"] == len(req) and a["bytes_from_backend"] == len(resp)
    assert a["outcome"] == "ok"

    # refused: no route; an invalid name is logged as received
    with connect(ph) as s:
        s.sendall(http_request("nope.test"))
        recv_all(s)
        p1 = s.getsockname()[1]
    a = one_access(sixgate, client_port=p1)
    assert (a["match"], a["route"], a["backend"], a["outcome"]) == ("none", None, None, "no_route")
    assert "sniff_ms" in a and "connect_ms" not in a
    with connect(ph) as s:
        s.sendall(b'GET / HTTP/1.1\r\nHost: a "b\\.test\r\n\r\n')
        recv_all(s)
        p2 = s.getsockname()[1]
    a = one_access(sixgate, client_port=p2)
    assert a["outcome"] == "bad_request" and a["name"] == 'a "b\\.test'
    # one line per connection, every line complete
    log = sixgate.access_log()
    assert len(log) == 4
    assert len({a["conn"] for a in log}) == 4
    assert "\"conn\"" not in sixgate.stderr_text()  # the access log went to the file only


def test_access_log_off(sixgate, backends):
    hb = backends.http("quiet")
    port = free_ports(1)[0]
    sixgate.start(main_config([http_listener("http", port)], access="off"),
                  routes_map({"q.test": hb.addr}))
    assert http_exchange(port, http_request("q.test"))[0] == "HTTP/1.1 200 OK"
    time.sleep(0.3)
    assert sixgate.access_log() == [] and not sixgate.access_path.exists()


# ---------------------------------------------------------------------------
# the command line

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
    (tmp_path / "main.yaml").write_text(main_config(
        [tls_listener("https", 8443, backend_port=443), http_listener("http", 8080)]))
    (tmp_path / "routes.yaml").write_text(routes_map(
        {"www.example.test": "2001:db8::10", "*.example.test": "[2001:db8::20]:8443",
         "*.deep.example.test": "[2001:db8::30]:9000"}, fallback="[2001:db8::1]"))
    (tmp_path / "nofb.yaml").write_text(main_config([tls_listener("https", 8443)],
                                                    map="nofb-routes.yaml"))
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
