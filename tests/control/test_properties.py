"""Properties of the controller under any measurement sequence (Hypothesis)."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.examples import examples
from vnstitch.allocate.policy import DEFAULT_CLASSES, ScalingRules
from vnstitch.control import (
    CongestionRules,
    Consumer,
    Controller,
    ControlPolicy,
    ForecastPolicy,
    GrowRules,
    LinkSample,
    Renegotiate,
    Reserve,
    ResizeStitch,
    SetQosClasses,
    StitchSample,
)
from vnstitch.protocol.api import StitchResized
from vnstitch.routing.monitor import MonitorConfig
from vnstitch.routing.qos import QosClass, QosPolicy

HOLD_GROW, HOLD_MOVE = 7.0, 5.0


def _policy(unit: float) -> ControlPolicy:
    return ControlPolicy(dict(DEFAULT_CLASSES), ScalingRules(unit=unit, min_units=1,
                                                             hold_steps=1),
                         ForecastPolicy("naive", 1, 1, 20, 50, 3),
                         GrowRules(unit, grow_after=1, grow_headroom=0.5,
                                   grow_holddown_s=HOLD_GROW, grow_max_factor=10.0),
                         CongestionRules(MonitorConfig(0.8, 0.6, 1, 1), HOLD_MOVE),
                         qos=QOS)


#: Over-subscribed on purpose: 700 + 600 guaranteed on a 1000 Mbit/s reference link.
QOS = QosPolicy(1000.0, (QosClass("video", 0, 700.0, 1000.0),
                         QosClass("bulk", 1, 600.0, 1500.0)), ())


stitch = st.tuples(st.floats(5, 200), st.sampled_from(sorted(DEFAULT_CLASSES)),
                   st.booleans())
interval = st.tuples(st.lists(st.one_of(st.none(), st.floats(0, 600)), min_size=3,
                              max_size=3),
                     st.floats(0, 1.5),  # utilisation of the owned link
                     st.sampled_from(["grant", "refuse", "none"]))


@settings(max_examples=examples(60), deadline=None)
@given(st.lists(stitch, min_size=1, max_size=3), st.floats(20, 400),
       st.sampled_from([1.0, 5.0, 10.0]), st.lists(interval, min_size=1, max_size=25))
def test_no_action_exceeds_a_capacity_and_hold_downs_hold(
        stitches: list[tuple[float, str, bool]], link_cap: float, unit: float,
        script: list[tuple[list[float | None], float, str]]) -> None:
    ctl = Controller(_policy(unit))
    negotiated = {f"s{k}": bw for k, (bw, _, _) in enumerate(stitches)}
    refused_at: dict[str, float] = {}
    moved_at: dict[str, float] = {}
    link_bytes = 0.0
    qos_sets = 0
    for t, (rates, util, outcome) in enumerate(script):
        now = float(t)
        consumers = [Consumer(sid, stitches[k][1], (f"dev{k}",), {f"dev{k}": negotiated[sid]},
                              None, sid, stitches[k][2], negotiated[sid])
                     for k, sid in enumerate(negotiated)]
        samples = {sid: (StitchSample(error="unreadable") if rates[k] is None
                         else StitchSample(mbps=rates[k]))
                   for k, sid in enumerate(negotiated)}
        link_bytes += util * link_cap * 1e6 / 8
        out = ctl.step(now, consumers, samples,
                       [LinkSample("to-peer", link_bytes, 0, link_cap)],
                       {"to-peer": sorted(negotiated)})
        for a in out.actions:
            if isinstance(a, Reserve):
                sid = a.consumer
                assert a.mbps <= negotiated[sid] + 1e-9, (a, negotiated[sid])
                assert a.mbps > 0
            elif isinstance(a, ResizeStitch):
                assert a.mbps <= link_cap + 1e-9, (a, link_cap)
                assert now >= refused_at.get(a.stitch_id, -math.inf) + HOLD_GROW
                if outcome != "none":
                    ok = outcome == "grant"
                    ev = StitchResized(a.stitch_id, negotiated[a.stitch_id], a.mbps, ok,
                                       "resized" if ok else "bandwidth", now)
                    ctl.resize_outcome(ev)
                    if ok:
                        negotiated[a.stitch_id] = a.mbps
                    else:
                        refused_at[a.stitch_id] = now
            elif isinstance(a, SetQosClasses):
                assert a.device == "to-peer"
                assert all(0 <= rate <= ceil <= link_cap + 1e-9 for _, rate, ceil in a.classes)
                qos_sets += 1
            elif isinstance(a, Renegotiate):
                assert a.around == "to-peer"
                assert now >= moved_at.get(a.stitch_id, -math.inf) + HOLD_MOVE
                moved_at[a.stitch_id] = now
    assert qos_sets == 1  # once per link and capacity, not every interval


def test_control_without_hold_down_the_same_script_renegotiates_every_interval() -> None:
    """The hold-down assertion above can fail: with none, a hot link moves a stitch each
    interval (the one with the most traffic)."""
    ctl = Controller(ControlPolicy(dict(DEFAULT_CLASSES), ScalingRules(unit=1.0),
                                   congestion=CongestionRules(MonitorConfig(0.8, 0.6, 1, 1),
                                                              0.0)))
    moves, sid = [], "a"
    for t in range(6):
        out = ctl.step(float(t), [], {}, [LinkSample("l", t * 125_000_000.0, 0, 500.0)],
                       {"l": [sid]})
        for a in out.actions:
            assert isinstance(a, Renegotiate)
            moves.append(a.stitch_id)
            sid = f"{sid}+"  # the successor comes up at once, still on the hot link
            ctl.stitch_replaced(a.stitch_id, sid, float(t))
    # 1000 Mbit/s on a 500 link from the second read on: a move every interval
    assert moves == ["a", "a+", "a++", "a+++", "a++++"]


TARGET = 0.7
link_step = st.tuples(st.floats(0, 1.5), st.floats(0, 1.5),  # utilisations of two links
                      st.lists(st.floats(0, 300), min_size=3, max_size=3),  # stitch rates
                      st.booleans())  # the runtime reports a successor for a moved stitch


@settings(max_examples=60, deadline=None)
@given(st.lists(link_step, min_size=1, max_size=30), st.sets(st.sampled_from(["a", "b", "c"])))
def test_renegotiations_follow_target_hold_down_and_ends(
        script: list[tuple[float, float, list[float], bool]], ends: set[str]) -> None:
    """Moves stop once the link's predicted load is under the target; a stitch (and its
    successors) is asked at most once per hold-down, moves and returns alike; a stitch
    that ends here never leaves a link inside the segment; only a moved stitch returns."""
    rules = CongestionRules(MonitorConfig(0.8, 0.6, 1, 1), HOLD_MOVE, target=TARGET,
                            returns=True, return_below=0.6)
    ctl = Controller(ControlPolicy({}, ScalingRules(unit=1.0), congestion=rules))
    cap = {"in": 1000.0, "out": 500.0}
    sent = dict.fromkeys(cap, 0.0)
    name = {s: s for s in ("a", "b", "c")}  # original stitch -> its current id
    asked_at: dict[str, float] = {}  # per original stitch
    moved: set[str] = set()
    for t, (u_in, u_out, rates, succeed) in enumerate(script):
        now = float(t)
        sent["in"] += u_in * cap["in"] * 1e6 / 8
        sent["out"] += u_out * cap["out"] * 1e6 / 8
        links = [LinkSample("in", sent["in"], 0, cap["in"], inside=True),
                 LinkSample("out", sent["out"], 0, cap["out"])]
        cur = {name[s]: s for s in name}
        on = {link: {name[s]: r for s, r in zip(name, rates, strict=True)} for link in cap}
        out = ctl.step(now, [], {}, links, {k: list(v) for k, v in on.items()},
                       link_rates=on, ends={name[s] for s in ends})
        util = {"in": u_in, "out": u_out}
        left = {link: util[link] * cap[link] for link in cap}
        for a in out.actions:
            assert isinstance(a, Renegotiate)
            orig = cur[a.stitch_id]
            assert now >= asked_at.get(orig, -math.inf) + HOLD_MOVE
            asked_at[orig] = now
            if a.around:
                assert not (a.around == "in" and orig in ends)
                assert t > 0 and left[a.around] > TARGET * cap[a.around] + 1e-9
                for link in cap:
                    left[link] -= on[link][a.stitch_id]
                moved.add(orig)
            else:
                assert orig in moved
                moved.discard(orig)
            if succeed:
                new = f"{a.stitch_id}'"
                ctl.stitch_replaced(a.stitch_id, new, now)
                name[orig] = new
