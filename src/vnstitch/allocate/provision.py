"""Replaying a policy's orders through the ``sim`` cloud provider (``evaluate --provider``).

Theory of operation
-------------------
*Clock.* Trace step ``k`` occupies ``[k*dt, (k+1)*dt)`` seconds; every time here is
computed from step indices, never read from a clock. The policies
(:mod:`~vnstitch.allocate.baselines`) decide the amount for step ``s`` from
``values[: s - lead + 1]``, i.e. from data up to step ``s - lead``, so the earliest
moment that decision exists is the end of step ``s - lead``:

    order time of step s     o(s) = (s - lead + 1) * dt
    capacity needed at       s * dt            -> slack of (lead - 1) * dt

A boot delay of ``(lead - 1) * dt`` is therefore exactly what the index arithmetic
assumes (with ``lead = 1`` capacity must appear at once); it is the default. A longer
delay makes capacity late; a shorter one makes it ready early (and billed from the
order, since orders are placed at decision time, not just in time).

*Orders.* Everything happens at step boundaries. At boundary ``k`` (time ``k*dt``) the
steps whose amounts are decided and not yet over are ``k .. k + lead - 1`` (within the
test window), and the provider is asked -- declaratively -- for
``target(k) = max(units[k .. k + lead - 1])``. A rise is a scale-out whose extra units
become usable after the provider's delay; a fall happens only at the start of step
``k``, once every step that needed the higher amount has ended and no decided step
needs it, so capacity is never released while the policy still counts on it. A request
refused for quota is repeated at the quota (the most whole units the provider will
grant); a failed
request (an outage) leaves the provider as it was until the next boundary asks again.
*Warm start*: the service exists before the test window, so the first order is placed
early enough (``start*dt - delay`` if that is before its decision time) that the
window does not open with everything booting; later changes all feel the delay.

*Usable capacity.* The provider releases the newest capacity first, so capacity held
for a later step (``target(k) > units[k]``) is ready and billed but belongs to that
step: the policy uses at most what it ordered for the step. Usable during step ``s`` is
the **time average** over the step of ``min(units[s], available(t))``, with
``available`` read at the step's start and at every grant's ``ready_at`` inside the
step, so a grant that becomes ready mid-step counts only for the part of the step it is
usable. (``available`` only changes at those moments; a scheduled
:class:`~vnstitch.allocate.providers.sim.CapacityLoss` inside a step is seen from the
next such moment.) With the default delay, no quota and no outage, ``target`` covers
every step in its window, so usable equals the policy's units exactly.

*Bill.* The provider's own billing: committed (usable or booting) units x price x
hours, from the first order to the end of the window; ``unit_hours`` integrates the
committed amount the same way and ``ordered_unit_hours`` is what the index arithmetic
would have charged (``sum(units) * dt``), so the difference is the price of booting
ahead and of holding capacity for later steps. Each series is replayed on its own
provider (quotas are per key; outages are the same for all), so series do not slow
each other down.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from vnstitch.allocate.errors import AllocateError
from vnstitch.allocate.policy import FloatArray, IntArray
from vnstitch.allocate.providers.base import RequestStatus, ResourceKey, ResourceKind
from vnstitch.allocate.providers.sim import Outage, SimProvider, SimResource


@dataclass(frozen=True, slots=True)
class SimSettings:
    """The simulated cloud for an evaluation. Outages are ``(start, end)`` seconds from the
    start of the test window; ``boot_delay`` None = ``(lead - 1) * step`` (see above)."""

    boot_delay: float | None = None
    quota: float = math.inf  # units per series
    price_per_unit_hour: float = 1.0
    outages: tuple[tuple[float, float], ...] = ()

    def __post_init__(self) -> None:
        if self.boot_delay is not None and not (math.isfinite(self.boot_delay)
                                                and self.boot_delay >= 0):
            raise AllocateError(f"boot delay must be a finite number of seconds >= 0, "
                                f"got {self.boot_delay}")
        if not self.quota > 0:
            raise AllocateError(f"quota must be > 0 units, got {self.quota}")
        if not (math.isfinite(self.price_per_unit_hour) and self.price_per_unit_hour >= 0):
            raise AllocateError(f"price per unit-hour must be >= 0, got "
                                f"{self.price_per_unit_hour}")
        for a, b in self.outages:
            if not (math.isfinite(a) and math.isfinite(b) and a < b):
                raise AllocateError(f"outage [{a}, {b}) must have finite start < end")

    def delay(self, lead: int, step_seconds: float) -> float:
        return (lead - 1) * step_seconds if self.boot_delay is None else self.boot_delay

    def build(self, kind: ResourceKind, lead: int, step_seconds: float,
              window_start: float) -> SimProvider:
        """A fresh provider; outages shifted to absolute time (``window_start`` seconds)."""
        spec = SimResource(delay_seconds=self.delay(lead, step_seconds), quota=self.quota,
                           price_per_unit_hour=self.price_per_unit_hour)
        return SimProvider({kind: spec}, outages=[Outage(window_start + a, window_start + b)
                                                  for a, b in self.outages])


@dataclass(slots=True)
class ProviderTally:
    """Sums, so the tallies of several series and traces pool by adding."""

    bill: float = 0.0
    unit_hours: float = 0.0
    ordered_unit_hours: float = 0.0
    granted: int = 0
    refused: int = 0
    failed: int = 0

    def add(self, other: ProviderTally) -> ProviderTally:
        return ProviderTally(self.bill + other.bill, self.unit_hours + other.unit_hours,
                             self.ordered_unit_hours + other.ordered_unit_hours,
                             self.granted + other.granted, self.refused + other.refused,
                             self.failed + other.failed)

    def summary(self) -> dict[str, object]:
        return {"bill": self.bill, "unit_hours": self.unit_hours,
                "ordered_unit_hours": self.ordered_unit_hours, "granted": self.granted,
                "refused": self.refused, "failed": self.failed}


@dataclass(slots=True)
class Provisioned:
    usable: FloatArray  # (steps, series) units usable per test step, time-averaged
    tally: ProviderTally = field(default_factory=ProviderTally)


def targets(units: Sequence[int] | IntArray, lead: int) -> list[int]:
    """``target[j]`` asked at boundary ``start - lead + 1 + j``: the max over the steps
    decided by then and not over (window-relative indices, clipped to the window)."""
    n = len(units)
    return [int(max(units[max(0, j - lead + 1): min(n, j + 1)]))
            for j in range(n + lead - 1)]


def replay_series(units: Sequence[int] | IntArray, *, start: int, lead: int,
                  step_seconds: float, provider: SimProvider, key: ResourceKey,
                  ) -> tuple[FloatArray, ProviderTally]:
    """Usable units per test step of one series, and its provider tally (see above)."""
    if lead < 1 or not step_seconds > 0:
        raise AllocateError(f"lead must be >= 1 step and step > 0 s, got {lead}, {step_seconds}")
    n = len(units)
    dt = step_seconds
    first = start - lead + 1  # boundary of the first order
    delay = provider.lead_time(key.kind)
    want = targets(units, lead)
    tally = ProviderTally()
    ready_times: list[float] = []  # sorted ready_at of accepted scale-outs
    held = [math.nan, 0.0]  # (time of the last request, committed units since then)

    def ask(target: float, now: float) -> None:
        res = provider.request(key, target, now)
        if res.status is RequestStatus.REFUSED and target > provider.limit(key):
            tally.refused += 1
            res = provider.request(key, math.floor(provider.limit(key) + 1e-9), now)
        if res.status is RequestStatus.ACCEPTED:
            tally.granted += 1
            if res.ready_at is not None and res.ready_at > now:
                bisect.insort(ready_times, res.ready_at)
        elif res.status is RequestStatus.REFUSED:
            tally.refused += 1
        elif res.status is RequestStatus.FAILED:
            tally.failed += 1
        if math.isfinite(held[0]):
            tally.unit_hours += held[1] * (now - held[0]) / 3600.0
        held[:] = [now, provider.committed(key, now)]

    warm = start * dt - delay
    if warm < first * dt:
        ask(want[0], warm)
    usable = np.empty(n, dtype=np.float64)
    for j, target in enumerate(want):
        k = first + j
        ask(target, k * dt)
        i = k - start  # window index of the step starting now
        if i < 0:
            continue
        t0, t1 = k * dt, (k + 1) * dt
        cuts = [t0, *ready_times[bisect.bisect_right(ready_times, t0):
                                 bisect.bisect_left(ready_times, t1)], t1]
        if len(cuts) == 2:  # one segment: exact, no division
            usable[i] = min(float(units[i]), provider.available(key, t0))
        else:
            acc = sum(min(float(units[i]), provider.available(key, a)) * (b - a)
                      for a, b in itertools.pairwise(cuts))
            usable[i] = acc / dt
    end = (start + n) * dt
    tally.unit_hours += held[1] * (end - held[0]) / 3600.0
    tally.bill = provider.cost(end)
    tally.ordered_unit_hours = float(np.sum(units)) * dt / 3600.0
    return usable, tally


def provision(units: IntArray, *, start: int, lead: int, step_seconds: float,
              kind: ResourceKind, settings: SimSettings) -> Provisioned:
    """Replay every series of ``units`` (test steps x series) on its own sim provider."""
    if units.ndim != 2:
        raise AllocateError(f"units must be 2-D (steps x series), got shape {units.shape}")
    out = Provisioned(np.empty(units.shape, dtype=np.float64))
    for n in range(units.shape[1]):
        provider = settings.build(kind, lead, step_seconds, start * step_seconds)
        col, t = replay_series(units[:, n], start=start, lead=lead, step_seconds=step_seconds,
                               provider=provider, key=ResourceKey(kind, f"series{n}"))
        out.usable[:, n] = col
        out.tally = out.tally.add(t)
    return out
