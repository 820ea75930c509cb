"""The allocation loop grows a stitch in place when its traffic outgrows the negotiated
bandwidth: two real daemons (protocol cores, memory dataplane), and the pure policy."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.daemon.helpers import daemons_in_thread, run, start_daemon, until, write_cluster
from tests.daemon.virtualtime import run_virtual
from vnstitch.cli import main
from vnstitch.control import GrowPolicy, GrowRules, needed_mbps
from vnstitch.daemon import control
from vnstitch.daemon.allocation import grow_rules, tunnel_ends
from vnstitch.daemon.config import AllocationConfig, load_config, parse_config
from vnstitch.daemon.coreadapter import make_driver, protocol_core_factory
from vnstitch.daemon.errors import ConfigError
from vnstitch.daemon.runtime import RouteManagerDaemon
from vnstitch.dataplane import MemoryDataplane, RateLimit
from vnstitch.model.ids import VNID
from vnstitch.protocol.api import StitchConstraints, StitchResized

pytestmark = pytest.mark.timeout(60)

VN_A = [{"vnid": 100, "components": ["10.1.0.0/24"], "host_ports": ["hA"]}]
VN_B = [{"vnid": 100, "components": ["10.2.0.0/24"], "host_ports": ["hB"]}]


def _rules(**fields: Any) -> GrowRules:
    return grow_rules(AllocationConfig(**fields))


def test_grow_policy_waits_asks_once_and_holds_down_after_a_refusal() -> None:
    p = GrowPolicy(_rules(grow_after=2, grow_headroom=0.25, unit_mbps=5,
                                    grow_holddown_s=10))
    assert p.consider(0, "s", 20, None, originated=True) == (None, "")
    ask, why = p.consider(1, "s", 20, 30.0, originated=True)
    assert ask is None and "1/2" in why
    ask, why = p.consider(2, "s", 20, 30.0, originated=True)
    assert ask == 40.0 and "20 -> 40" in why  # ceil(30 x 1.25 / 5) x 5
    assert "in flight" in p.consider(3, "s", 20, 30.0, originated=True)[1]
    row = p.outcome(StitchResized("s", 20, 40, False, "bandwidth", 3.5, "B refused"))
    assert row is not None and row["action"] == "resize-refused" and "B refused" in row["reason"]
    assert "hold-down" in p.consider(5, "s", 20, 30.0, originated=True)[1]
    assert p.consider(14, "s", 20, 30.0, originated=True)[0] == 40.0  # hold-down over, streak kept
    assert p.outcome(StitchResized("other", 1, 2, True, "resized", 1)) is None
    assert p.target(100, 50) == 105  # always at least one unit above what we have
    assert "only the origin" in p.consider(0, "t", 20, 30.0, originated=False)[1]
    off = GrowPolicy(_rules(grow_after=0))
    assert "disabled" in off.consider(0, "s", 20, 30, originated=True)[1]


def test_a_stitch_measured_at_its_cap_needs_more_than_it_has() -> None:
    assert needed_mbps(None, 9.9, 10.0) == 9.9  # at the cap: demand above it is hidden
    assert needed_mbps(None, 5.0, 10.0) is None
    assert needed_mbps(12.0, 9.7, 10.0) == 12.0
    assert needed_mbps(12.0, None, 10.0) == 12.0
    p = GrowPolicy(_rules(grow_after=1, unit_mbps=1, grow_headroom=0.2))
    assert p.consider(0, "s", 10, needed_mbps(None, 9.9, 10), originated=True)[0] == 12.0


def test_growth_stops_at_grow_max_factor_times_the_original() -> None:
    """A saturated TCP flow keeps asking for more; the stitch stops at the factor."""
    p = GrowPolicy(_rules(grow_after=1, unit_mbps=1, grow_headroom=0.2,
                                    grow_max_factor=3))
    negotiated, asks = 100.0, []
    for t in range(10):  # measured at the cap every interval, grant every request
        ask, why = p.consider(t, "s", negotiated, needed_mbps(None, negotiated, negotiated),
                              originated=True)
        if ask is not None:
            asks.append(ask)
            p.outcome(StitchResized("s", negotiated, ask, True, "resized", t))
            negotiated = ask
    assert asks == [120.0, 144.0, 173.0, 208.0, 250.0, 300.0]
    assert "growth limit" in why and "300" in why
    unbounded = GrowPolicy(_rules(grow_after=1, unit_mbps=1, grow_max_factor=1e9))
    assert unbounded.consider(0, "s", 300, 300.0, originated=True)[0] == 360.0  # control


def test_shrink_gives_grown_bandwidth_back_but_never_below_the_original() -> None:
    p = GrowPolicy(_rules(shrink_after=3, shrink_below=0.5, unit_mbps=5,
                                    grow_headroom=0.2))
    for t in range(5):  # at the original amount: nothing to give back
        assert p.consider(t, "s", 20, None, originated=True, reserved=2.0) == (None, "")
    assert p.consider(5, "s", 60, None, originated=True, reserved=10.0)[0] is None
    assert p.consider(6, "s", 60, None, originated=True, reserved=40.0)[0] is None  # resets
    asks = [p.consider(7 + t, "s", 60, None, originated=True, reserved=r)[0]
            for t, r in enumerate((10.0, 22.0, 5.0))]
    assert asks[:2] == [None, None] and asks[2] == 30.0  # ceil(22 x 1.2 / 5) x 5
    assert p.pending("s") == 30.0
    p.outcome(StitchResized("s", 60, 30, True, "resized", 11))
    asks = [p.consider(12 + t, "s", 30, None, originated=True, reserved=1.0)[0]
            for t in range(3)]
    assert asks == [None, None, 20.0]  # the floor, not 5
    assert AllocationConfig().shrink_after == 0  # off unless configured


@pytest.mark.parametrize(("section", "error"), [
    ({"grow_after": -1}, r"allocation\.grow_after: must be >= 0"),
    ({"grow_after": 1.5}, r"allocation\.grow_after: must be an integer"),
    ({"grow_headroom": -0.1}, r"allocation\.grow_headroom: must be >= 0"),
    ({"grow_holddown_s": "x"}, r"allocation\.grow_holddown_s: must be a number"),
    ({"shrink_after": -2}, r"allocation\.shrink_after: must be >= 0"),
    ({"shrink_below": 1.5}, r"allocation\.shrink_below: must be a fraction in \(0, 1\]"),
    ({"shrink_below": 0}, r"allocation\.shrink_below: must be > 0"),
    ({"grow_max_factor": 0.5}, r"allocation\.grow_max_factor: must be >= 1"),
])
def test_grow_config_errors_name_the_field(tmp_path: Path, section: object,
                                           error: str) -> None:
    text = yaml.safe_dump({"segment": "A", "listen": {"address": "127.0.0.1", "port": 7701},
                           "key_file": "a.key", "state_db": "a.db",
                           "control_socket": "a.sock", "allocation": section})
    with pytest.raises(ConfigError, match=error):
        parse_config(text, "a.yaml", tmp_path)


def _cluster(tmp_path: Path, b_capacity: float) -> dict[str, Path]:
    nodes = write_cluster(tmp_path, ["A", "B"], [("A", "B")], {"A": VN_A, "B": VN_B})
    path = nodes["A"].config_path
    cfg = yaml.safe_load(path.read_text())
    cfg["allocation"] = {"interval_s": 0.05, "hold_steps": 0, "min_mbps": 1,
                         "grow_after": 2, "grow_headroom": 0.2, "unit_mbps": 5,
                         "grow_holddown_s": 30, "shrink_after": 10}
    path.write_text(yaml.safe_dump(cfg))
    path_b = nodes["B"].config_path
    cfg_b = yaml.safe_load(path_b.read_text())
    cfg_b["peers"][0]["capacity_mbps"] = b_capacity  # B's side of the A-B link
    path_b.write_text(yaml.safe_dump(cfg_b))
    return {n: node.config_path for n, node in nodes.items()}


@pytest.fixture
def roomy(tmp_path: Path) -> Iterator[dict[str, Path]]:
    yield _cluster(tmp_path, 1000)


@pytest.fixture
def tight(tmp_path: Path) -> Iterator[dict[str, Path]]:
    yield _cluster(tmp_path, 25)


async def _setup(cfg_a_path: Path, cfg_b_path: Path
                 ) -> tuple[RouteManagerDaemon, RouteManagerDaemon, MemoryDataplane, str]:
    cfg_a = load_config(cfg_a_path)
    kernel = make_driver(cfg_a)
    assert isinstance(kernel, MemoryDataplane)
    a = await start_daemon(cfg_a, protocol_core_factory, kernel)
    b = await start_daemon(cfg_b_path, protocol_core_factory)
    await until(lambda: a.routes.get(100) is not None, 5)
    sid, fut = a.request_stitch(VNID(100), StitchConstraints(20))
    assert (await asyncio.wait_for(fut, 5)).established
    return a, b, kernel, sid


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


async def _traffic_until(kernel: MemoryDataplane, dev: str, mbps: float,
                         done: Callable[[], bool], tx: list[int], *,
                         deadline_s: float = 10.0) -> None:
    """Offer `mbps` until `done()`: the loop's ticks come late on a loaded host."""
    loop = asyncio.get_running_loop()
    t0 = last = loop.time()
    while not done():
        assert loop.time() - t0 < deadline_s, f"not done after {deadline_s} s of traffic"
        await asyncio.sleep(0.01)
        now = loop.time()
        tx[0] += round(mbps * 1e6 / 8 * (now - last))
        last = now
        kernel.set_counters(dev, 0, tx[0])


def _b_reservation(b: RouteManagerDaemon) -> float:
    core = b.core
    res = [r for r in getattr(core, "reservations", {}).values()
           if r.state.value == "committed"]
    assert len(res) == 1
    return float(res[0].bandwidth_mbps)


def test_traffic_above_the_negotiated_bandwidth_grows_the_stitch(roomy: dict[str, Path]
                                                                 ) -> None:
    async def body() -> None:
        a, b, kernel, sid = await _setup(roomy["A"], roomy["B"])
        try:
            ends = tunnel_ends(a.core_desired, {})
            dev = ends[0].device

            def ceil() -> float:
                obj = kernel.observe().get(ends[0].rate_key)
                return obj.ceil_mbps if isinstance(obj, RateLimit) else -1.0

            assert ceil() == 20.0
            tx = [0]
            await _traffic(kernel, dev, 40.0, 1.0, tx)
            await until(lambda: ceil() > 20.0, 5)
            rows = control.view(a, "allocations")
            asked = [r for r in rows if r["action"] == "resize-requested"]
            done = [r for r in rows if r["action"] == "resized"]
            assert len(asked) >= 1 and done and done[0]["ok"]
            new = float(done[0]["new_mbps"])
            assert new >= 40.0 and new % 5 == 0  # the forecast + headroom, whole units
            assert ceil() == new and _b_reservation(b) == new
            # B's tunnel end shapes to the new amount too
            b_rates = [o for o in b.core_desired if isinstance(o, RateLimit)]
            assert [o.ceil_mbps for o in b_rates] == [new]
            stored = {s.stitch_id: s for s in a.store.stitches()}[sid]
            assert stored.bandwidth_mbps == new and stored.status == "up"
            assert a.metrics["stitches_resized"] >= 1
            assert f'vnstitch_stitches_resized_total{{rm="{a.rm_id}"}} ' \
                f'{a.metrics["stitches_resized"]}' in control.metrics_text(a)
            # the allocator now plans against the new bandwidth: no more shortfall at 40
            await _traffic(kernel, dev, 40.0, 0.5, tx)
            recent = control.view(a, "allocations")[-3:]
            assert all(r["action"] != "shortfall" for r in recent), recent
            # idle for a while: the grown bandwidth is given back, not below the original
            await _traffic(kernel, dev, 0.0, 0.3, tx)
            await until(lambda: ceil() < new, 5)
            assert 20.0 <= ceil() < new and _b_reservation(b) == ceil()
            shrunk = [r for r in control.view(a, "allocations")
                      if r["action"] == "resize-requested" and "shrink" in r["reason"]]
            assert shrunk
        finally:
            await a.stop()
            await b.stop()

    # Virtual time: the allocator's timer and these checks interleave the same way
    # whatever the host's load (in real time a second resize could land between them).
    run_virtual(body(), 30)


def test_a_refused_grow_leaves_the_stitch_as_it_was_and_is_logged(tight: dict[str, Path]
                                                                 ) -> None:
    async def body() -> None:
        a, b, kernel, sid = await _setup(tight["A"], tight["B"])
        try:
            ends = tunnel_ends(a.core_desired, {})
            tx = [0]
            await _traffic_until(kernel, ends[0].device, 40.0,
                                 lambda: any(r["action"] == "resize-refused"
                                             for r in control.view(a, "allocations")),
                                 tx)
            rows = control.view(a, "allocations")
            refused = [r for r in rows if r["action"] == "resize-refused"]
            assert len(refused) == 1  # hold-down: asked once
            assert "bandwidth" in refused[0]["reason"] and "25" in refused[0]["reason"]
            obj = kernel.observe().get(ends[0].rate_key)
            assert isinstance(obj, RateLimit) and obj.ceil_mbps == 20.0
            assert _b_reservation(b) == 20.0
            assert {s.stitch_id: s for s in a.store.stitches()}[sid].bandwidth_mbps == 20.0
            # a manual resize that fits still works
            ev = await asyncio.wait_for(a.resize_stitch(sid, 25.0), 5)
            assert ev.ok and _b_reservation(b) == 25.0
        finally:
            await a.stop()
            await b.stop()

    run(body(), 30)


def test_cli_resize_against_running_daemons(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    with daemons_in_thread(tmp_path, protocol_core_factory, {"A": VN_A, "B": VN_B}) as daemons:
        sock = str(daemons[0].config.control_socket)
        assert main(["routemgr", "stitch", "--vnid", "100", "--bandwidth", "20",
                     "--socket", sock, "--json"]) == 0
        sid = json.loads(capsys.readouterr().out)["stitch_id"]
        assert main(["routemgr", "resize", sid, "--bandwidth", "60", "--socket", sock,
                     "--json"]) == 0
        got = json.loads(capsys.readouterr().out)
        assert (got["ok"], got["old_mbps"], got["new_mbps"]) == (True, 20.0, 60.0)
        assert main(["routemgr", "show", "stitches", "--socket", sock, "--json"]) == 0
        rows = json.loads(capsys.readouterr().out)["stitches"]
        assert [r["bandwidth_mbps"] for r in rows] == [60.0]
        assert main(["routemgr", "resize", sid, "--bandwidth", "5000", "--socket", sock]) == 1
        assert "refused (bandwidth)" in capsys.readouterr().out
        assert main(["routemgr", "resize", "nope", "--bandwidth", "5", "--socket", sock]) == 2
        assert "no stitch 'nope'" in capsys.readouterr().err
