"""Congestion monitor with hysteresis, and a reroute planner that moves the fewest flows.

Theory of operation. :class:`CongestionMonitor` keeps one small state machine per arc
(``CLEAR -> RISING -> CONGESTED -> FALLING -> CLEAR``; the table :data:`TRANSITIONS`
lists the legal moves, anything else raises). An arc becomes CONGESTED after
``raise_samples`` consecutive samples above ``high`` utilisation (or latency above
``latency_high_ms``, or hot for a reason the caller names) -- at once when the caller
corroborates a hot sample (a queue that dropped) -- and clears only after
``clear_samples`` consecutive samples below ``low``; in between it keeps its state --
that gap is the hysteresis that stops an oscillating load from toggling it.
``observe(now, ...)`` takes the time as an argument and returns the state changes; it
never reads a clock.

:func:`plan_reroutes` takes the congested arcs, the flows (each on one path) and their
candidate paths, and moves flows largest-first off each congested arc -- moving big
flows first minimises *how many* flows move -- onto the candidate whose worst projected
utilisation is lowest (even if that path costs more), and stops as soon as the arc is
below ``target``. A move is taken when that projected peak is below the congested arc's
utilisation, even if it is above ``target``: when no candidate has room for the whole
flow, spreading the overload beats leaving it where it is, and the monitor sees the
result in the next interval. A flow moved less than ``hold_down_s`` ago is not moved
again (dampening). Each move is a :class:`RerouteDecision` with its reason and the
make-before-break steps the executor must follow (install new path, shift traffic,
remove old path). :class:`RerouteLoop` is the one loop that drives both each interval
(the simulator, :func:`vnstitch.routing.evaluate.evaluate` and, with its LP planner,
:func:`vnstitch.routing.replay.replay` use it).
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from vnstitch.routing.errors import RoutingError

ArcKey = tuple[str, str]


class ArcState(enum.Enum):
    CLEAR = "clear"
    RISING = "rising"
    CONGESTED = "congested"
    FALLING = "falling"


TRANSITIONS: dict[ArcState, frozenset[ArcState]] = {
    ArcState.CLEAR: frozenset({ArcState.RISING, ArcState.CONGESTED}),
    ArcState.RISING: frozenset({ArcState.CLEAR, ArcState.CONGESTED}),
    ArcState.CONGESTED: frozenset({ArcState.FALLING, ArcState.CLEAR}),
    ArcState.FALLING: frozenset({ArcState.CONGESTED, ArcState.CLEAR}),
}


@dataclass(frozen=True, slots=True)
class MonitorConfig:
    high: float = 0.8
    low: float = 0.6
    raise_samples: int = 2
    clear_samples: int = 3
    latency_high_ms: float | None = None

    def __post_init__(self) -> None:
        if not 0 < self.low < self.high:
            raise RoutingError(f"monitor: need 0 < low < high, got {self.low}, {self.high}")
        if self.raise_samples < 1 or self.clear_samples < 1:
            raise RoutingError("monitor: sample counts must be >= 1")


@dataclass(frozen=True, slots=True)
class CongestionEvent:
    time: float
    arc: ArcKey
    old: ArcState
    new: ArcState
    utilisation: float
    reason: str


@dataclass
class _ArcTrack:
    state: ArcState = ArcState.CLEAR
    count: int = 0


class CongestionMonitor:
    """Per-arc hysteresis; feed it samples with ``observe`` (see the module docstring)."""

    def __init__(self, config: MonitorConfig | None = None) -> None:
        self.config = config or MonitorConfig()
        self._arcs: dict[ArcKey, _ArcTrack] = {}

    def state(self, arc: ArcKey) -> ArcState:
        track = self._arcs.get(arc)
        return track.state if track else ArcState.CLEAR

    def congested(self) -> list[ArcKey]:
        return sorted(a for a, t in self._arcs.items()
                      if t.state in (ArcState.CONGESTED, ArcState.FALLING))

    def _move(self, arc: ArcKey, track: _ArcTrack, new: ArcState, *, now: float, util: float,
              reason: str, out: list[CongestionEvent]) -> None:
        if new is track.state:
            return
        if new not in TRANSITIONS[track.state]:
            raise RoutingError(f"arc {arc}: invalid transition {track.state} -> {new}")
        out.append(CongestionEvent(now, arc, track.state, new, util, reason))
        track.state = new

    def observe(self, now: float, utilisation: Mapping[ArcKey, float],
                latency_ms: Mapping[ArcKey, float] | None = None, *,
                hot_because: Mapping[ArcKey, str] | None = None,
                at_once: Mapping[ArcKey, str] | None = None) -> list[CongestionEvent]:
        """One sample per arc in ``utilisation``. ``hot_because``: arcs hot this sample
        whatever their utilisation (why: e.g. the probes' loss); ``at_once``: arcs whose
        hot sample is corroborated (why: e.g. the link's queue dropped), so it counts as
        ``raise_samples`` -- only raising is quickened, clearing keeps its hysteresis."""
        cfg = self.config
        out: list[CongestionEvent] = []
        for arc in sorted(utilisation):
            util = utilisation[arc]
            lat = (latency_ms or {}).get(arc)
            hot_lat = (cfg.latency_high_ms is not None and lat is not None
                       and lat > cfg.latency_high_ms)
            other = (hot_because or {}).get(arc)
            hot = util > cfg.high or hot_lat or other is not None
            cool = util < cfg.low and not hot_lat and other is None
            track = self._arcs.setdefault(arc, _ArcTrack())
            why = (f"latency {lat:.1f} ms > {cfg.latency_high_ms} ms" if hot_lat
                   else other if other is not None and util <= cfg.high
                   else f"utilisation {util:.0%} > {cfg.high:.0%}")
            now_too = (at_once or {}).get(arc) if hot else None
            if track.state in (ArcState.CLEAR, ArcState.RISING):
                track.count = track.count + 1 if hot else 0
                if now_too is not None:
                    track.count = 0
                    self._move(arc, track, ArcState.CONGESTED, now=now, util=util,
                               reason=f"{why} and {now_too}", out=out)
                elif track.count >= cfg.raise_samples:
                    track.count = 0
                    self._move(arc, track, ArcState.CONGESTED, now=now, util=util,
                               reason=f"{why} for {cfg.raise_samples} sample(s)", out=out)
                else:
                    self._move(arc, track, ArcState.RISING if hot else ArcState.CLEAR,
                               now=now, util=util,
                               reason=why if hot else "below threshold", out=out)
            else:
                track.count = track.count + 1 if cool else 0
                if track.count >= cfg.clear_samples:
                    track.count = 0
                    self._move(arc, track, ArcState.CLEAR, now=now, util=util,
                               reason=f"utilisation < {cfg.low:.0%} for "
                               f"{cfg.clear_samples} sample(s)",
                               out=out)
                else:
                    self._move(arc, track, ArcState.FALLING if cool else ArcState.CONGESTED,
                               now=now, util=util, reason="cooling" if cool else why,
                               out=out)
        return out


@dataclass(frozen=True, slots=True)
class Flow:
    flow_id: str
    src: str
    dst: str
    volume_mbps: float
    path: tuple[str, ...]
    qos_class: str = "default"


MAKE_BEFORE_BREAK = ("install new path", "shift traffic to new path", "remove old path")


@dataclass(frozen=True, slots=True)
class RerouteDecision:
    time: float
    flow_id: str
    old_path: tuple[str, ...]
    new_path: tuple[str, ...]
    reason: str
    steps: tuple[str, ...] = MAKE_BEFORE_BREAK
    #: When the flow is split: every path with its fraction (``new_path`` is the largest).
    split: tuple[tuple[tuple[str, ...], float], ...] = ()


@dataclass
class RerouteState:
    """What the planner remembers between calls: when each flow last moved."""

    last_moved: dict[str, float] = field(default_factory=dict)


def _arcs(path: Sequence[str]) -> list[ArcKey]:
    return list(itertools.pairwise(path))


def plan_reroutes(
    now: float, flows: Sequence[Flow], capacity: Mapping[ArcKey, float],
    congested: Sequence[ArcKey],
    candidates: Mapping[tuple[str, str], Sequence[tuple[str, ...]]], *,
    state: RerouteState, target: float = 0.75, hold_down_s: float = 1800.0,
    max_moves: int | None = None, movable_classes: frozenset[str] | None = None,
) -> list[RerouteDecision]:
    """Moves (fewest flows, largest first) that bring each congested arc under ``target``."""
    load: dict[ArcKey, float] = dict.fromkeys(capacity, 0.0)
    for f in flows:
        for a in _arcs(f.path):
            load[a] += f.volume_mbps
    current = {f.flow_id: f for f in flows}
    decisions: list[RerouteDecision] = []
    hot = sorted(congested, key=lambda a: (-load.get(a, 0.0) / capacity[a], a))
    for arc in hot:
        if load[arc] <= target * capacity[arc]:
            continue
        on_arc = sorted((f for f in current.values() if arc in _arcs(f.path)),
                        key=lambda f: (-f.volume_mbps, f.flow_id))
        for f in on_arc:
            if load[arc] <= target * capacity[arc]:
                break
            if max_moves is not None and len(decisions) >= max_moves:
                return decisions
            if movable_classes is not None and f.qos_class not in movable_classes:
                continue
            if now - state.last_moved.get(f.flow_id, -float("inf")) < hold_down_s:
                continue
            old = _arcs(f.path)
            best: tuple[float, tuple[str, ...]] | None = None
            for cand in candidates.get((f.src, f.dst), ()):
                new = _arcs(cand)
                if cand == f.path or any(a in congested for a in new):
                    continue
                # Predicted peak on the new path (loads of the last interval plus f).
                worst = max((load[a] + (0 if a in old else f.volume_mbps)) / capacity[a]
                            for a in new)
                if best is None or worst < best[0] - 1e-12:
                    best = (worst, tuple(cand))
            if best is None or best[0] >= load[arc] / capacity[arc]:
                continue
            for a in old:
                load[a] -= f.volume_mbps
            for a in _arcs(best[1]):
                load[a] += f.volume_mbps
            util = (load[arc] + f.volume_mbps) / capacity[arc]
            decisions.append(RerouteDecision(
                now, f.flow_id, f.path, best[1],
                f"arc {arc[0]}->{arc[1]} congested at {util:.0%}; moved {f.volume_mbps:.1f} "
                f"Mbit/s to a path peaking at {best[0]:.0%}"))
            state.last_moved[f.flow_id] = now
            current[f.flow_id] = Flow(f.flow_id, f.src, f.dst, f.volume_mbps, best[1],
                                      f.qos_class)
    return decisions


def plan_returns(
    now: float, flows: Sequence[Flow], capacity: Mapping[ArcKey, float],
    home: Mapping[str, tuple[str, ...]], *, state: RerouteState, below: float = 0.45,
    hold_down_s: float = 1800.0, max_moves: int = 1,
) -> list[RerouteDecision]:
    """Bring rerouted flows back to their ``home`` path once it is predicted (last loads
    plus the flow) under ``below``, never before ``hold_down_s`` since the flow moved:
    the dampening that keeps a flow from flapping between paths."""
    load: dict[ArcKey, float] = dict.fromkeys(capacity, 0.0)
    for f in flows:
        for a in _arcs(f.path):
            load[a] += f.volume_mbps
    decisions: list[RerouteDecision] = []
    away = sorted((f for f in flows if home.get(f.flow_id, f.path) != f.path),
                  key=lambda f: (f.volume_mbps, f.flow_id))  # small first: least risk
    for f in away:
        if len(decisions) >= max_moves:
            break
        if now - state.last_moved.get(f.flow_id, -float("inf")) < hold_down_s:
            continue
        old, back = _arcs(f.path), _arcs(home[f.flow_id])
        peak = max(((load[a] + (0 if a in old else f.volume_mbps)) / capacity[a]
                    for a in back), default=0.0)
        if peak >= below:
            continue
        for a in old:
            load[a] -= f.volume_mbps
        for a in back:
            load[a] += f.volume_mbps
        decisions.append(RerouteDecision(
            now, f.flow_id, f.path, home[f.flow_id],
            f"congestion cleared; home path predicted at {peak:.0%} < {below:.0%}, "
            f"held {hold_down_s:.0f} s"))
        state.last_moved[f.flow_id] = now
    return decisions


@dataclass
class RerouteLoop:
    """The one monitor-and-reroute loop: each interval, :meth:`observe` the arcs'
    utilisation, then :meth:`decide` -- move flows off congested arcs
    (:func:`plan_reroutes`) or, with nothing congested, bring one home
    (:func:`plan_returns`). A caller with its own planner (the offline replay's LP)
    uses the same detection and dampening through :meth:`held` and :meth:`moved`.
    ``may_return`` lets the caller veto a return (e.g. the
    allocator cannot host the flow's reservation there); a vetoed flow is left out and
    the planner may pick another. Both planners share one hold-down state."""

    monitor: CongestionMonitor
    target: float = 0.75
    hold_down_s: float = 1800.0
    returns: bool = False
    return_below: float = 0.45
    movable_classes: frozenset[str] | None = None
    state: RerouteState = field(default_factory=RerouteState)

    def observe(self, now: float, utilisation: Mapping[ArcKey, float]
                ) -> list[CongestionEvent]:
        return self.monitor.observe(now, utilisation)

    def congested(self) -> list[ArcKey]:
        return self.monitor.congested()

    def held(self, flow_id: str, now: float) -> bool:
        """Did ``flow_id`` move less than ``hold_down_s`` ago (dampening)?"""
        return now - self.state.last_moved.get(flow_id, -float("inf")) < self.hold_down_s

    def moved(self, flow_id: str, now: float) -> None:
        """Record a move a caller's own planner made (starts its hold-down)."""
        self.state.last_moved[flow_id] = now

    def decide(self, now: float, flows: Sequence[Flow], capacity: Mapping[ArcKey, float],
               candidates: Mapping[tuple[str, str], Sequence[tuple[str, ...]]], *,
               home: Mapping[str, tuple[str, ...]] | None = None,
               may_return: Callable[[RerouteDecision], bool] | None = None
               ) -> tuple[str, list[RerouteDecision]]:
        """``("reroute" | "return" | "none", decisions)`` for this interval."""
        congested = self.monitor.congested()
        if congested:
            return "reroute", plan_reroutes(
                now, flows, capacity, congested, candidates, state=self.state,
                target=self.target, hold_down_s=self.hold_down_s,
                movable_classes=self.movable_classes)
        if not self.returns or not home:
            return "none", []
        left = dict(home)
        while True:
            trial = RerouteState(dict(self.state.last_moved))
            decisions = plan_returns(now, flows, capacity, left, state=trial,
                                     below=self.return_below, hold_down_s=self.hold_down_s,
                                     max_moves=1)
            vetoed = [d for d in decisions if may_return is not None and not may_return(d)]
            if not vetoed:
                self.state.last_moved.update(trial.last_moved)
                return "return", decisions
            for d in vetoed:
                del left[d.flow_id]
