"""The ``allocation:`` section of a scenario, as the simulator uses it.

Theory of operation: plain frozen data. The section's schema (types, ranges, every
problem at once with its ``FILE:LINE:COL``) and its checks against the ``traffic:`` and
``qos:`` sections (allocation manages some of their QoS classes) are
:class:`vnstitch.sim.scenario_sections.AllocationSection`; a valid section becomes an
:class:`AllocationSpec` there. What the simulator does with it is in
:mod:`vnstitch.sim.allocation`::

    allocation:
      classes: [video]          # QoS classes whose flows get reservations (default:
                                # traffic.stitched_classes)
      forecaster: naive         # naive | seasonal_naive | ets (vnstitch.forecast models)
      season: 1                 # season in monitoring intervals (seasonal_naive, ets)
      warmup_intervals: 3       # measured intervals before the first decision (>= 2)
      refit_every: 12           # decisions between refits; state filtered forward between
      error_window: 60          # most recent one-step errors kept for the quantiles
      unit_mbps: 50             # reservations come in whole units of this
      hold_intervals: 2         # a reservation is held this many decisions before shrinking
      hysteresis: 0.05          # ... and shrinks only when the target is 5 % lower
      scale_in_window: 2        # ... and only to the highest target of the last W decisions
      reroute: true             # ask routing for another path when the provider refuses
      log_limit: 200            # decisions kept in the JSON summary (all are counted)
      costs:                    # newsvendor costs per class (default: by class name from
        video: {c_under: 20, c_over: 1}   # vnstitch.allocate.policy.DEFAULT_CLASSES)
      provider:                 # extra link capacity bought from a simulated provider
        turn_up_s: 20           # from an accepted request to usable capacity
        quota_mbps: 1500        # extra capacity per directed link, at most
        price_per_mbps_hour: 0.05
        outages: [{start: 200, end: 260}]  # requests fail inside these windows
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from vnstitch.allocate.policy import ApplicationClass


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    turn_up_s: float = 0.0
    quota_mbps: float = math.inf
    price_per_mbps_hour: float = 0.0
    outages: tuple[tuple[float, float], ...] = ()


@dataclass(frozen=True, slots=True)
class AllocationSpec:
    classes: tuple[str, ...]
    apps: tuple[tuple[str, ApplicationClass], ...]  # (QoS class, its newsvendor costs)
    forecaster: str = "naive"
    season: int = 1
    warmup_intervals: int = 3
    refit_every: int = 12
    error_window: int = 60
    unit_mbps: float = 50.0
    hold_intervals: int = 2
    hysteresis: float = 0.05
    scale_in_window: int = 2
    reroute: bool = True
    log_limit: int = 200
    provider: ProviderSpec = ProviderSpec()

    def app(self, qos_class: str) -> ApplicationClass:
        return dict(self.apps)[qos_class]
