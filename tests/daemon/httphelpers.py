"""Helpers for HTTP tests: daemons A and B with an ``http:`` section, served in a thread."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.daemon.helpers import start_daemon, until, write_cluster
from vnstitch.daemon.coreadapter import protocol_core_factory
from vnstitch.daemon.identity import write_key_file
from vnstitch.daemon.runtime import RouteManagerDaemon

VNS = {"A": [{"vnid": 100, "components": ["10.1.0.0/24"], "host_ports": ["hA"]}],
       "B": [{"vnid": 100, "components": ["10.2.0.0/24"], "host_ports": ["hB"]},
             {"vnid": 200, "components": ["10.3.0.0/24"], "host_ports": ["hB2"]}]}
# Fast protocol timers: a request to a VNID nobody has fails in a fraction of a second.
TIMERS = {"announce_interval_s": 0.1, "probe_interval_s": 0.1, "probe_misses": 3,
          "query_timeout_s": 0.3, "reservation_hold_s": 0.5}


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_token(path: Path, mode: int = 0o600) -> str:
    token = secrets.token_urlsafe(24)
    path.write_text(token + "\n")
    os.chmod(path, mode)
    return token


@dataclass
class HttpNode:
    daemon: RouteManagerDaemon
    base: str  # http://127.0.0.1:PORT
    token: str
    loop: asyncio.AbstractEventLoop  # the daemons' loop (in another thread)

    def door(self) -> list[str]:
        """CLI arguments that reach this daemon through its HTTP API."""
        assert self.daemon.config.http is not None
        return ["--url", self.base, "--token-file", str(self.daemon.config.http.token_file)]

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.daemon.stop(), self.loop).result(10)

    def call(self, method: str, path: str, body: Any = None, *, token: str | None = None,
             raw: bytes | None = None) -> tuple[int, Any]:
        """One request; (status, parsed JSON or text). ``token=""`` sends none."""
        data = raw if raw is not None else (None if body is None else
                                            json.dumps(body).encode())
        req = urllib.request.Request(self.base + path, data=data, method=method)
        tok = self.token if token is None else token
        if tok:
            req.add_header("Authorization", f"Bearer {tok}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                status, text = resp.status, resp.read().decode()
                ctype = resp.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            status, text = exc.code, exc.read().decode()
            ctype = exc.headers.get("Content-Type", "")
        return status, json.loads(text) if "json" in ctype else text


def write_http_cluster(tmp: Path, *, metrics_auth: bool = False,
                       allocation: dict[str, Any] | None = None, a_trusts_b: bool = True,
                       ) -> dict[str, Path]:
    """Configs for A -- B (memory dataplane) each with an ``http:`` section (and an
    ``allocation:`` section when given)."""
    nodes = write_cluster(tmp, ["A", "B"], [("A", "B")], VNS, TIMERS)
    paths = {}
    for name, node in nodes.items():
        cfg = yaml.safe_load(node.config_path.read_text())
        cfg["http"] = {"listen": f"127.0.0.1:{free_tcp_port()}",
                       "token_file": f"{name}.token", "metrics_auth": metrics_auth}
        if allocation is not None:
            cfg["allocation"] = allocation
        if name == "A" and not a_trusts_b:  # A knows B by a key B no longer has
            stale = write_key_file(tmp / "B-old.key")
            for t in cfg["trust"]:
                if t["name"] == "B":
                    t["public_key"] = stale.public_key_b64
            cfg["peers"][0]["id"] = stale.rm_id
        write_token(tmp / f"{name}.token")
        node.config_path.write_text(yaml.safe_dump(cfg))
        paths[name] = node.config_path
    return paths


@contextlib.contextmanager
def http_daemons(tmp: Path, allocation: dict[str, Any] | None = None,
                 a_trusts_b: bool = True, metrics_auth: bool = False
                 ) -> Iterator[list[HttpNode]]:
    """Daemons A and B with the real protocol core and the HTTP listener, served by an
    event loop in a thread; stopped even on failure. With ``a_trusts_b=False`` A does
    not trust B's key (ready once A has dropped B's datagrams)."""
    configs = write_http_cluster(tmp, allocation=allocation, a_trusts_b=a_trusts_b,
                                 metrics_auth=metrics_auth)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    daemons: list[RouteManagerDaemon] = []
    failure: list[BaseException] = []

    async def serve() -> None:
        try:
            for n in ("A", "B"):
                daemons.append(await start_daemon(configs[n], protocol_core_factory))
            if a_trusts_b:
                await until(lambda: daemons[0].routes.get(200) is not None, 5)
            else:
                await until(lambda: sum(p.faults for p in daemons[0].peers.values()) > 0, 5)
        except BaseException as exc:
            failure.append(exc)
            raise
        finally:
            ready.set()
        for d in daemons:
            await d.stopped.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),))
    thread.start()
    try:
        assert ready.wait(15) and not failure, failure
        nodes = []
        for d in daemons:
            assert d.config.http is not None and d.http is not None
            token = d.config.http.token_file.read_text().strip()
            nodes.append(HttpNode(d, f"http://127.0.0.1:{d.http.port}", token, loop))
        yield nodes
    finally:
        async def stop_all() -> None:
            for d in daemons:
                await d.stop()

        if thread.is_alive():
            asyncio.run_coroutine_threadsafe(stop_all(), loop).result(10)
            thread.join(10)
        else:  # serve() failed: its loop stopped; close what did start
            loop.run_until_complete(stop_all())
        loop.close()
