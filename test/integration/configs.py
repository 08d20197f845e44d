"""The YAML text of sixgate's two files: main_config(...) with
tls_listener(...), http_listener(...) and tcp_listener(...), and
routes_map(...); to_yaml() writes them."""

from __future__ import annotations

import json
import os
import re

from process import addr_text


def _yaml_scalar(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    return json.dumps(str(v))


def to_yaml(obj, indent: int = 0) -> str:
    """A small YAML writer for configs: mappings and lists of mappings in
    block style, lists of scalars in flow style, strings double-quoted."""
    pad = " " * indent
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            key = json.dumps(str(k)) if not re.fullmatch(r"[A-Za-z0-9_.-]+", str(k)) else str(k)
            if isinstance(v, dict):
                if not v:
                    out.append(f"{pad}{key}: {{}}")
                else:
                    out.append(f"{pad}{key}:")
                    out.append(to_yaml(v, indent + 2))
            elif isinstance(v, list) and any(isinstance(x, dict) for x in v):
                out.append(f"{pad}{key}:")
                out.append(to_yaml(v, indent + 2))
            elif isinstance(v, list):
                out.append(f"{pad}{key}: [" + ", ".join(_yaml_scalar(x) for x in v) + "]")
            else:
                out.append(f"{pad}{key}: {_yaml_scalar(v)}")
    elif isinstance(obj, list):
        for item in obj:
            if isinstance(item, dict):
                inner = to_yaml(item, indent + 2).splitlines()
                out.append(f"{pad}- " + inner[0].lstrip())
                out.extend(inner[1:])
            else:
                out.append(f"{pad}- {_yaml_scalar(item)}")
    else:
        out.append(pad + _yaml_scalar(obj))
    return "\n".join(out)


def _listen_list(port, hosts):
    return [addr_text(h, port) for h in hosts]


def tls_listener(name: str, port: int, hosts=("127.0.0.1", "::1"), **kw) -> dict:
    """A tls listener on <port> of each of <hosts>; kw adds keys
    (backend_port, accept_proxy, ...)."""
    return {"name": name, "listen": _listen_list(port, hosts), "protocol": "tls", **kw}


def http_listener(name: str, port: int, hosts=("127.0.0.1", "::1"), **kw) -> dict:
    return {"name": name, "listen": _listen_list(port, hosts), "protocol": "http", **kw}


def tcp_listener(name: str, port: int, backend: str, hosts=("127.0.0.1", "::1"), **kw) -> dict:
    return {"name": name, "listen": _listen_list(port, hosts), "protocol": "tcp",
            "backend": backend, **kw}


DEFAULT_TIMEOUTS = {"sniff": "5s", "connect": "5s", "idle": "60s", "drain": "2s"}

# The tests' backends listen on loopback, which sixgate refuses unless
# backend_networks allows it.
DEFAULT_BACKEND_NETWORKS = ("::1/128", "127.0.0.0/8")


def main_config(listeners: list[dict], map: str | None = "routes.yaml",
                access: str = "access.log", level: str = "info", workers=1,
                timeouts: dict | None = None, reload: dict | None = None,
                backend_networks=DEFAULT_BACKEND_NETWORKS, **top) -> str:
    """The main file's text. Defaults suited to tests: one worker, the access
    log in access.log beside it, short drain, no map watch; <timeouts>
    overrides single keys of DEFAULT_TIMEOUTS; backend_networks (None: left
    out, so the default refusals apply) allows the loopback backends;
    **top adds top-level keys
    (limits={...}, admin={...}, ...). SIXGATE_TEST_SPLICE (off, auto or
    always) sets the data path's mode for a whole run: ctest runs the
    data-path tests once copying and once splicing."""
    cfg: dict = {"listeners": listeners}
    if os.environ.get("SIXGATE_TEST_SPLICE"):
        cfg["splice"] = os.environ["SIXGATE_TEST_SPLICE"]
    t = dict(DEFAULT_TIMEOUTS)
    t.update(timeouts or {})
    cfg["timeouts"] = t
    cfg["workers"] = workers
    cfg["log"] = {"level": level, "access": access}
    cfg["reload"] = reload if reload is not None else {"watch": False}
    if map is not None:
        cfg["map"] = map
    if backend_networks is not None:
        cfg["backend_networks"] = list(backend_networks)
    cfg.update(top)
    return to_yaml(cfg) + "\n"


def routes_map(routes: dict, fallback=None, version: str | None = None) -> str:
    """The map's text: routes is {name: backend or {backend:, proxy_protocol:}}."""
    m: dict = {}
    if version is not None:
        m["version"] = version
    m["routes"] = routes
    if fallback is not None:
        m["fallback"] = fallback if isinstance(fallback, dict) else {"backend": fallback}
    return to_yaml(m) + "\n"
