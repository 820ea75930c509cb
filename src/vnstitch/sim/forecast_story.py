"""The demo's part 4: forecast a few stitched VNs' traffic and allocate ahead of demand.

Theory of operation
-------------------
*Data.* Real traffic when it is there: with the shared data present
(``$VNSTITCH_DATA`` or ``../shared/data``, :func:`vnstitch.datapath.shared_data_dir`) each
VN in :data:`DEMO_VNS` carries one real Abilene origin-destination flow
(``abilene/abilene_tm_5min.csv.gz``, the ``DAYS`` days of 5-minute matrices ending with
the file's last whole weekday, which is the test day, as the synthetic one is; the
VNs take the flows with the most training traffic, biggest first), and the story says
so. Otherwise :func:`synthesise` draws ``DAYS`` days of 5-minute traffic for each VN from
the shipped application profiles (:func:`vnstitch.forecast.profiles.load_profiles`): the
profile's diurnal and weekend ``shape`` times the VN's mean rate, times multiplicative
log-normal noise whose coefficient of variation is the profile's ``burstiness``. The
log-noise is AR(1) (``NOISE_AR``) so a burst lasts a few intervals, as real bursts do;
its marginal spread is scaled so the CV stays the profile's. One fixed seed makes the
trace deterministic. :func:`demo_traffic` picks the source; the story names it.

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
are made once for all VNs (the model fits per series) and sliced per VN. Every change
of a VN's predictive reservation over the last day is a *decision* (made ``LEAD_STEPS``
steps before the step it is for); the story shows the first few as they happen.

Pure apart from :func:`demo_traffic` reading the data file it names: arrays in, a plain
dict out; printing is the CLI's job (:func:`story_lines`, :func:`table_rows`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vnstitch.allocate.evaluate import EvalConfig, evaluate_values
from vnstitch.allocate.forecasts import lead_point_forecasts
from vnstitch.allocate.policy import FloatArray
from vnstitch.allocate.providers.base import ResourceKind
from vnstitch.datapath import shared_data_dir
from vnstitch.forecast.backtest import rolling_forecasts
from vnstitch.forecast.data import load_series
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
ABILENE_TM = Path("abilene") / "abilene_tm_5min.csv.gz"
#: Abilene's router codes in the traffic matrix -> the PoP names of the topology.
ABILENE_POPS = {"ATLA": "Atlanta", "CHIN": "Chicago", "DNVR": "Denver", "HSTN": "Houston",
                "IPLS": "Indianapolis", "KSCY": "Kansas City", "LOSA": "Los Angeles",
                "NYCM": "New York", "SNVA": "Sunnyvale", "STTL": "Seattle",
                "WASH": "Washington DC"}


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


@dataclass(frozen=True)
class DemoTraffic:
    values: FloatArray  # (steps, VNs), Mbit/s
    times: TimeArray
    #: Where the traffic comes from, in words, and each VN's flow (or profile).
    source: str
    flows: tuple[str, ...]
    real: bool


def _last_weekday_end(times: TimeArray) -> int:
    """End (exclusive) of the last whole weekday in ``times``: the test day is a working
    day, as the synthetic one is (a weekend day's traffic is another regime)."""
    days = times.astype("datetime64[D]")
    end = len(times)
    while end >= (DAYS + 1) * SEASON:
        day = days[end - SEASON]
        weekday = int((day.astype(np.int64) + 3) % 7)  # 1970-01-01 was a Thursday
        if weekday < 5 and (days[end - SEASON:end] == day).all():
            return end
        end -= SEASON
    return len(times)


def _pop(code: str) -> str:
    return ABILENE_POPS.get(code[:4], code)


def demo_traffic(vns: tuple[DemoVN, ...] = DEMO_VNS, *, data_dir: Path | None = None,
                 seed: int = SEED, profiles: dict[str, ApplicationProfile] | None = None,
                 ) -> DemoTraffic:
    """Real Abilene flows when the shared data is present, else the shipped profiles."""
    folder = data_dir if data_dir is not None else shared_data_dir()
    if folder is not None and (folder / ABILENE_TM).is_file():
        data = load_series(folder / ABILENE_TM, season=SEASON)
        end = _last_weekday_end(data.times)
        values, times = data.values[end - DAYS * SEASON:end], data.times[end - DAYS * SEASON:end]
        # Flows between two different PoPs (the matrix also has a second Atlanta router),
        # the most training traffic first.
        ok = [j for j, name in enumerate(data.names)
              if _pop(name.split("->")[0]) != _pop(name.split("->")[-1])]
        train = values[:-SEASON, ok].sum(axis=0)
        picks = [ok[j] for j in np.argsort(-train, kind="stable")[:len(vns)]]
        flows = tuple(" -> ".join(_pop(x) for x in data.names[j].split("->")) for j in picks)
        return DemoTraffic(np.ascontiguousarray(values[:, picks], dtype=np.float64),
                           times.astype("datetime64[m]"),
                           f"real Abilene traffic matrices ({folder / ABILENE_TM})",
                           flows, True)
    values, times = synthesise(profiles if profiles is not None else load_profiles(), vns,
                               seed=seed)
    return DemoTraffic(values, times, "the shipped application profiles (no real data "
                       "found: set VNSTITCH_DATA to use the Abilene matrices)",
                       tuple(f"{vn.profile} profile" for vn in vns), False)


def _decisions(times: TimeArray, start: int, demand: FloatArray, alloc: FloatArray,
               ) -> list[dict[str, Any]]:
    """Every change of the reservation: when it was decided, for when, to what."""
    out: list[dict[str, Any]] = []
    step = np.timedelta64(STEP_SECONDS // 60, "m")
    for t in range(alloc.size):
        if t > 0 and abs(alloc[t] - alloc[t - 1]) < 1e-9:
            continue
        at = times[start + t]
        out.append({"decided_at": str((at - LEAD_STEPS * step).astype("datetime64[m]")),
                    "for": str(at.astype("datetime64[m]")),
                    "from_mbps": float(alloc[t - 1]) if t > 0 else None,
                    "mbps": float(alloc[t]), "demand_mbps": float(demand[t])})
    return out


def _nmae(actual: FloatArray, forecast: FloatArray) -> FloatArray:
    return np.asarray(np.abs(actual - forecast).sum(axis=0) / np.abs(actual).sum(axis=0),
                      dtype=np.float64)


def forecast_and_allocate(vns: tuple[DemoVN, ...] = DEMO_VNS, *, seed: int = SEED,
                          profiles: dict[str, ApplicationProfile] | None = None,
                          traffic: DemoTraffic | None = None,
                          ) -> dict[str, Any]:
    """Run part 4 and return its figures as a JSON-ready dict. ``traffic``: the VNs'
    traffic (default: :func:`demo_traffic`, real when the shared data is present)."""
    profs = profiles if profiles is not None else load_profiles()
    tr = traffic if traffic is not None else demo_traffic(vns, seed=seed, profiles=profs)
    values, times = tr.values, tr.times
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
        # predictive only at the two ratios the story reports (each costs a calibration)
        cfg = dataclasses.replace(base, c_under=vn.cost_ratio, c_over=1.0,
                                  ratios=tuple(sorted({vn.cost_ratio, COMMON_RATIO})))
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
        mean = float(values[:start, n].mean())
        out_vns.append({
            "vn": vn.name, "profile": vn.profile, "flow": tr.flows[n],
            "mean_mbps": mean if tr.real else vn.mean_mbps,
            "burstiness": (float(values[:start, n].std()) / mean if tr.real and mean > 0
                           else profs[vn.profile].burstiness),
            "cost_ratio": vn.cost_ratio,
            "quantile": cfg.quantile, "why": vn.why,
            "forecast_nmae": {"auto": float(errors["auto"][n]),
                              "naive": float(errors["naive"][n])},
            "peak_mbps_last_day": float(actual[:, n].max()),
            "decisions": _decisions(times, start, actual[:, n],
                                    res.alloc_total["predictive"]),
            "policies": policies})
    return {"seed": seed, "source": tr.source, "real_data": tr.real,
            "days": DAYS, "step_seconds": STEP_SECONDS,
            "train_days": DAYS - 1, "test_day": str(times[start].astype("datetime64[D]")),
            "lead_steps": LEAD_STEPS, "calib_days": CALIB_DAYS, "unit_mbps": UNIT_MBPS,
            "forecaster": "auto",
            "common_ratio": COMMON_RATIO, "vns": out_vns}


def story_lines(r: dict[str, Any]) -> list[str]:
    """A short numbered story of part 4."""
    vns = r["vns"]
    lines = [
        f"1. {len(vns)} stitched VNs, {r['days']} days of {r['step_seconds'] // 60}-minute "
        f"traffic from {r['source']}: " + ", ".join(
            f"{v['vn']} ({v['flow']}, {v['mean_mbps']:.3g} Mbit/s mean, burstiness "
            f"{v['burstiness']:.2g})" for v in vns) + ".",
        f"2. The auto forecaster, fitted on the first {r['train_days']} days, forecasts "
        f"the last day ({r['test_day']}) one step ahead: normalised MAE " + "; ".join(
            f"{v['vn']} {v['forecast_nmae']['auto']:.1%} vs naive "
            f"{v['forecast_nmae']['naive']:.1%}" for v in vns) + ".",
        "3. Each VN's cost of an unserved Mbit against an idle one comes from its class, "
        "so predictive reserves up to a different quantile of its forecast: " + "; ".join(
            f"{v['vn']} {v['cost_ratio']:g}:1 -> q={v['quantile']:.3f} ({v['why']})"
            for v in vns) + ".",
    ]
    lines += decision_lines(r)
    wins = [v["vn"] for v in vns if v["policies"]["predictive"]["cost_at_class_ratio"]
            < min(v["policies"][p]["cost_at_class_ratio"] for p in POLICIES
                  if p != "predictive")]
    lines.append(
        f"5. Replaying the last day with a {r['lead_steps'] * r['step_seconds'] // 60}-minute "
        "lead time (cost = (ratio x unserved + idle) / demand), predictive costs least at "
        f"the class ratio on {len(wins)} of {len(vns)} VNs"
        + (f" ({', '.join(wins)})" if wins else "") + ".")
    return lines


def decision_lines(r: dict[str, Any], first: int = 6) -> list[str]:
    """The first ``first`` reservation changes of the last day, in time order."""
    every = sorted(((d, v) for v in r["vns"] for d in v["decisions"] if d["from_mbps"]
                    is not None), key=lambda dv: (dv[0]["for"], dv[1]["vn"]))
    lines = [f"4. Predictive decides every {r['step_seconds'] // 60} minutes, "
             f"{r['lead_steps'] * r['step_seconds'] // 60} minutes ahead; its first "
             "changes of the last day:"]
    for d, v in every[:first]:
        served = d["mbps"] >= d["demand_mbps"]
        lines.append(
            f"   {d['decided_at'][11:16]}  {v['vn']}: {d['from_mbps']:.1f} -> "
            f"{d['mbps']:.1f} Mbit/s for {d['for'][11:16]}; demand then "
            f"{d['demand_mbps']:.1f} Mbit/s, "
            + ("served" if served else f"{d['demand_mbps'] - d['mbps']:.1f} Mbit/s short"))
    lines.append(f"   ... {len(every)} changes in all over the day ("
                 + ", ".join(f"{v['vn']} {len(v['decisions']) - 1}" for v in r["vns"])
                 + "; every one in --json)")
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
