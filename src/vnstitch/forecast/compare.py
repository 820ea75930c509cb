"""Compare forecasting models on one series set: rolling-origin backtests, scored.

Theory of operation: :func:`run_backtest` fits each model on everything before the last
``test_steps`` rows and scores the forecasts made at every origin of the test span
(each uses only data before it; :mod:`vnstitch.forecast.backtest`).
:func:`model_options` gives the options a model needs for a horizon (models trained or
selected for it), :func:`top_series` picks the series with the most training traffic.
``vnstitch forecast backtest`` and the forecasting benchmark are thin layers over it.

*Many series, many workers.* Given an ``engine`` (anything with the sweep engines'
``map(fn, tasks)``: a process pool or Ray), :func:`run_backtest` splits the series into
chunks and backtests each chunk in a worker, with the same forecasts as one process:

* most models forecast each series from that series alone (vectorised over series);
  ``lagreg`` also uses the **network total**, which is computed here from all series
  before chunking and handed to every chunk (``network_total``);
* ``auto`` makes **one pooled choice** for the whole set: each chunk returns its
  candidates' per-series training errors and its forecasts under every candidate;
  the choice is then made here over all series with the same rule
  (:func:`~vnstitch.forecast.auto.pooled_choice`) and the chosen forecasts are kept;
* whether a model clips at zero or works on a log scale depends on the whole training
  window being non-negative, so that is decided here too and passed to every chunk;
* ``lstm`` is one global network over all series: it runs as one task, unsplit.

The scores are computed here on the reassembled forecasts, so they are those of the
serial run; fit and predict seconds are summed over the workers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np

from vnstitch.forecast.auto import AutoForecaster, pooled_choice
from vnstitch.forecast.backtest import RollingForecast, rolling_forecasts, score
from vnstitch.forecast.base import FloatArray, ForecastError

T = TypeVar("T")
R = TypeVar("R")

#: models whose forecast of one series needs only that series (and the network total)
SEPARABLE = frozenset({"naive", "seasonal_naive", "ets", "lagreg", "auto",
                       "sf_autoets", "sf_autoarima"})


class MapEngine(Protocol):
    """What :func:`run_backtest` needs of an engine (see :mod:`vnstitch.sweep.engines`)."""

    name: str

    def map(self, fn: Callable[[T], R], tasks: Sequence[T]) -> Iterator[tuple[int, R]]: ...


def model_options(name: str, horizon: int) -> dict[str, Any]:
    """Options that depend on the horizon (models trained or selected for it)."""
    return {"horizon": horizon} if name in {"auto", "lstm", "lagreg"} else {}


def top_series(values: np.ndarray[Any, Any], k: int | None, train_end: int) -> list[int]:
    """Indices of the ``k`` series with the most training traffic (all if ``k`` is None)."""
    order = np.argsort(-np.abs(values[:train_end]).sum(axis=0), kind="stable")
    return sorted(order[: k or values.shape[1]].tolist())


def run_backtest(values: np.ndarray[Any, Any], *, season: int, horizon: int, test_steps: int,
                 models: list[str], quantiles: list[float],
                 on_model: Callable[[str], None] | None = None,
                 engine: MapEngine | None = None, chunk_series: int | None = None,
                 ) -> tuple[dict[str, dict[str, float]], dict[str, RollingForecast]]:
    """Backtest ``models`` on ``values``; scores per model and the raw forecasts.
    ``on_model(name)`` is called after each model is scored (progress). With an
    ``engine``, series are split into chunks of ``chunk_series`` (default: one chunk
    per worker) and run in parallel (see the module docstring)."""
    t_len = values.shape[0]
    start = t_len - test_steps
    if start < 2 * horizon + 2:
        raise ForecastError(f"--test-steps {test_steps} leaves only {start} training rows")
    results: dict[str, dict[str, float]] = {}
    raw: dict[str, RollingForecast] = {}
    for name in models:
        if engine is None:
            rf = rolling_forecasts(name, values, start, horizon, quantiles, season=season,
                                   options=model_options(name, horizon))
        else:
            rf = chunked_rolling(name, values, start, horizon, quantiles, season=season,
                                 engine=engine, chunk_series=chunk_series)
        s = score(rf, values, season, start, quantiles=quantiles)
        s["fit_seconds"] = rf.fit_seconds
        s["predict_seconds"] = rf.predict_seconds
        results[name] = s
        raw[name] = rf
        if on_model is not None:
            on_model(name)
    return results, raw


@dataclass(frozen=True)
class ChunkTask:
    """One worker's share: ``model`` on the columns ``values`` (the chunk's series)."""

    model: str
    values: FloatArray
    start: int
    horizon: int
    quantiles: tuple[float, ...]
    season: int
    options: dict[str, Any]


@dataclass(frozen=True)
class ChunkResult:
    """Rolling forecasts of a chunk: one, or for ``auto`` one per candidate, with the
    candidates' per-series training errors ``candidate_mae`` ``(K, n)``."""

    forecasts: list[RollingForecast]
    candidate_mae: FloatArray | None = None


def backtest_chunk(task: ChunkTask) -> ChunkResult:
    """Run in a worker: fit once on the chunk's training window, forecast every origin."""
    if task.model != "auto":
        rf = rolling_forecasts(task.model, task.values, task.start, task.horizon,
                               task.quantiles, season=task.season, options=task.options)
        return ChunkResult([rf])
    # as rolling_forecasts does for a point model, once per candidate after one fit
    t0 = time.perf_counter()
    auto = AutoForecaster(task.season, **task.options).fit(task.values[: task.start])
    fit_s = time.perf_counter() - t0
    t_len = task.values.shape[0]
    origins = np.arange(task.start, t_len + 1 if task.start == t_len else t_len,
                        dtype=np.int64)
    out = []
    for k in range(len(auto.candidates)):
        t0 = time.perf_counter()
        auto.use(k)
        mean, qd = auto.rolling(task.values, origins, task.horizon, task.quantiles)
        out.append(RollingForecast(origins, mean, qd, fit_seconds=fit_s if k == 0 else 0.0,
                                   predict_seconds=time.perf_counter() - t0,
                                   notes=list(auto.notes)))
    return ChunkResult(out, auto.candidate_mae.copy())


def chunked_rolling(name: str, values: FloatArray, start: int, horizon: int,
                    quantiles: Sequence[float], *, season: int, engine: MapEngine,
                    chunk_series: int | None = None) -> RollingForecast:
    """:func:`rolling_forecasts` of ``name`` with the series split across ``engine``."""
    vals = np.asarray(values, dtype=np.float64)
    n = vals.shape[1]
    opts = model_options(name, horizon)
    if not bool((vals[:start] >= 0).all()):  # decided on all series, as one process does
        opts["clip_nonnegative"] = False
    total = np.abs(vals).sum(axis=1)
    lagreg_opts: dict[str, Any] = {"network_total": total}
    if "clip_nonnegative" in opts:
        lagreg_opts["log_scale"] = False
    if name == "lagreg":
        opts.update(lagreg_opts)
    elif name == "auto":
        opts["candidate_options"] = {"lagreg": lagreg_opts}
    if name in SEPARABLE:
        workers = max(1, int(getattr(engine, "workers", 1)))
        # one chunk per worker: the models are vectorised over series, so each
        # call has a fixed cost that more, smaller chunks pay more often
        size = chunk_series or max(1, -(-n // workers))
        bounds = [(a, min(n, a + size)) for a in range(0, n, size)]
    else:
        bounds = [(0, n)]
    offset = name.startswith("sf_")  # their notes name series by index
    tasks = [ChunkTask(name, np.ascontiguousarray(vals[:, a:b]), start, horizon,
                       tuple(quantiles), season,
                       {**opts, "series_offset": a} if offset else opts) for a, b in bounds]
    parts: dict[int, ChunkResult] = dict(engine.map(backtest_chunk, tasks))
    ordered = [parts[i] for i in range(len(tasks))]
    pick = 0
    if name == "auto":
        mae = np.concatenate([p.candidate_mae for p in ordered if p.candidate_mae is not None],
                             axis=1)
        rule = AutoForecaster(season, **model_options(name, horizon))
        pick = pooled_choice(mae, rule.candidates, rule.default, rule.switch_margin)
    chosen = [p.forecasts[pick] for p in ordered]
    notes: list[str] = []
    for p in ordered:
        for rf in p.forecasts:
            notes += [x for x in rf.notes if x not in notes]
    return RollingForecast(
        origins=chosen[0].origins,
        mean=np.concatenate([rf.mean for rf in chosen], axis=2),
        quantiles={q: np.concatenate([rf.quantiles[q] for rf in chosen], axis=2)
                   for q in chosen[0].quantiles},
        fit_seconds=sum(rf.fit_seconds for p in ordered for rf in p.forecasts),
        predict_seconds=sum(rf.predict_seconds for p in ordered for rf in p.forecasts),
        notes=notes)
