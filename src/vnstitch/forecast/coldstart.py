"""Cold start: forecasting a new stitch that has little or no history of its own.

Theory of operation. A stitching event starts a new series. Its forecast blends two
sources, moving from the first to the second as the stitch's own history grows:

1. **prior** = level x shape, where the shape is the average of the application
   profile's shape (diurnal curve, weekend factor) and the mean daily shape of the most
   similar existing series. "Most similar" is the peer whose hour-of-day profile
   correlates best with the stitch's own observations (once it has at least
   ``min_own`` of them) or, before that, with the application profile. The level is
   the stitch's own mean divided by the shape's mean over the same times, or, with no
   observations yet, the ``expected_mbps`` from the stitch request. The prior's
   quantiles assume normal noise with the profile's burstiness (coefficient of
   variation) around the mean.
2. **own model**: once the stitch has ``min_own`` observations, a normal model
   (default ``ets``) is fitted on them alone.

The blend weight of the own model is ``min(1, n_own / (blend_seasons * season))``; mean
and every quantile are blended with the same weight (a convex combination of monotone
quantiles stays monotone).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import norm

from vnstitch.forecast.base import (
    FloatArray,
    Forecast,
    ForecastError,
    check_quantiles,
    make_forecaster,
)
from vnstitch.forecast.profiles import ApplicationProfile

Times = np.ndarray[Any, np.dtype[np.datetime64]]


@dataclass(frozen=True)
class ColdStartResult:
    forecast: Forecast
    peer: int | None          # index of the most similar existing series
    own_weight: float         # weight of the stitch's own model in the blend


def hourly_profile(values: FloatArray, times: Times) -> FloatArray:
    """Mean value per hour of day for each column -> (24, N), normalised to mean 1."""
    t = np.asarray(times).astype("datetime64[m]")
    hour = ((t - t.astype("datetime64[D]")).astype(np.int64) // 60).astype(np.int64)
    sums = np.zeros((24, values.shape[1]))
    np.add.at(sums, hour, values)
    counts = np.bincount(hour, minlength=24)[:, None]
    prof = sums / np.maximum(counts, 1)
    mean = prof.mean(axis=0, keepdims=True)
    return np.asarray(np.where(mean > 0, prof / np.where(mean > 0, mean, 1), 1.0))


def _hours(times: Times) -> np.ndarray[Any, np.dtype[np.int64]]:
    t = np.asarray(times).astype("datetime64[m]")
    return np.asarray((t - t.astype("datetime64[D]")).astype(np.int64) // 60, dtype=np.int64)


def most_similar(peers: FloatArray, peer_times: Times, target: FloatArray,
                 target_times: Times) -> int:
    """Peer whose hour-of-day profile correlates best with ``target`` at ``target_times``."""
    prof = hourly_profile(peers, peer_times)  # (24, N)
    at = prof[_hours(target_times)]           # (k, N): peer shape at the target's times
    tc = target - target.mean()
    ac = at - at.mean(axis=0)
    denom = np.sqrt((tc**2).sum() * (ac**2).sum(axis=0))
    corr = np.where(denom > 0, (tc[:, None] * ac).sum(axis=0) / np.where(denom > 0, denom, 1),
                    -np.inf)
    return int(np.argmax(corr))


def cold_start_forecast(*, profile: ApplicationProfile, own: FloatArray, own_times: Times,
                        future: Times, peers: FloatArray | None = None,
                        peer_times: Times | None = None, expected_mbps: float | None = None,
                        season: int = 288, model: str = "ets", min_own: int = 12,
                        blend_seasons: float = 3.0,
                        quantiles: Sequence[float] = (0.1, 0.5, 0.9)) -> ColdStartResult:
    """Forecast a new stitch at ``future`` times (see the module docstring)."""
    qs = check_quantiles(quantiles)
    own = np.asarray(own, dtype=np.float64).reshape(-1)
    future = np.asarray(future)
    n_own = own.size
    if n_own == 0 and expected_mbps is None:
        raise ForecastError("cold start: a stitch with no history needs expected_mbps")
    if not np.isfinite(own).all():
        raise ForecastError("cold start: own history has non-finite values")
    peer: int | None = None
    shape_future = profile.shape(future)
    shape_own = profile.shape(own_times) if n_own else np.zeros(0)
    if peers is not None and peer_times is not None and peers.size:
        if n_own >= min_own:
            peer = most_similar(peers, peer_times, own, own_times)
        else:  # compare peers to the application profile over one synthetic day
            day = np.datetime64("2000-01-03T00:00") + np.arange(24) * np.timedelta64(1, "h")
            peer = most_similar(peers, peer_times, profile.shape(day), day)
        pprof = hourly_profile(peers[:, [peer]], peer_times)[:, 0]
        shape_future = 0.5 * shape_future + 0.5 * pprof[_hours(future)]
        if n_own:
            shape_own = 0.5 * shape_own + 0.5 * pprof[_hours(own_times)]
    if n_own:
        denom = float(shape_own.mean())
        level = float(own.mean()) / denom if denom > 0 else float(own.mean())
    else:
        level = float(expected_mbps or 0.0)
    prior_mean = level * shape_future
    prior_q = {q: np.maximum(prior_mean * (1 + norm.ppf(q) * profile.burstiness), 0.0)
               for q in qs}
    weight = min(1.0, n_own / (blend_seasons * season)) if n_own >= min_own else 0.0
    mean, qd = prior_mean, prior_q
    if weight > 0:
        fc = make_forecaster(model, season).fit(own[:, None]).predict(future.size,
                                                                      quantiles=qs)
        mean = weight * fc.mean[:, 0] + (1 - weight) * prior_mean
        qd = {q: weight * fc.quantiles[q][:, 0] + (1 - weight) * prior_q[q] for q in qs}
    return ColdStartResult(
        forecast=Forecast(mean=mean[:, None], quantiles={q: v[:, None] for q, v in qd.items()}),
        peer=peer, own_weight=weight)
