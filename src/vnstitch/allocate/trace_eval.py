"""Evaluate allocation policies on demand-trace files and pool the results.

Theory of operation: :func:`run_evaluation` reads each file with the forecasting layer's
loader (wide or ``timestamp,value`` CSV, plain or gzipped; bad rows rejected with file
and line, gaps repaired and reported), asks the forecaster for lead-time forecasts over
the test window (the main model and any ``choose_from`` alternatives predictive may
follow), runs :func:`vnstitch.allocate.evaluate.evaluate_values` per file, pools the
tallies and returns one JSON-ready dict beside the pooled
:class:`~vnstitch.allocate.evaluate.TraceResult`. No printing: ``on_step(description)``
is called once per unit of work (:func:`evaluation_steps` of them) so a caller can draw
a progress bar. ``vnstitch allocate evaluate`` and the allocation benchmarks are thin
layers over it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vnstitch.allocate.baselines import POLICIES
from vnstitch.allocate.errors import AllocateError
from vnstitch.allocate.evaluate import EvalConfig, TraceResult, evaluate_values
from vnstitch.allocate.forecasts import lead_point_forecasts
from vnstitch.allocate.metrics import curve_below, summary
from vnstitch.forecast import MODEL_NAMES
from vnstitch.forecast.data import load_series


def evaluation_steps(files: list[str], cfg: EvalConfig) -> int:
    """How many times :func:`run_evaluation` calls ``on_step`` for ``files``."""
    return len(files) * (2 + len(cfg.policies) + int(cfg.sweep))


def model_list(text: str, model: str) -> tuple[str, ...]:
    """``--choose-from``: the other forecasters, without ``model`` and repeats."""
    out: list[str] = []
    for name in (t.strip() for t in text.split(",")):
        if name and name != model and name not in out:
            if name not in MODEL_NAMES:
                raise AllocateError(f"--choose-from: unknown model {name!r}; known: "
                                    f"{', '.join(MODEL_NAMES)}")
            out.append(name)
    return tuple(out)


def run_evaluation(files: list[str], cfg: EvalConfig, model: str, *,
                   choose_from: tuple[str, ...] = (),
                   on_step: Callable[[str], None] | None = None,
                   ) -> tuple[dict[str, Any], TraceResult]:
    """Evaluate every file, pool the results; returns (JSON-ready dict, pooled result).

    ``choose_from``: other forecasters predictive may follow per series (training choice).
    ``on_step(what)``: called after each unit of work (progress).
    """
    step = on_step or (lambda _what: None)
    pooled: TraceResult | None = None
    info: list[dict[str, Any]] = []
    fit_s = pred_s = 0.0
    for path in files:
        data = load_series(path, season=cfg.season)
        start = cfg.split(data.values.shape[0])
        step(f"loaded {Path(path).name}")
        paths = None
        alternatives = []
        model_notes: list[str] = []
        if "predictive" in cfg.policies:
            for name in (model, *choose_from):
                got = lead_point_forecasts(data.values, start, cfg.calib_steps(start),
                                           cfg.lead, model=name, season=cfg.season)
                model_notes += [n for n in got.notes if n not in model_notes]
                fit_s += got.fit_seconds
                pred_s += got.predict_seconds
                if paths is None:
                    paths = got
                else:
                    alternatives.append(got)
        step(f"forecast {Path(path).name}")

        def tick(name: str) -> None:
            step(f"{Path(path).name}: {name}")  # noqa: B023

        res = evaluate_values(data.values, float(data.step_seconds), cfg, paths, tick,
                              alternatives=alternatives)
        pooled = res if pooled is None else pooled.merge(res)
        info.append({"file": str(path), "series": data.n_series,
                     "steps": int(data.values.shape[0]), "train_steps": start,
                     "test_steps": int(data.values.shape[0] - start),
                     "step_seconds": data.step_seconds,
                     "repairs": list(data.repairs), "notes": list(data.notes),
                     "model_notes": model_notes})
    if pooled is None:
        raise AllocateError("--data: no file given")
    return result_dict(pooled, cfg, model, info=info, fit_s=fit_s, pred_s=pred_s), pooled


def result_dict(res: TraceResult, cfg: EvalConfig, model: str, *,
                 info: list[dict[str, Any]], fit_s: float, pred_s: float) -> dict[str, Any]:
    policies = {name: summary(res.tallies[name], res.policy_costs(name))
                for name in POLICIES if name in res.tallies}
    for name, bill in res.provider.items():
        if name in policies:
            policies[name]["provider"] = bill.summary()
    out: dict[str, Any] = {"policies": policies}
    out["resource"] = cfg.resource.value
    out["lead_time"] = cfg.lead
    out["unit"] = cfg.unit
    out["quantile"] = cfg.quantile
    out["forecaster"] = {"model": model, "fit_seconds": fit_s, "predict_seconds": pred_s}
    out["data"] = info
    if cfg.provider is not None:
        p = cfg.provider
        out["provider"] = {"name": "sim", "boot_delay_seconds": p.boot_delay,
                           "quota": None if math.isinf(p.quota) else p.quota,
                           "price_per_unit_hour": p.price_per_unit_hour,
                           "outages": [list(o) for o in p.outages]}
    if res.choices:
        # What predictive chose on the training window, per file and cost ratio.
        out["predictive_choices"] = res.choices
    out["repairs"] = [f"{d['file']}: {r}" for d in info for r in d["repairs"]]
    # forecaster fallbacks (e.g. naive for a series a model could not fit), not errors
    out["model_notes"] = [f"{d['file']}: {n}" for d in info for n in d.get("model_notes", [])]
    if res.curves:
        out["tradeoff"] = {
            name: [{"knob": p.knob, "slack": p.slack, "unserved_fraction": p.unserved}
                   for p in res.points(name)] for name in res.curves}
        out["best_in_hindsight"] = {
            name: {f"{r:g}": c for r, c in res.best_in_hindsight(name).items()}
            for name in res.curves if name != "predictive"}
        if "predictive" in res.curves:
            out["predictive_curve_below"] = {}
            for name in res.curves:
                if name == "predictive":
                    continue
                cmp = curve_below(res.points("predictive"), res.points(name))
                out["predictive_curve_below"][name] = {
                    "below": cmp.below, "slack_range": list(cmp.slack_range),
                    "worst_margin": cmp.worst_margin}
    return out
