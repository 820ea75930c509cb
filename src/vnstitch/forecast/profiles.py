"""Application profiles (YAML): diurnal shape, burstiness and resources per Mbit/s.

Theory of operation. An application class (video conferencing, database access, e-mail,
bulk, ...) is described by the shape of its traffic over a day, how much lower (or
higher) it is at weekends, how bursty it is around that shape, and what compute and
storage each Mbit/s of it needs. The cold-start forecaster uses the shape for a new
stitch with no history; the allocator uses ``resources_per_mbps`` to turn a traffic
forecast into compute and storage plans.

File schema (the shipped default is ``profiles_default.yaml`` in this package)::

    version: 1
    profiles:
      NAME:
        description: text                       # optional
        diurnal: [24 numbers >= 0, not all 0]   # hour 0..23; rescaled to mean 1
        weekend_factor: number >= 0             # multiplier on Saturday/Sunday
        burstiness: number >= 0                 # coefficient of variation around the shape
        resources_per_mbps: {cpu_cores: n, memory_gb: n, storage_gb: n}   # each >= 0

Errors name the file and the field path, e.g. ``profiles.yaml: profiles.email.diurnal:
expected 24 numbers, got 23`` (YAML syntax errors also give the line and column).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from vnstitch.forecast.base import DataError, FloatArray

RESOURCE_KEYS = ("cpu_cores", "memory_gb", "storage_gb")
DEFAULT_PROFILES = "profiles_default.yaml"


@dataclass(frozen=True)
class ApplicationProfile:
    """One application class (see the module docstring)."""

    name: str
    diurnal: tuple[float, ...]          # 24 hourly multipliers, mean 1
    weekend_factor: float
    burstiness: float
    resources_per_mbps: dict[str, float]
    description: str = ""

    def shape(self, times: np.ndarray[Any, np.dtype[np.datetime64]]) -> FloatArray:
        """Relative traffic level (mean about 1 over a weekday) at each time."""
        t = np.asarray(times).astype("datetime64[m]")
        minutes = (t - t.astype("datetime64[D]")).astype(np.int64)
        hour = minutes / 60.0
        d = np.asarray((*self.diurnal, self.diurnal[0]))
        level = np.interp(hour, np.arange(25), d)  # smooth between hourly points
        weekday = (t.astype("datetime64[D]").astype(np.int64) + 3) % 7  # 0 = Monday
        return np.asarray(np.where(weekday >= 5, level * self.weekend_factor, level),
                          dtype=np.float64)

    def resources(self, mbps: FloatArray) -> dict[str, FloatArray]:
        """Compute and storage needed for ``mbps`` of this application's traffic."""
        return {k: np.asarray(mbps) * v for k, v in self.resources_per_mbps.items()}


def _number(value: object, where: str, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DataError(f"{where}: expected a number, got {value!r}")
    f = float(value)
    if not math.isfinite(f) or f < minimum:
        raise DataError(f"{where}: must be a finite number >= {minimum:g}, got {value!r}")
    return f


def parse_profiles(doc: object, source: str) -> dict[str, ApplicationProfile]:
    """Validate a parsed YAML document; every error names ``source`` and the field."""
    if not isinstance(doc, dict):
        raise DataError(f"{source}: top level must be a mapping with 'version' and 'profiles'")
    if doc.get("version") != 1:
        raise DataError(f"{source}: version: expected 1, got {doc.get('version')!r}")
    unknown = set(doc) - {"version", "profiles"}
    if unknown:
        raise DataError(f"{source}: unknown top-level key(s) {sorted(unknown)}")
    raw = doc.get("profiles")
    if not isinstance(raw, dict) or not raw:
        raise DataError(f"{source}: profiles: expected a non-empty mapping of name -> profile")
    out: dict[str, ApplicationProfile] = {}
    for name, body in raw.items():
        where = f"{source}: profiles.{name}"
        if not isinstance(body, dict):
            raise DataError(f"{where}: expected a mapping")
        extra = set(body) - {"description", "diurnal", "weekend_factor", "burstiness",
                             "resources_per_mbps"}
        if extra:
            raise DataError(f"{where}: unknown field(s) {sorted(extra)}")
        for key in ("diurnal", "weekend_factor", "burstiness", "resources_per_mbps"):
            if key not in body:
                raise DataError(f"{where}.{key}: missing")
        diurnal = body["diurnal"]
        if not isinstance(diurnal, list) or len(diurnal) != 24:
            got = len(diurnal) if isinstance(diurnal, list) else type(diurnal).__name__
            raise DataError(f"{where}.diurnal: expected 24 numbers, got {got}")
        vals = [_number(v, f"{where}.diurnal[{i}]") for i, v in enumerate(diurnal)]
        mean = sum(vals) / 24
        if mean <= 0:
            raise DataError(f"{where}.diurnal: all zero")
        res = body["resources_per_mbps"]
        if not isinstance(res, dict):
            raise DataError(f"{where}.resources_per_mbps: expected a mapping")
        bad = set(res) - set(RESOURCE_KEYS)
        if bad:
            raise DataError(f"{where}.resources_per_mbps: unknown key(s) {sorted(bad)}; "
                            f"known: {', '.join(RESOURCE_KEYS)}")
        out[str(name)] = ApplicationProfile(
            name=str(name), diurnal=tuple(v / mean for v in vals),
            weekend_factor=_number(body["weekend_factor"], f"{where}.weekend_factor"),
            burstiness=_number(body["burstiness"], f"{where}.burstiness"),
            resources_per_mbps={k: _number(res.get(k, 0.0), f"{where}.resources_per_mbps.{k}")
                                for k in RESOURCE_KEYS},
            description=str(body.get("description", "")))
    return out


def load_profiles(path: str | Path | None = None) -> dict[str, ApplicationProfile]:
    """Read a profiles YAML file, or the shipped default when ``path`` is None."""
    if path is None:
        source = f"<package>/{DEFAULT_PROFILES}"
        text = resources.files("vnstitch.forecast").joinpath(DEFAULT_PROFILES).read_text()
    else:
        source = str(path)
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise DataError(f"{source}: cannot read: {exc.strerror or exc}") from exc
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        raise DataError(f"{source}{where}: invalid YAML: "
                        f"{getattr(exc, 'problem', None) or exc}") from None
    return parse_profiles(doc, source)
