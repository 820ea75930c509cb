"""The parity summary: one pure function of event records, for both runtimes."""

from __future__ import annotations

import pytest

from vnstitch.sim.parity import (
    PARITY_KEYS,
    DecisionMade,
    FaultApplied,
    FlowDelivery,
    Record,
    StitchDown,
    StitchRequested,
    StitchUp,
    Surge,
    parity_summary,
    surges,
)

A, B = "seg00/vn1", "seg01/vn2"


def _records() -> list[Record]:
    return [
        StitchRequested(2.0, A, 1, True), StitchRequested(2.0, B, 2, True),
        StitchRequested(3.0, "seg02/vn3", 3, False),
        StitchUp(2.2, A, ("seg00", "seg01")), StitchUp(2.5, B, ("seg01", "seg02")),
        FaultApplied(20.0, "cut_link", "seg00-seg01"),
        StitchDown(21.0, A, "down"), StitchUp(24.0, A, ("seg00", "seg02", "seg01")),
        Surge(40.0, "backup"),
        StitchUp(50.5, B, ("seg01", "seg00", "seg02")),  # moved, never down
        FlowDelivery("tv", "video", 100.0, 90.0), FlowDelivery("tv2", "video", 100.0, 70.0),
        FlowDelivery("backup", "bulk", 50.0, 0.0),
        DecisionMade(50.0, "renegotiate", "x"), DecisionMade(60.0, "renegotiate", "y"),
        DecisionMade(61.0, "allocation", "z"),
    ]


def test_summary_counts_times_and_fractions_from_the_records() -> None:
    s = parity_summary(_records())
    assert list(s)[:len(PARITY_KEYS)] == list(PARITY_KEYS)
    assert s["stitches_requested"] == 3 and s["stitches_feasible"] == 2
    assert s["stitches_established"] == 2
    assert s["setup_seconds_median"] == pytest.approx(0.35)
    assert s["repair_seconds_max"] == pytest.approx(3.0)  # down 21 -> up 24
    # reroutes: A's new path 4 s after the cut, B's 10.5 s after the surge
    assert s["reroute_seconds_max"] == pytest.approx(10.5)
    assert s["delivered_by_class"] == {"bulk": 0.0, "video": 0.8}
    assert s["decisions"] == {"allocation": 1, "renegotiate": 2}
    assert s["repairs"] == 1 and s["repairs_unfinished"] == 0
    assert s["stitches_up_at_end"] == 2 and s["faults"] == 1


def test_an_unrepaired_stitch_and_the_order_of_records_do_not_matter() -> None:
    recs = [*_records(), StitchDown(70.0, B, "origin not running")]
    s = parity_summary(reversed(recs))
    assert s == parity_summary(recs)
    assert s["repairs_unfinished"] == 1 and s["stitches_up_at_end"] == 1


def test_no_records_give_empty_figures_and_surges_need_a_rise_from_a_rate() -> None:
    s = parity_summary([])
    assert s["stitches_requested"] == 0 and s["setup_seconds_median"] is None
    assert s["delivered_by_class"] == {} and s["decisions"] == {}
    assert surges("f", 0.0, [(6.0, 10.0), (40.0, 50.0), (52.0, 10.0)]) == \
        [Surge(40.0, "f")]
