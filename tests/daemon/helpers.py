"""Helpers for daemon tests: key files, config files, and N daemons on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from vnstitch.daemon.config import DaemonConfig, load_config
from vnstitch.daemon.coreadapter import CoreFactory, make_driver
from vnstitch.daemon.identity import KeyInfo, write_key_file
from vnstitch.daemon.runtime import RouteManagerDaemon
from vnstitch.dataplane.base import DataplaneDriver


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Node:
    name: str
    key: KeyInfo
    port: int
    config_path: Path


def write_cluster(tmp: Path, names: Sequence[str], links: Sequence[tuple[str, str]],
                  vns: dict[str, list[dict[str, Any]]], timers: dict[str, float] | None = None,
                  ) -> dict[str, Node]:
    """Key files and YAML configs for RMs ``names`` joined by ``links`` (all trust all).
    A VN that names no ``allow`` / ``owner`` is written out as ``allow: any`` (open to
    every trusted RM, as these tests assume); membership tests name their own."""
    keys = {n: write_key_file(tmp / f"{n}.key") for n in names}
    ports = {n: free_udp_port() for n in names}
    nodes: dict[str, Node] = {}
    for n in names:
        neighbours = [b if a == n else a for a, b in links if n in (a, b)]
        cfg = {
            "segment": n,
            "listen": {"address": "127.0.0.1", "port": ports[n]},
            "key_file": f"{n}.key",
            "trust": [{"public_key": k.public_key_b64, "name": m} for m, k in keys.items()],
            "peers": [{"id": keys[m].rm_id, "address": f"127.0.0.1:{ports[m]}",
                       "capacity_mbps": 1000, "latency_ms": 1.0, "cost": 1} for m in neighbours],
            "local_vns": [vn if {"allow", "owner"} & set(vn) else {**vn, "allow": "any"}
                          for vn in vns.get(n, [])],
            "dataplane": {"driver": "memory"},
            "timers": timers or {"announce_interval_s": 0.1, "probe_interval_s": 0.1,
                                 "probe_misses": 3},
            "state_db": f"{n}.db",
            "control_socket": f"{n}.sock",
        }
        path = tmp / f"{n}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        nodes[n] = Node(n, keys[n], ports[n], path)
    return nodes


async def start_daemon(config: DaemonConfig | Path, factory: CoreFactory,
                       driver: DataplaneDriver | None = None, *, control: bool = True,
                       source_filter: bool = True) -> RouteManagerDaemon:
    """``source_filter`` False: datagrams from foreign addresses reach the user-space
    checks (the kernel filter would drop them first)."""
    cfg = config if isinstance(config, DaemonConfig) else load_config(config)
    d = RouteManagerDaemon(cfg, factory, driver if driver is not None else make_driver(cfg),
                           source_filter=source_filter)
    await d.start()
    if control:
        await d.start_control()
    return d


async def until(predicate: Callable[[], bool], timeout_s: float, step_s: float = 0.02) -> float:
    """Wait until ``predicate()``; return the seconds it took; fail after ``timeout_s``."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    while not predicate():
        if loop.time() - t0 > timeout_s:
            raise AssertionError(f"condition not met within {timeout_s}s")
        await asyncio.sleep(step_s)
    return loop.time() - t0


def run(coro: Awaitable[Any], timeout_s: float = 20.0) -> Any:
    """Run one async test body with a hard time bound."""
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout_s)
    return asyncio.run(bounded())


@contextlib.contextmanager
def daemons_in_thread(tmp: Path, factory: CoreFactory,
                      vns: dict[str, list[dict[str, Any]]], *,
                      names: Sequence[str] = ("A", "B"),
                      links: Sequence[tuple[str, str]] = (("A", "B"),),
                      before_start: Callable[[dict[str, Node]], None] | None = None,
                      timers: dict[str, float] | None = None,
                      ) -> Iterator[list[RouteManagerDaemon]]:
    """Daemons ``names`` (default A and B, linked; ``vns`` per segment) served by an event
    loop in a thread, so a test can drive them through the synchronous CLI; stopped even
    on failure. ``before_start`` sees the written nodes (keys, configs) first."""
    nodes = write_cluster(tmp, names, links, vns, timers)
    if before_start is not None:
        before_start(nodes)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    daemons: list[RouteManagerDaemon] = []

    async def serve() -> None:
        for n in names:
            daemons.append(await start_daemon(nodes[n].config_path, factory))
        await until(lambda: daemons[0].routes.get(100) is not None, 5)
        ready.set()
        for d in daemons:
            await d.stopped.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),))
    thread.start()
    try:
        assert ready.wait(10)
        yield daemons
    finally:
        async def stop_all() -> None:
            for d in daemons:
                await d.stop()

        asyncio.run_coroutine_threadsafe(stop_all(), loop).result(10)
        thread.join(10)
        loop.close()
