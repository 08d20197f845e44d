"""Integration harness for sixgate: the real binary, real clients, real backends.

Everything here talks to loopback only (127.0.0.1 and ::1); every wait and
every loop is bounded in count and in time.

This file holds only the pytest fixtures; the helpers live in modules that
the tests import from directly:

    process.py   the sixgate process (Sixgate, run_sixgate, one_access), the
                 environment (SIXGATE_BIN, SIXGATE_WRAP, SIXGATE_TIME_SCALE),
                 scaled(), wait_until(), free ports and addresses (V4, V6)
    configs.py   the YAML of the main file and the map (main_config,
                 tls_listener, http_listener, tcp_listener, routes_map)
    backends.py  backends that identify themselves or record what they got,
                 the slow DNS server, payload()
    clients.py   sockets, HTTP, TLS (Python ssl), curl and openssl s_client
    http1.py     HTTP/1.1 heads as bytes (http_request, parse_http_head, header)
    certs.py     self-signed certificates, and reading names out of one

Fixtures
    certs (session)     certs(name) -> (certfile, keyfile); see certs.py
    backends            a BackendPool: backends.http(ident), .tls(certname),
                        .echo(), .hash(nbytes), .raw(...), .blackhole(),
                        .slow_dns(...), .add(b); every one is stopped at
                        teardown, and the test fails if one raised
    sixgate             one Sixgate (see process.py)
    make_sixgate        a factory of more Sixgate instances
    Teardown stops every sixgate and fails the test if it printed a sanitizer
    report or a " bug: " line, or did not exit 0 on SIGTERM.
"""

from __future__ import annotations

import pytest

from backends import BackendPool
from certs import CertFactory
from process import Sixgate


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    return CertFactory(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def backends(certs):
    pool = BackendPool(certs)
    yield pool
    errors = pool.stop_all()
    if errors:
        pytest.fail(f"a test backend raised: {errors[0]!r}")


@pytest.fixture
def make_sixgate(tmp_path):
    """A factory of Sixgate instances, each in tmp_path/sixgateN; all are
    stopped and checked at teardown."""
    made: list[Sixgate] = []

    def make() -> Sixgate:
        s = Sixgate(tmp_path / f"sixgate{len(made)}")
        s.folder.mkdir(parents=True, exist_ok=True)
        made.append(s)
        return s

    yield make
    failures = [m for m in (s.finish() for s in made) if m]
    if failures:
        pytest.fail("\n\n".join(failures), pytrace=False)


@pytest.fixture
def sixgate(make_sixgate) -> Sixgate:
    return make_sixgate()
