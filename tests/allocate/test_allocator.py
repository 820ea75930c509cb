"""The online allocator: lead time, per-class quantile, substrate check, scale, reroute."""

from __future__ import annotations

import numpy as np
import pytest

from vnstitch.allocate import AllocateError, ApplicationClass, ScalingRules
from vnstitch.allocate.allocator import Allocator, Consumer, QuantileForecast
from vnstitch.allocate.providers import (
    LinuxBandwidthProvider,
    ResourceKey,
    ResourceKind,
    SimProvider,
    SimResource,
)
from vnstitch.dataplane import MemoryDataplane

LEVELS = (0.5, 0.9, 0.99)
VIDEO = ApplicationClass("video", c_under=99.0)  # q = 0.99
EMAIL = ApplicationClass("email", c_under=1.0)  # q = 0.5
RULES = ScalingRules(unit=1.0, hold_steps=0, scale_in_window=1, scale_in_hysteresis=0.0)


def bw(link: str) -> ResourceKey:
    return ResourceKey(ResourceKind.BANDWIDTH, link)


def flat(p50: float, p90: float, p99: float, horizon: int = 3) -> QuantileForecast:
    return QuantileForecast(LEVELS, np.array([[p50] * horizon, [p90] * horizon,
                                              [p99] * horizon]))


def test_class_quantile_and_lead_time() -> None:
    fc = QuantileForecast(LEVELS, np.array([[10.0, 20.0], [15.0, 30.0], [18.0, 40.0]]))
    consumers = [Consumer("v", ResourceKind.BANDWIDTH, VIDEO, RULES, 1, ("A->B",)),
                 Consumer("e", ResourceKind.BANDWIDTH, EMAIL, RULES, 2, ("A->B",))]
    sim = SimProvider({ResourceKind.BANDWIDTH: SimResource()})
    rep = Allocator(consumers, sim).step(0.0, {"v": fc, "e": fc}, {bw("A->B"): 1000.0})
    assert rep.amounts == {"v": 18.0, "e": 20.0}  # video: p99 at h=1; e-mail: p50 at h=2
    assert rep.per_location[bw("A->B")] == 38.0
    assert sim.committed(bw("A->B"), 0.0) == 38.0
    d = next(x for x in rep.decisions if x.subject == "v")
    assert d.quantile == pytest.approx(0.99) and d.forecast == 18.0 and d.reason


def test_compute_vms_from_resources_per_unit() -> None:
    app = ApplicationClass("db", c_under=9.0, resources_per_unit=2.0)  # q = 0.9
    c = Consumer("w", ResourceKind.COMPUTE, app, ScalingRules(unit=25.0), 2, segment="s1")
    sim = SimProvider({ResourceKind.COMPUTE: SimResource(delay_seconds=600)})
    rep = Allocator([c], sim).step(0.0, {"w": flat(10, 30, 50)},
                                   {ResourceKey(ResourceKind.COMPUTE, "s1"): 1000})
    assert rep.amounts["w"] == 75.0  # 30 x 2 = 60 -> 3 VMs of 25


def test_scale_then_reroute_then_shortfall() -> None:
    consumers = [Consumer("big", ResourceKind.BANDWIDTH, VIDEO, RULES, 1, ("A->B", "B->C")),
                 Consumer("small", ResourceKind.BANDWIDTH, VIDEO, RULES, 1, ("A->B",))]
    fcs = {"big": flat(50, 60, 70), "small": flat(20, 25, 30)}
    avail = {bw("A->B"): 80.0, bw("B->C"): 100.0, bw("A->D"): 100.0, bw("D->C"): 100.0}
    # 1. The provider can scale A->B (quota 200): no reroute, no shortfall.
    sim = SimProvider({ResourceKind.BANDWIDTH: SimResource(quota=200)})
    rep = Allocator(consumers, sim).step(0.0, fcs, avail)
    assert not rep.shortfalls and not rep.reroutes
    assert any(d.action == "scale-substrate" for d in rep.decisions)
    # 2. It cannot (quota 80): routing moves the big stitch over D.
    routed: list[tuple[str, frozenset[str]]] = []

    def reroute(cid: str, avoid: frozenset[str], amount: float) -> tuple[str, ...] | None:
        routed.append((cid, avoid))
        return ("A->D", "D->C") if cid == "big" else None

    sim = SimProvider({ResourceKind.BANDWIDTH: SimResource(quota=80)})
    alloc = Allocator(consumers, sim, reroute)
    rep = alloc.step(0.0, fcs, avail)
    assert rep.reroutes == {"big": ("A->D", "D->C")}
    assert routed[0] == ("big", frozenset({"A->B"}))
    assert not rep.shortfalls
    assert rep.per_location[bw("A->B")] == 30.0 and rep.per_location[bw("A->D")] == 70.0
    assert rep.per_location[bw("B->C")] == 0.0
    # 3. No provider scaling and no path: the shortfall is reported, not hidden.
    sim = SimProvider({ResourceKind.BANDWIDTH: SimResource(quota=80)})
    rep = Allocator(consumers, sim, lambda *_: None).step(0.0, fcs, avail)
    assert [(s.key, s.needed, s.covered) for s in rep.shortfalls] == [(bw("A->B"), 100.0, 80.0)]
    assert any(d.action == "shortfall" for d in rep.decisions)


def test_refused_growth_keeps_capacity_bought_earlier() -> None:
    """A refusal to grow further must not hand back what was already bought."""
    c = Consumer("v", ResourceKind.BANDWIDTH, VIDEO, RULES, 1, ("A->B",))
    sim = SimProvider({ResourceKind.BANDWIDTH: SimResource(quota=100)})
    alloc = Allocator([c], sim, lambda *_: None)
    avail = {bw("A->B"): 80.0}
    first = alloc.step(0.0, {"v": flat(90, 95, 100)}, avail)
    assert not first.shortfalls and sim.committed(bw("A->B"), 0.0) == 100.0
    more = alloc.step(300.0, {"v": flat(150, 180, 200)}, avail)  # the quota refuses 200
    assert sim.committed(bw("A->B"), 300.0) == 100.0  # not released down to 80
    assert [(s.needed, s.covered) for s in more.shortfalls] == [(200.0, 100.0)]
    assert more.per_location[bw("A->B")] == 100.0


def test_linux_provider_gets_htb_rates_and_repeat_is_idempotent() -> None:
    dp = MemoryDataplane(external_ports=["wg-ab"])
    prov = LinuxBandwidthProvider(dp, {"A->B": ("wg-ab", 7)}, {"A->B": 1000.0})
    alloc = Allocator([Consumer("v", ResourceKind.BANDWIDTH, VIDEO, RULES, 1, ("A->B",))], prov)
    alloc.step(0.0, {"v": flat(5, 8, 12)}, {bw("A->B"): 1000.0})
    rate = dp.observe().get("rate:wg-ab:7")
    assert rate is not None and getattr(rate, "rate_mbps", None) == 12.0
    n = len(dp.applied)
    alloc.step(300.0, {"v": flat(5, 8, 12)}, {bw("A->B"): 1000.0})
    assert len(dp.applied) == n
    assert len(alloc.log) >= 4


def test_bad_inputs() -> None:
    with pytest.raises(AllocateError):
        Consumer("x", ResourceKind.BANDWIDTH, VIDEO, RULES)
    c = Consumer("x", ResourceKind.BANDWIDTH, VIDEO, RULES, 3, ("A->B",))
    alloc = Allocator([c], SimProvider({ResourceKind.BANDWIDTH: SimResource()}))
    with pytest.raises(AllocateError, match="lead time"):
        alloc.step(0.0, {"x": flat(1, 2, 3, horizon=2)}, {})
    with pytest.raises(AllocateError, match="no forecast"):
        alloc.step(0.0, {}, {})


def test_vm_count_is_the_discrete_newsvendor_not_the_quantile_rounded_up() -> None:
    # Demand ~26 % CPU for certain, e-mail class (q = 0.5): one VM of 25 leaves 1 unserved
    # (cost 1), two leave 24 idle (cost 24) -- the allocator takes one.
    c = Consumer("m", ResourceKind.COMPUTE, EMAIL, ScalingRules(unit=25.0), 1, segment="s1")
    sim = SimProvider({ResourceKind.COMPUTE: SimResource()})
    fc = QuantileForecast(LEVELS, np.array([[25.9], [26.0], [26.1]]))
    rep = Allocator([c], sim).step(0.0, {"m": fc}, {ResourceKey(ResourceKind.COMPUTE, "s1"): 1e3})
    assert rep.amounts["m"] == 25.0
    # For video (q = 0.99) an unserved unit costs 99 idle ones: two VMs.
    v = Consumer("v", ResourceKind.COMPUTE, VIDEO, ScalingRules(unit=25.0), 1, segment="s1")
    rep = Allocator([v], sim).step(1.0, {"v": fc}, {ResourceKey(ResourceKind.COMPUTE, "s1"): 1e3})
    assert rep.amounts["v"] == 50.0
