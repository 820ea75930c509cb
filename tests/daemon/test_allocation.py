"""The daemon's allocation loop: memory dataplane, fake time, and two real daemons."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from tests.daemon.helpers import run, start_daemon, until, write_cluster
from vnstitch.allocate.policy import interpolate_quantile
from vnstitch.control import ForecastBank
from vnstitch.control import forecasting as forecasting_mod
from vnstitch.daemon import allocation as alloc_mod
from vnstitch.daemon import control
from vnstitch.daemon.allocation import AllocationLoop, control_policy, tunnel_ends
from vnstitch.daemon.config import AllocationConfig, load_config, parse_config
from vnstitch.daemon.coreadapter import make_driver, protocol_core_factory
from vnstitch.daemon.errors import ConfigError
from vnstitch.daemon.state import StateStore
from vnstitch.dataplane import (
    DataplaneState,
    MemoryDataplane,
    OpKind,
    RateLimit,
    VxlanPort,
    WireguardInterface,
    reconcile,
)
from vnstitch.model.ids import VNID
from vnstitch.protocol.api import StitchConstraints

pytestmark = pytest.mark.timeout(60)

NEGOTIATED = 50.0
STEP_S = 1.0


class Rig:
    """One tunnel end on a MemoryDataplane, the loop, and a daemon-like reconcile."""

    def __init__(self, config: AllocationConfig | None = None) -> None:
        self.driver = MemoryDataplane()
        self.core = DataplaneState([
            WireguardInterface("wg0", "k", 51820, "10.255.0.0/31"),
            VxlanPort("vx0", 100, "10.255.0.0", "wg0"),
            RateLimit("vx0", 7, NEGOTIATED, NEGOTIATED)])
        self.loop = AllocationLoop(config or AllocationConfig(interval_s=STEP_S, hold_steps=0),
                                   lambda: self.core)
        self.tx = 0
        self.now = 1000.0
        reconcile(self.driver, self.core)

    def step(self, mbps: float | None) -> list[dict[str, object]]:
        """Carry ``mbps`` for one interval (None: the counter is unreadable), then decide."""
        self.now += STEP_S
        if mbps is not None:
            self.tx += round(mbps * 1e6 / 8 * STEP_S)
            self.driver.set_counters("vx0", 0, self.tx)
        ends = tunnel_ends(self.core, {"vx0": "s1"})
        counters = alloc_mod.read_counters(self.driver, ["vx0"]) if mbps is not None \
            else {"vx0": "counters vx0: read failed"}
        result = self.loop.step(self.now, ends, counters)
        # The daemon's reconcile, the one writer of the dataplane:
        reconcile(self.driver, self.loop.overlay(self.core))
        return result.decisions

    def rate(self) -> RateLimit:
        obj = self.driver.observe().get("rate:vx0:7")
        assert isinstance(obj, RateLimit)
        return obj


def _consumer_row(rows: list[dict[str, object]]) -> dict[str, object]:
    return next(r for r in rows if r.get("subject") == "s1")


def test_reservation_starts_at_the_minimum_and_follows_a_ramp() -> None:
    rig = Rig()
    rig.step(0.0)  # baseline read: no sample, forecast 0 -> the minimum
    assert rig.rate().rate_mbps == 1.0 and rig.rate().ceil_mbps == NEGOTIATED
    reserved = []
    for k in range(1, 9):
        rows = rig.step(4.0 * k)  # 4, 8, ..., 32 Mbit/s
        row = _consumer_row(rows)
        reserved.append(rig.rate().rate_mbps)
        assert row["measured_mbps"] == pytest.approx(4.0 * k, abs=1e-3)
        if k >= 3:  # naive + its own errors: the ramp's next value
            assert row["forecast_mbps"] == pytest.approx(4.0 * (k + 1), abs=1e-3)
            assert rig.rate().rate_mbps == math.ceil(4.0 * (k + 1) - 1e-6)
    assert reserved == sorted(reserved) and reserved[-1] == 36.0
    assert rig.rate().ceil_mbps == NEGOTIATED  # ceil stays the negotiated bandwidth
    # The daemon's reconcile is the only writer and converges: nothing left to do.
    assert reconcile(rig.driver, rig.loop.overlay(rig.core)) == []


def test_forecast_above_negotiated_is_capped_and_reported_as_shortfall() -> None:
    rig = Rig()
    rig.step(0.0)
    for mbps in (30.0, 40.0, 50.0, 60.0, 70.0):
        rows = rig.step(mbps)
    assert rig.rate().rate_mbps == NEGOTIATED
    actions = [r["action"] for r in rows]
    assert "scale-refused" in actions and "shortfall" in actions
    short = next(r for r in rows if r["action"] == "shortfall")
    assert short["available_mbps"] == NEGOTIATED and short["reserved_mbps"] == NEGOTIATED
    assert float(str(short["forecast_mbps"])) > NEGOTIATED
    assert "negotiated 50 Mbit/s" in str(short["reason"])


def test_bad_counters_and_forecaster_errors_keep_the_last_reservation(
        monkeypatch: pytest.MonkeyPatch) -> None:
    rig = Rig()
    for mbps in (0.0, 10.0, 10.0, 10.0):
        rig.step(mbps)
    kept = rig.rate().rate_mbps
    assert kept == 10.0
    rows = rig.step(None)
    assert [r["action"] for r in rows] == ["keep"] and "read failed" in str(rows[0]["reason"])
    assert rig.rate().rate_mbps == kept

    def broken(*args: object, **kwargs: object) -> object:
        raise RuntimeError("model exploded")

    monkeypatch.setattr(forecasting_mod, "make_forecaster", broken)
    rows = rig.step(30.0)
    assert [r["action"] for r in rows] == ["keep"] and "model exploded" in str(rows[0]["reason"])
    assert rig.rate().rate_mbps == kept
    # A counter that goes backwards (a recreated device) is a new baseline, not a sample.
    monkeypatch.undo()
    rig.tx = 0
    rig.driver.set_counters("vx0", 0, 0)
    rows = rig.step(0.0)
    assert rows and all(r["measured_mbps"] is None for r in rows)
    assert "counter went back" in str(_consumer_row(rows)["reason"])
    assert rig.rate().ceil_mbps == NEGOTIATED


def test_decisions_use_only_past_samples() -> None:
    """Two runs share 6 intervals, then differ: the first 6 decisions are identical, and
    each forecast equals the forecaster run on the samples measured up to then."""
    prefix = [0.0, 5.0, 9.0, 14.0, 12.0, 20.0, 22.0]
    runs = []
    for future in ([40.0, 45.0], [1.0, 1.0]):
        rig = Rig()
        runs.append([_consumer_row(rig.step(m)) for m in prefix + future])
    assert runs[0][:len(prefix)] == runs[1][:len(prefix)]
    assert runs[0][len(prefix)] != runs[1][len(prefix)]
    bank = ForecastBank(control_policy(AllocationConfig()).forecast)
    for row in runs[0]:
        if row["measured_mbps"] is not None:
            bank.observe("s1", float(str(row["measured_mbps"])))
        fc = bank.forecast(["s1"])["s1"]  # what was measured up to this step, no more
        q = float(str(row["quantile"]))
        expect = float(interpolate_quantile(fc.levels, fc.values, q)[0])
        assert row["forecast_mbps"] == pytest.approx(expect, abs=1e-3)


def test_overrides_for_gone_or_renegotiated_tunnels_are_ignored() -> None:
    rig = Rig()
    for mbps in (0.0, 10.0, 10.0):
        rig.step(mbps)
    assert rig.rate().rate_mbps == 10.0
    # Renegotiated to 80: the old override (ceil 50) no longer applies.
    rig.core = rig.core.with_objects(add=[RateLimit("vx0", 7, 80.0, 80.0)])
    assert rig.loop.overlay(rig.core).get("rate:vx0:7") == RateLimit("vx0", 7, 80.0, 80.0)
    rig.step(10.0)
    assert rig.rate() == RateLimit("vx0", 7, 10.0, 80.0)
    # Torn down: the override is pruned.
    rig.core = rig.core.with_objects(remove=["rate:vx0:7"])
    rig.loop.step(rig.now + 1, tunnel_ends(rig.core, {}), {})
    assert rig.loop.view.overrides == {}


# -- config -------------------------------------------------------------------------------


def _config_text(tmp_path: Path, allocation: object) -> str:
    return yaml.safe_dump({
        "segment": "A", "listen": {"address": "127.0.0.1", "port": 7701},
        "key_file": "a.key", "state_db": "a.db", "control_socket": "a.sock",
        "allocation": allocation})


def test_allocation_config_parses(tmp_path: Path) -> None:
    cfg = parse_config(_config_text(tmp_path, {
        "interval_s": 2, "forecaster": "ets", "default_class": "bulk",
        "vn_classes": {100: "video_conferencing"}, "min_mbps": 2}), "a.yaml", tmp_path)
    a = cfg.allocation
    assert a is not None and a.interval_s == 2.0 and a.forecaster == "ets"
    assert a.class_for(100) == "video_conferencing" and a.class_for(7) == "bulk"
    assert parse_config(_config_text(tmp_path, None), "a.yaml", tmp_path).allocation is None


@pytest.mark.parametrize(("section", "error"), [
    ({"interval_s": 0}, r"a\.yaml:\d+:\d+: allocation\.interval_s: must be > 0"),
    ({"forecaster": "oracle"}, r"allocation\.forecaster: must be one of naive, ets"),
    ({"default_class": "gold"}, r"allocation\.default_class: unknown application class"),
    ({"vn_classes": {100: "gold"}}, r"allocation\.vn_classes\.100: unknown application"),
    ({"vn_classes": {"x1": "web"}}, r"allocation\.vn_classes\.x1: VNID must be an integer"),
    ({"vn_classes": [1]}, r"allocation\.vn_classes: must be a mapping"),
    ({"min_mbps": -1}, r"allocation\.min_mbps: must be > 0"),
    ({"history": 2}, r"allocation\.history: must be >= 4"),
    ({"colour": "red"}, r"allocation\.colour: unknown field"),
    ("yes", r"allocation: must be a mapping"),
])
def test_allocation_config_errors_name_the_field(tmp_path: Path, section: object,
                                                 error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        parse_config(_config_text(tmp_path, section), "a.yaml", tmp_path)


def test_state_store_keeps_samples_bounded_and_overrides(tmp_path: Path) -> None:
    store = StateStore.open(tmp_path / "s.db")
    try:
        rl = RateLimit("vx0", 7, 12.0, 50.0)
        store.save_allocation([("s1", float(t), t * 1.5) for t in range(10)]
                              + [("gone", 1.0, 2.0)], [rl], keep=4, live={"s1", "gone"})
        store.save_allocation([], [rl], keep=4, live={"s1"})
        assert store.allocation_samples() == {"s1": [(t, t * 1.5) for t in (6., 7., 8., 9.)]}
        assert store.allocation_overrides() == [rl]
    finally:
        store.close()


# -- two daemons (protocol core, memory dataplane) ------------------------------------------

VN_A = [{"vnid": 100, "components": ["10.1.0.0/24"], "host_ports": ["hA"]}]
VN_B = [{"vnid": 100, "components": ["10.2.0.0/24"], "host_ports": ["hB"]}]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[dict[str, Path]]:
    nodes = write_cluster(tmp_path, ["A", "B"], [("A", "B")], {"A": VN_A, "B": VN_B})
    path = nodes["A"].config_path
    cfg = yaml.safe_load(path.read_text())
    # growing off: this test checks the cap at the negotiated bandwidth
    cfg["allocation"] = {"interval_s": 0.05, "hold_steps": 0, "min_mbps": 1, "grow_after": 0}
    path.write_text(yaml.safe_dump(cfg))
    yield {n: node.config_path for n, node in nodes.items()}


def test_daemon_allocates_from_counters_and_survives_restart(cluster: dict[str, Path]
                                                             ) -> None:
    cfg_a = load_config(cluster["A"])
    kernel = make_driver(cfg_a)
    assert isinstance(kernel, MemoryDataplane)

    async def body() -> None:
        a = await start_daemon(cfg_a, protocol_core_factory, kernel)
        a_running = True
        b = await start_daemon(cluster["B"], protocol_core_factory)
        try:
            await until(lambda: a.routes.get(100) is not None, 5)
            sid, fut = a.request_stitch(VNID(100), StitchConstraints(20))
            assert (await asyncio.wait_for(fut, 5)).established
            ends = tunnel_ends(a.core_desired, {})
            assert len(ends) == 1 and ends[0].negotiated_mbps == 20.0
            dev = ends[0].device

            def rate() -> float:
                obj = kernel.observe().get(ends[0].rate_key)
                return obj.rate_mbps if isinstance(obj, RateLimit) else -1.0

            await until(lambda: rate() == 1.0, 5)  # idle tunnel: the minimum
            tx = 0

            async def traffic(mbps: float, until_true: Callable[[], bool]) -> None:
                # Offer the rate until the loop has reacted (a deadline, not a
                # fixed second: on a loaded host its ticks come late).
                nonlocal tx
                loop = asyncio.get_running_loop()
                t0 = last = loop.time()
                while not until_true():
                    assert loop.time() - t0 < 10.0, (mbps, rate())
                    await asyncio.sleep(0.01)
                    now = loop.time()
                    tx += round(mbps * 1e6 / 8 * (now - last))
                    last = now
                    kernel.set_counters(dev, 0, tx)

            await traffic(8.0, lambda: 7.0 <= rate() <= 20.0)
            await traffic(40.0, lambda: rate() == 20.0)  # above the 20 negotiated
            rows = control.view(a, "allocations")
            assert any(r["action"] == "shortfall" and r["stitch_id"] == sid for r in rows)
            status = control.view(a, "status")["allocation"]
            assert status["enabled"] and status["stitches"][0]["stitch_id"] == sid
            json.dumps(rows, allow_nan=False)  # the control socket can send it
            # One writer: the daemon's desired state holds the allocation; converged.
            assert reconcile(kernel, a.desired_state()) == []
            ops = [op for op in kernel.applied if op.obj.key == ends[0].rate_key]
            assert all(op.kind in (OpKind.CREATE, OpKind.REPLACE) for op in ops)
            samples = len(a.store.allocation_samples()[sid])
            a_running = False
            await a.stop()
            a2 = await start_daemon(cfg_a, protocol_core_factory, kernel)
            try:
                assert a2.allocation is not None
                assert len(a2.allocation.loop.controller.bank.history(sid)) >= samples
                assert rate() == 20.0  # the reservation survived the restart
            finally:
                await a2.stop()
        finally:
            if a_running:
                await a.stop()
            await b.stop()

    run(body(), 40)
