"""One controller, two adapters: the same measurement script through the simulator's
allocation adapter (offered rates) and the daemon's (byte counters on a memory dataplane,
fake time) gives the same actions, and both apply them. The Renegotiate path: what each
simulated RM's controller saw on its links in a run of ``builtin:congestion``, replayed
as kernel-style byte counters of link devices on a memory dataplane (read as the daemon
reads counters), gives the same Renegotiate actions; the simulator applied them through
the protocol core (the successor avoids the element). The congested link's counters
through the daemon's own congestion adapter (``CongestionRunner``, its core and kernel
faked) give the same moves at the same times."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import itertools
from collections.abc import Collection, Mapping, Sequence
from types import SimpleNamespace
from typing import Any, ClassVar

import networkx as nx
import pytest

from vnstitch.allocate.policy import DEFAULT_CLASSES, ScalingRules
from vnstitch.control import (
    Consumer,
    Controller,
    ControlPolicy,
    ControlResult,
    ForecastPolicy,
    LinkSample,
    Renegotiate,
    Reserve,
    StitchSample,
)
from vnstitch.control.reroute import StitchMover
from vnstitch.daemon import congestion
from vnstitch.daemon.allocation import AllocationLoop, read_counters, tunnel_ends
from vnstitch.daemon.config import AllocationConfig, CongestionConfig
from vnstitch.daemon.congestion import CongestionRunner
from vnstitch.daemon.linksampler import LinkReading
from vnstitch.dataplane import (
    DataplaneObject,
    DataplaneState,
    MemoryDataplane,
    RateLimit,
    VxlanPort,
    WireguardInterface,
    reconcile,
)
from vnstitch.model.ids import VNID, RouteManagerId
from vnstitch.protocol.api import (
    CongestionReported,
    Output,
    RouteView,
    StitchEstablished,
    StitchView,
    TunnelView,
)
from vnstitch.routing.qos import QosClass, QosPolicy
from vnstitch.sim import stitch_control
from vnstitch.sim.allocation import SimAllocation
from vnstitch.sim.allocation_spec import AllocationSpec
from vnstitch.sim.runner import run
from vnstitch.sim.scenario import load_scenario

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
             crossing: Mapping[str, Sequence[str]] | None = None, *,
             link_rates: Mapping[str, Mapping[str, float]] | None = None,
             stitch_rates: Mapping[str, float] | None = None,
             ends: Collection[str] = ()) -> ControlResult:
        out = super().step(now, consumers, samples, links, crossing, link_rates=link_rates,
                           stitch_rates=stitch_rates, ends=ends)
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


# -- the Renegotiate path ----------------------------------------------------------------

@dataclasses.dataclass
class LinkStep:
    """One interval of one RM's controller: what it was given and what it asked."""

    now: float
    links: tuple[LinkSample, ...]
    crossing: dict[str, list[str]]
    link_rates: dict[str, dict[str, float]]
    stitch_rates: dict[str, float]
    ends: frozenset[str]
    renegotiate: list[Renegotiate]
    #: successors reported before this step: (old, new, committed, starts a hold-down)
    replaced: list[tuple[str, str, float, bool]]


class LinkSpy(Controller):
    """A simulated RM's controller that keeps its inputs and Renegotiate actions."""

    trails: ClassVar[list[tuple[ControlPolicy, list[LinkStep]]]] = []

    def __init__(self, policy: ControlPolicy, *, mover: StitchMover | None = None) -> None:
        super().__init__(policy, mover=mover)
        self.steps_seen: list[LinkStep] = []
        self.pending: list[tuple[str, str, float, bool]] = []
        LinkSpy.trails.append((policy, self.steps_seen))

    def stitch_replaced(self, old: str, new: str, now: float, *, hold: bool = True) -> None:
        super().stitch_replaced(old, new, now, hold=hold)
        self.pending.append((old, new, now, hold))

    def step(self, now: float, consumers: Sequence[Consumer],
             samples: Mapping[str, StitchSample], links: Sequence[LinkSample] = (),
             crossing: Mapping[str, Sequence[str]] | None = None, *,
             link_rates: Mapping[str, Mapping[str, float]] | None = None,
             stitch_rates: Mapping[str, float] | None = None,
             ends: Collection[str] = ()) -> ControlResult:
        out = super().step(now, consumers, samples, links, crossing, link_rates=link_rates,
                           stitch_rates=stitch_rates, ends=ends)
        self.steps_seen.append(LinkStep(
            now, tuple(links), {k: list(v) for k, v in (crossing or {}).items()},
            {k: dict(v) for k, v in (link_rates or {}).items()}, dict(stitch_rates or {}),
            frozenset(ends), [a for a in out.actions if isinstance(a, Renegotiate)],
            self.pending))
        self.pending = []
        return out


@pytest.fixture(scope="module")
def congestion_run() -> tuple[dict[str, Any], list[tuple[ControlPolicy, list[LinkStep]]],
                              dict[str, str]]:
    """The run's summary, every simulated RM's controller trail, and the segment of each
    link's tail node (by the link's name)."""
    mp = pytest.MonkeyPatch()
    LinkSpy.trails = []
    mp.setattr(stitch_control, "Controller", LinkSpy)
    try:
        result = run(load_scenario("builtin:congestion"), check_every_step=False)
    finally:
        mp.undo()
    ts = result.traffic_sim
    assert ts is not None
    tail = {ts.res.link(a): ts.seg_of[a[0]] for a in ts.cap}
    return result.summary, LinkSpy.trails, tail


def _replay_as_counters(policy: ControlPolicy, steps: Sequence[LinkStep]
                        ) -> list[list[Renegotiate]]:
    """The daemon's measuring side: link devices' tx byte counters on a memory
    dataplane, read with the daemon's ``read_counters``, into a fresh controller."""
    devices = sorted({s.link for st in steps for s in st.links})
    driver = MemoryDataplane(external_ports=devices)
    ctrl = Controller(policy)
    out: list[list[Renegotiate]] = []
    for st in steps:
        for old, new, made, hold in st.replaced:
            ctrl.stitch_replaced(old, new, made, hold=hold)
        for s in st.links:
            driver.set_counters(s.link, 0, round(s.tx_bytes))
        read = read_counters(driver, devices)
        links = []
        for s in st.links:
            tx = read[s.link]
            assert isinstance(tx, int)
            links.append(LinkSample(s.link, tx, 0, s.capacity_mbps, inside=s.inside))
        res = ctrl.step(st.now, [], {}, links, st.crossing, link_rates=st.link_rates,
                        stitch_rates=st.stitch_rates, ends=st.ends)
        out.append([a for a in res.actions if isinstance(a, Renegotiate)])
    return out


def test_each_simulated_rm_measures_only_the_links_it_owns(congestion_run: Any) -> None:
    """One controller per RM; its links are exactly the arcs whose tail is in its
    segment (what that RM's interfaces count), and no link is seen twice."""
    _, trails, tail = congestion_run
    owners = [{tail[x.link] for st in steps for x in st.links} for _, steps in trails]
    assert all(len(o) == 1 for o in owners) and len({next(iter(o)) for o in owners}) == 4
    seen = [x.link for _, steps in trails for x in steps[0].links]
    assert sorted(seen) == sorted(tail)  # every arc, once
    # ... and a link is `inside` exactly when both ends are in the owner's segment.
    for _, steps in trails:
        for x in steps[0].links:
            dst = x.link.split("->")[1]
            other = next(v for k, v in tail.items() if k.startswith(f"{dst}->"))
            assert x.inside == (other == tail[x.link]), x


def test_renegotiate_same_actions_from_sim_and_counters(congestion_run: Any) -> None:
    summary, trails, _ = congestion_run
    asked = [a for _, steps in trails for st in steps for a in st.renegotiate]
    # The run did renegotiate: a move around the congested link, then a return.
    assert [a.around != "" for a in asked] == [True, False]
    assert asked[0].around == "Houston->Los Angeles"
    for policy, steps in trails:
        assert _replay_as_counters(policy, steps) == [st.renegotiate for st in steps]
    # ... and the simulator applied them through the protocol core: the stitch's
    # successor avoided the adjacency, and the return came back to the home path.
    moves = summary["traffic"]["stitch_renegotiations"]
    assert [m["old_stitch"] for m in moves] == [a.stitch_id for a in asked]
    by_id = {x["id"].split("/")[0]: x for x in summary["stitches"]}
    detour, home = by_id[moves[0]["new_stitch"]], by_id[moves[1]["new_stitch"]]
    hops = {frozenset(h) for h in itertools.pairwise(detour["path"])}
    assert frozenset({"seg00", "seg01"}) not in hops
    assert frozenset({"seg00", "seg01"}) in {frozenset(h) for h in itertools.pairwise(
        home["path"])}
    assert detour["cost"] > home["cost"]
    # The return was asked of the successor: the hold-down followed the stitch.
    assert asked[1].stitch_id == moves[0]["new_stitch"]


def test_control_renegotiate_replay_of_other_counters_differs(congestion_run: Any) -> None:
    """Control: the same replay with the hot link's counter halved asks nothing."""
    _, trails, _ = congestion_run
    policy, steps = next((p, s) for p, s in trails if any(st.renegotiate for st in s))
    cooler = [dataclasses.replace(st, links=tuple(
        dataclasses.replace(x, tx_bytes=x.tx_bytes / 2) if x.link == "Houston->Los Angeles"
        else x for x in st.links)) for st in steps]
    assert not any(_replay_as_counters(policy, cooler))


# -- the same trail through the daemon's congestion adapter --------------------------------

HOT = "Houston->Los Angeles"


class _Core:
    """The daemon's core as the congestion runner uses it: the stitches originated here
    that cross the link to the neighbour, and their renegotiation (the successor ids are
    the simulator's, so the actions compare as they are)."""

    def __init__(self, me: str, crossing: set[str], successor: dict[str, str],
                 cost: dict[str, float]) -> None:
        self.me, self.crossing, self.successor, self.cost = me, crossing, successor, cost
        self.asked: list[tuple[str, bool]] = []

    def report_congestion(self, neighbour: str, utilisation: float, now: float, *,
                          excess_mbps: float | None = None) -> list[Output]:
        link = (RouteManagerId(self.me), RouteManagerId(neighbour))
        return [CongestionReported(sid, VNID(1), link, utilisation, link[0], now,
                                   excess_mbps) for sid in sorted(self.crossing)]

    def renegotiate_stitch(self, sid: str, avoid: frozenset[Any], now: float, *,
                           keep_old: bool) -> tuple[str, list[Output]]:
        assert keep_old
        new = self.successor[sid]
        self.asked.append((sid, bool(avoid)))
        # Around the link: the successor no longer crosses it; a return comes back.
        self.crossing.discard(sid)
        if not avoid:
            self.crossing.add(new)
        return new, [StitchEstablished(new, VNID(1), (RouteManagerId(self.me),),
                                       1000.0, 1.0, self.cost[new], now, now)]

    def stitch_views(self) -> list[StitchView]:
        return []  # nothing to re-optimise: the simulator's stitches took their best

    def route_views(self) -> list[RouteView]:
        return []

    def tunnel_objects(self, tunnel_id: str) -> tuple[DataplaneObject, ...]:
        return ()

    def tunnel_views(self) -> list[TunnelView]:
        return [TunnelView(f"t-{sid}", sid, VNID(1), RouteManagerId("peer"), True, "up",
                           (RouteManagerId(self.me),), 1000.0, f"vx-{sid}", f"wg-{sid}",
                           1, None, 0.0) for sid in self.successor.values()]

    def release_stitch(self, sid: str, now: float) -> list[Output]:
        return []


def _via_congestion_runner(policy: ControlPolicy, steps: Sequence[LinkStep], *,
                           reported: set[str], successor: dict[str, str],
                           cost: dict[str, float], mp: pytest.MonkeyPatch
                           ) -> list[tuple[float, str, bool]]:
    """The daemon's congestion adapter (:class:`CongestionRunner`: link watch, reports
    through the core, the origin's mover, make-before-break) on the owner's link
    counters, as link readings; the stitches on the link are those the simulated owner
    reported. The kernel's side (handshake done, port bridged) is taken as immediate."""
    rules = policy.congestion
    assert rules is not None
    mon = rules.monitor
    cfg = CongestionConfig(interval_s=5.0, high=mon.high, low=mon.low,
                           raise_samples=mon.raise_samples, clear_samples=mon.clear_samples,
                           holddown_s=rules.holddown_s, min_reports=rules.min_reports,
                           report_window_s=rules.report_window_s,
                           return_after_s=rules.return_after_s, pin_paths=False)
    me, far = HOT.split("->")
    cap = next(x.capacity_mbps for x in steps[0].links if x.link == HOT)
    core = _Core(me, set(reported), successor, cost)
    mp.setattr(congestion, "last_handshake", lambda dev: 1.0)
    mp.setattr(congestion, "bridged", lambda ports, netns: True)
    clock = [0.0]
    stitches = {**{s: 1.0 for s in reported}, **cost}
    daemon = SimpleNamespace(
        rm_id=RouteManagerId(me), store_open=True, now=lambda: clock[0],
        core=core, metrics=collections.Counter(), allocation=None,
        config=SimpleNamespace(peer=lambda n: SimpleNamespace(capacity_mbps=cap)
                               if n == far else None,
                               dataplane=SimpleNamespace(netns=None)),
        intents=SimpleNamespace(succeeded=lambda old, new, now: None),
        # Every reconcile pass done: a move may wait for one after its peer changed.
        reconciler=SimpleNamespace(passes=1, covering_pass=lambda: 0),
        store=SimpleNamespace(stitches=lambda: [
            SimpleNamespace(stitch_id=s, cost=c, status="up") for s, c in stitches.items()]),
        dataplane_changed=lambda: None)
    runner = CongestionRunner(daemon, cfg)  # type: ignore[arg-type]

    def execute(outputs: list[Output]) -> None:
        for ev in outputs:
            runner.on_event(ev)

    daemon.execute = execute

    async def drive() -> None:
        for st in steps:
            clock[0] = st.now
            tx = next(round(x.tx_bytes) for x in st.links if x.link == HOT)
            await runner.react(st.now, {far: LinkReading(far, "eth-la", 2, "10.0.0.1", tx)})
            await asyncio.sleep(0)  # the moves decided on an event run on the next turn

    asyncio.run(drive())
    return [(float(r["now"]), str(r["subject"]), r["action"] == "reroute")
            for r in runner.decisions if r["action"] in ("reroute", "return")]


def test_renegotiate_same_actions_from_the_daemons_congestion_runner(
        congestion_run: Any) -> None:
    """The Houston RM's trail through the daemon's adapter gives the simulator's moves:
    the same stitch around the link at the same time, then the same return."""
    summary, trails, _ = congestion_run
    policy, steps = next((p, s) for p, s in trails if any(st.renegotiate for st in s))
    sim = [(st.now, a.stitch_id, a.around != "") for st in steps for a in st.renegotiate]
    successor = {old: new for st in steps for old, new, *_ in st.replaced}
    by_id = {x["id"].split("/")[0]: x["cost"] for x in summary["stitches"]}
    mp = pytest.MonkeyPatch()
    try:
        cost = {s: by_id[s] for s in successor.values()}
        daemon = _via_congestion_runner(policy, steps, reported={sim[0][1]},
                                        successor=successor, cost=cost, mp=mp)
        # Control: the hot link's counter halved -- neither runtime moves anything.
        cooler = [dataclasses.replace(st, links=tuple(
            dataclasses.replace(x, tx_bytes=x.tx_bytes / 2) if x.link == HOT else x
            for x in st.links)) for st in steps]
        quiet = _via_congestion_runner(policy, cooler, reported={sim[0][1]},
                                       successor=successor, cost=cost, mp=mp)
    finally:
        mp.undo()
    assert [k for _, _, k in sim] == [True, False]
    assert daemon == sim, (daemon, sim)
    assert quiet == [] and not any(_replay_as_counters(policy, cooler))


# -- re-optimisation from the daemon's side --------------------------------------------------

class _ViewsCore(_Core):
    """A core whose typed views say: stitch s1 committed at ``cost``, discovery knows a
    route to its VN at ``best``."""

    def __init__(self, cost: float, best: float) -> None:
        super().__init__("o" * 32, set(), {"s1": "s2"}, {"s2": best})
        self.views = (cost, best)

    def stitch_views(self) -> list[StitchView]:
        return [StitchView("s1", VNID(1), "established", (RouteManagerId("o" * 32),),
                           100.0, self.views[0])]

    def route_views(self) -> list[RouteView]:
        far = RouteManagerId("f" * 32)
        return [RouteView(VNID(1), far, (RouteManagerId("o" * 32), far), 1000.0, (),
                          self.views[1])]


def _reoptimise_via_daemon(cost: float, best: float, mp: pytest.MonkeyPatch
                           ) -> tuple[list[tuple[str, bool]], list[str]]:
    core = _ViewsCore(cost, best)
    mp.setattr(congestion, "last_handshake", lambda dev: 1.0)
    mp.setattr(congestion, "bridged", lambda ports, netns: True)
    daemon = SimpleNamespace(
        rm_id=RouteManagerId("o" * 32), store_open=True, now=lambda: 1.0, core=core,
        metrics=collections.Counter(), allocation=None,
        config=SimpleNamespace(peer=lambda n: None, dataplane=SimpleNamespace(netns=None)),
        intents=SimpleNamespace(succeeded=lambda old, new, now: None),
        reconciler=SimpleNamespace(passes=1, covering_pass=lambda: 0),
        store=SimpleNamespace(stitches=lambda: [
            SimpleNamespace(stitch_id="s1", cost=cost, status="up")]),
        dataplane_changed=lambda: None)
    runner = CongestionRunner(daemon, CongestionConfig(pin_paths=False))  # type: ignore[arg-type]

    def execute(outputs: list[Output]) -> None:
        for ev in outputs:
            runner.on_event(ev)

    daemon.execute = execute

    async def drive() -> None:
        for _ in range(3):  # the ask; the successor swapped in; nothing more
            await runner.react(1.0, {})

    asyncio.run(drive())
    return core.asked, [str(r["action"]) for r in runner.decisions]


def test_the_daemon_reoptimises_a_stitch_onto_a_cheaper_route_once() -> None:
    """The daemon's origin, given the core's typed views (committed at cost 3, discovery
    knows a cost-2 route), asks one make-before-break renegotiation onto the best path
    now (``avoid`` empty), as the simulator's origin does (test_stitched_traffic); the
    stitch in flight and then swapped is not asked again. Control: no cheaper route."""
    mp = pytest.MonkeyPatch()
    try:
        asked, actions = _reoptimise_via_daemon(3.0, 2.0, mp)
        quiet, _ = _reoptimise_via_daemon(2.0, 2.0, mp)
    finally:
        mp.undo()
    assert asked == [("s1", False)]
    assert actions.count("reoptimise") == 1 and "moved" in actions
    assert quiet == []
