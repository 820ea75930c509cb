"""The daemon's ``pra:`` config section: the live Predictive Resource Allocator.

Theory of operation: :class:`PraConfig` is what the daemon runs the live allocator
with. The section's schema -- every problem reported at once, as ``FILE:LINE:COL:
pra.vns.100.compute.model: unknown model ...`` -- is :mod:`vnstitch.daemon.pra_model`,
part of the config file's schema. The ``providers`` subsection configures the live
compute/storage providers (:mod:`vnstitch.allocate.providers.live`); a VN's compute and
storage are served when that section has ``vn<VNID>`` entries. Example::

    pra:
      interval_s: 5          # one controller step
      refit_every: 12        # steps between fits of each consumer's model
      fit_workers: 1         # worker processes for fits (the CPU budget) ...
      fit_cpus: [1]          # ... pinned to these CPUs, niced
      fit_timeout_s: 30      # a fit out longer is a decision; the old model stays
      vns:
        100:
          class: web                 # newsvendor costs (allocate.policy classes)
          profile: database_access   # application profile: shape, burstiness
          bandwidth: {model: lagreg, prior: 10}   # prior: cold-start level (Mbit/s)
          compute: {model: lstm, prior: 0.2}      # cores
          storage: {model: ets, prior: 100}       # MiB
      providers: {state_dir: /var/lib/vnstitch/pra, compute: {vn100: {...}},
                  storage: {vn100: {quota_gib: 4}}}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vnstitch.allocate.providers.live import LiveProviderConfig

KINDS = ("bandwidth", "compute", "storage")


@dataclass(frozen=True, slots=True)
class PraKindConfig:
    model: str
    prior: float
    options: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class PraVnConfig:
    vnid: int
    app_class: str
    profile: str
    kinds: Mapping[str, PraKindConfig]


@dataclass(frozen=True, slots=True)
class PraConfig:
    """The section's settings (their defaults and meaning: the schema,
    :class:`vnstitch.daemon.pra_model.PraSection`, whose fields have the same names)."""

    interval_s: float
    season: int
    refit_every: int
    min_fit: int
    blend_steps: int
    fit_timeout_s: float
    fit_workers: int
    fit_cpus: tuple[int, ...]
    decisions_kept: int
    vns: tuple[PraVnConfig, ...]
    providers: LiveProviderConfig | None
