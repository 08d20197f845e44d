#!/usr/bin/python3
"""Writes test/fixtures/hello/*.bin: the raw bytes a TLS client sends first,
for the sniff_tls unit tests and as the sniff_tls fuzzing seeds.

Real ClientHellos come from Python's ssl module (over memory BIOs) and from
`openssl s_client` against a listener this script opens on 127.0.0.1. Every
other fixture is one of those, parsed and rebuilt: re-framed into several
records, inflated (a post-quantum sized key_share, padding), or broken on
purpose. expected.txt lists each file with the result token that
sg_sniff_result_str() gives and the expected name ("-" when there is none).

Usage: make_hellos.py [--out DIR] [--corpus DIR]
Standard library and the openssl command only; network use is loopback only
and every wait is bounded.
"""

import argparse
import os
import random
import select
import shutil
import socket
import ssl
import struct
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "..", "fixtures", "hello")
DEFAULT_CORPUS = os.path.join(HERE, "..", "fuzz", "corpus", "sniff_tls")

HANDSHAKE = 22
EXT_SERVER_NAME = 0
EXT_SUPPORTED_GROUPS = 10
EXT_PADDING = 21
EXT_KEY_SHARE = 51
GROUP_X25519MLKEM768 = 0x11EC
MLKEM768_X25519_SHARE = 1184 + 32  # ML-KEM-768 encapsulation key plus an X25519 share
RECORD_MAX = 16384
WAIT = 10.0  # seconds, for every wait on a child process or a socket

rng = random.Random(20240611)  # garbage is reproducible; real hellos are not


# --- TLS framing ---------------------------------------------------------

def u16(n):
    return struct.pack("!H", n)


def u24(n):
    return struct.pack("!I", n)[1:]


def records(data):
    """Splits complete records off data: [(type, version, payload)], rest."""
    out = []
    pos = 0
    while len(data) - pos >= 5:
        rtype, ver, rlen = struct.unpack("!BHH", data[pos:pos + 5])
        if len(data) - pos - 5 < rlen:
            break
        out.append((rtype, ver, data[pos + 5:pos + 5 + rlen]))
        pos += 5 + rlen
    return out, data[pos:]


def first_message(data):
    """The first handshake message in data (joined across records), or None."""
    stream = b""
    for rtype, _, payload in records(data)[0]:
        if rtype != HANDSHAKE:
            break
        stream += payload
        if len(stream) >= 4:
            mlen = 4 + int.from_bytes(stream[1:4], "big")
            if len(stream) >= mlen:
                return stream[:mlen]
    return None


def frame(msg, sizes=None, chunk=None, version=0x0301):
    """Wraps a handshake message in records: payload sizes from `sizes` (the
    last one takes the rest), or `chunk` bytes each, or as few as fit."""
    if sizes is None:
        step = chunk or RECORD_MAX
        sizes = [step] * ((len(msg) + step - 1) // step)
    out = b""
    pos = 0
    for i, n in enumerate(sizes):
        if i == len(sizes) - 1:
            n = len(msg) - pos
        piece = msg[pos:pos + n]
        pos += n
        out += struct.pack("!BHH", HANDSHAKE, version, len(piece)) + piece
    assert pos == len(msg)
    return out


class Hello:
    """A ClientHello split into its fields, so it can be changed and rebuilt
    with every length recomputed."""

    def __init__(self, msg):
        assert msg[0] == 1, "not a ClientHello"
        body = msg[4:]
        assert len(body) == int.from_bytes(msg[1:4], "big")
        p = 0
        self.version = body[p:p + 2]
        p += 2
        self.random = body[p:p + 32]
        p += 32
        n = body[p]
        self.session_id = body[p + 1:p + 1 + n]
        p += 1 + n
        n = int.from_bytes(body[p:p + 2], "big")
        self.ciphers = body[p + 2:p + 2 + n]
        p += 2 + n
        n = body[p]
        self.compression = body[p + 1:p + 1 + n]
        p += 1 + n
        self.extensions = []
        n = int.from_bytes(body[p:p + 2], "big")
        p += 2
        end = p + n
        assert end == len(body)
        while p < end:
            etype, elen = struct.unpack("!HH", body[p:p + 4])
            self.extensions.append([etype, body[p + 4:p + 4 + elen]])
            p += 4 + elen

    def ext(self, etype):
        for e in self.extensions:
            if e[0] == etype:
                return e
        return None

    def body(self, tail=b"", with_extensions=True, ext_tail=b""):
        out = (self.version + self.random + bytes([len(self.session_id)]) + self.session_id +
               u16(len(self.ciphers)) + self.ciphers +
               bytes([len(self.compression)]) + self.compression)
        if with_extensions:
            exts = b"".join(u16(t) + u16(len(d)) + d for t, d in self.extensions) + ext_tail
            out += u16(len(exts)) + exts
        return out + tail

    def message(self, tail=b"", with_extensions=True, ext_tail=b""):
        body = self.body(tail, with_extensions, ext_tail)
        return bytes([1]) + u24(len(body)) + body

    def set_sni(self, *entries):
        """Replaces the server_name extension's list with raw (type, bytes) entries."""
        names = b"".join(bytes([t]) + u16(len(n)) + n for t, n in entries)
        self.set_ext(EXT_SERVER_NAME, u16(len(names)) + names)

    def set_ext(self, etype, data):
        e = self.ext(etype)
        if e is None:
            self.extensions.insert(0, [etype, data])
        else:
            e[1] = data

    def pad_to(self, msg_len):
        """Adds (or resizes) a padding extension so the message is msg_len bytes."""
        self.extensions = [e for e in self.extensions if e[0] != EXT_PADDING]
        missing = msg_len - len(self.message()) - 4
        assert missing >= 0
        # RFC 8446 wants pre_shared_key last, so padding goes before it if present.
        at = len(self.extensions)
        if self.extensions and self.extensions[-1][0] == 41:
            at -= 1
        self.extensions.insert(at, [EXT_PADDING, bytes(missing)])
        assert len(self.message()) == msg_len


# --- capturing real hellos -------------------------------------------------

def python_hello(server_hostname, max_version=None):
    """The bytes Python's ssl module sends first, through memory BIOs."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if max_version is not None:
        ctx.maximum_version = max_version
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=server_hostname)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def python_server_hello(client_bytes, workdir):
    """A real server's first flight, in answer to client_bytes."""
    key, cert = os.path.join(workdir, "key.pem"), os.path.join(workdir, "cert.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec",
                    "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=fixture",
                    "-days", "1", "-keyout", key, "-out", cert],
                   check=True, timeout=WAIT, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_side=True)
    incoming.write(client_bytes)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def s_client_hello(servername):
    """What `openssl s_client` sends to a listener on 127.0.0.1, up to the end
    of its ClientHello. s_client is killed as soon as the hello is in."""
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    proc = None
    conn = None
    try:
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(1)
        lsock.settimeout(WAIT)
        port = lsock.getsockname()[1]
        proc = subprocess.Popen(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port,
                                 "-servername", servername],
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        conn, _ = lsock.accept()
        data = b""
        deadline = time.monotonic() + WAIT
        while first_message(data) is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError("s_client: no complete ClientHello within %ss" % WAIT)
            ready, _, _ = select.select([conn], [], [], left)
            if not ready:
                continue
            got = conn.recv(65536)
            if not got:
                raise RuntimeError("s_client closed before its ClientHello was complete")
            data += got
        return data
    finally:
        if conn is not None:
            conn.close()
        lsock.close()
        if proc is not None:
            proc.kill()
            proc.wait(timeout=WAIT)


# --- hand-made inputs --------------------------------------------------------

def sslv2_hello():
    """An SSLv2-compatible CLIENT-HELLO (RFC 5246 appendix E.2): 2-byte length
    with the high bit set, msg type 1, version 3.1, then the cipher specs."""
    specs = bytes.fromhex("00002f" "000035" "00000a" "0000ff")
    challenge = bytes(rng.randrange(256) for _ in range(16))
    body = bytes([1, 3, 1]) + u16(len(specs)) + u16(0) + u16(len(challenge)) + specs + challenge
    return u16(0x8000 | len(body)) + body


def garbage(n, first=None):
    data = bytearray(rng.randrange(256) for _ in range(n))
    if first is not None:
        data[0] = first
    return bytes(data)


def dns_name(length):
    """A valid name of exactly `length` bytes: labels of 63 and a shorter last one."""
    labels = []
    left = length
    while left > 0:
        n = min(63, left)
        if left - n == 1:  # never leave room for just a dot
            n -= 1
        labels.append("x" * n)
        left -= n + 1
    name = ".".join(labels)
    assert len(name) == length, (len(name), length)
    return name


# --- the fixture set ----------------------------------------------------------

def build(workdir):
    """Returns [(filename, bytes, token, name or '-')]."""
    fx = []

    def add(name, data, token, host="-"):
        fx.append((name + ".bin", data, token, host))

    py13 = python_hello("www.example.org")
    py12 = python_hello("tls12.example.com", ssl.TLSVersion.TLSv1_2)
    nosni = python_hello(None)
    sclient = s_client_hello("s-client.example.net")
    m13, m12, msc = first_message(py13), first_message(py12), first_message(sclient)

    add("py_tls13_found", py13, "found", "www.example.org")
    add("py_tls12_found", py12, "found", "tls12.example.com")
    add("py_nosni_no_name", nosni, "no_name")
    add("s_client_found", sclient, "found", "s-client.example.net")

    # Re-framed: the same handshake message over several records.
    add("py_tls13_2rec_found", frame(m13, [len(m13) // 2, 0]), "found", "www.example.org")
    add("py_tls13_3rec_found", frame(m13, [100, 150, 0]), "found", "www.example.org")
    add("py_tls13_1byte_found", frame(m13, chunk=1), "found", "www.example.org")
    add("py_tls13_hdrsplit_found", frame(m13, [2, 1, 0]), "found", "www.example.org")
    add("py_nosni_1byte_no_name", frame(first_message(nosni), chunk=1), "no_name")
    add("s_client_2rec_found", frame(msc, [7, 0]), "found", "s-client.example.net")
    add("s_client_3rec_found", frame(msc, [len(msc) // 3, len(msc) // 3, 0]), "found",
        "s-client.example.net")
    add("s_client_1byte_found", frame(msc, chunk=1), "found", "s-client.example.net")
    add("py_tls12_5byte_found", frame(m12, chunk=5, version=0x0303), "found",
        "tls12.example.com")
    add("rec_ver_0300_found", frame(m13, version=0x0300), "found", "www.example.org")

    # Post-quantum sized: an X25519MLKEM768 key share in front of the real one.
    h = Hello(m13)
    groups = h.ext(EXT_SUPPORTED_GROUPS)[1]
    h.set_ext(EXT_SUPPORTED_GROUPS, u16(len(groups) + 2) + u16(GROUP_X25519MLKEM768) + groups[2:])
    shares = h.ext(EXT_KEY_SHARE)[1]
    pq = u16(GROUP_X25519MLKEM768) + u16(MLKEM768_X25519_SHARE) + garbage(MLKEM768_X25519_SHARE)
    h.set_ext(EXT_KEY_SHARE, u16(len(shares) - 2 + len(pq)) + pq + shares[2:])
    h.pad_to(max(len(h.message()), 1800))
    mpq = h.message()
    add("pq_keyshare_found", frame(mpq), "found", "www.example.org")
    add("pq_keyshare_1byte_found", frame(mpq, chunk=1), "found", "www.example.org")
    h = Hello(m13)
    h.pad_to(1800)
    add("pq_padding_found", frame(h.message()), "found", "www.example.org")

    # 16 KiB and more: the message no longer fits one record.
    h = Hello(m13)
    h.pad_to(16 * 1024 + 400)
    big = h.message()
    add("big16k_2rec_found", frame(big), "found", "www.example.org")
    add("big16k_first_record_need_more", frame(big)[:5 + RECORD_MAX], "need_more")
    h.pad_to(33 * 1024)
    add("hello_33k_too_large", frame(h.message()), "too_large")
    h = Hello(m13)
    h.pad_to(7000)
    add("raw_over_limit_1byte_too_large", frame(h.message(), chunk=1), "too_large")

    # Bytes after the hello: the compatibility ChangeCipherSpec and early data.
    ccs = bytes.fromhex("140303000101")
    early = b"\x17\x03\x03" + u16(48) + garbage(48)
    add("early_data_after_found", py13 + ccs + early, "found", "www.example.org")
    add("garbage_after_found", frame(m13, [100, 0]) + garbage(64), "found", "www.example.org")

    # Names.
    def with_sni(*entries):
        h = Hello(m13)
        h.set_sni(*entries)
        return frame(h.message())

    add("sni_upper_trailing_dot_found", with_sni((0, b"WWW.Example.ORG.")), "found",
        "www.example.org")
    add("sni_253_found", with_sni((0, dns_name(253).encode())), "found", dns_name(253))
    add("sni_254_bad_name", with_sni((0, dns_name(254).encode())), "bad_name")
    add("sni_unknown_type_then_host_found", with_sni((1, b"opaque"), (0, b"mixed.example")),
        "found", "mixed.example")
    add("sni_unknown_type_only_no_name", with_sni((7, b"opaque")), "no_name")
    add("sni_non_ascii_bad_name", with_sni((0, "bücher.example".encode())), "bad_name")
    add("sni_space_bad_name", with_sni((0, b"www example.org")), "bad_name")
    add("sni_nul_bad_name", with_sni((0, b"evil.example\x00.org")), "bad_name")
    add("sni_ipv6_literal_bad_name", with_sni((0, b"[::1]")), "bad_name")
    add("sni_port_bad_name", with_sni((0, b"www.example.org:443")), "bad_name")
    add("sni_wildcard_bad_name", with_sni((0, b"*.example.org")), "bad_name")
    add("sni_empty_label_bad_name", with_sni((0, b"www..example.org")), "bad_name")
    add("two_host_names_malformed", with_sni((0, b"a.example"), (0, b"b.example")), "malformed")
    add("sni_empty_host_name_malformed", with_sni((0, b"")), "malformed")

    h = Hello(m13)
    h.set_ext(EXT_SERVER_NAME, u16(0))
    add("sni_empty_list_malformed", frame(h.message()), "malformed")
    h.set_ext(EXT_SERVER_NAME, b"")
    add("sni_no_list_malformed", frame(h.message()), "malformed")
    names = b"\x00" + u16(9) + b"a.example"
    h.set_ext(EXT_SERVER_NAME, u16(len(names) + 1) + names)
    add("sni_list_len_mismatch_malformed", frame(h.message()), "malformed")
    h.set_ext(EXT_SERVER_NAME, u16(len(names)) + b"\x00" + u16(10) + b"a.example")
    add("sni_name_len_over_list_malformed", frame(h.message()), "malformed")
    h.set_ext(EXT_SERVER_NAME, u16(len(names)) + names + b"\x00")
    add("sni_list_shorter_than_ext_malformed", frame(h.message()), "malformed")

    h = Hello(m13)
    h.extensions.append(list(h.ext(EXT_SERVER_NAME)))
    add("dup_sni_ext_malformed", frame(h.message()), "malformed")
    h = Hello(m13)
    h.extensions.insert(1, [EXT_SERVER_NAME, u16(12) + b"\x00" + u16(9) + b"b.example"])
    add("dup_sni_ext_other_name_malformed", frame(h.message()), "malformed")
    h = Hello(m13)
    h.extensions.append(list(h.ext(EXT_SUPPORTED_GROUPS)))
    add("dup_other_ext_malformed", frame(h.message()), "malformed")

    # Hello structure.
    h = Hello(m13)
    add("no_extensions_no_name", frame(h.message(with_extensions=False)), "no_name")
    h.extensions = []
    add("empty_extensions_no_name", frame(h.message()), "no_name")
    add("trailing_garbage_in_hello_malformed", frame(Hello(m13).message(tail=b"\x00\x00")),
        "malformed")
    body = Hello(m13).body()
    ext_at = len(Hello(m13).body(with_extensions=False))  # where the extensions block starts
    for delta, name in ((1, "exts_block_len_over_malformed"),
                        (-1, "exts_block_len_short_malformed")):
        b = bytearray(body)
        n = int.from_bytes(b[ext_at:ext_at + 2], "big") + delta
        b[ext_at:ext_at + 2] = u16(n)
        add(name, frame(bytes([1]) + u24(len(b)) + bytes(b)), "malformed")
    b = bytearray(body)
    b[ext_at + 4:ext_at + 6] = u16(0xFFFF)  # the first extension's own length
    add("ext_len_over_block_malformed", frame(bytes([1]) + u24(len(b)) + bytes(b)), "malformed")
    for n in (1, 3):  # an extension header cut short by the end of the block and the file
        add("ext_header_cut_%d_malformed" % n, frame(Hello(m13).message(ext_tail=bytes(n))),
            "malformed")
    h = Hello(m13)
    h.extensions.append([EXT_SERVER_NAME, b"\x00"])  # u16 list length cut short, at the end
    last = len(h.extensions) - 1
    h.extensions = [e for i, e in enumerate(h.extensions) if e[0] != EXT_SERVER_NAME or i == last]
    add("sni_list_len_cut_malformed", frame(h.message()), "malformed")

    h = Hello(m13)
    h.session_id = garbage(33)
    add("session_id_33_malformed", frame(h.message()), "malformed")
    h = Hello(m13)
    h.ciphers = h.ciphers + b"\x00"
    add("cipher_suites_odd_malformed", frame(h.message()), "malformed")
    h.ciphers = b""
    add("cipher_suites_empty_malformed", frame(h.message()), "malformed")
    h = Hello(m13)
    h.compression = b""
    add("no_compression_malformed", frame(h.message()), "malformed")
    h = Hello(m13)
    h.version = b"\x02\x00"
    add("hello_version_2_malformed", frame(h.message()), "malformed")
    add("hello_too_short_malformed", frame(bytes([1]) + u24(20) + garbage(20)), "malformed")

    # Record and handshake framing.
    rec = bytearray(py13)
    rec[3:5] = u16(RECORD_MAX + 1)
    add("bad_record_len_16385_malformed", bytes(rec), "malformed")
    add("bad_record_len_0_malformed", b"\x16\x03\x01\x00\x00" + py13, "malformed")
    rec = bytearray(py13)
    rec[1] = 2
    add("bad_record_version_2_malformed", bytes(rec), "malformed")
    add("bad_second_record_type_malformed", frame(m13, [50, 0])[:55] + ccs + py13[55:],
        "malformed")
    short = bytearray(py13)
    short[6:9] = u24(len(m13) - 4 - 10)
    add("bad_hs_len_short_malformed", bytes(short), "malformed")
    long_ = bytearray(py13)
    long_[6:9] = u24(len(m13) - 4 + 10)
    add("bad_hs_len_long_need_more", bytes(long_), "need_more")
    add("bad_hs_len_long_then_ccs_malformed", bytes(long_) + ccs, "malformed")
    add("data_after_hello_in_record_malformed", frame(m13 + b"\x0b\x00\x00\x00"), "malformed")
    add("one_byte_after_hello_in_record_malformed", frame(m13 + b"\x00", [300, 0]), "malformed")
    add("server_hello_malformed", python_server_hello(py13, workdir), "malformed")
    add("garbage_after_header_malformed", b"\x16\x03\x01" + u16(200) + garbage(200, first=0x99),
        "malformed")

    # Not TLS at all.
    add("http_get_wrong_protocol", b"GET / HTTP/1.1\r\nHost: www.example.org\r\n\r\n",
        "wrong_protocol")
    add("http2_preface_wrong_protocol", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "wrong_protocol")
    add("sslv2_hello_wrong_protocol", sslv2_hello(), "wrong_protocol")
    add("alert_first_wrong_protocol", bytes.fromhex("15030300020228"), "wrong_protocol")
    add("garbage_wrong_protocol", garbage(300, first=0x42), "wrong_protocol")
    add("garbage_high_bit_wrong_protocol", garbage(300, first=0xC3), "wrong_protocol")

    # Prefixes of a valid hello are only ever incomplete.
    add("empty_need_more", b"", "need_more")
    for cut in (1, 3, 5, 6, 9, 43, 44, 100, len(py13) - 1):
        add("trunc_py_tls13_%04d_need_more" % cut, py13[:cut], "need_more")
    one = frame(m13, chunk=1)
    for cut in (11, 24, 600, len(one) - 1):
        add("trunc_1byte_%04d_need_more" % cut, one[:cut], "need_more")
    return fx


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=DEFAULT_OUT, help="fixture directory")
    ap.add_argument("--corpus", default=DEFAULT_CORPUS,
                    help="fuzzing seed directory the fixtures are copied to ('' for none)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as workdir:
        fx = build(workdir)
    names = [f[0] for f in fx]
    assert len(names) == len(set(names)), "duplicate fixture names"

    os.makedirs(args.out, exist_ok=True)
    for old in os.listdir(args.out):
        if old.endswith(".bin"):
            os.unlink(os.path.join(args.out, old))
    with open(os.path.join(args.out, "expected.txt"), "w") as index:
        index.write("# file result name (written by test/tools/make_hellos.py)\n")
        for name, data, token, host in fx:
            with open(os.path.join(args.out, name), "wb") as f:
                f.write(data)
            index.write("%s %s %s\n" % (name, token, host))
    if args.corpus:
        os.makedirs(args.corpus, exist_ok=True)
        for name in names:
            shutil.copyfile(os.path.join(args.out, name), os.path.join(args.corpus, name))
    print("wrote %d fixtures to %s" % (len(fx), os.path.relpath(args.out)))


if __name__ == "__main__":
    main()
