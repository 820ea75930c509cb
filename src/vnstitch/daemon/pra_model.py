"""The schema of the daemon config's ``pra:`` section (format: :mod:`vnstitch.daemon.pra_config`).

Theory of operation: :class:`PraSection` and the models below it *are* the ``pra:``
section's format -- the live Predictive Resource Allocator's timing (one top-level field
per :class:`~vnstitch.daemon.pra_config.PraConfig` setting), its consumers per VN
(``vns``) and the live compute/storage providers (``providers``). They are part of
:class:`vnstitch.daemon.config_model.ConfigFile`, so every problem of the section comes
at once with the rest of the file's, as ``FILE:LINE:COL: pra.vns.100.compute.model:
problem``, non-finite numbers refused, and ``vnstitch schema config`` publishes it.
Names that come from other layers' tables (application classes, profiles, forecasting
models) are checked against those tables, loaded only when a config with this section is
read (numpy; the daemon's start-up imports stay light). :func:`to_pra_config` turns a
valid section into the runtime :class:`~vnstitch.daemon.pra_config.PraConfig`; a new
top-level setting is one field here and one in that dataclass, of the same name.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BeforeValidator, Field, model_validator

from vnstitch.daemon.pra_config import KINDS, PraConfig, PraKindConfig, PraVnConfig
from vnstitch.errors import VnstitchError
from vnstitch.model.ids import vnid
from vnstitch.yamlfile import FileModel, after, checked

if TYPE_CHECKING:
    from vnstitch.allocate.providers.compute import Workload
    from vnstitch.allocate.providers.live import LiveProviderConfig

Text = Annotated[str, Field(min_length=1)]
Positive = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]
PositiveInt = Annotated[int, Field(gt=0)]
Scalar = bool | int | float | str


def _option(value: object) -> object:
    """A model option: a scalar or a list of scalars (a finite number, text, a bool)."""
    items = value if isinstance(value, list) else [value]
    for v in items:
        if not isinstance(v, bool | int | float | str):
            raise ValueError(f"a model option must be a number, text, true/false or a "
                             f"list of those, got {type(v).__name__}")
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"must be finite, got {v!r}")
    return value


Option = Annotated[Scalar | list[Scalar], BeforeValidator(_option)]
Argv = Annotated[list[str | int | float], Field(min_length=1, description="argv")]


def _vnid_key(key: object) -> int:  # mapping keys arrive as text
    if isinstance(key, str):
        if not key.isdigit():
            raise ValueError(f"VN keys must be VNIDs (integers), got {key!r}")
        key = int(key)
    return int(vnid(key))


def _known(what: str, names: Any) -> Any:
    """A check that a name is in the table ``names()`` (loaded when first used)."""
    def check(name: str) -> str:
        known = tuple(names())
        if name not in known:
            raise ValueError(f"unknown {what} {name!r} (known: {', '.join(known)})")
        return name
    return after(check)


def _classes() -> Any:
    from vnstitch.allocate.policy import DEFAULT_CLASSES  # noqa: PLC0415

    return DEFAULT_CLASSES


def _profiles() -> Any:
    from vnstitch.control.pra import application_profiles  # noqa: PLC0415

    return application_profiles()


def _models() -> Any:
    from vnstitch.control.pra import model_names  # noqa: PLC0415

    return model_names()


class PraKindEntry(FileModel):
    """How one resource of a VN is forecast."""

    model: Annotated[Text, _known("model", _models)] = "ets"
    prior: NonNegative = Field(default=0.0, description="cold-start level (Mbit/s, cores "
                               "or MiB)")
    options: dict[str, Option] = Field(
        default_factory=dict, description="the model's own options (keyword arguments)")


class PraVnEntry(FileModel):
    """A VN's consumers: its class, its profile and a forecast per resource."""

    app_class: Annotated[Text, _known("class", _classes)] = Field(default="web",
                                                                 alias="class")
    profile: Annotated[Text, _known("profile", _profiles)] = "database_access"
    bandwidth: PraKindEntry | None = None
    compute: PraKindEntry | None = None
    storage: PraKindEntry | None = None


class ComputeWorkloadEntry(FileModel):
    """A VN's workload: instances of ``command`` in ``netns``, each in its own cgroup."""

    command: Argv
    netns: Text | None = None
    cpu_cores: Positive = 0.5
    memory_mib: Positive = 256
    readiness: Argv | None = None
    max_instances: Annotated[int, Field(ge=0)] = 8
    start_timeout_s: Positive = 30

    @model_validator(mode="after")
    def _a_workload(self) -> ComputeWorkloadEntry:
        try:  # the workload's own invariants (one home: the provider's dataclass)
            workload(self)
        except VnstitchError as exc:
            raise ValueError(str(exc)) from None
        return self


class StorageEntry(FileModel):
    """A VN's volume and its quota."""

    quota_gib: Positive


class ProvidersSection(FileModel):
    """The live compute and storage providers (:mod:`vnstitch.allocate.providers.live`);
    keys are locations, ``vn<VNID>`` for a VN's."""

    state_dir: Text
    prefix: Text = "vnstitch"
    hold_s: NonNegative = 0.0
    compute: dict[str, ComputeWorkloadEntry] = Field(default_factory=dict)
    storage: dict[str, StorageEntry] = Field(default_factory=dict)


class PraSection(FileModel):
    """The live Predictive Resource Allocator."""

    interval_s: Positive = Field(default=5.0, description="one controller step")
    season: PositiveInt = 12
    refit_every: PositiveInt = Field(default=12, description="steps between fits")
    min_fit: PositiveInt = 6
    blend_steps: PositiveInt = 30
    fit_timeout_s: Positive = Field(default=30.0, description="a longer fit is abandoned; "
                                    "the old model stays")
    fit_workers: PositiveInt = Field(default=1, description="worker processes for fits")
    fit_cpus: list[Annotated[int, Field(ge=0)]] = Field(
        default_factory=list, description="CPUs the fit workers are pinned to")
    decisions_kept: PositiveInt = 500
    vns: dict[Annotated[int, checked(_vnid_key)], PraVnEntry] = Field(default_factory=dict)
    providers: ProvidersSection | None = None


def workload(m: ComputeWorkloadEntry) -> Workload:
    """The provider's :class:`~vnstitch.allocate.providers.compute.Workload` for ``m``."""
    from vnstitch.allocate.providers.compute import Workload  # noqa: PLC0415
    from vnstitch.allocate.providers.storage import MIB  # noqa: PLC0415

    return Workload(tuple(str(a) for a in m.command), m.netns, cpu_quota_cores=m.cpu_cores,
                    memory_bytes=int(m.memory_mib * MIB),
                    readiness=None if m.readiness is None else
                    tuple(str(a) for a in m.readiness),
                    start_timeout=m.start_timeout_s, max_instances=m.max_instances)


def to_providers(m: ProvidersSection) -> LiveProviderConfig:
    from vnstitch.allocate.providers.live import LiveProviderConfig  # noqa: PLC0415

    return LiveProviderConfig(Path(m.state_dir), m.prefix, m.hold_s,
                              {k: workload(w) for k, w in m.compute.items()},
                              {k: s.quota_gib for k, s in m.storage.items()})


def to_pra_config(m: PraSection) -> PraConfig:
    """The runtime config of a valid section."""
    settings = m.model_dump(exclude={"vns", "providers", "fit_cpus"})
    vns = tuple(PraVnConfig(vn, v.app_class, v.profile, {
        kind: PraKindConfig(k.model, k.prior, dict(k.options))
        for kind in KINDS if (k := getattr(v, kind)) is not None})
        for vn, v in m.vns.items())
    return PraConfig(**settings, fit_cpus=tuple(m.fit_cpus), vns=vns,
                     providers=None if m.providers is None else to_providers(m.providers))
