"""The bandwidth part of ``lab demo --pra``: rates and iperf3's counts (no root)."""

from __future__ import annotations

import json

import pytest

from vnstitch.lab.demo_pra_bandwidth import scaled_rates, udp_result


def test_rates_keep_the_trace_shape_at_the_asked_mean() -> None:
    rates = scaled_rates([1.0, 1.0, 4.0], 20.0)
    assert sum(rates) / 3 == pytest.approx(20.0)
    assert rates[2] / rates[0] == pytest.approx(4.0)
    assert scaled_rates([0.0, 0.0], 5.0) == [5.0, 5.0]  # a flat (empty) trace stays flat


def test_offered_and_delivered_come_from_iperf3s_own_counts() -> None:
    both = {"end": {"sum_sent": {"bytes": 1_250_000}, "sum_received": {"bytes": 1_000_000},
                    "sum": {"bytes": 1_250_000, "lost_percent": 20.0}}}
    assert udp_result(json.dumps(both)) == pytest.approx((10.0, 8.0))
    old = {"end": {"sum": {"bytes": 1_250_000, "lost_percent": 50.0}}}
    assert udp_result(json.dumps(old)) == pytest.approx((10.0, 5.0))
    more = {"end": {"sum_sent": {"bytes": 1_000_000}, "sum_received": {"bytes": 1_100_000}}}
    assert udp_result(json.dumps(more)) == pytest.approx((8.0, 8.0))  # never above offered
    with pytest.raises(KeyError):
        udp_result(json.dumps({"end": {}}))
