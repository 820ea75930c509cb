"""Orders replayed through the sim provider: exact equivalence, then delays, quotas, outages."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from vnstitch.allocate.baselines import POLICIES
from vnstitch.allocate.errors import AllocateError
from vnstitch.allocate.evaluate import EvalConfig, TraceResult, evaluate_values
from vnstitch.allocate.forecasts import lead_point_forecasts
from vnstitch.allocate.policy import FloatArray, IntArray
from vnstitch.allocate.providers.base import ResourceKey, ResourceKind
from vnstitch.allocate.provision import (
    ProviderTally,
    SimSettings,
    provision,
    replay_series,
    targets,
)
from vnstitch.cli import main

DT = 300.0
KIND = ResourceKind.COMPUTE


def replay(units: list[int], lead: int, settings: SimSettings, start: int = 10,
           ) -> tuple[FloatArray, ProviderTally]:
    provider = settings.build(KIND, lead, DT, start * DT)
    return replay_series(np.array(units), start=start, lead=lead, step_seconds=DT,
                         provider=provider, key=ResourceKey(KIND, "s"))


def test_targets_hold_the_max_of_the_decided_steps() -> None:
    assert targets([5, 3, 8, 2], 1) == [5, 3, 8, 2]
    # Boundary j serves window steps j-1 and j (lead 2): decided and not over.
    assert targets([5, 3, 8, 2], 2) == [5, 5, 8, 8, 2]
    assert targets([5, 3, 8, 2], 3) == [5, 5, 8, 8, 8, 2]


@pytest.mark.parametrize("lead", [1, 2, 3, 5])
def test_default_delay_gives_exactly_the_orders(lead: int) -> None:
    rng = np.random.default_rng(lead)
    units = rng.integers(0, 12, size=(200, 3))
    got = provision(units, start=50, lead=lead, step_seconds=DT, kind=KIND,
                    settings=SimSettings(price_per_unit_hour=2.0))
    assert np.array_equal(got.usable, units.astype(np.float64))
    t = got.tally
    assert t.refused == t.failed == 0 and t.granted > 0
    assert t.bill == pytest.approx(2.0 * t.unit_hours)
    # Booting ahead and holding for later steps costs something, never less than ordered.
    assert t.unit_hours >= t.ordered_unit_hours - 1e-9
    if lead == 1:
        assert t.unit_hours == pytest.approx(t.ordered_unit_hours)


def test_longer_boot_delay_makes_rises_late_and_partial() -> None:
    units = [2] * 5 + [6] * 5 + [3] * 5
    lead = 2
    exact, _ = replay(units, lead, SimSettings())
    assert list(exact) == units  # control: the delay the replay assumes
    # Half a step longer than assumed: the rise is usable for the second half of step 5.
    half, _ = replay(units, lead, SimSettings(boot_delay=(lead - 1) * DT + DT / 2))
    assert half[5] == pytest.approx(0.5 * 2 + 0.5 * 6)
    assert list(half[:5]) == units[:5] and list(half[6:]) == units[6:]
    # Two steps longer: steps 5 and 6 run on the old amount; scale-ins are never late.
    late, _ = replay(units, lead, SimSettings(boot_delay=(lead + 1) * DT))
    assert list(late[5:7]) == [2, 2] and list(late[7:]) == units[7:]
    # Control: a constant order is immune to boot delays (the window starts warm).
    flat, _ = replay([4] * 15, lead, SimSettings(boot_delay=10 * DT))
    assert list(flat) == [4] * 15


def test_quota_below_the_peak_caps_usable_and_counts_refusals() -> None:
    units = [2, 3, 7, 9, 4, 2]
    capped, t = replay(units, 1, SimSettings(quota=5))
    assert list(capped) == [min(u, 5) for u in units]
    assert t.refused == 2  # both steps above the quota, then granted at the quota
    whole, _ = replay(units, 1, SimSettings(quota=5.5))  # granted in whole units
    assert list(whole) == list(capped)
    control, tc = replay(units, 1, SimSettings(quota=9))
    assert list(control) == units and tc.refused == 0


def test_outage_fails_scale_outs_inside_it_and_recovers_after() -> None:
    units = [2] * 4 + [6] * 4 + [1] * 4
    lead = 2
    # Test window starts at step 10: the rise for window step 4 is ordered at window
    # step 3's start (1 step ahead), i.e. 900 s into the window; fail [800, 1300).
    out, t = replay(units, lead, SimSettings(outages=((800.0, 1300.0),)))
    assert t.failed == 2  # the orders at 900 s and 1200 s
    assert list(out[4:6]) == [2, 2]  # still the old amount while the order fails
    assert list(out[6:]) == units[6:]  # the order at 1500 s succeeds, ready at 1800 s
    # A scale-in inside an outage fails too: usable stays as ordered, the bill grows.
    _, t_in = replay(units, lead, SimSettings(outages=((7 * DT, 9 * DT),)))
    _, t_ok = replay(units, lead, SimSettings())
    assert t_in.failed > 0 and t_in.bill > t_ok.bill
    # Control: an outage where nothing changes has no effect.
    quiet, tq = replay(units, lead, SimSettings(outages=((0.0, 500.0),)))
    assert list(quiet) == units and tq.failed == 0


def test_settings_reject_bad_values() -> None:
    with pytest.raises(AllocateError, match="boot delay"):
        SimSettings(boot_delay=-1)
    with pytest.raises(AllocateError, match="quota"):
        SimSettings(quota=0)
    with pytest.raises(AllocateError, match="price"):
        SimSettings(price_per_unit_hour=math.nan)
    with pytest.raises(AllocateError, match="outage"):
        SimSettings(outages=((5.0, 5.0),))


# --- the evaluation, all five policies -------------------------------------------------

SEASON = 24


def random_trace(seed: int, n: int = SEASON * 14) -> FloatArray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)[:, None]
    base = 40 + 25 * np.sin(2 * np.pi * t / SEASON + rng.uniform(0, 6, 2))
    return np.maximum(0.0, base + rng.normal(0, 6, (n, 2)) + 15 * (rng.random((n, 2)) < .05))


def run_eval(values: FloatArray, lead: int, provider: SimSettings | None) -> TraceResult:
    cfg = EvalConfig(KIND, SEASON, lead, 10.0, sweep=False, provider=provider)
    start = cfg.split(values.shape[0])
    paths = lead_point_forecasts(values, start, cfg.calib_steps(start), lead,
                                 model="seasonal_naive", season=SEASON)
    return evaluate_values(values, DT, cfg, paths)


@pytest.mark.parametrize(("seed", "lead"), [(3, 1), (4, 2), (5, 3)])
def test_equivalent_provider_leaves_every_tally_unchanged(seed: int, lead: int) -> None:
    values = random_trace(seed)
    plain = run_eval(values, lead, None)
    sim = run_eval(values, lead, SimSettings())
    assert set(sim.tallies) == set(POLICIES) == set(sim.provider)
    assert sim.tallies == plain.tallies
    assert sim.ratio_tallies == plain.ratio_tallies
    assert not plain.provider
    assert all(p.bill > 0 and p.granted > 0 for p in sim.provider.values())


def test_delay_quota_outage_raise_unserved_with_controls() -> None:
    values = random_trace(7)
    lead = 2
    base = run_eval(values, lead, SimSettings())
    slow = run_eval(values, lead, SimSettings(boot_delay=3 * DT))
    peak_units = int(np.ceil(values.max() / 10.0))
    quota = run_eval(values, lead, SimSettings(quota=peak_units - 2))
    down = run_eval(values, lead, SimSettings(outages=((0.0, SEASON * DT),)))
    for name in ("reactive", "predictive", "oracle"):
        b = base.tallies[name].unserved_fraction
        assert slow.tallies[name].unserved_fraction > b
        assert quota.tallies[name].unserved_fraction > b
        assert down.provider[name].failed > 0
        assert down.tallies[name].unserved_fraction >= b
    assert down.tallies["oracle"].unserved_fraction > base.tallies["oracle"].unserved_fraction
    # Controls: constant orders do not feel boot delays or outages.
    for name in ("static-peak", "static-p95"):
        assert slow.tallies[name] == base.tallies[name]
        assert down.tallies[name] == base.tallies[name] and down.provider[name].failed == 0
    assert (quota.tallies["static-peak"].unserved_fraction
            > base.tallies["static-peak"].unserved_fraction)
    assert quota.provider["static-peak"].refused > 0 == base.provider["static-peak"].refused


# --- CLI -----------------------------------------------------------------------------------

def write_trace(path: Path, n: int = 288 * 4) -> Path:
    rng = np.random.default_rng(1)
    t = np.arange(n)
    v = np.round(50 + 30 * np.sin(2 * np.pi * t / 288) + rng.normal(0, 3, n), 3)
    lines = ["timestamp,value"]
    for i, x in enumerate(v):
        h, m = divmod(i * 5, 60)
        d, h = divmod(h, 24)
        lines.append(f"2014-02-{14 + d:02d} {h:02d}:{m:02d}:00,{x}")
    path.write_text("\n".join(lines) + "\n")
    return path


BASE_ARGS = ["allocate", "evaluate", "--resource", "compute", "--season", "288",
             "--lead-time", "2", "--unit", "25", "--model", "seasonal_naive", "--no-sweep",
             "--json"]


@pytest.mark.parametrize(("extra", "flag"), [
    (["--boot-delay", "60"], "--boot-delay"),  # without --provider
    (["--outage", "0-60"], "--outage"),
    (["--provider", "sim", "--boot-delay", "-5"], "--boot-delay"),
    (["--provider", "sim", "--quota", "0"], "--quota"),
    (["--provider", "sim", "--price-per-unit-hour", "-1"], "--price-per-unit-hour"),
    (["--provider", "sim", "--outage", "3600"], "--outage"),
    (["--provider", "sim", "--outage", "7200-3600"], "--outage"),
])
def test_bad_provider_flags_name_the_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          extra: list[str], flag: str) -> None:
    trace = write_trace(tmp_path / "t.csv")
    assert main([*BASE_ARGS, "--data", str(trace), *extra]) == 2
    assert flag in capsys.readouterr().err


def test_json_with_provider_adds_bills_and_nothing_else(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = write_trace(tmp_path / "t.csv")
    assert main([*BASE_ARGS, "--data", str(trace)]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert "provider" not in plain
    assert main([*BASE_ARGS, "--data", str(trace), "--provider", "sim",
                 "--price-per-unit-hour", "0.5"]) == 0
    sim = json.loads(capsys.readouterr().out)
    assert sim["provider"]["price_per_unit_hour"] == 0.5
    for name, m in sim["policies"].items():
        bill = m.pop("provider")
        assert {"bill", "unit_hours", "granted", "refused", "failed"} <= set(bill)
        assert bill["bill"] == pytest.approx(0.5 * bill["unit_hours"])
        assert m == plain["policies"][name]  # the default delay is the replay's own timing
    assert main([*BASE_ARGS, "--data", str(trace), "--provider", "sim", "--boot-delay", "1200",
                 "--quota", "3", "--outage", "0-3600", "--outage", "86400-90000"]) == 0
    hard = json.loads(capsys.readouterr().out)
    assert hard["provider"]["outages"] == [[0.0, 3600.0], [86400.0, 90000.0]]
    assert (hard["policies"]["oracle"]["unserved_fraction"]
            > plain["policies"]["oracle"]["unserved_fraction"])


def test_units_must_be_two_dimensional() -> None:
    units: IntArray = np.zeros(5, dtype=np.int64)
    with pytest.raises(AllocateError, match="2-D"):
        provision(units, start=3, lead=1, step_seconds=DT, kind=KIND, settings=SimSettings())
