"""The PRA's bandwidth decisions reach the dataplane, through the allocation loop's path.

A VN with ``bandwidth`` under ``pra.vns`` has its stitch ends sized by the PRA alone:
its reservation becomes the HTB class's rate (read back from the in-memory dataplane the
daemon reconciles), a stitch end saturated at its negotiated bandwidth is grown in place
under the controller's grow rules, and the ``allocation:`` loop leaves such ends out.
Control: without ``bandwidth`` under the VN, the allocation loop sizes the same end.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.daemon.helpers import run, start_daemon, until, write_cluster
from vnstitch.control.model import GrowRules, Reserve, ResizeStitch
from vnstitch.control.pra_bandwidth import BandwidthEnd, PraBandwidthActions
from vnstitch.daemon.allocation import tunnel_ends
from vnstitch.daemon.config import load_config
from vnstitch.daemon.coreadapter import make_driver, protocol_core_factory
from vnstitch.daemon.runtime import RouteManagerDaemon
from vnstitch.dataplane import MemoryDataplane
from vnstitch.dataplane.objects import RateLimit
from vnstitch.model.ids import VNID
from vnstitch.protocol.api import StitchConstraints, StitchResized

VN_A = [{"vnid": 100, "components": ["10.1.0.0/24"], "host_ports": ["hA"]}]
VN_B = [{"vnid": 100, "components": ["10.2.0.0/24"], "host_ports": ["hB"]}]
ALLOCATION = {"interval_s": 0.05, "hold_steps": 0, "min_mbps": 1, "grow_after": 2,
              "grow_headroom": 0.2, "grow_holddown_s": 30}


def _pra(bandwidth: bool) -> dict[str, Any]:
    vn: dict[str, Any] = {"class": "web", "profile": "database_access"}
    if bandwidth:
        vn["bandwidth"] = {"model": "naive", "prior": 4}
    return {"interval_s": 0.05, "min_fit": 1000, "vns": {100: vn}}


def _cluster(tmp_path: Path, *, allocation: bool, bandwidth: bool) -> dict[str, Path]:
    nodes = write_cluster(tmp_path, ["A", "B"], [("A", "B")], {"A": VN_A, "B": VN_B})
    path = nodes["A"].config_path
    cfg = yaml.safe_load(path.read_text())
    cfg["pra"] = _pra(bandwidth)
    if allocation:
        cfg["allocation"] = ALLOCATION
    path.write_text(yaml.safe_dump(cfg))
    return {n: node.config_path for n, node in nodes.items()}


async def _traffic(kernel: MemoryDataplane, dev: str, mbps: float, seconds: float,
                   tx: list[int]) -> None:
    loop = asyncio.get_running_loop()
    t0 = last = loop.time()
    while loop.time() - t0 < seconds:
        await asyncio.sleep(0.01)
        now = loop.time()
        tx[0] += round(mbps * 1e6 / 8 * (now - last))
        last = now
        kernel.set_counters(dev, 0, tx[0])


async def _stitched(paths: dict[str, Path]
                    ) -> tuple[RouteManagerDaemon, RouteManagerDaemon, MemoryDataplane, str]:
    cfg_a = load_config(paths["A"])
    kernel = make_driver(cfg_a)
    assert isinstance(kernel, MemoryDataplane)
    a = await start_daemon(cfg_a, protocol_core_factory, kernel)
    b = await start_daemon(paths["B"], protocol_core_factory)
    await until(lambda: a.routes.get(100) is not None, 5)
    sid, fut = a.request_stitch(VNID(100), StitchConstraints(20))
    assert (await asyncio.wait_for(fut, 5)).established
    return a, b, kernel, sid


def _htb(kernel: MemoryDataplane, a: RouteManagerDaemon) -> RateLimit:
    end = tunnel_ends(a.core_desired, {})[0]
    obj = kernel.observe().get(end.rate_key)
    assert isinstance(obj, RateLimit)
    return obj


def _pra_amount(a: RouteManagerDaemon, sid: str) -> float | None:
    assert a.pra is not None
    rows = [r for r in a.pra.allocations() if r.get("consumer") == f"{sid}/bandwidth"]
    return float(rows[0]["amount"]) if rows and "amount" in rows[0] else None


@pytest.mark.parametrize("pra_sizes", [True, False])
def test_one_decision_maker_per_stitch_end(tmp_path: Path, pra_sizes: bool) -> None:
    paths = _cluster(tmp_path, allocation=True, bandwidth=pra_sizes)

    async def body() -> None:
        a, b, kernel, sid = await _stitched(paths)
        try:
            assert a.allocation is not None and a.pra is not None
            dev = tunnel_ends(a.core_desired, {})[0].device
            tx = [0]
            await _traffic(kernel, dev, 3.0, 1.0, tx)
            # The kernel's class rate leaves the negotiated 20 Mbit/s: someone sized it.
            await until(lambda: _htb(kernel, a).rate_mbps < 20.0, 5)
            htb = _htb(kernel, a)
            assert htb.ceil_mbps == 20.0
            sized_by_loop = [e["stitch_id"] for e in a.allocation.loop.summary()]
            if pra_sizes:
                assert sized_by_loop == []  # the allocation loop left the end out
                await until(lambda: _pra_amount(a, sid) is not None, 5)
                await _traffic(kernel, dev, 3.0, 0.3, tx)
                amount = _pra_amount(a, sid)
                assert amount is not None and 0 < amount < 20.0
                # The PRA's booking is the kernel's rate (within the last step's change).
                await until(lambda: _htb(kernel, a).rate_mbps == _pra_amount(a, sid), 5)
            else:
                assert sized_by_loop == [sid]
                assert _pra_amount(a, sid) is None  # no PRA bandwidth consumer
        finally:
            await a.stop()
            await b.stop()

    run(body(), 60)


def test_pra_grows_a_saturated_stitch_without_an_allocation_loop(tmp_path: Path) -> None:
    paths = _cluster(tmp_path, allocation=False, bandwidth=True)

    async def body() -> None:
        a, b, kernel, _sid = await _stitched(paths)
        try:
            assert a.allocation is None and a.pra is not None
            dev = tunnel_ends(a.core_desired, {})[0].device
            assert _htb(kernel, a).ceil_mbps == 20.0
            tx = [0]
            await _traffic(kernel, dev, 40.0, 1.0, tx)  # at the cap: demand above it
            await until(lambda: _htb(kernel, a).ceil_mbps > 20.0, 5)
            assert a.pra.runtime is not None
            acts = [r.get("action") for r in a.pra.runtime.decisions]
            assert "resize-requested" in acts and "resized" in acts
        finally:
            await a.stop()
            await b.stop()

    run(body(), 60)


def _end(originated: bool = True) -> BandwidthEnd:
    return BandwidthEnd("s1/bandwidth", "s1", "vx1", 20.0, originated)


def test_actions_reserve_what_is_booked_and_grow_after_a_run_of_shortfalls() -> None:
    pb = PraBandwidthActions(GrowRules(grow_after=2, grow_headroom=0.2))
    e = _end()
    first = pb.step(0.0, [e], {e.consumer: 30.0}, {e.consumer: 20.0}, {e.consumer: 10.0})
    assert first.actions == [Reserve(e.consumer, ("vx1",), 20.0)]  # one shortfall only
    second = pb.step(1.0, [e], {e.consumer: 30.0}, {e.consumer: 20.0}, {e.consumer: 10.0})
    ask = second.actions[1]
    assert isinstance(ask, ResizeStitch) and (ask.stitch_id, ask.mbps) == ("s1", 36.0)
    assert pb.resize_outcome(StitchResized("s1", 20.0, 36.0, True, "", 2.0)) is not None


def test_actions_never_resize_a_stitch_not_originated_here_or_with_room() -> None:
    pb = PraBandwidthActions(GrowRules(grow_after=1))
    e = _end(originated=False)
    for k in range(3):
        out = pb.step(float(k), [e], {e.consumer: 30.0}, {e.consumer: 20.0}, {})
        assert [type(x) for x in out.actions] == [Reserve]
    room = _end()
    for k in range(3):  # control: plan under the negotiated bandwidth, not saturated
        out = pb.step(float(k), [room], {room.consumer: 8.0}, {room.consumer: 8.0},
                      {room.consumer: 5.0})
        assert out.actions == [Reserve(room.consumer, ("vx1",), 8.0)]
    # no plan this interval (a failed forecast): nothing
    assert pb.step(5.0, [room], {}, {}, {}).actions == []
