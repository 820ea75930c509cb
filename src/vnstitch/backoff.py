"""Capped exponential backoff with jitter: the one retry schedule of vnstitch.

Theory of operation: after the ``n``-th consecutive failure the next attempt waits
``min(cap_s, base_s * 2 ** (n - 1))`` scaled by a random factor in ``[1 - jitter, 1]``
(jitter spreads retries of many objects or Route Managers that failed together, so they
do not return in lock step). The random source is passed in -- a seeded
:class:`random.Random` in tests and the simulator, the OS generator in the daemon -- and
nothing here reads a clock: callers add the delay to their own ``now``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    base_s: float = 0.5
    cap_s: float = 30.0
    jitter: float = 0.5  # fraction of the delay that is random

    def __post_init__(self) -> None:
        if not (0 < self.base_s <= self.cap_s) or not 0 <= self.jitter <= 1:
            raise ValueError(f"bad backoff {self}")

    def delay(self, failures: int, rng: random.Random) -> float:
        """Seconds to wait after ``failures`` (>= 1) consecutive failures."""
        exp = min(max(failures, 1) - 1, 60)  # 2**60 * base is far past any cap
        full = min(self.cap_s, self.base_s * 2.0 ** exp)
        return full * (1.0 - self.jitter * rng.random())
