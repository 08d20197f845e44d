#!/usr/bin/env python3
"""Demo backends for scripts/demo, all on [::1], each saying who it is:

  [::1]:9443  TLS, certificate for www.example.org      (HTTPS)
  [::1]:9444  TLS, certificate for *.pi.example.net     (HTTPS)
  [::1]:9080  HTTP, "www.example.org" site
  [::1]:9081  HTTP, "blog.example.net" site
  [::1]:9022  TCP, an SSH-like banner, then echo

Certificates are made with the openssl command in the folder given as the
first argument. Runs until it is killed."""
import socket
import ssl
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class V6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6
    daemon_threads = True


def handler(site, tls):
    class H(BaseHTTPRequestHandler):
        def do_GET(self):
            body = (f"Hello from the backend of {site} ({'HTTPS, its own certificate' if tls else 'HTTP'})\n"
                    f"you asked for Host: {self.headers.get('Host')}  path: {self.path}\n"
                    f"as seen by the backend, the client is {self.client_address[0]}\n").encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass
    return H


def make_cert(folder, name):
    key, crt = f"{folder}/{name.replace('*', 'star')}.key", f"{folder}/{name.replace('*', 'star')}.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
                    "-keyout", key, "-out", crt, "-subj", f"/CN={name}",
                    "-addext", f"subjectAltName=DNS:{name}"],
                   check=True, capture_output=True)
    return crt, key


def serve_http(port, site, tls_name=None, folder=None):
    srv = V6Server(("::1", port), handler(site, tls_name is not None))
    if tls_name:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*make_cert(folder, tls_name))
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()


def serve_banner(port):
    ls = socket.socket(socket.AF_INET6)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("::1", port))
    ls.listen(16)

    def one(c):
        with c:
            c.sendall(b"SSH-2.0-demo-backend-of-customer42 (reached through sixgate)\r\n")
            while data := c.recv(4096):
                c.sendall(data)

    def loop():
        while True:
            c, _ = ls.accept()
            threading.Thread(target=one, args=(c,), daemon=True).start()
    threading.Thread(target=loop, daemon=True).start()


if __name__ == "__main__":
    folder = sys.argv[1]
    serve_http(9443, "www.example.org", "www.example.org", folder)
    serve_http(9444, "the *.pi.example.net zone", "*.pi.example.net", folder)
    serve_http(9080, "www.example.org")
    serve_http(9081, "blog.example.net")
    serve_banner(9022)
    print("demo backends are up on [::1]: 9443 9444 (TLS), 9080 9081 (HTTP), 9022 (TCP)",
          flush=True)
    threading.Event().wait()
