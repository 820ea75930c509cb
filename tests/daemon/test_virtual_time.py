"""Daemons in virtual time (tests/daemon/virtualtime.py): half a minute of protocol
timers in well under a second of wall time, measured on the loop's own clock."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from tests.daemon.helpers import start_daemon, until, write_cluster
from tests.daemon.virtualtime import run_virtual
from vnstitch.daemon.config import load_config
from vnstitch.daemon.coreadapter import make_driver, protocol_core_factory
from vnstitch.daemon.runtime import RouteManagerDaemon

TIMERS = {"announce_interval_s": 10.0, "probe_interval_s": 5.0, "probe_misses": 3}
HOLD_S = 3 * TIMERS["announce_interval_s"]  # the config's default hold time


def test_a_silent_neighbour_is_dropped_after_the_hold_time_in_virtual_time(
        tmp_path: Path) -> None:
    # VN 100 only at B: A's route to it goes through B and only B can keep it alive.
    nodes = write_cluster(tmp_path, ["A", "B"], [("A", "B")], {
        "B": [{"vnid": 100, "components": ["10.2.0.0/24"]}]}, timers=TIMERS)

    async def body() -> float:
        loop = asyncio.get_running_loop()
        a = await start_daemon(nodes["A"].config_path, protocol_core_factory, control=False)
        b = await start_daemon(nodes["B"].config_path, protocol_core_factory, control=False)
        try:
            await until(lambda: a.routes.get(100) is not None, 60)
            await b.stop()
            stopped = loop.time()
            await until(lambda: a.routes.get(100) is None, 120, step_s=0.5)
            return loop.time() - stopped
        finally:
            await a.stop()

    wall = time.monotonic()
    lost_after = run_virtual(body())
    wall = time.monotonic() - wall
    # B's routes go when its hold time runs out after the last HELLO A heard (at most one
    # announce interval before the stop) -- seconds of protocol time, not of waiting.
    assert HOLD_S - TIMERS["announce_interval_s"] - 1 <= lost_after <= HOLD_S + 2
    assert wall < lost_after / 3


def test_the_wall_clock_is_injected(tmp_path: Path) -> None:
    """``now`` = the injected wall clock at start + the loop's clock since."""
    nodes = write_cluster(tmp_path, ["A"], [], {"A": []})

    async def body() -> float:
        cfg = load_config(nodes["A"].config_path)
        d = RouteManagerDaemon(cfg, protocol_core_factory, make_driver(cfg),
                               clock=lambda: 1_000_000.0)
        await d.start()
        try:
            await asyncio.sleep(5)
            return d.now()
        finally:
            await d.stop()

    assert run_virtual(body()) == 1_000_005.0
