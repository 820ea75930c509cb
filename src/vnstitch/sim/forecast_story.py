"""The demo's part 4: forecast a few stitched VNs' traffic and allocate ahead of demand.

Theory of operation
-------------------
*Data.* No files: :func:`synthesise` draws ``DAYS`` days of 5-minute traffic for each VN
in :data:`DEMO_VNS` from the shipped application profiles
(:func:`vnstitch.forecast.profiles.load_profiles`): the profile's diurnal and weekend
``shape`` times the VN's mean rate, times multiplicative log-normal noise whose
coefficient of variation is the profile's ``burstiness``. The log-noise is AR(1)
(``NOISE_AR``) so a burst lasts a few intervals, as real bursts do; its marginal spread
is scaled so the CV stays the profile's. One fixed seed makes the trace deterministic.

*Forecast.* The real ``auto`` forecaster and ``naive`` are fitted on all but the last
day and roll forward over the last day one step ahead (each forecast sees only the
data before it, :func:`vnstitch.forecast.backtest.rolling_forecasts`); the story reports
the normalised MAE of both per VN.

*Allocate.* The last day is replayed per VN through
:func:`vnstitch.allocate.evaluate.evaluate_values` with ``static-p95``, ``reactive`` (the
Kubernetes HPA rule) and ``predictive`` (the newsvendor quantile of the lead-time
``auto`` forecast, calibrated on the end of training). Each VN's under/over cost ratio
comes from its application class (:data:`DEMO_VNS`: an unserved video frame costs more
than a late e-mail), so predictive aims at a different quantile per VN; every policy's
cost is reported at that ratio and at the common ratio 10. The forecasts for allocation
are made once for all VNs (the model fits per series) and sliced per VN.

Pure: arrays in, a plain dict out; printing is the CLI's job (:func:`story_lines`,
:func:`table_rows`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from vnstitch.allocate.evaluate import EvalConfig, evaluate_values
from vnstitch.allocate.forecasts import lead_point_forecasts
from vnstitch.allocate.policy import FloatArray
from vnstitch.allocate.providers.base import ResourceKind
from vnstitch.forecast.backtest import rolling_forecasts
from vnstitch.forecast.profiles import ApplicationProfile, load_profiles

STEP_SECONDS = 300
SEASON = 288  # one day of 5-minute steps
DAYS = 8
#: A Tuesday 00:00: the training week holds a weekend and the test day is a Tuesday.
START_TIME = np.datetime64("2026-11-03T00:00")
SEED = 4
NOISE_AR = 0.6  # lag-one correlation of the log-noise: bursts last a few intervals
#: Steps from deciding a VN's bandwidth to its taking effect on every segment of the path.
LEAD_STEPS = 2
UNIT_MBPS = 0.1  # HTB rates are set in 100 kbit/s steps
#: Days at the end of training that calibrate predictive. The allocator's default is 4;
#: its choice of calibration and churn rules costs time linear in this, and two days
#: keep part 4 to a few seconds while still spanning two daily cycles.
CALIB_DAYS = 2
COMMON_RATIO = 10.0
POLICIES = ("static-p95", "reactive", "predictive")

TimeArray = np.ndarray[Any, np.dtype[np.datetime64]]


@dataclass(frozen=True)
class DemoVN:
    name: str
    profile: str
    mean_mbps: float
    cost_ratio: float  # c_under / c_over for this application class
    why: str


DEMO_VNS: tuple[DemoVN, ...] = (
    DemoVN("video", "video_conferencing", 40.0, 50.0,
           "a dropped frame is seen at once"),
    DemoVN("database", "database_access", 20.0, 10.0, "slow queries stall applications"),
    DemoVN("e-mail", "email", 6.0, 5.0, "mail tolerates a short queue"),
)


def synthesise(profiles: dict[str, ApplicationProfile], vns: tuple[DemoVN, ...] = DEMO_VNS,
               *, days: int = DAYS, seed: int = SEED) -> tuple[FloatArray, TimeArray]:
    """Traffic (steps, VNs) in Mbit/s and its times (see the module docstring)."""
    steps = days * SEASON
    times = START_TIME + np.arange(steps) * np.timedelta64(STEP_SECONDS // 60, "m")
    rng = np.random.default_rng(seed)
    cols = []
    for vn in vns:
        p = profiles[vn.profile]
        sigma = float(np.sqrt(np.log1p(p.burstiness ** 2)))
        shocks = rng.standard_normal(steps) * np.sqrt(1.0 - NOISE_AR ** 2)
        z = np.empty(steps)
        z[0] = rng.standard_normal()
        for t in range(1, steps):
            z[t] = NOISE_AR * z[t - 1] + shocks[t]
        noise = np.exp(sigma * z - sigma ** 2 / 2.0)  # mean 1, CV = burstiness
        cols.append(vn.mean_mbps * p.shape(times) * noise)
    return np.column_stack(cols).astype(np.float64), times


def _nmae(actual: FloatArray, forecast: FloatArray) -> FloatArray:
    return np.asarray(np.abs(actual - forecast).sum(axis=0) / np.abs(actual).sum(axis=0),
                      dtype=np.float64)


def forecast_and_allocate(vns: tuple[DemoVN, ...] = DEMO_VNS, *, seed: int = SEED,
                          profiles: dict[str, ApplicationProfile] | None = None,
                          ) -> dict[str, Any]:
    """Run part 4 and return its figures as a JSON-ready dict."""
    profs = profiles if profiles is not None else load_profiles()
    values, times = synthesise(profs, vns, seed=seed)
    start = values.shape[0] - SEASON
    actual = values[start:]
    errors: dict[str, FloatArray] = {}
    for model in ("auto", "naive"):
        rf = rolling_forecasts(model, values, start, 1, (0.5,), season=SEASON)
        errors[model] = _nmae(actual, rf.mean[:, 0, :])
    base = EvalConfig(resource=ResourceKind.BANDWIDTH, season=SEASON, lead=LEAD_STEPS,
                      unit=UNIT_MBPS, policies=POLICIES, test_steps=SEASON, sweep=False,
                      calib_seasons=CALIB_DAYS)
    calib = base.calib_steps(start)
    paths = lead_point_forecasts(values, start, calib, LEAD_STEPS, model="auto",
                                 season=SEASON)
    out_vns: list[dict[str, Any]] = []
    for n, vn in enumerate(vns):
        cfg = dataclasses.replace(base, c_under=vn.cost_ratio, c_over=1.0)
        mine = dataclasses.replace(paths, center=paths.center[:, [n]])
        res = evaluate_values(values[:, [n]], float(STEP_SECONDS), cfg, mine)
        policies: dict[str, Any] = {}
        for name in POLICIES:
            t = res.tallies[name]
            if name == "predictive":
                # predictive knows the costs: at each ratio it runs at that ratio's quantile
                at_class = res.ratio_tallies.get(vn.cost_ratio, t).cost(vn.cost_ratio)
                at_common = res.ratio_tallies[COMMON_RATIO].cost(COMMON_RATIO)
            else:
                at_class, at_common = t.cost(vn.cost_ratio), t.cost(COMMON_RATIO)
            policies[name] = {"unserved_fraction": t.unserved_fraction, "slack": t.slack,
                              "changes_per_hour": t.changes_per_hour,
                              "cost_at_class_ratio": at_class,
                              "cost_at_ratio_10": at_common}
        out_vns.append({
            "vn": vn.name, "profile": vn.profile, "mean_mbps": vn.mean_mbps,
            "burstiness": profs[vn.profile].burstiness, "cost_ratio": vn.cost_ratio,
            "quantile": cfg.quantile, "why": vn.why,
            "forecast_nmae": {"auto": float(errors["auto"][n]),
                              "naive": float(errors["naive"][n])},
            "peak_mbps_last_day": float(actual[:, n].max()),
            "policies": policies})
    return {"seed": seed, "days": DAYS, "step_seconds": STEP_SECONDS,
            "train_days": DAYS - 1, "test_day": str(times[start].astype("datetime64[D]")),
            "lead_steps": LEAD_STEPS, "calib_days": CALIB_DAYS, "unit_mbps": UNIT_MBPS,
            "forecaster": "auto",
            "common_ratio": COMMON_RATIO, "vns": out_vns}


def story_lines(r: dict[str, Any]) -> list[str]:
    """A short numbered story of part 4."""
    vns = r["vns"]
    lines = [
        f"1. {len(vns)} stitched VNs, {r['days']} days of {r['step_seconds'] // 60}-minute "
        "traffic drawn from the shipped application profiles (seed "
        f"{r['seed']}): " + ", ".join(
            f"{v['vn']} ({v['profile']}, {v['mean_mbps']:g} Mbit/s mean, burstiness "
            f"{v['burstiness']:g})" for v in vns) + ".",
        f"2. The auto forecaster, fitted on the first {r['train_days']} days, forecasts "
        f"the last day ({r['test_day']}) one step ahead: normalised MAE " + "; ".join(
            f"{v['vn']} {v['forecast_nmae']['auto']:.1%} vs naive "
            f"{v['forecast_nmae']['naive']:.1%}" for v in vns) + ".",
        "3. Each VN's cost of an unserved Mbit against an idle one comes from its class, "
        "so predictive reserves up to a different quantile of its forecast: " + "; ".join(
            f"{v['vn']} {v['cost_ratio']:g}:1 -> q={v['quantile']:.3f} ({v['why']})"
            for v in vns) + ".",
    ]
    wins = [v["vn"] for v in vns if v["policies"]["predictive"]["cost_at_class_ratio"]
            < min(v["policies"][p]["cost_at_class_ratio"] for p in POLICIES
                  if p != "predictive")]
    lines.append(
        f"4. Replaying the last day with a {r['lead_steps'] * r['step_seconds'] // 60}-minute "
        "lead time (cost = (ratio x unserved + idle) / demand), predictive costs least at "
        f"the class ratio on {len(wins)} of {len(vns)} VNs"
        + (f" ({', '.join(wins)})" if wins else "") + ".")
    return lines


def table_rows(r: dict[str, Any]) -> list[tuple[object, ...]]:
    """One row per VN and policy: unserved %, slack %, costs at the class ratio and 10."""
    rows: list[tuple[object, ...]] = []
    for v in r["vns"]:
        for name in POLICIES:
            p = v["policies"][name]
            rows.append((f"{v['vn']}  {v['cost_ratio']:g}:1" if name == POLICIES[0] else "",
                         name, f"{p['unserved_fraction']:.2%}", f"{p['slack']:.1%}",
                         f"{p['cost_at_class_ratio']:.3f}", f"{p['cost_at_ratio_10']:.3f}"))
    return rows


TABLE_COLUMNS = ("VN  c_u:c_o", "policy", "unserved", "slack", "cost @ class",
                 "cost @ 10:1")
