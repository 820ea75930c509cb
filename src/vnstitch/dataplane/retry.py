"""Per-object reconcile backoff: one failing kernel object never blocks the others.

Theory of operation: the daemon reconciles the whole desired state; the driver tries
every op and reports the objects that failed (:class:`~vnstitch.dataplane.base.
DataplaneApplyError`). :class:`ObjectRetry` remembers, per object key, how many times in
a row it failed, the last error and when it may be tried again (capped exponential
backoff with jitter, :class:`~vnstitch.backoff.Backoff`). A reconcile pass skips the
objects still waiting (``waiting(now)``) and the daemon schedules the next pass at
``next_due()``; an object that applies (or is no longer wanted) is forgotten. Pure: the
caller passes ``now`` and the random source.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass

from vnstitch.backoff import Backoff


@dataclass(slots=True)
class ObjectFailure:
    key: str
    failures: int  # consecutive
    total: int  # since the daemon started
    error: str
    retry_at: float


#: First retry after about half a second, then doubling up to 30 s.
OBJECT_BACKOFF = Backoff(0.5, 30.0)


class ObjectRetry:
    def __init__(self, rng: random.Random, backoff: Backoff = OBJECT_BACKOFF) -> None:
        self._rng = rng
        self._backoff = backoff
        self.failing: dict[str, ObjectFailure] = {}
        self._totals: dict[str, int] = {}

    def waiting(self, now: float) -> frozenset[str]:
        """Keys not to try in a pass at ``now``."""
        return frozenset(k for k, f in self.failing.items() if f.retry_at > now)

    def failed(self, failures: dict[str, str], now: float) -> None:
        for key, error in failures.items():
            old = self.failing.get(key)
            n = 1 if old is None else old.failures + 1
            self._totals[key] = self._totals.get(key, 0) + 1
            self.failing[key] = ObjectFailure(key, n, self._totals[key], error,
                                              now + self._backoff.delay(n, self._rng))

    def succeeded(self, keys: Iterable[str]) -> None:
        for key in keys:
            self.failing.pop(key, None)

    def forget_unwanted(self, wanted: Iterable[str]) -> None:
        """Drop entries of objects that are no longer desired nor present."""
        keep = set(wanted)
        for key in [k for k in self.failing if k not in keep]:
            del self.failing[key]

    def next_due(self) -> float | None:
        return min((f.retry_at for f in self.failing.values()), default=None)

    def summary(self, now: float) -> dict[str, dict[str, object]]:
        """For ``show status``: per failing object, its counts, error and retry delay."""
        return {k: {"failures": f.failures, "total": f.total, "error": f.error[:300],
                    "retry_in_s": round(max(0.0, f.retry_at - now), 3)}
                for k, f in sorted(self.failing.items())}
