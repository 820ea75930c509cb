"""Metrics from sums, pooling, and the trade-off curve comparison."""

from __future__ import annotations

import numpy as np
import pytest

from vnstitch.allocate.metrics import TradeoffPoint, curve_below, summary, tally


def test_tally_metrics() -> None:
    demand = np.array([[10.0], [10.0], [10.0], [10.0]])
    alloc = np.array([[12.0], [8.0], [8.0], [10.0]])
    t = tally(demand, alloc, 300.0)
    assert t.under_rate == 0.5
    assert t.unserved_fraction == pytest.approx(4 / 40)
    assert t.slack == pytest.approx(2 / 40)
    assert t.changes_per_hour == pytest.approx(2 / (4 * 300 / 3600))
    assert t.cost(10) == pytest.approx((10 * 4 + 2) / 40)
    pooled = t.add(t)
    assert pooled.unserved_fraction == t.unserved_fraction
    out = summary(t)
    assert set(out) == {"under_rate", "unserved_fraction", "slack", "changes_per_hour",
                        "total_cost"}
    costs = out["total_cost"]
    assert isinstance(costs, dict) and set(costs) == {"1", "5", "10", "50"}


def test_curve_below() -> None:
    good = [TradeoffPoint(k, s, u) for k, s, u in [(1, 0.1, 0.02), (2, 0.5, 0.005), (3, 1.0, 0.0)]]
    bad = [TradeoffPoint(k, s, u) for k, s, u in [(1, 0.1, 0.08), (2, 0.5, 0.03), (3, 1.0, 0.01)]]
    assert curve_below(good, bad).below
    assert not curve_below(bad, good).below
