"""Replay with the online reroute controller: what it knows, when its changes count."""

from __future__ import annotations

import numpy as np
import pytest

from vnstitch.model.substrate import substrate_from_links
from vnstitch.routing.demands import parse_tm_csv
from vnstitch.routing.errors import RoutingError
from vnstitch.routing.replay import ControllerConfig, replay, shortest_path_mlu

# a-b direct (10 Mb/s) or a-c-b (10 Mb/s each): three a->b flows, one column per class.
GRAPH = substrate_from_links("tri", "abc", [("a", "b", 10, 1, 1), ("a", "c", 10, 1, 1),
                                            ("c", "b", 10, 1, 1)]).graph
# One flow may change per interval (a third of three), none twice within 3 intervals.
CFG = ControllerConfig(max_change=0.34)


def _tm(rates: list[float]) -> list[str]:
    return ["time,a->b@x,a->b@y,a->b@z"] + [f"t{i},{r},{r},{r}" for i, r in enumerate(rates)]


def test_first_congested_interval_counts_then_controller_moves_few_flows() -> None:
    tm = parse_tm_csv(_tm([2, 2, 2, 4, 4, 4, 4, 4]))
    res = replay(GRAPH, tm, config=CFG)
    assert res.static_mlu[3:] == pytest.approx(1.2)
    # Interval 3 jumps from 60% to 120%: the controller had only seen 60% + 10% margin,
    # under its 70% trigger, so interval 3 is counted congested under it too.
    assert res.reroute_mlu[3] == pytest.approx(1.2)
    assert res.changed[:4].tolist() == [0, 0, 0, 0]
    # After seeing interval 3 it moves one flow for interval 4 (8 Mb/s left on a-b) ...
    assert res.changed[4] == 1 and res.reroute_mlu[4] == pytest.approx(0.8)
    # ... and one more for interval 5: the LP splits it so both routes carry 6 Mb/s.
    assert res.changed[5] == 1 and res.reroute_mlu[5] == pytest.approx(0.6)
    assert res.changed.max() <= 1
    assert res.optimum_mlu[3:] == pytest.approx(0.6)  # the oracle knows interval 3
    assert {d.time for d in res.decisions} == {4 * 300.0, 5 * 300.0}
    assert all(d.steps[0] == "install new path" and "predicted" in d.reason
               for d in res.decisions)
    s = res.summary(3)
    assert s["static_shortest"]["intervals_over_100"] == 5  # type: ignore[index]
    assert s["reroute_on_congestion"]["intervals_over_100"] == 1  # type: ignore[index]
    assert s["per_interval_optimum"]["intervals_over_80"] == 0  # type: ignore[index]


def test_controller_never_uses_the_future() -> None:
    base = [2.0, 2, 2, 4, 4, 4, 4, 4, 4, 4]
    spiked = [*base[:7], 9, 1, 9]
    a = replay(GRAPH, parse_tm_csv(_tm(base)), config=CFG, optimum=False)
    b = replay(GRAPH, parse_tm_csv(_tm(spiked)), config=CFG, optimum=False)
    # The routing in force up to interval 7 was decided from intervals <= 6, equal in both.
    assert [d for d in a.decisions if d.time <= 7 * 300] == \
        [d for d in b.decisions if d.time <= 7 * 300]
    assert a.reroute_mlu[:7] == pytest.approx(b.reroute_mlu[:7])


def test_lag_two_reacts_one_interval_later() -> None:
    tm = parse_tm_csv(_tm([2, 2, 2, 4, 4, 4, 4, 4]))
    res = replay(GRAPH, tm, config=ControllerConfig(max_change=0.34, lag=2), optimum=False)
    assert res.reroute_mlu[3:5] == pytest.approx([1.2, 1.2])
    assert res.reroute_mlu[5] == pytest.approx(0.8)


def test_shortest_path_mlu_and_bad_config() -> None:
    tm = parse_tm_csv(_tm([1, 3]))
    assert shortest_path_mlu(GRAPH, tm, scale=2.0).tolist() == pytest.approx([0.6, 1.8])
    assert np.all(replay(GRAPH, tm, optimum=False).changed == 0)  # 5% of 3 flows = none
    with pytest.raises(RoutingError, match="lag"):
        ControllerConfig(lag=0)
