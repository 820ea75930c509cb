"""Baselines replayed over small traces: timing (lead), static levels, the HPA rule."""

from __future__ import annotations

import numpy as np

from vnstitch.allocate.baselines import (
    oracle_units,
    reactive_units,
    static_units,
)


def test_static_levels_from_training_only() -> None:
    values = np.array([[1.0], [9.0], [5.0], [100.0], [100.0]])
    peak = static_units(values, 3, 1.0, statistic="peak")
    assert peak.shape == (2, 1) and (peak == 9).all()
    p95 = static_units(values, 3, 1.0, statistic="p95", headroom=1.2)
    assert (p95 == int(np.ceil(np.percentile([1, 9, 5], 95) * 1.2))).all()


def test_reactive_is_the_hpa_rule_with_tolerance() -> None:
    # Demand 100 at target 0.5 and unit 10: desired = ceil(100 / (10 * 0.5)) = 20.
    values = np.full((6, 1), 100.0)
    got = reactive_units(values, 3, 1, 10.0, target_utilisation=0.5, step_seconds=300)
    assert (got == 20).all()
    # Within 10% of the target nothing moves: 19 units at 0.5 -> utilisation 0.526.
    values = np.array([[95.0], [100.0], [100.0], [100.0]])
    got = reactive_units(values, 2, 1, 10.0, target_utilisation=0.5, step_seconds=300)
    assert (got == 19).all()


def test_reactive_lead_time_delays_the_effect() -> None:
    values = np.array([[10.0]] * 4 + [[40.0]] * 4)
    lead1 = reactive_units(values, 2, 1, 1.0, target_utilisation=1.0, step_seconds=300)
    lead2 = reactive_units(values, 2, 2, 1.0, target_utilisation=1.0, step_seconds=300)
    # Step 4 jumps to 40: lead 1 reacts at step 5, lead 2 at step 6.
    assert lead1[:, 0].tolist() == [10, 10, 10, 40, 40, 40]
    assert lead2[:, 0].tolist() == [10, 10, 10, 10, 40, 40]


def test_reactive_scale_down_stabilisation_window() -> None:
    # With 60 s steps a 300 s window keeps the highest of the last 5 recommendations.
    values = np.array([[50.0]] * 5 + [[10.0]] * 10)
    got = reactive_units(values, 1, 1, 1.0, target_utilisation=1.0, step_seconds=60,
                         stabilisation_seconds=300)[:, 0]
    first_low = 6  # value index 5 is the first 10, seen by decision 6
    assert got[first_low - 1 + 3] == 50  # still held 3 decisions later
    assert got[-1] == 10
    # At 5-minute steps the HPA (syncing every 15 s) still holds the previous
    # observation's recommendation for 285 of the 300 s: one step later, then down.
    fast = reactive_units(values, 1, 1, 1.0, target_utilisation=1.0, step_seconds=300)[:, 0]
    assert fast[first_low - 1] == 50
    assert fast[first_low] == 10
    # Without the sync period (one evaluation per step) nothing would be held.
    once = reactive_units(values, 1, 1, 1.0, target_utilisation=1.0, step_seconds=300,
                          sync_seconds=300)[:, 0]
    assert once[first_low - 1] == 10


def test_oracle_units() -> None:
    values = np.array([[1.0, 2.0], [3.0, 4.5]])
    assert oracle_units(values, 0, 1.0).tolist() == [[1, 2], [3, 5]]
