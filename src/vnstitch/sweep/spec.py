"""Sweep specifications: a base scenario, a grid of overrides, the metrics to aggregate.

Theory of operation. A sweep spec is a YAML mapping::

    name: loss-vs-topology          # free text (default: the file's stem)
    base: builtin:small             # a scenario: builtin:NAME or a path (relative to
                                    # the spec file)
    set: {duration_s: 40}           # overrides applied to every run (optional)
    grid:                           # one run per combination of these values
      topology: [zoo:Abilene, topo/tiny.graphml]   # a path is relative to the spec
      network.loss: [0, 0.05]
      seed: [1, 2, 3]
    metrics: [success_rate_feasible, setup_seconds_median]   # dotted paths in the
                                                             # simulate --json summary
    group_by: [topology, network.loss]   # default: every grid key except seed

A grid or ``set`` key is a dotted path into the scenario mapping (``network.loss``,
``requests.count``, ``faults[0].at``). :func:`load_spec` expands the grid into
:class:`Cell` s (the cartesian product, in the order the keys are written) and validates
*every* cell's scenario up front through the simulator's own scenario reader, so a bad
value is reported before any run starts, naming the spec field (``grid.network.loss``)
and the scenario's problem. Each cell has a stable ``run_id`` (a hash of the base and of
its overrides), which is how an interrupted sweep recognises finished runs.

Pure: reads the spec and the base scenario text, nothing else.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from vnstitch.sim.errors import ScenarioError
from vnstitch.sim.scenario import (
    Scenario,
    read_scenario_text,
    scenario_from_mapping,
    scenario_yaml,
)
from vnstitch.sweep.errors import SpecError

Value = str | int | float | bool | None

#: Fields a spec may have; anything else is a typo and an error.
SPEC_FIELDS = ("name", "base", "set", "grid", "metrics", "group_by")
#: Per-run fields every result row has; metrics and parameters may not reuse them.
RUN_FIELDS = ("run_id", "status", "error", "wall_s", "summary_sha256")
_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


@dataclass(frozen=True)
class Cell:
    """One run of a sweep: its parameters (grid key -> value) and its scenario."""

    index: int
    run_id: str
    params: dict[str, Value]
    scenario: Scenario


@dataclass(frozen=True)
class SweepSpec:
    name: str
    source: str
    base: str
    fixed: dict[str, Value]
    grid: dict[str, list[Value]]
    metrics: tuple[str, ...]
    group_by: tuple[str, ...]
    cells: tuple[Cell, ...]

    @property
    def parameters(self) -> tuple[str, ...]:
        return tuple(self.grid)


def parse_path(path: str) -> list[str | int]:
    """``faults[0].at`` -> ``["faults", 0, "at"]``; raises ValueError when malformed."""
    steps: list[str | int] = []
    for part in path.split("."):
        if not part:
            raise ValueError(f"empty step in {path!r}")
        found = list(_STEP.finditer(part))
        if not found or "".join(m.group(0) for m in found) != part or found[0].group(2):
            raise ValueError(f"malformed path {path!r}")
        for m in found:
            steps.append(m.group(1) if m.group(1) is not None else int(m.group(2)))
    return steps


def set_path(data: dict[str, Any], path: str, value: Value) -> None:
    """Set ``value`` at the dotted ``path`` of ``data``, creating missing mappings."""
    steps = parse_path(path)
    node: Any = data
    for step, nxt in itertools.pairwise(steps):
        if isinstance(step, int):
            if not isinstance(node, list) or step >= len(node):
                raise ValueError(f"{path}: no list item [{step}] in the base scenario")
            node = node[step]
            continue
        if not isinstance(node, dict):
            raise ValueError(f"{path}: {step!r} is inside a value that is not a mapping")
        if node.get(step) is None:
            if isinstance(nxt, int):
                raise ValueError(f"{path}: the base scenario has no list {step!r}")
            node[step] = {}
        node = node[step]
    last = steps[-1]
    if isinstance(last, int):
        if not isinstance(node, list) or last >= len(node):
            raise ValueError(f"{path}: no list item [{last}] in the base scenario")
        node[last] = value
    elif not isinstance(node, dict):
        raise ValueError(f"{path}: the value before {last!r} is not a mapping")
    else:
        node[last] = value


def get_path(data: object, path: str) -> object:
    """The value at a dotted ``path`` of a JSON-like object; KeyError when absent."""
    node = data
    for step in parse_path(path):
        if isinstance(step, int):
            if not isinstance(node, list) or step >= len(node):
                raise KeyError(path)
            node = node[step]
        else:
            if not isinstance(node, Mapping) or step not in node:
                raise KeyError(path)
            node = node[step]
    return node


def run_id(base: str, fixed: Mapping[str, Value], params: Mapping[str, Value]) -> str:
    blob = json.dumps({"base": base, "set": dict(fixed), "params": dict(params)},
                      sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _scalar(source: str, field: str, value: object) -> Value:
    if value is None or isinstance(value, str | bool | int | float):
        if isinstance(value, float) and math.isnan(value):
            raise SpecError(source, field, "must not be NaN")
        return value
    raise SpecError(source, field, f"must be a scalar (text, number, true/false), got "
                    f"{type(value).__name__}")


def _path_key(source: str, field: str, key: object) -> str:
    if not isinstance(key, str) or not key:
        raise SpecError(source, field, f"keys must be non-empty text, got {key!r}")
    try:
        parse_path(key)
    except ValueError as exc:
        raise SpecError(source, f"{field}.{key}", str(exc)) from None
    return key


def _resolve_topology(value: Value, spec_dir: Path | None) -> Value:
    """A topology path in a spec is relative to the spec file, like the base scenario."""
    if (isinstance(value, str) and spec_dir is not None
            and not value.startswith(("zoo:", "sndlib:")) and not Path(value).is_absolute()):
        return str((spec_dir / value).resolve())
    return value


def spec_from_mapping(data: object, source: str, spec_dir: Path | None) -> SweepSpec:
    """Validate a parsed spec and expand its grid; see the module docstring."""
    if not isinstance(data, Mapping):
        raise SpecError(source, "spec", f"must be a mapping, got {type(data).__name__}")
    unknown = sorted(set(map(str, data)) - set(SPEC_FIELDS))
    if unknown:
        raise SpecError(source, unknown[0], f"unknown field; expected one of {SPEC_FIELDS}")
    base = data.get("base")
    if not isinstance(base, str) or not base:
        raise SpecError(source, "base", "is required: builtin:NAME or a scenario file")
    if not base.startswith("builtin:") and spec_dir is not None \
            and not Path(base).is_absolute():
        base = str((spec_dir / base).resolve())
    name = data.get("name", Path(source).stem)
    if not isinstance(name, str) or not name:
        raise SpecError(source, "name", f"must be non-empty text, got {name!r}")

    fixed_raw = data.get("set") or {}
    if not isinstance(fixed_raw, Mapping):
        raise SpecError(source, "set", "must be a mapping of scenario field -> value")
    fixed: dict[str, Value] = {}
    for key, value in fixed_raw.items():
        k = _path_key(source, "set", key)
        v = _scalar(source, f"set.{k}", value)
        fixed[k] = _resolve_topology(v, spec_dir) if k == "topology" else v

    grid_raw = data.get("grid")
    if not isinstance(grid_raw, Mapping) or not grid_raw:
        raise SpecError(source, "grid", "is required: a mapping of scenario field -> list "
                        "of values")
    grid: dict[str, list[Value]] = {}
    for key, values in grid_raw.items():
        k = _path_key(source, "grid", key)
        if k in fixed:
            raise SpecError(source, f"grid.{k}", "is also under set:")
        if k in RUN_FIELDS:
            raise SpecError(source, f"grid.{k}", f"{k!r} is reserved for result rows")
        if not isinstance(values, list) or not values:
            raise SpecError(source, f"grid.{k}", "must be a non-empty list of values")
        vals = [_scalar(source, f"grid.{k}[{i}]", v) for i, v in enumerate(values)]
        if len({json.dumps(v) for v in vals}) != len(vals):
            raise SpecError(source, f"grid.{k}", "lists a value twice")
        grid[k] = [_resolve_topology(v, spec_dir) for v in vals] if k == "topology" \
            else vals

    metrics_raw = data.get("metrics")
    if not isinstance(metrics_raw, list) or not metrics_raw:
        raise SpecError(source, "metrics", "is required: a list of summary fields "
                        "(dotted paths into `vnstitch simulate --json`)")
    metrics: list[str] = []
    for i, m in enumerate(metrics_raw):
        mk = _path_key(source, f"metrics[{i}]", m)
        if mk in grid or mk in RUN_FIELDS or mk in metrics:
            raise SpecError(source, f"metrics[{i}]", f"{mk!r} is already a parameter, a "
                            "result field or an earlier metric")
        metrics.append(mk)

    group_raw = data.get("group_by")
    if group_raw is None:
        group_by = tuple(k for k in grid if k != "seed")
    else:
        if not isinstance(group_raw, list):
            raise SpecError(source, "group_by", "must be a list of grid keys")
        for i, g in enumerate(group_raw):
            if g not in grid:
                raise SpecError(source, f"group_by[{i}]",
                                f"{g!r} is not a grid key; have {list(grid)}")
        group_by = tuple(group_raw)

    cells = _expand(source, base, fixed, grid)
    return SweepSpec(name, source, base, fixed, grid, tuple(metrics), group_by, cells)


def _expand(source: str, base: str, fixed: dict[str, Value],
            grid: dict[str, list[Value]]) -> tuple[Cell, ...]:
    try:
        text, base_source, base_dir = read_scenario_text(base)
        base_data = scenario_yaml(text, base_source)
    except ScenarioError as exc:
        raise SpecError(source, "base", str(exc)) from None
    if base_data is None:
        base_data = {}
    if not isinstance(base_data, dict):
        raise SpecError(source, "base", "the base scenario is not a mapping")
    keys = list(grid)
    cells = []
    for index, combo in enumerate(itertools.product(*(grid[k] for k in keys))):
        params = dict(zip(keys, combo, strict=True))
        data = copy.deepcopy(base_data)
        for field, overrides in (("set", fixed), ("grid", params)):
            for k, v in overrides.items():
                try:
                    set_path(data, k, v)
                except ValueError as exc:
                    raise SpecError(source, f"{field}.{k}", str(exc)) from None
        label = ", ".join(f"{k}={v}" for k, v in params.items())
        try:
            scenario = scenario_from_mapping(data, f"{source} [{label}]", base_dir)
        except ScenarioError as exc:
            raise SpecError(source, _blame(exc.field, fixed, params),
                            f"{exc.problem} (in the run {label})") from None
        cells.append(Cell(index, run_id(base, fixed, params), params, scenario))
    return tuple(cells)


def _blame(field: str, fixed: Mapping[str, Value], params: Mapping[str, Value]) -> str:
    """The spec field behind a scenario error at ``field``: the grid or set key that is
    that field or contains it, else the base scenario."""
    def covers(key: str) -> bool:
        return field == key or field.startswith((key + ".", key + "[")) \
            or key.startswith((field + ".", field + "["))
    for k in params:
        if covers(k):
            return f"grid.{k}"
    for k in fixed:
        if covers(k):
            return f"set.{k}"
    return f"base: {field}" if field else "base"


def load_spec(path: str | Path) -> SweepSpec:
    """Read, validate and expand a spec file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(str(path), "", f"cannot read: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "yaml"
        raise SpecError(str(path), where, f"invalid YAML: {getattr(exc, 'problem', exc)}") \
            from None
    return spec_from_mapping(data, str(path), p.resolve().parent)


def params_label(params: Mapping[str, Value], keys: Sequence[str] | None = None) -> str:
    keys = list(params) if keys is None else list(keys)
    return ", ".join(f"{k}={params[k]}" for k in keys)
