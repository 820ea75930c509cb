"""One controller, two adapters: the same measurement script through the simulator's
allocation adapter (offered rates) and the daemon's (byte counters on a memory dataplane,
fake time) gives the same actions, and both apply them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import networkx as nx

from vnstitch.allocate.policy import DEFAULT_CLASSES, ScalingRules
from vnstitch.control import (
    Consumer,
    Controller,
    ControlPolicy,
    ControlResult,
    ForecastPolicy,
    LinkSample,
    Reserve,
    StitchSample,
)
from vnstitch.daemon.allocation import AllocationLoop, read_counters, tunnel_ends
from vnstitch.daemon.config import AllocationConfig
from vnstitch.dataplane import (
    DataplaneState,
    MemoryDataplane,
    RateLimit,
    VxlanPort,
    WireguardInterface,
    reconcile,
)
from vnstitch.routing.qos import QosClass, QosPolicy
from vnstitch.sim.allocation import SimAllocation
from vnstitch.sim.allocation_spec import AllocationSpec

APP = DEFAULT_CLASSES["video_conferencing"]
#: One policy for both: the per-runtime config mapping is not what this test is about.
POLICY = ControlPolicy({"video": APP, "video_conferencing": APP},
                       ScalingRules(unit=10.0, min_units=1, hold_steps=0),
                       ForecastPolicy("naive", 1, 1, 60, None, 1), warmup=2)
#: Integer Mbit/s: whole bytes per second, so the counters carry them exactly.
SCRIPT = [120, 180, 240, 260, 300, 420, 380, 200, 150, 150, 510, 90]
FREE = 700.0  # A->B: 1000 minus the backup class's 300 guarantee


class Spy(Controller):
    def __init__(self, policy: ControlPolicy) -> None:
        super().__init__(policy)
        self.trail: list[list[Reserve]] = []

    def step(self, now: float, consumers: Sequence[Consumer],
             samples: Mapping[str, StitchSample], links: Sequence[LinkSample] = (),
             crossing: Mapping[str, Sequence[str]] | None = None) -> ControlResult:
        out = super().step(now, consumers, samples, links, crossing)
        self.trail.append([a for a in out.actions if isinstance(a, Reserve)])
        return out


def _via_sim(script: list[int]) -> tuple[list[list[float]], float]:
    """A camera (stitched video) beside a backup on A->B of a triangle of 1000 Mbit/s."""
    graph = nx.Graph()
    for u, v in (("A", "B"), ("A", "C"), ("C", "B")):
        graph.add_edge(u, v, latency_ms=1.0, capacity_mbps=1000.0)
    cap = {arc: 1000.0 for u, v in graph.edges for arc in ((u, v), (v, u))}
    policy = QosPolicy(1000.0, (QosClass("video", 0, 400.0, 1000.0),
                                QosClass("bulk", 1, 300.0, 1000.0)), ())
    home = ("A", "B")
    flows = [("cam", "video", "A", "B", home), ("backup", "bulk", "A", "B", home)]
    alloc = SimAllocation(AllocationSpec(("video",), (("video", APP),), unit_mbps=10.0),
                          policy=policy, borrow="quantum", interval_s=1.0, graph=graph,
                          cap=cap, flows=flows)
    assert alloc.base[home] == FREE
    spy = alloc.controller = Spy(POLICY)
    planned = [home, home]
    for k, mbps in enumerate(script, start=1):
        offered = [float(mbps), 0.0]
        alloc.decide(float(k), offered, offered, planned)
    trees, _ = alloc.dataplane(float(len(script)), planned)
    applied = next(c.rate_mbps for c in trees[home].classes if c.name == "video")
    return [[a.mbps for a in step] for step in spy.trail], applied


def _via_daemon(script: list[int]) -> tuple[list[list[float]], float]:
    driver = MemoryDataplane()
    core = DataplaneState([WireguardInterface("wg0", "k", 51820, "10.255.0.0/31"),
                           VxlanPort("vx0", 100, "10.255.0.0", "wg0"),
                           RateLimit("vx0", 7, FREE, FREE)])
    loop = AllocationLoop(AllocationConfig(default_class="video_conferencing"), lambda: core)
    spy = loop.controller = Spy(POLICY)
    reconcile(driver, core)
    tx, now = 0, 1000.0
    driver.set_counters("vx0", 0, tx)
    loop.step(now, tunnel_ends(core, {"vx0": "s1"}), read_counters(driver, ["vx0"]))
    spy.trail.clear()  # the baseline read: the simulator has no counter to read
    for mbps in script:
        now += 1.0
        tx += mbps * 125_000
        driver.set_counters("vx0", 0, tx)
        loop.step(now, tunnel_ends(core, {"vx0": "s1"}), read_counters(driver, ["vx0"]))
        reconcile(driver, loop.overlay(core))
    obj = driver.observe().get("rate:vx0:7")
    assert isinstance(obj, RateLimit) and obj.ceil_mbps == FREE
    return [[a.mbps for a in step] for step in spy.trail], obj.rate_mbps


def _last(trail: list[list[float]]) -> float:
    return [x for step in trail for x in step][-1]


def test_same_script_same_actions_from_both_adapters() -> None:
    sim_trail, sim_rate = _via_sim(SCRIPT)
    daemon_trail, daemon_rate = _via_daemon(SCRIPT)
    assert sim_trail == daemon_trail
    changes = [x for step in sim_trail for x in step]
    assert len(changes) >= 4 and max(changes) <= FREE  # it did decide, within the link
    assert sim_trail[0] == []  # warm-up: measured, not allocated
    # Both applied the last reservation: the HTB guarantee of the flow / tunnel end.
    assert sim_rate == daemon_rate == _last(sim_trail)


def test_control_a_different_script_gives_different_actions() -> None:
    other: Any = [*SCRIPT[:5], 600, 600, *SCRIPT[7:]]
    assert _via_sim(other)[0] != _via_daemon(SCRIPT)[0]
    assert _via_sim(other)[0] == _via_daemon(other)[0]
