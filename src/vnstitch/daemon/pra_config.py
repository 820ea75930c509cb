"""The daemon's ``pra:`` config section: the live Predictive Resource Allocator.

Theory of operation: :func:`parse_pra` checks the plain mapping the YAML reader gives
and returns a :class:`PraConfig`; every problem is raised through the caller's ``fail``
(so it is reported as ``FILE:LINE:COL: pra.vns.100.compute.model: unknown model ...``);
unknown fields are errors. The ``providers`` subsection is the live compute/storage
providers' own section (:func:`vnstitch.allocate.providers.live.parse_live_providers`);
a VN's compute and storage are served when that section has ``vn<VNID>`` entries.
Example::

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

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vnstitch.errors import VnstitchError

if TYPE_CHECKING:
    from vnstitch.allocate.providers.live import LiveProviderConfig

KINDS = ("bandwidth", "compute", "storage")
_TOP = {"interval_s", "season", "refit_every", "min_fit", "blend_steps", "fit_timeout_s",
        "fit_workers", "fit_cpus", "decisions_kept", "vns", "providers"}
_VN = {"class", "profile", *KINDS}
_KIND = {"model", "prior", "options"}

Fail = Callable[[str, str], Exception]


@dataclass(frozen=True, slots=True)
class PraKindConfig:
    model: str = "ets"
    prior: float = 0.0
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PraVnConfig:
    vnid: int
    app_class: str
    profile: str
    kinds: Mapping[str, PraKindConfig]


@dataclass(frozen=True, slots=True)
class PraConfig:
    interval_s: float = 5.0
    season: int = 12
    refit_every: int = 12
    min_fit: int = 6
    blend_steps: int = 30
    fit_timeout_s: float = 30.0
    fit_workers: int = 1
    fit_cpus: tuple[int, ...] = ()
    decisions_kept: int = 500
    vns: tuple[PraVnConfig, ...] = ()
    providers: LiveProviderConfig | None = None


def _num(fail: Fail, path: str, value: object, *, integer: bool = False,
         minimum: float = 0.0, strict: bool = True) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and \
        math.isfinite(value) and (value > minimum if strict else value >= minimum) and \
        (not integer or float(value).is_integer())
    if not ok:
        kind = "an integer" if integer else "a number"
        raise fail(path, f"must be {kind} {'>' if strict else '>='} {minimum:g}, got "
                         f"{value!r}")
    return float(value)  # type: ignore[arg-type]


def _map(fail: Fail, path: str, value: object, allowed: set[str]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise fail(path, f"must be a mapping, got {type(value).__name__}")
    unknown = sorted(str(k) for k in value if str(k) not in allowed)
    if unknown:
        raise fail(f"{path}.{unknown[0]}", f"unknown field (known: {', '.join(sorted(allowed))})")
    return {str(k): v for k, v in value.items()}


def parse_pra(doc: object, fail: Fail, where: str = "pra") -> PraConfig | None:
    """The ``pra:`` section (None when absent); problems raised through ``fail``."""
    if doc is None:
        return None
    # Only a config with this section pays for numpy and the profiles (daemon start-up).
    from vnstitch.allocate.policy import DEFAULT_CLASSES  # noqa: PLC0415
    from vnstitch.allocate.providers.live import parse_live_providers  # noqa: PLC0415
    from vnstitch.control.pra import application_profiles, model_names  # noqa: PLC0415

    top = _map(fail, where, doc, _TOP)
    base = PraConfig()

    def num(name: str, integer: bool = False) -> Any:
        if name not in top:
            return getattr(base, name)
        v = _num(fail, f"{where}.{name}", top[name], integer=integer)
        return int(v) if integer else v

    cpus = top.get("fit_cpus", [])
    if not isinstance(cpus, list) or not all(isinstance(c, int) and not isinstance(c, bool)
                                             and c >= 0 for c in cpus):
        raise fail(f"{where}.fit_cpus", f"must be a list of CPU numbers, got {cpus!r}")
    profiles = application_profiles()
    vns = []
    for key, spec in _map(fail, f"{where}.vns", top.get("vns", {}),
                          {str(k) for k in top.get("vns", {}) or {}}).items():
        path = f"{where}.vns.{key}"
        if not key.isdigit():
            raise fail(path, "VN keys must be VNIDs (integers)")
        v = _map(fail, path, spec, _VN)
        app = str(v.get("class", "web"))
        if app not in DEFAULT_CLASSES:
            raise fail(f"{path}.class", f"unknown class {app!r} (known: "
                                        f"{', '.join(DEFAULT_CLASSES)})")
        prof = str(v.get("profile", "database_access"))
        if prof not in profiles:
            raise fail(f"{path}.profile", f"unknown profile {prof!r} (known: "
                                          f"{', '.join(profiles)})")
        kinds: dict[str, PraKindConfig] = {}
        for kind in KINDS:
            if kind not in v:
                continue
            k = _map(fail, f"{path}.{kind}", v[kind] or {}, _KIND)
            model = str(k.get("model", "ets"))
            if model not in model_names():
                raise fail(f"{path}.{kind}.model", f"unknown model {model!r} (known: "
                                                   f"{', '.join(model_names())})")
            opts = k.get("options", {})
            if not isinstance(opts, Mapping):
                raise fail(f"{path}.{kind}.options", "must be a mapping of model options")
            kinds[kind] = PraKindConfig(model, _num(fail, f"{path}.{kind}.prior",
                                                    k.get("prior", 0.0), strict=False),
                                        {str(a): b for a, b in opts.items()})
        vns.append(PraVnConfig(int(key), app, prof, kinds))
    providers = None
    if top.get("providers") is not None:
        try:
            providers = parse_live_providers(top["providers"], f"{where}.providers")
        except VnstitchError as exc:
            path, _, problem = str(exc).partition(": ")
            raise fail(path, problem) from None
    cfg = PraConfig(num("interval_s"), num("season", True), num("refit_every", True),
                    num("min_fit", True), num("blend_steps", True), num("fit_timeout_s"),
                    num("fit_workers", True), tuple(cpus), num("decisions_kept", True),
                    tuple(vns), providers)
    return cfg
