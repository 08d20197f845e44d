"""Parsing HTTP/1.1 message heads, shared by the backends (requests) and
the clients (responses)."""

from __future__ import annotations


def read_http_head(f) -> tuple[bytes, bytes | None]:
    """Reads one HTTP head from a file-like (makefile('rb')) object:
    (head bytes, b'' at a clean EOF before any byte)."""
    lines = []
    total = 0
    while True:
        line = f.readline(65537)
        if not line:
            if lines:
                raise ConnectionError("EOF inside a request head")
            return b""
        lines.append(line)
        total += len(line)
        if total > 1 << 20:
            raise ValueError("head too large")
        if line in (b"\r\n", b"\n"):
            return b"".join(lines)


def parse_http_head(head: bytes) -> tuple[str, list[tuple[str, str]]]:
    """(first line, [(lower-case name, value)])."""
    text = head.decode("latin-1")
    lines = text.split("\r\n")
    first = lines[0]
    headers = []
    for ln in lines[1:]:
        if not ln:
            continue
        k, _, v = ln.partition(":")
        headers.append((k.strip().lower(), v.strip()))
    return first, headers


def header(headers, name: str, default=None):
    for k, v in headers:
        if k == name.lower():
            return v
    return default
