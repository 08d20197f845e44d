"""Certificates for the TLS backends and for checking what a client saw.

    CertFactory(folder)(name) -> (certfile, keyfile)
                                    self-signed, CN and subjectAltName = name
                                    ("*.zone" works); made once per session
                                    (the session fixture ``certs``)
    cert_names(der) -> (CN, [subjectAltName values])
"""

from __future__ import annotations

import ipaddress
import re
import ssl
import subprocess
import threading
from pathlib import Path


class CertFactory:
    """certs(name) -> (certfile, keyfile): a self-signed EC certificate whose
    CN and only subjectAltName are <name>, made by the openssl command and
    kept for the whole session."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._made: dict[str, tuple[str, str]] = {}
        self._lock = threading.Lock()

    def __call__(self, name: str) -> tuple[str, str]:
        with self._lock:
            if name not in self._made:
                self._made[name] = self._make(name)
            return self._made[name]

    def _make(self, name: str) -> tuple[str, str]:
        stem = re.sub(r"[^A-Za-z0-9.-]", "_", name)
        cert = self.folder / f"{stem}.crt"
        key = self.folder / f"{stem}.key"
        try:
            ipaddress.ip_address(name)
            san = f"IP:{name}"
        except ValueError:
            san = f"DNS:{name}"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-days", "3", "-subj", f"/CN={name}", "-addext", f"subjectAltName={san}",
             "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True, timeout=30)
        return str(cert), str(key)


def cert_names(der: bytes) -> tuple[str | None, list[str]]:
    """(CN, [subjectAltName DNS/IP values]) of a DER certificate."""
    pem = ssl.DER_cert_to_PEM_cert(der)
    out = subprocess.run(["openssl", "x509", "-noout", "-subject", "-ext", "subjectAltName",
                          "-nameopt", "multiline"],
                         input=pem.encode(), capture_output=True, timeout=10, check=True).stdout
    text = out.decode()
    m = re.search(r"commonName\s*=\s*(\S+)", text)
    sans = re.findall(r"(?:DNS|IP Address):([^,\s]+)", text)
    return (m.group(1) if m else None), sans
