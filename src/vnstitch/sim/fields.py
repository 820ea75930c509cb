"""Reading one mapping of a scenario file, field by field, with errors that name the field.

Theory of operation. Every section of a scenario (``vns:``, ``network:``, ``traffic:``,
``allocation:``, ...) is read through a :class:`FieldReader` at its dotted path
(``traffic.flows[2]``). Each typed getter takes the field's default (``None`` where the
field is required), checks the type and range, and records the field as used;
:meth:`FieldReader.finish` then rejects any field nobody asked for, so a typo is an
error rather than a silently ignored setting. Every failure is a
:class:`~vnstitch.sim.errors.ScenarioError` carrying the file and the field's full path.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from vnstitch.sim.errors import ScenarioError


class FieldReader:
    """Reads one mapping at a dotted ``path``, remembering used keys, naming bad ones."""

    def __init__(self, source: str, path: str, data: object) -> None:
        self.source, self.path = source, path
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ScenarioError(source, path or "scenario",
                                f"must be a mapping, got {type(data).__name__}")
        self.data: Mapping[str, Any] = data
        self.used: set[str] = set()

    def at(self, key: str) -> str:
        """The full dotted path of ``key`` (the section itself for ``key == ""``)."""
        if not key:
            return self.path
        return f"{self.path}.{key}" if self.path else key

    def fail(self, key: str, problem: str) -> ScenarioError:
        return ScenarioError(self.source, self.at(key), problem)

    def raw(self, key: str) -> Any:
        self.used.add(key)
        return self.data.get(key)

    def number(self, key: str, default: float | None, *, lo: float = -math.inf,
               hi: float = math.inf, lo_open: bool = False, allow_inf: bool = False) -> float:
        """A number in ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``); ``default=None``:
        required."""
        value = self.raw(key)
        if value is None:
            if default is None:
                raise self.fail(key, "is required")
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(key, f"must be a number, got {value!r}")
        f = float(value)
        if math.isnan(f) or (math.isinf(f) and not allow_inf):
            raise self.fail(key, f"must be a finite number, got {value!r}")
        if not lo <= f <= hi or (lo_open and f == lo):
            raise self.fail(key, f"must be {_bounds(lo, hi, lo_open)}, got {value!r}")
        return f

    def integer(self, key: str, default: int, *, lo: int = 0, hi: int = 10**9) -> int:
        value = self.raw(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise self.fail(key, f"must be an integer between {lo} and {hi}, got {value!r}")
        return value

    def flag(self, key: str, default: bool) -> bool:
        value = self.raw(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.fail(key, f"must be true or false, got {value!r}")
        return value

    def text(self, key: str, default: str | None) -> str | None:
        value = self.raw(key)
        if value is None:
            return default
        if not isinstance(value, str) or not value:
            raise self.fail(key, f"must be a non-empty string, got {value!r}")
        return value

    def name(self, key: str) -> str:
        """A required name; YAML may read a numeric name as an int, which is accepted."""
        value = self.raw(key)
        if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
            raise self.fail(key, f"must be a non-empty string, got {value!r}")
        return str(value)

    def names(self, key: str, known: set[str]) -> tuple[str, ...] | None:
        value = self.raw(key)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
            raise self.fail(key, f"must be a list of class names, got {value!r}")
        for i, x in enumerate(value):
            if x not in known:
                raise self.fail(f"{key}[{i}]", f"unknown class {x!r}; have {sorted(known)}")
        return tuple(value)

    def finish(self) -> None:
        unknown = sorted(set(map(str, self.data)) - self.used)
        if unknown:
            raise self.fail(unknown[0], f"unknown field; expected one of {sorted(self.used)}")


def _bounds(lo: float, hi: float, lo_open: bool) -> str:
    if math.isfinite(lo) and math.isfinite(hi) and not lo_open:
        return f"between {lo:g} and {hi:g}"
    parts = [f"{'>' if lo_open else '>='} {lo:g}"] if math.isfinite(lo) else []
    if math.isfinite(hi):
        parts.append(f"<= {hi:g}")
    return " and ".join(parts)
