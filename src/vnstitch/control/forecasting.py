"""Per-consumer demand forecasts with quantiles from the model's own past errors.

Theory of operation: :class:`ForecastBank` keeps, per consumer, the rates measured so far
(at most ``history`` of them), the centre it forecast last and the last ``error_window``
one-step errors ``measured - forecast``. ``forecast`` fits the policy's
:mod:`vnstitch.forecast` point model every ``refit_every`` calls and filters it forward
in between (``rolling`` at origin = the samples so far), for all consumers with the same
number of samples at once (one batched fit: the simulator's flows are measured together).
Level ``l`` of the next interval's demand is ``max(0, centre + Q_l(errors))`` -- online
split-conformal: the spread is what this model really got wrong on this consumer, and
with no error seen yet it is the centre alone. Lead time is one interval.

*Cold start.* A consumer with no measured rate yet would be forecast 0. When the caller
names its :class:`ColdStart` (the application profile of its class and the bandwidth its
stitch was negotiated for), its quantiles are the cold-start forecast instead
(:func:`vnstitch.allocate.forecasts.cold_start_quantiles`: the profile's daily shape at
``now`` times the requested bandwidth, the profile's burstiness as the spread), so the
allocator's newsvendor reserves what :func:`~vnstitch.allocate.forecasts.cold_start_units`
would. From the first measured rate on, the consumer's own samples take over. The
shipped profiles are read once, on the first cold start.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vnstitch.allocate.allocator import QuantileForecast
from vnstitch.allocate.forecasts import cold_start_quantiles
from vnstitch.allocate.policy import DENSE_LEVELS
from vnstitch.control.errors import ControlError
from vnstitch.control.model import ForecastPolicy
from vnstitch.forecast.base import Forecaster, PointForecaster, make_forecaster
from vnstitch.forecast.profiles import ApplicationProfile, load_profiles

FloatArray = np.ndarray[Any, np.dtype[np.float64]]

#: Application classes whose shipped profile has another name.
PROFILE_OF_CLASS = {"database": "database_access"}


@dataclass(frozen=True, slots=True)
class ColdStart:
    """What a consumer with no measured rate is forecast from: its application class
    (whose profile gives the shape) and its stitch's negotiated bandwidth (the level)."""

    app_class: str
    expected_mbps: float

    @property
    def profile(self) -> str:
        return PROFILE_OF_CLASS.get(self.app_class, self.app_class)


@dataclass(slots=True)
class _Series:
    history: deque[float]
    errors: deque[float]
    pred: float | None = None


@dataclass(slots=True)
class _Fit:
    model: Forecaster
    since: int = 0


@dataclass(slots=True)
class ForecastBank:
    policy: ForecastPolicy
    levels: tuple[float, ...] = tuple(DENSE_LEVELS)
    _series: dict[str, _Series] = field(default_factory=dict)
    _fits: dict[tuple[str, ...], _Fit] = field(default_factory=dict)
    #: profile name -> profile (None: the shipped profiles, read on the first cold start)
    profiles: dict[str, ApplicationProfile] | None = None

    def _get(self, consumer: str) -> _Series:
        s = self._series.get(consumer)
        if s is None:
            s = _Series(deque(maxlen=self.policy.history), deque(maxlen=self.policy.error_window))
            self._series[consumer] = s
        return s

    def observe(self, consumer: str, mbps: float) -> None:
        """A measured rate; scores the last forecast for ``consumer`` first."""
        s = self._get(consumer)
        if s.pred is not None:
            s.errors.append(mbps - s.pred)
        s.history.append(float(mbps))

    def restore(self, consumer: str, samples: Sequence[float]) -> None:
        """Measured rates from before a restart (no forecast errors: those are lost)."""
        s = self._get(consumer)
        s.history.extend(float(x) for x in samples)

    def history(self, consumer: str) -> list[float]:
        s = self._series.get(consumer)
        return [] if s is None else list(s.history)

    def count(self, consumer: str) -> int:
        s = self._series.get(consumer)
        return 0 if s is None else len(s.history)

    def forget(self, keep: set[str]) -> None:
        for c in [c for c in self._series if c not in keep]:
            del self._series[c]
        for key in [k for k in self._fits if not set(k) <= keep]:
            del self._fits[key]

    def forecast(self, consumers: Sequence[str], *, now: float = 0.0,
                 cold: Mapping[str, ColdStart] | None = None) -> dict[str, QuantileForecast]:
        """Quantiles of each consumer's next-interval demand; raises what the model
        raises (the caller keeps its last reservation). ``cold``: how to forecast
        consumers with no measured rate yet (``now``, seconds since the epoch, places
        the next interval on the profile's day)."""
        centres: dict[str, float] = {}
        groups: dict[int, list[str]] = {}
        for c in consumers:
            n = len(self._get(c).history)
            if n < self.policy.min_fit:
                h = self._series[c].history
                centres[c] = max(float(h[-1]), 0.0) if h else 0.0
            else:
                groups.setdefault(n, []).append(c)
        for members in groups.values():
            centres.update(zip(members, self._centres(tuple(members)).tolist(), strict=True))
        out: dict[str, QuantileForecast] = {}
        for c in consumers:
            s = self._series[c]
            start = (cold or {}).get(c)
            if not s.history and start is not None:
                prior = self._cold(start, now)
                if prior is not None:
                    out[c] = prior
                    continue
            errs = np.asarray(s.errors, dtype=np.float64)
            spread = np.quantile(errs, self.levels) if errs.size else np.zeros(len(self.levels))
            out[c] = QuantileForecast(self.levels,
                                      np.maximum(centres[c] + spread, 0.0)[:, None])
            if s.history:
                s.pred = centres[c]
        return out

    def _cold(self, start: ColdStart, now: float) -> QuantileForecast | None:
        if not (math.isfinite(start.expected_mbps) and start.expected_mbps > 0):
            return None  # no request to scale the profile by
        if self.profiles is None:
            self.profiles = load_profiles()
        profile = self.profiles.get(start.profile)
        if profile is None:
            return None
        at = np.array([np.datetime64(int(now), "s")])
        q = cold_start_quantiles(profile=profile, expected_mbps=start.expected_mbps,
                                 future=at, levels=self.levels)
        return QuantileForecast(self.levels, np.maximum(q, 0.0))

    def _centres(self, members: tuple[str, ...]) -> FloatArray:
        hist = np.asarray([list(self._series[c].history) for c in members],
                          dtype=np.float64).T
        fit = self._fits.get(members)
        if fit is None or fit.since >= self.policy.refit_every:
            fit = _Fit(make_forecaster(self.policy.model, self.policy.season).fit(hist))
            self._fits[members] = fit
        fit.since += 1
        if not isinstance(fit.model, PointForecaster):
            raise ControlError(f"forecaster {self.policy.model} is not a point model")
        mean, _ = fit.model.rolling(hist, [hist.shape[0]], 1, quantiles=(0.5,))
        out: FloatArray = np.maximum(mean[0, 0, :], 0.0)
        if not np.isfinite(out).all():
            raise ControlError(f"{self.policy.model} forecast is not finite")
        return out

    def centre(self, consumer: str) -> float:
        """The point forecast last made for ``consumer`` (0 before any)."""
        s = self._series.get(consumer)
        return 0.0 if s is None or s.pred is None else s.pred
