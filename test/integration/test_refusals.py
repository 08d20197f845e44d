"""Refusals: names with no route, backends that are down or cannot be
resolved, and bad or oversized input. Each gets the answer its protocol
expects (an HTTP status or a TLS alert), never reaches a backend, is logged
with its outcome, and the process keeps serving."""

from __future__ import annotations

import ssl

import pytest

from clients import (ALERT_HANDSHAKE_FAILURE, ALERT_INTERNAL_ERROR, ALERT_UNRECOGNIZED_NAME,
                     client_hello, connect, curl, http_exchange, http_request, json_body,
                     pad_hello, recv_all, s_client, send_then_wait_closed, tls_alert, tls_client,
                     wait_closed)
from configs import http_listener, main_config, routes_map, tcp_listener, tls_listener
from http1 import header
from process import V4, V6, free_port, free_ports, scaled


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
# backends that cannot be reached

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


# ---------------------------------------------------------------------------
# bad input; the process keeps serving

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
        kind, reply = send_then_wait_closed(s, data, scaled(5))
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


def test_too_large_client_hello_refused(sixgate, backends):
    raw = backends.raw()
    port = free_ports(1)[0]
    sixgate.start(main_config([tls_listener("https", port)]),
                  routes_map({"big.test": raw.addr}))
    hello = pad_hello(client_hello("big.test"), 32 * 1024 + 1)
    with connect(port) as s:
        kind, reply = send_then_wait_closed(s, hello, scaled(5))
    assert reply == tls_alert(ALERT_HANDSHAKE_FAILURE)
    a = sixgate.wait_access(1)[0]
    assert a["outcome"] == "too_large" and raw.accepted == 0


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
