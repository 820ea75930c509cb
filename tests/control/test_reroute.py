"""The link watch and the origin's reroute decisions with fake time: dampening, hold-down,
return home."""

from __future__ import annotations

import pytest

from vnstitch.control.demand import cheaper_routes
from vnstitch.control.model import LinkSample
from vnstitch.control.reroute import LinkWatch, RerouteRules, StitchMover, first_hop_stitches
from vnstitch.model.ids import VNID, RouteManagerId
from vnstitch.protocol.api import RouteView, StitchView
from vnstitch.routing.monitor import MonitorConfig

LINK = ("aaaa", "tttt")


def _oscillate(mover: StitchMover, seconds: float, period_s: float = 2.0,
               step_s: float = 0.2) -> int:
    """A load that is hot half of every period; the stitch is renamed on each move."""
    sid, n, now = "s0", 0, 0.0
    while now < seconds:
        hot = (now % period_s) < period_s / 2
        acts = mover.congested(now, sid, LINK, 1.3, "tttt")[0] if hot else []
        acts += mover.step(now, {sid: 4.0})[0]
        for _ in acts:  # the successor comes up at once
            n += 1
            new = f"s{n}"
            mover.moved(now, sid, new, old_cost=2.0)
            sid = new
        now = round(now + step_s, 6)
    return n


def test_first_report_is_watched_the_second_moves() -> None:
    m = StitchMover(RerouteRules(min_reports=2, report_window_s=1.0))
    acts, recs = m.congested(0.0, "s", LINK, 1.2, "tttt")
    assert acts == [] and recs[0].action == "watch"
    acts, recs = m.congested(0.2, "s", LINK, 1.2, "tttt")
    assert [a.stitch_id for a in acts] == ["s"] and recs[0].action == "reroute"
    assert m.congested(0.4, "s", LINK, 1.2, "tttt") == ([], [])  # move in flight


def test_hold_down_then_return_when_quiet_and_cheaper() -> None:
    m = StitchMover(RerouteRules(holddown_s=10.0, min_reports=1, return_after_s=5.0))
    assert m.congested(0.0, "s", LINK, 1.2, "tttt")[0]
    m.moved(0.5, "s", "s2", old_cost=2.0)
    acts, recs = m.congested(3.0, "s2", LINK, 1.2, "tttt")  # still reported: held
    assert acts == [] and recs[0].action == "hold"
    assert m.step(9.0, {"s2": 4.0}) == ([], [])  # quiet 6 s but hold-down runs to 10.5
    acts, recs = m.step(11.0, {"s2": 4.0})
    assert [a.around for a in acts] == [""] and recs[0].action == "return"
    m.moved(11.3, "s2", "s3", old_cost=4.0)
    assert m.step(40.0, {"s3": 2.0}) == ([], [])  # home: nothing left to return from


def test_no_return_when_the_new_path_is_not_dearer() -> None:
    m = StitchMover(RerouteRules(holddown_s=0.0, min_reports=1, return_after_s=1.0))
    m.congested(0.0, "s", LINK, 1.2, "tttt")
    m.moved(0.1, "s", "s2", old_cost=4.0)
    assert m.step(5.0, {"s2": 4.0}) == ([], [])


def test_link_down_moves_at_once_inside_the_hold_down() -> None:
    m = StitchMover(RerouteRules(holddown_s=30.0, min_reports=3))
    m.congested(0.0, "s", LINK, 1.2, "tttt")
    acts, recs = m.link_down(0.1, "s", LINK)
    assert len(acts) == 1 and recs[0].action == "reroute"


def test_dampening_bounds_moves_and_its_control_flaps() -> None:
    damped = _oscillate(StitchMover(RerouteRules(holddown_s=10.0, min_reports=2,
                                                 return_after_s=3.0)), 60.0)
    flapping = _oscillate(StitchMover(RerouteRules(holddown_s=0.0, min_reports=1,
                                                   return_after_s=0.0)), 60.0)
    assert damped <= 60.0 / 10.0 + 1  # at most one move per hold-down
    assert flapping >= 3 * damped  # the control run without dampening flaps


def test_link_watch_counts_the_busier_direction_and_rebases() -> None:
    """Counters to utilisation: rx counts when busier; a first read, another device, a
    counter that went back or a link missing from a read are baselines."""
    w = LinkWatch(MonitorConfig(0.8, 0.6, 2, 1))
    mbit = 1e6 / 8

    def read(now: float, tx: float, rx: float | None = None, dev: str = "eth0") -> None:
        w.observe(now, [LinkSample("l", tx * mbit, 0, 100.0, rx_bytes=None if rx is None
                                   else rx * mbit, device=dev)])

    read(0.0, 0.0, 0.0)
    assert "l" not in w.utilisation  # first read: a baseline
    read(1.0, 10.0, 90.0)
    assert w.utilisation["l"] == pytest.approx(0.9)  # rx was the busier direction
    read(2.0, 100.0, 180.0)
    assert w.hot() == ["l"]  # two samples above high
    read(3.0, 50.0, 270.0)  # tx went back: a new baseline, no sample
    assert w.utilisation["l"] == pytest.approx(0.9)
    read(4.0, 60.0, 280.0, dev="eth1")  # another device: a new baseline
    w.observe(5.0, [])  # unreadable
    read(6.0, 70.0, 290.0, dev="eth1")  # so this is a baseline again
    assert w.utilisation["l"] == pytest.approx(0.9)
    read(7.0, 75.0, 295.0, dev="eth1")
    assert w.utilisation["l"] == pytest.approx(0.05) and w.hot() == []


def test_a_failed_move_holds_down_when_told_when() -> None:
    m = StitchMover(RerouteRules(holddown_s=10.0, min_reports=1))
    assert m.congested(0.0, "s", LINK, 1.2, "tttt")[0]
    m.failed("s", 1.0)
    assert not m.movable(5.0, "s")
    assert m.congested(5.0, "s", LINK, 1.2, "tttt")[1][0].action == "hold"
    assert m.congested(11.0, "s", LINK, 1.2, "tttt")[0]
    m.failed("s")  # the daemon's call: no hold-down, asked again at the next report
    assert m.congested(11.2, "s", LINK, 1.2, "tttt")[0]


# -- re-optimisation: the first offer, then the cheapest route -----------------------------

def test_a_cheaper_route_renegotiates_onto_the_best_path_once() -> None:
    m = StitchMover(RerouteRules(holddown_s=60.0, min_reports=1))
    assert m.cheaper(1.0, "s", 3.0, 3.0) == ([], [])  # nothing cheaper: stay
    assert m.cheaper(1.0, "s", 3.0, float("inf")) == ([], [])  # no route known
    acts, recs = m.cheaper(1.0, "s", 3.0, 2.0)
    assert [(a.stitch_id, a.around) for a in acts] == [("s", "")]
    assert recs[0].action == "reoptimise" and m.reoptimisations == 1
    assert m.cheaper(1.5, "s", 3.0, 2.0) == ([], [])  # in flight
    m.moved(2.0, "s", "s2")
    # No hold-down of its own: a congestion report moves the successor at once.
    assert m.movable(2.1, "s2")
    assert m.congested(2.1, "s2", LINK, 1.2, "tttt", mbps=1.0)[0]
    # Control: a congestion move's successor is held down.
    m.moved(2.5, "s2", "s3")
    assert not m.movable(3.0, "s3")


def test_a_route_not_reached_is_not_asked_again_until_it_is_news() -> None:
    """The renegotiation came back no cheaper (the route was stale): not again for a
    route as dear; once discovery knows nothing cheaper, a cheaper route is news."""
    m = StitchMover(RerouteRules())
    assert m.cheaper(1.0, "s", 3.0, 2.0)[0]
    m.moved(1.2, "s", "s2")  # committed at 3 again
    assert m.cheaper(1.3, "s2", 3.0, 2.0) == ([], [])
    assert m.cheaper(1.4, "s2", 3.0, 1.5)[0]  # cheaper still: asked
    m.failed("s2")  # found no path at all: no hold-down, nothing asked again
    assert m.movable(1.5, "s2") and m.cheaper(1.5, "s2", 3.0, 1.5) == ([], [])
    assert m.cheaper(5.0, "s2", 3.0, 3.0) == ([], [])  # the stale route is gone
    assert m.cheaper(9.0, "s2", 3.0, 2.0)[0]  # and back: news


def test_a_stitch_away_for_congestion_is_not_reoptimised() -> None:
    """Its return is the congestion rule's (quiet link, hold-down): not re-optimised
    back onto the hot link it left."""
    m = StitchMover(RerouteRules(holddown_s=10.0, min_reports=1, return_after_s=0.0))
    assert m.congested(0.0, "s", LINK, 1.2, "tttt")[0]
    m.moved(0.5, "s", "s2", old_cost=2.0)
    assert m.cheaper(1.0, "s2", 3.0, 2.0) == ([], [])
    # Control: a stitch that was never moved away is re-optimised.
    assert m.cheaper(1.0, "other", 3.0, 2.0)[0]


def test_cheaper_routes_reads_the_typed_views() -> None:
    me, far, mid = (RouteManagerId(x) for x in ("o" * 8, "f" * 8, "m" * 8))
    stitches = [StitchView("up", VNID(7), "established", (me, mid, far), 100.0, 3.0),
                StitchView("asking", VNID(7), "querying", (), 100.0, 0.0),
                StitchView("lone", VNID(9), "established", (me, far), 100.0, 1.0)]
    routes = [RouteView(VNID(7), None, (me,), 1e9, (), 0.0),  # local: no way there
              RouteView(VNID(7), far, (me, far), 50.0, (), 1.0),  # too narrow
              RouteView(VNID(7), mid, (me, mid, far), 500.0, (), 2.0)]
    assert cheaper_routes(stitches, routes) == {"up": (3.0, 2.0),
                                                "lone": (1.0, float("inf"))}


# -- who moves: the link's excess over target, each origin's own rate ----------------------

def test_a_stitch_that_alone_clears_the_excess_moves_a_smaller_one_waits_a_report() -> None:
    m = StitchMover(RerouteRules(holddown_s=0.0, min_reports=1, report_window_s=7.5))
    big, _ = m.congested(40.0, "big", LINK, 1.0, "tttt", mbps=4800, excess_mbps=2500)
    small, srecs = m.congested(40.0, "small", LINK, 1.0, "tttt", mbps=500, excess_mbps=2500)
    assert [a.stitch_id for a in big] == ["big"] and small == []
    assert srecs[0].action == "defer"
    # The big one left and the link is under target at the next report: the small stays.
    assert m.congested(45.0, "small", LINK, 0.7, "tttt", mbps=500, excess_mbps=-500)[0] == []
    # Control: still over target at the next report, the small one moves then.
    m2 = StitchMover(RerouteRules(holddown_s=0.0, min_reports=1, report_window_s=7.5))
    assert m2.congested(40.0, "small", LINK, 1.0, "tttt", mbps=500, excess_mbps=2500)[0] == []
    assert m2.congested(45.0, "small", LINK, 0.9, "tttt", mbps=500, excess_mbps=1500)[0]
    # Unknown rate or excess (an older peer, no measurement): it moves, as before.
    m3 = StitchMover(RerouteRules(holddown_s=0.0, min_reports=1))
    assert m3.congested(1.0, "a", LINK, 1.0, "tttt", excess_mbps=2500)[0]
    assert m3.congested(1.0, "b", LINK, 1.0, "tttt", mbps=500)[0]


def test_a_dead_link_moves_only_the_stitches_its_origin_sends_over_it() -> None:
    paths = {"s1": ["a", "b", "c"], "s2": ["a", "c"], "s3": ["c", "a", "b"],
             "s4": ["x", "a", "b"], "s5": ["a"]}
    assert first_hop_stitches("a", "b", paths) == ["s1"]
    m = StitchMover(RerouteRules(holddown_s=60.0))
    acts, recs = m.neighbour_down(10.0, "a", "b", paths)
    assert [(x.stitch_id, x.around) for x in acts] == [("s1", "a-b")]
    assert [r.action for r in recs] == ["reroute"]
    # in flight: the same link-down again asks nothing more
    assert m.neighbour_down(10.5, "a", "b", paths) == ([], [])
    # the control: b's own view of the same link moves b's stitches, not a's
    assert [x.stitch_id for x in m.neighbour_down(11.0, "c", "a", paths)[0]] == ["s3"]


def test_the_daemons_default_rules_bound_moves_and_their_control_flaps() -> None:
    """One report moves a stitch by default (the hysteresis already wanted two samples,
    or one with drops); the hold-down is what bounds an oscillating load."""
    from vnstitch.daemon.config import CongestionConfig  # noqa: PLC0415

    c = CongestionConfig()
    assert c.min_reports == 1
    damped = _oscillate(StitchMover(RerouteRules(c.holddown_s, c.min_reports,
                                                 c.report_window_s, c.return_after_s)), 60.0)
    flapping = _oscillate(StitchMover(RerouteRules(0.0, 1, c.report_window_s, 0.0)), 60.0)
    assert 1 <= damped <= 60.0 / c.holddown_s + 1
    assert flapping >= 3 * damped


MBIT = 1e6 / 8


def _sample(tx_mbit: float, drops: int = 0, *, at: float | None = None,
            rtt: float | None = None, loss: float | None = None) -> list[LinkSample]:
    return [LinkSample("l", tx_mbit * MBIT, drops, 100.0, device="eth0", at=at, rtt_ms=rtt,
                       loss=loss)]


def test_queue_drops_in_a_busy_sample_raise_at_once_and_their_control_needs_two() -> None:
    w = LinkWatch(MonitorConfig(0.8, 0.6, 2, 3))
    w.observe(0.0, _sample(0.0, drops=10))
    recs = w.observe(0.2, _sample(18.0, drops=50))  # 90 % and 40 packets dropped
    assert [r.action for r in recs] == ["link-congested"] and w.hot() == ["l"]
    assert "40 packet(s) dropped" in recs[0].reason
    control = LinkWatch(MonitorConfig(0.8, 0.6, 2, 3))
    control.observe(0.0, _sample(0.0, drops=10))
    assert [r.action for r in control.observe(0.2, _sample(18.0, drops=10))] == \
        ["link-rising"]  # same bytes, no drops: hysteresis wants a second sample
    # drops on a link that is not busy do not make it congested
    idle = LinkWatch(MonitorConfig(0.8, 0.6, 2, 3))
    idle.observe(0.0, _sample(0.0))
    assert idle.observe(0.2, _sample(2.0, drops=99)) == [] and idle.hot() == []


def test_drops_only_quicken_raising_clearing_keeps_its_hysteresis() -> None:
    w = LinkWatch(MonitorConfig(0.8, 0.6, 2, 3))
    w.observe(0.0, _sample(0.0))
    w.observe(0.2, _sample(18.0, drops=5))
    assert w.hot() == ["l"]
    w.observe(0.4, _sample(19.0, drops=5))  # 5 % of 100 Mbit/s: cool, 1 of 3
    w.observe(0.6, _sample(20.0, drops=5))
    assert w.state("l").value == "falling"


def test_utilisation_is_timed_at_the_read_not_at_the_call() -> None:
    """A read that waited for the CPU: the call's ``now`` is late, the read's ``at`` is
    not; with ``now`` a steady 50 % reads 40 % then 67 %."""
    w = LinkWatch(MonitorConfig(0.8, 0.6, 2, 3))
    w.observe(0.0, _sample(0.0, at=0.0))
    w.observe(0.25, _sample(10.0, at=0.2))  # 50 Mbit/s over the 0.2 s between the reads
    assert w.utilisation["l"] == pytest.approx(0.5)
    w.observe(0.4, _sample(20.0, at=0.4))
    assert w.utilisation["l"] == pytest.approx(0.5)
    control = LinkWatch(MonitorConfig(0.8, 0.6, 2, 3))
    control.observe(0.0, _sample(0.0))
    control.observe(0.25, _sample(10.0))
    control.observe(0.4, _sample(20.0))
    assert control.utilisation["l"] == pytest.approx(10.0 / 0.15 / 100)  # 67 %, not 50


def test_probe_loss_and_queueing_delay_make_a_sample_hot() -> None:
    lossy = LinkWatch(MonitorConfig(0.8, 0.6, 2, 3), loss_high=0.1)
    lossy.observe(0.0, _sample(0.0, loss=0.0))
    lossy.observe(0.2, _sample(2.0, loss=0.3))
    recs = lossy.observe(0.4, _sample(4.0, loss=0.3))
    assert lossy.hot() == ["l"] and "probe loss 30% >= 10%" in recs[0].reason
    control = LinkWatch(MonitorConfig(0.8, 0.6, 2, 3))  # no loss threshold: not an input
    for i in range(3):
        control.observe(0.2 * i, _sample(2.0 * i, loss=0.3))
    assert control.hot() == []
    slow = LinkWatch(MonitorConfig(0.8, 0.6, 2, 3, latency_high_ms=20.0))
    slow.observe(0.0, _sample(0.0, rtt=1.0))  # the least round trip seen: 1 ms
    slow.observe(0.2, _sample(2.0, rtt=30.0))  # 29 ms of queueing
    slow.observe(0.4, _sample(4.0, rtt=31.0))
    assert slow.hot() == ["l"]
    calm = LinkWatch(MonitorConfig(0.8, 0.6, 2, 3, latency_high_ms=20.0))
    for i in range(3):  # a long but steady round trip is no queue
        calm.observe(0.2 * i, _sample(2.0 * i, rtt=30.0))
    assert calm.hot() == []
