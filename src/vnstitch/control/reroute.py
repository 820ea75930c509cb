"""The origin's reaction to congestion on a stitch's path: move it, hold it, bring it home.

Theory of operation. A stitch's origin learns that a link on the path is congested --
from its own link sampler, or as :class:`~vnstitch.protocol.api.CongestionReported` from
a Route Manager on the path -- or that a link it crosses went down (netlink). Each
becomes a call here with ``now``; the answer is a list of :class:`~vnstitch.control.
model.Renegotiate` actions (``around`` a link: make-before-break with that adjacency
avoided; ``around=()``: the best path now, i.e. home) with one :class:`~vnstitch.control.
model.DecisionRecord` per decision, moves and refusals alike.

* **Hold-down**: a stitch moved less than ``holddown_s`` ago is not moved again for
  congestion (a ``hold`` record says so); a dead link moves it at once.
* **Dampening**: a move needs ``min_reports`` reports within ``report_window_s``
  (with ``min_reports = 1`` and ``holddown_s = 0``: no dampening, the control run).
* **Return**: a stitch moved off a link goes back (``around=()``) once no report about
  that link arrived for ``return_after_s``, its hold-down is over, and the path it left
  was cheaper than the one it is on. If the link is still hot, the reports start again
  and the hold-down bounds the moves to one per ``holddown_s``.

Renegotiation gives the stitch a new id; :meth:`moved` carries the history over.
Nothing here reads a clock or does I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from vnstitch.control.errors import ControlError
from vnstitch.control.model import DecisionRecord, Renegotiate

Link = tuple[str, str]


@dataclass(frozen=True, slots=True)
class RerouteRules:
    holddown_s: float = 10.0
    min_reports: int = 2
    report_window_s: float = 1.0
    return_after_s: float = 15.0

    def __post_init__(self) -> None:
        if self.holddown_s < 0 or self.min_reports < 1 or self.report_window_s <= 0 \
                or self.return_after_s < 0:
            raise ControlError("reroute rules: holddown_s, return_after_s >= 0, "
                               "min_reports >= 1, report_window_s > 0")


@dataclass(slots=True)
class _Track:
    moved_at: float = -math.inf
    home: tuple[Link, float] | None = None  # (link it left, cost of the path it left)
    pending: tuple[str, Link] | None = None  # ("away" | "home", link) in flight
    reports: list[float] = field(default_factory=list)


def _key(link: Link) -> Link:
    a, b = sorted(link)
    return (a, b)


class StitchMover:
    """Per-origin reroute decisions (module docstring)."""

    def __init__(self, rules: RerouteRules) -> None:
        self.rules = rules
        self._tracks: dict[str, _Track] = {}
        self._last_hot: dict[Link, float] = {}
        self.moves = 0

    def _track(self, sid: str) -> _Track:
        return self._tracks.setdefault(sid, _Track())

    def congested(self, now: float, sid: str, link: Link, utilisation: float,
                  reporter: str) -> tuple[list[Renegotiate], list[DecisionRecord]]:
        link = _key(link)
        self._last_hot[link] = now
        t = self._track(sid)
        r = self.rules
        t.reports = [x for x in t.reports if now - x < r.report_window_s] + [now]
        seen = f"{reporter[:8]} reports link {link[0][:8]}-{link[1][:8]} at " \
               f"{utilisation:.0%} of capacity"
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
        return self._move(now, sid, t, link, f"{seen}: renegotiate around it, even at a "
                          "higher cost (make-before-break)")

    def link_down(self, now: float, sid: str, link: Link
                  ) -> tuple[list[Renegotiate], list[DecisionRecord]]:
        """A link on the stitch's path went down: move now (no hold-down, no dampening)."""
        link = _key(link)
        self._last_hot[link] = now
        t = self._track(sid)
        if t.pending is not None:
            return [], []
        return self._move(now, sid, t, link, f"link {link[0][:8]}-{link[1][:8]} went down "
                          "(netlink): renegotiate around it at once")

    def _move(self, now: float, sid: str, t: _Track, link: Link, why: str
              ) -> tuple[list[Renegotiate], list[DecisionRecord]]:
        t.pending = ("away", link)
        t.reports = []
        self.moves += 1
        return ([Renegotiate(sid, "-".join(link), why)],
                [DecisionRecord(now, sid, "reroute", why, consumer=sid)])

    def moved(self, now: float, old: str, new: str, old_cost: float) -> None:
        """The successor ``new`` of ``old`` is established (the old one is released)."""
        t = self._tracks.pop(old, _Track())
        kind, link = t.pending or ("away", ("", ""))
        self._tracks[new] = _Track(moved_at=now, home=(link, old_cost) if kind == "away"
                                   else None)

    def failed(self, sid: str) -> None:
        """The renegotiation of ``sid`` found no path: it stays where it is."""
        t = self._tracks.get(sid)
        if t is not None:
            t.pending = None

    def forget(self, live: set[str]) -> None:
        for sid in [s for s in self._tracks if s not in live]:
            del self._tracks[sid]

    def step(self, now: float, cost: Mapping[str, float]
             ) -> tuple[list[Renegotiate], list[DecisionRecord]]:
        """Bring stitches home whose avoided link has been quiet long enough."""
        acts: list[Renegotiate] = []
        recs: list[DecisionRecord] = []
        r = self.rules
        for sid, t in self._tracks.items():
            if t.home is None or t.pending is not None or sid not in cost:
                continue
            link, home_cost = t.home
            quiet = now - self._last_hot.get(link, -math.inf)
            if quiet < r.return_after_s or now < t.moved_at + r.holddown_s:
                continue
            if home_cost >= cost[sid]:
                t.home = None  # where it is is no dearer: stay
                continue
            why = (f"link {link[0][:8]}-{link[1][:8]} quiet for {quiet:.1f} s and the path "
                   f"it left costs {home_cost:g} < {cost[sid]:g}: return (make-before-break)")
            t.pending = ("home", link)
            self.moves += 1
            acts.append(Renegotiate(sid, "", why))
            recs.append(DecisionRecord(now, sid, "return", why, consumer=sid))
        return acts, recs
