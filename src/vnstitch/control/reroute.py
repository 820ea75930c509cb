"""Moving stitches off congested links: watch the links, move, hold, bring home.

This is the one home of the decision; the simulator's controllers
(:meth:`vnstitch.control.Controller.step`) and the daemon
(:mod:`vnstitch.daemon.congestion`) both call it, and only measure and apply.

Theory of operation. Two roles, often played by different Route Managers:

* **the owner of a link** measures it. :class:`LinkWatch` turns its byte counters into
  a utilisation (the busier direction over the capacity; a first read, a read on
  another device, a counter that went back or a link missing from a read are
  baselines, not samples) and runs the hysteresis :class:`~vnstitch.routing.monitor.
  CongestionMonitor`: ``raise_samples`` above ``high`` make a link congested (one,
  when the link's queues dropped packets in it), ``clear_samples`` under ``low`` clear
  it; the stitches' probes (queueing delay, loss) can make a sample hot too. While it
  is congested the owner reports it for the stitches crossing it (the daemon's core
  sends a CONGESTION to each origin; a simulated owner picks them busiest first down
  to a target, see the controller);
* **the origin of a stitch** decides with :class:`StitchMover`. Each report or
  netlink link-down becomes a call here with ``now``; the answer is a list of
  :class:`~vnstitch.control.model.Renegotiate` actions (``around`` the link:
  make-before-break with it avoided; ``around=""``: the best path now, i.e. home) with
  one :class:`~vnstitch.control.model.DecisionRecord` per decision. Which stitches a
  dead link moves is :func:`first_hop_stitches` (the origin's own first hop), for the
  daemon and the simulator alike.

  - **In flight**: a stitch whose renegotiation is under way is not asked again.
  - **Hold-down**: a stitch moved less than ``holddown_s`` ago (its successor
    established, or its renegotiation refused, then) is not moved again for
    congestion (a ``hold`` record says so); a dead link moves it at once.
  - **Dampening**: a move needs ``min_reports`` reports within ``report_window_s``
    (with ``min_reports = 1`` and ``holddown_s = 0``: no dampening, the control run).
  - **Return when cleared**: a stitch moved off a link goes back (``around=""``) once
    no report about that link arrived for more than ``return_after_s``, its hold-down
    is over, the path it left was cheaper than the one it is on (when the runtime
    knows the costs) and the link would stay under ``return_below`` with it back (when
    the runtime knows that link's load: then one stitch per call, the least busy
    first, since each estimate assumes the others stay away). If the link is still
    hot, the reports start again and the hold-down bounds the moves to one per
    ``holddown_s``.

* **Re-optimisation**: a stitch asked for before discovery knew a route took the first
  offer to arrive, not the cheapest (:mod:`vnstitch.protocol.origin`). When the
  origin's discovery knows a route to the VN cheaper than the stitch's committed cost
  (:func:`vnstitch.control.demand.cheaper_routes` reads both from the core's typed
  views), :meth:`StitchMover.cheaper` asks for the best path now (``around=""``),
  make-before-break like a return. Not while the stitch is in flight or away for
  congestion (its return is the rule above); the congestion hold-down neither blocks it
  nor is started by it (the successor keeps its predecessor's). A renegotiation that
  did not reach the cheaper route (gone stale, or refused) is not asked again for a
  route as dear or dearer, until discovery knows nothing cheaper than the stitch.

* **Who moves**: the owner of a hot link reports it to every stitch crossing it (it
  cannot measure a transit stitch's rate), with the Mbit/s the link carries above its
  target. Each origin decides from its own stitch's rate: a stitch that alone can bring
  the link under target (rate >= excess) moves at the report; a smaller one waits one
  more report (within ``report_window_s``), so the busier stitches move first and it
  moves only if the link is still over target then. Unknown rate or excess: it moves.
  The simulated owner and the daemon's report the same way (one rule, here).

Renegotiation gives the stitch a new id; :meth:`StitchMover.moved` carries its history
over. A link is named by a string (the owner's name for it) or by its two ends (either
order; ``around`` is then ``"a-b"``, the ends sorted). Nothing here reads a clock or
does I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from vnstitch.control.model import DecisionRecord, LinkSample, Renegotiate, RerouteRules
from vnstitch.routing.monitor import ArcState, CongestionMonitor, MonitorConfig

Link = tuple[str, str] | str
Decided = tuple[list[Renegotiate], list[DecisionRecord]]

__all__ = ["Decided", "Link", "LinkWatch", "RerouteRules", "StitchMover", "first_hop_stitches",
           "link_name"]


def link_name(link: Link) -> str:
    """The one name of a link: itself, or its two ends sorted and joined by ``-``."""
    return link if isinstance(link, str) else "-".join(sorted(link))


class LinkWatch:
    """The owner's side: counters and probes -> hysteresis (module docstring).

    Per link and sample: the utilisation is the busier direction's bytes since the last
    read over the time between the reads (``LinkSample.at``, else ``now``: a read that
    waited for a busy CPU would otherwise count its late bytes as a burst); queue drops
    that grew while the link is above ``high`` make it congested at once (the drops
    corroborate the bytes); with ``MonitorConfig.latency_high_ms``, the probes' round
    trip above the least seen on that link (queueing delay) is the monitor's latency;
    with ``loss_high``, probe loss at or above it makes the sample hot."""

    def __init__(self, monitor: MonitorConfig, *, loss_high: float | None = None) -> None:
        self.monitor = CongestionMonitor(monitor)
        self.loss_high = loss_high
        self.utilisation: dict[str, float] = {}
        self._last: dict[str, tuple[float, LinkSample]] = {}
        self._least_rtt: dict[tuple[str, str], float] = {}

    def observe(self, now: float, links: Sequence[LinkSample]) -> list[DecisionRecord]:
        """One read of the owned links; a record per monitor state change."""
        util: dict[tuple[str, str], float] = {}
        delay: dict[tuple[str, str], float] = {}
        why: dict[tuple[str, str], str] = {}
        at_once: dict[tuple[str, str], str] = {}
        high = self.monitor.config.high
        seen = {s.link for s in links}
        for gone in [k for k in self._last if k not in seen]:
            del self._last[gone]  # unreadable this time: the next read is a baseline
        for s in links:
            at = now if s.at is None else s.at
            prev, self._last[s.link] = self._last.get(s.link), (at, s)
            arc = (s.link, "")
            if s.rtt_ms is not None:
                least = min(self._least_rtt.get((s.link, s.device), s.rtt_ms), s.rtt_ms)
                self._least_rtt[(s.link, s.device)] = least
                delay[arc] = s.rtt_ms - least
            if prev is None or prev[1].device != s.device or at <= prev[0] \
                    or s.capacity_mbps <= 0:
                continue
            p = prev[1]
            moved = [s.tx_bytes - p.tx_bytes]
            if s.rx_bytes is not None and p.rx_bytes is not None:
                moved.append(s.rx_bytes - p.rx_bytes)
            if min(moved) < 0:
                continue  # a counter went back: a new baseline
            u = max(moved) * 8 / 1e6 / (at - prev[0]) / s.capacity_mbps
            util[arc] = self.utilisation[s.link] = u
            dropped = s.drops - p.drops
            if dropped > 0 and u > high:
                at_once[arc] = f"{dropped} packet(s) dropped"
            if self.loss_high is not None and s.loss is not None and s.loss >= self.loss_high:
                why[arc] = f"probe loss {s.loss:.0%} >= {self.loss_high:.0%}"
        return [DecisionRecord(now, ev.arc[0], f"link-{ev.new.value}", ev.reason)
                for ev in self.monitor.observe(now, util, delay, hot_because=why,
                                               at_once=at_once)]

    def state(self, link: str) -> ArcState:
        return self.monitor.state((link, ""))

    def hot(self) -> list[str]:
        """The links congested now (not merely falling), the busiest first."""
        return sorted((a[0] for a in self.monitor.congested()
                       if self.monitor.state(a) is ArcState.CONGESTED),
                      key=lambda link: (-self.utilisation.get(link, 0.0), link))


@dataclass(slots=True)
class _Track:
    moved_at: float = -math.inf
    #: (link it left, cost of the path it left, its Mbit/s there) while away
    home: tuple[str, float, float] | None = None
    pending: tuple[str, str, float] | None = None  # ("away"|"home"|"cheaper", link, Mbit/s)
    reports: list[float] = field(default_factory=list)
    #: the route cost the last re-optimisation was asked for (module docstring)
    tried: float | None = None


class StitchMover:
    """Per-origin reroute decisions (module docstring)."""

    def __init__(self, rules: RerouteRules) -> None:
        self.rules = rules
        self._tracks: dict[str, _Track] = {}
        self._last_hot: dict[str, float] = {}
        self.moves = 0
        self.reoptimisations = 0

    def _track(self, sid: str) -> _Track:
        return self._tracks.setdefault(sid, _Track())

    def movable(self, now: float, sid: str) -> bool:
        """Neither in flight nor held down: a report about ``sid`` could move it."""
        t = self._tracks.get(sid)
        return t is None or (t.pending is None and now >= t.moved_at + self.rules.holddown_s)

    def link_hot(self, now: float, link: Link) -> None:
        """``link`` is congested now (whether or not a stitch is reported on it): no
        stitch returns onto it for ``return_after_s``."""
        self._last_hot[link_name(link)] = now

    def congested(self, now: float, sid: str, link: Link, utilisation: float,
                  reporter: str, *, mbps: float = 0.0, excess_mbps: float | None = None
                  ) -> Decided:
        """A report that ``link`` on ``sid``'s path is congested (``mbps``: the stitch's
        rate on it, as its origin measures it, 0 if not known; ``excess_mbps``: what the
        link carries above the reporter's target, None if not given: the rule "who
        moves" in the module docstring)."""
        name = link_name(link)
        self._last_hot[name] = now
        t = self._track(sid)
        r = self.rules
        t.reports = [x for x in t.reports if now - x < r.report_window_s] + [now]
        seen = f"{reporter[:8]} reports link {_short(link)} at {utilisation:.0%} of capacity"
        if t.pending is not None:
            return [], []
        if now < t.moved_at + r.holddown_s:
            return [], [DecisionRecord(now, sid, "hold", f"{seen}; moved "
                                       f"{now - t.moved_at:.1f} s ago, hold-down "
                                       f"{r.holddown_s:g} s", consumer=sid)]
        if len(t.reports) < r.min_reports:
            return [], [DecisionRecord(now, sid, "watch", f"{seen}; {len(t.reports)} of "
                                       f"{r.min_reports} reports needed within "
                                       f"{r.report_window_s:g} s", consumer=sid)]
        if excess_mbps is not None and excess_mbps <= 0:
            t.reports = []  # a deferral waits for a report over target, not one before
            return [], [DecisionRecord(now, sid, "watch", f"{seen}, at or under its "
                                       "target: nothing to move", consumer=sid)]
        if excess_mbps is not None and 0 < mbps < excess_mbps \
                and len(t.reports) < r.min_reports + 1:
            return [], [DecisionRecord(now, sid, "defer", f"{seen}, {excess_mbps:.0f} Mbit/s "
                                       f"over target: its {mbps:.0f} Mbit/s alone cannot "
                                       "bring it under, so busier stitches move first; it "
                                       "moves if the next report within "
                                       f"{r.report_window_s:g} s still finds the link over",
                                       consumer=sid, measured_mbps=mbps)]
        rate = f" ({mbps:.0f} Mbit/s on it)" if mbps > 0 else ""
        return self._move(now, sid, t, name, mbps=mbps, why=f"{seen}: renegotiate the stitch{rate} "
                          "around it, even at a higher cost (make-before-break)")

    def link_down(self, now: float, sid: str, link: Link) -> Decided:
        """A link on the stitch's path went down: move now (no hold-down, no dampening)."""
        name = link_name(link)
        self._last_hot[name] = now
        t = self._track(sid)
        if t.pending is not None:
            return [], []
        return self._move(now, sid, t, name, mbps=0.0, why=f"link {_short(link)} went down "
                          "(netlink): renegotiate around it at once")

    def neighbour_down(self, now: float, me: str, neighbour: str,
                       paths: Mapping[str, Sequence[str]], link: Link | None = None
                       ) -> Decided:
        """``me``'s link toward ``neighbour`` went down, seen at once (netlink live, the
        cut itself in the simulator): every stitch :func:`first_hop_stitches` names moves
        around ``link`` (default: the two ends) now, as :meth:`link_down`."""
        acts: list[Renegotiate] = []
        recs: list[DecisionRecord] = []
        for sid in first_hop_stitches(me, neighbour, paths):
            a, r = self.link_down(now, sid, link if link is not None else (me, neighbour))
            acts += a
            recs += r
        return acts, recs

    def _move(self, now: float, sid: str, t: _Track, link: str, *, mbps: float, why: str
              ) -> Decided:
        t.pending = ("away", link, mbps)
        t.reports = []
        self.moves += 1
        return ([Renegotiate(sid, link, why)],
                [DecisionRecord(now, sid, "reroute", why, consumer=sid,
                                measured_mbps=mbps or None)])

    def moved(self, now: float, old: str, new: str, old_cost: float = 0.0, *,
              hold: bool = True) -> None:
        """The successor ``new`` of ``old`` is established (the old one is released).
        Of a stitch this mover did not move, only the hold-down follows (``hold``: a
        congestion move's; else none). Told twice, the second time changes nothing."""
        t = self._tracks.pop(old, None)
        if t is None and new in self._tracks:
            return
        if t is None or t.pending is None:  # not moved by us: only the hold-down
            self._tracks[new] = _Track(moved_at=now if hold else
                                       (t.moved_at if t is not None else -math.inf))
            return
        kind, link, mbps = t.pending
        if kind == "cheaper":  # not a congestion move: no hold-down of its own
            self._tracks[new] = _Track(moved_at=t.moved_at, tried=t.tried)
            return
        self._tracks[new] = _Track(moved_at=now, home=(link, old_cost, mbps)
                                   if kind == "away" else None)

    def failed(self, sid: str, now: float | None = None) -> None:
        """The renegotiation of ``sid`` found no path: it stays where it is (and, given
        ``now``, is held down from then, so a hot link does not ask again each report)."""
        t = self._tracks.get(sid)
        if t is not None:
            cheaper = t.pending is not None and t.pending[0] == "cheaper"
            t.pending = None
            if now is not None and not cheaper:
                t.moved_at = now

    def cheaper(self, now: float, sid: str, cost: float, best: float) -> Decided:
        """Stitch ``sid`` (originated here) is committed at ``cost``; the cheapest route
        the origin's discovery knows to its VN now costs ``best`` (inf: none known):
        re-optimise onto it (module docstring)."""
        t = self._track(sid)
        if t.pending is not None or t.home is not None:
            return [], []
        if best >= cost - 1e-9:
            t.tried = None  # nothing cheaper known: a cheaper route later is news
            return [], []
        if t.tried is not None and best >= t.tried - 1e-9:
            return [], []  # asked for a route this cheap already, and did not get it
        t.tried = best
        t.pending = ("cheaper", "", 0.0)
        self.reoptimisations += 1
        why = (f"discovery knows a route of cost {best:g} < the committed {cost:g}: "
               "renegotiate onto the best path now (make-before-break)")
        return ([Renegotiate(sid, "", why)],
                [DecisionRecord(now, sid, "reoptimise", why, consumer=sid)])

    def forget_one(self, sid: str) -> None:
        self._tracks.pop(sid, None)

    def forget(self, live: set[str]) -> None:
        for sid in [s for s in self._tracks if s not in live]:
            del self._tracks[sid]

    def away(self) -> dict[str, tuple[str, float]]:
        """Stitches moved off a link and not on their way back: (that link, Mbit/s)."""
        return {sid: (t.home[0], t.home[2]) for sid, t in self._tracks.items()
                if t.home is not None and t.pending is None}

    def rate(self, sid: str, mbps: float) -> None:
        """The current rate of a stitch that is away (what it would bring back)."""
        t = self._tracks.get(sid)
        if t is not None and t.home is not None:
            t.home = (t.home[0], t.home[1], mbps)

    def step(self, now: float, cost: Mapping[str, float] | None = None,
             room: Mapping[str, float] | None = None) -> Decided:
        """Bring home stitches whose left link has been quiet long enough. ``cost``:
        each stitch's path cost now; ``room``: per stitch, the utilisation its left link
        would have with it back (both optional: module docstring)."""
        acts: list[Renegotiate] = []
        recs: list[DecisionRecord] = []
        r = self.rules
        below = r.return_below if room is not None else None
        ready = sorted(self.away().items(),
                       key=lambda kv: ((room or {}).get(kv[0], 0.0), kv[0]))
        for sid, (link, mbps) in ready:
            t = self._tracks[sid]
            assert t.home is not None
            home_cost = t.home[1]
            quiet = now - self._last_hot.get(link, -math.inf)
            if quiet <= r.return_after_s or now < t.moved_at + r.holddown_s:
                continue
            why = f"link {_short(link)} quiet for {quiet:.1f} s"
            if cost is not None:
                if sid not in cost:
                    continue
                if home_cost >= cost[sid]:
                    t.home = None  # where it is is no dearer: stay
                    continue
                why += f" and the path it left costs {home_cost:g} < {cost[sid]:g}"
            if below is not None:
                after = (room or {}).get(sid)
                if after is None or after >= below:
                    continue
                why += f"; it would carry {after:.0%} < {below:.0%} with the stitch back"
            why += ": return (make-before-break)"
            t.pending = ("home", link, mbps)
            self.moves += 1
            acts.append(Renegotiate(sid, "", why))
            recs.append(DecisionRecord(now, sid, "return", why, consumer=sid,
                                       measured_mbps=mbps or None))
            if below is not None:
                break  # each estimate assumed the others stay away
        return acts, recs


def first_hop_stitches(me: str, neighbour: str, paths: Mapping[str, Sequence[str]]
                       ) -> list[str]:
    """The stitches a dead link from ``me`` to ``neighbour`` moves at once: those ``me``
    originates (``paths``: stitch -> its Route Manager or segment path, origin first)
    whose first hop is ``neighbour``. A Route Manager sees only its own links go down,
    and only an origin can renegotiate; a stitch cut further along is left to its
    probes (missed ones tear it down and it is negotiated again)."""
    return sorted(sid for sid, path in paths.items()
                  if len(path) > 1 and path[0] == me and path[1] == neighbour)


def _short(link: Link) -> str:
    if isinstance(link, str):
        return link
    a, b = sorted(link)
    return f"{a[:8]}-{b[:8]}"
