"""A VN's stitch is asked for on demand: when its traffic is offered, before the
origin's discovery knows a route to the VNID (the first offer is taken; re-optimisation
corrects it later, tests/sim/test_stitched_traffic.py), never at a fixed time; with no
route ever, its traffic stays unattached and counted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.lab.test_topolab import GRAPHML
from vnstitch.control.demand import DemandState, knows_route
from vnstitch.protocol.api import Event, RouteChanged
from vnstitch.protocol.core import RouteManagerCore
from vnstitch.sim import runner
from vnstitch.sim.engine import Simulation
from vnstitch.sim.scenario import load_scenario

SCENARIO = """
name: on-demand
topology: tiny.graphml
segments: 3
duration_s: {duration}
vns: {{count: 1, segments_per_vn: 2}}
requests: {{count: 0}}
faults: {faults}
qos:
  link_mbps: 1000
  classes:
    - {{name: video, priority: 0, guaranteed_mbps: 500, max_mbps: 1000}}
    - {{name: bulk, priority: 2, guaranteed_mbps: 100, max_mbps: 1000}}
traffic:
  interval_s: 2
  {extra}
  flows:
    - {{name: tv, vn: 7, class: video, src: "@ring-a", dst: "@ring-b", mbps: "10%"}}
"""


class RouteWatch:
    """An engine observer: when each RM's discovery first knows a remote route to a
    VNID, read from the core's typed views (independent of the traffic layer)."""

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.first: dict[tuple[int, int], float] = {}

    def on_event(self, rm: int, event: Event, now: float) -> None:
        if not isinstance(event, RouteChanged):
            return
        key = (rm, int(event.vnid))
        core = self.sim.cores[rm]
        if key not in self.first and isinstance(core, RouteManagerCore) and \
                knows_route(core.route_views(), key[1]):
            self.first[key] = now

    def on_crash(self, rm: int, now: float) -> None:
        pass

    def on_restart(self, rm: int, now: float) -> None:
        pass

    def on_links(self, now: float) -> None:
        pass


def _run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, duration: float = 12,
         faults: str = "[]", extra: str = "") -> tuple[runner.RunResult, RouteWatch]:
    (tmp_path / "tiny.graphml").write_text(GRAPHML, encoding="utf-8")
    path = tmp_path / "on-demand.yaml"
    path.write_text(SCENARIO.format(duration=duration, faults=faults,
                                              extra=extra), encoding="utf-8")
    watches: list[RouteWatch] = []
    build = runner.build

    def build_watched(*args: Any, **kwargs: Any) -> Simulation:
        sim = build(*args, **kwargs)
        watches.append(RouteWatch(sim))
        sim.observers.append(watches[-1])
        return sim

    monkeypatch.setattr(runner, "build", build_watched)
    out = runner.run(load_scenario(path), check_every_step=False)
    return out, watches[0]


def test_the_stitch_is_asked_for_when_its_traffic_is_offered(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out, watch = _run(tmp_path, monkeypatch)
    sim = out.simulation
    tv = next(f for f in out.summary["traffic"]["flows"] if f["name"] == "tv")
    origin = next(s for s in out.summary["stitches"] if s["id"] == tv["stitch_ids"][0])
    o = [str(s) for s in sim.segments].index(origin["src"])
    learned = watch.first[(o, 7)]
    asked = sorted(r.requested_at for (rm, _), r in sim.metrics.records.items()
                   if rm == o and int(r.vnid) == 7 and r.replaces is None)
    assert asked == [0.0]  # one ask, when the traffic starts: not a fixed time
    # ... blind: before discovery knew a route, and committed before it did
    assert 0 < origin["committed_s"] < learned
    # the time before the first commit is counted as unattached, from 0
    assert tv["unattached_seconds"] == pytest.approx(origin["committed_s"], abs=1e-3)
    assert tv["delivered_mbit"] > 0


def test_an_explicit_stitch_at_s_asks_at_that_time_whatever_the_routes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Control for the test above: the override asks at its time, not the route's."""
    out, watch = _run(tmp_path, monkeypatch, extra="stitch_at_s: 1.5")
    sim = out.simulation
    o = [str(x) for x in sim.segments].index("seg00")
    asked = [r.requested_at for (rm, _), r in sim.metrics.records.items()
             if rm == o and int(r.vnid) == 7]
    assert asked == [1.5] and watch.first[(o, 7)] < 1.5
    tv = next(f for f in out.summary["traffic"]["flows"] if f["name"] == "tv")
    assert tv["unattached_seconds"] > 1.5


def test_control_no_route_ever_traffic_stays_unattached_and_counted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The VN's far end is on a segment whose Route Manager is down from the start:
    nobody ever announces VNID 7. The origin asks blind at once and retries on its
    backoff; every attempt fails, nothing is ever routed."""
    out, watch = _run(tmp_path, monkeypatch, duration=20,
                      faults="[{at: 0, action: crash, segment: seg01}]")
    assert out.traffic_sim is not None and out.traffic_sim.stitched is not None
    sim = out.simulation
    tv = next(f for f in out.summary["traffic"]["flows"] if f["name"] == "tv")
    assert tv["stitch_ids"] == [] and tv["delivered_mbit"] == 0
    assert tv["unattached_seconds"] == pytest.approx(20.0)
    assert tv["offered_mbit"] > 0
    assert out.summary["traffic"]["classes"]["video"]["unattached_mbit"] == \
        pytest.approx(tv["offered_mbit"])
    origin = [str(x) for x in sim.segments].index("seg00")
    assert (origin, 7) not in watch.first  # the origin never knows a route
    d = out.traffic_sim.stitched.demand.vns[7]
    asked = sorted(r.requested_at for (rm, _), r in sim.metrics.records.items()
                   if rm == origin and int(r.vnid) == 7)
    assert asked and asked[0] == 0.0  # blind, when the traffic starts
    assert len(asked) >= 2 and d.state is not DemandState.UP  # retried, never up
    assert out.traffic_sim.paths == [()]
