"""YAML files validated by pydantic models, every problem named ``FILE:LINE:COL: field``.

Theory of operation: :func:`load_yaml` composes the text with PyYAML's safe loader into a
node tree and turns it into plain Python while remembering where each value starts (its
*location*, pydantic's ``loc``: a tuple of mapping keys and list indices). Duplicate keys
and non-text keys are problems of the file itself. :func:`validate` hands the data to a
pydantic v2 model; every error pydantic reports (all of them, not only the first) becomes
one line ``FILE:LINE:COL: dotted.path[2].field: problem`` (:func:`problem_lines`), worded
for people rather than in pydantic's default phrasing, with the line and column of the
offending value (of its parent mapping for a missing field). Models meant for files derive
from :class:`FileModel`: unknown fields are errors (a typo must not fall back to a
default), numbers must be finite, and values are not coerced between types (``"5"`` is not
5). Checks that relate one field to another (references, duplicates) are written as
functions returning :class:`Problem`\\ s and formatted the same way. Nothing here knows
about a particular file; the daemon config and the simulator's scenarios both use it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

from vnstitch.errors import VnstitchError

Loc = tuple[str | int, ...]
M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

#: Integers beyond this lose precision as floats; a value this large is a typo.
MAX_EXACT_INT = 2 ** 53


class FileModel(BaseModel):
    """Base of models read from files: closed, finite, strict, immutable."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True, frozen=True)


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem at a location of the file."""

    loc: Loc
    problem: str


@dataclass(slots=True)
class YamlDocument:
    """A file's data as plain Python, where each value started, and problems of the YAML
    itself (duplicate keys)."""

    source: str
    data: Any
    marks: dict[Loc, tuple[int, int]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def where(self, loc: Loc) -> str:
        """``FILE:LINE:COL`` of ``loc`` (or of its nearest located parent), else ``FILE``."""
        line, col = self.position(loc)
        return f"{self.source}:{line}:{col}" if line else self.source

    def position(self, loc: Loc) -> tuple[int, int]:
        for n in range(len(loc), -1, -1):
            mark = self.marks.get(loc[:n])
            if mark is not None:
                return mark
        return (0, 0)

    def line(self, p: Problem) -> str:
        return f"{self.where(p.loc)}: {dotted(p.loc) or '<top>'}: {p.problem}"


class YamlSyntaxError(VnstitchError):
    """The text is not YAML (or is empty); the message names file, line and column."""


def load_yaml(text: str, source: str, what: str = "file") -> YamlDocument:
    """Parse ``text`` keeping positions; :class:`YamlSyntaxError` if it is not YAML."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise YamlSyntaxError(f"{where}: not valid YAML: {problem}") from None
    if node is None:
        raise YamlSyntaxError(f"{source}: empty {what}")
    doc = YamlDocument(source, None)
    try:
        doc.data = _to_python(doc, node, ())
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(f"{source}: not valid YAML: {exc}") from None
    return doc


def _to_python(doc: YamlDocument, node: yaml.Node, loc: Loc) -> Any:
    doc.marks[loc] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                doc.problems.append(Problem(loc, "mapping keys must be plain text"))
                continue
            key = str(key_node.value)
            sub = (*loc, key)
            if key in out:
                doc.marks[sub] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                doc.problems.append(Problem(sub, "duplicate field"))
                continue
            out[key] = _to_python(doc, value_node, sub)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(doc, v, (*loc, i)) for i, v in enumerate(node.value)]
    # A scalar: PyYAML's safe constructor resolves its type (int, float, null, ...).
    return yaml.SafeLoader("").construct_object(node, deep=True)


_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def loc_of(field: str) -> Loc:
    """``traffic.flows[2].name`` -> ``("traffic", "flows", 2, "name")`` (the inverse of
    :func:`dotted`), for readers that name a problem by its dotted path."""
    return tuple(int(m.group(2)) if m.group(2) else m.group(1)
                 for m in _PATH_PART.finditer(field))


def dotted(loc: Iterable[str | int]) -> str:
    """``("peers", 0, "address")`` -> ``peers[0].address``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part != "[key]":
            out += f".{part}" if out else str(part)
    return out


def validate(model: type[M], doc: YamlDocument,
             checks: Callable[[Any], list[Problem]] | None = None,
             context: Mapping[str, Any] | None = None) -> tuple[M | None, list[str]]:
    """The model read from ``doc`` and no problems, or ``None`` and every problem as a
    line. ``checks`` (relations between fields) get the raw data and run whether or not
    the schema found problems, so that all are reported together."""
    value, problems = validate_problems(model, doc, checks, context)
    lines = list(dict.fromkeys(doc.line(p) for p in problems))
    return (None if lines else value), lines


def validate_problems(model: type[M], doc: YamlDocument,
                      checks: Callable[[Any], list[Problem]] | None = None,
                      context: Mapping[str, Any] | None = None
                      ) -> tuple[M | None, list[Problem]]:
    """:func:`validate` with the problems as :class:`Problem`\\ s, in file order."""
    problems = list(doc.problems)
    value: M | None = None
    try:
        value = model.model_validate(doc.data, context=dict(context or {}))
    except ValidationError as exc:
        problems += [Problem(_loc(e["loc"]) + _extra_loc(e), _wording(model, e))
                     for e in exc.errors()]
    if checks is not None:
        problems += checks(doc.data)
    problems.sort(key=lambda p: doc.position(p.loc))  # in the order of the file
    return (None if problems else value), list(dict.fromkeys(problems))


def problems_of(model: type[BaseModel], data: Any, at: Loc = ()) -> list[Problem]:
    """The schema's problems of ``data`` (a part of a file found at ``at``) as ``model``,
    for checks that validate a section on its own."""
    try:
        model.model_validate(data)
    except ValidationError as exc:
        return error_problems(model, exc, at)
    return []


def error_problems(model: type[BaseModel], exc: ValidationError, at: Loc = ()
                   ) -> list[Problem]:
    """``model``'s validation errors as :class:`Problem` objects in the project's wording (also
    for bodies validated elsewhere, such as the HTTP API's)."""
    return [Problem(at + _loc(e["loc"]) + _extra_loc(e), _wording(model, e))
            for e in exc.errors()]


def _loc(loc: tuple[int | str, ...]) -> Loc:
    # Pydantic appends the member name of a union or a validator's tag to loc; drop those
    # that are not fields so the path reads like the file.
    return tuple(p for p in loc if isinstance(p, int) or not p.startswith(("function-",)))


def _extra_loc(e: Any) -> Loc:
    """A check over a whole mapping names the field it blames (:func:`field_problem`)."""
    name = (e.get("ctx") or {}).get("field")
    return loc_of(str(name)) if e["type"] == FIELD_PROBLEM and name else ()


FIELD_PROBLEM = "field_problem"


def field_problem(name: str, problem: str) -> PydanticCustomError:
    """Raise this from a model validator to blame field ``name`` of the mapping (a
    dotted path below it, such as ``schedule[1].at``)."""
    return PydanticCustomError(FIELD_PROBLEM, "{problem}", {"field": name, "problem": problem})


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", int: "integer", float: "number", str: "text", list: "a list",
            dict: "a mapping"}.get(type(value), type(value).__name__)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _wording(model: type[BaseModel], e: Any) -> str:
    """A pydantic error in the project's words (``must be > 0, got -1``)."""
    kind, ctx, got = e["type"], e.get("ctx") or {}, e.get("input")
    got_text = f"got {_kind(got)} {_shown(got)}" if not isinstance(got, dict | list) \
        else f"got {_kind(got)}"
    if kind == "missing":
        return "missing required field"
    if kind == "extra_forbidden":
        names = allowed_fields(model, _loc(e["loc"])[:-1])
        return "unknown field" + (f" (expected one of: {', '.join(names)})" if names else "")
    if kind in ("value_error", "assertion_error"):
        return str(ctx.get("error", e["msg"]))
    if kind == FIELD_PROBLEM:
        return str(ctx["problem"])
    bounds = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<",
              "less_than_equal": "<="}
    if kind in bounds:
        low, high = _bounds(model, _loc(e["loc"]))
        if low is not None and high is not None:
            return f"must be between {low:g} and {high:g}, got {_shown(got)}"
        limit = next(iter(ctx.values()))
        return f"must be {bounds[kind]} {limit:g}, got {_shown(got)}"
    if kind == "finite_number" or (isinstance(got, float) and not math.isfinite(got)):
        return f"must be finite, {got_text}"
    if kind.startswith("int_") or kind == "int_type":
        if isinstance(got, int) and not isinstance(got, bool):
            return f"out of range, got an integer of {len(str(abs(got)))} digits"
        return f"must be an integer, {got_text}"
    if kind.startswith("float_"):
        if isinstance(got, int) and not isinstance(got, bool):
            return f"out of range, got an integer of {len(str(abs(got)))} digits"
        return f"must be a number, {got_text}"
    if kind.startswith("bool_"):
        return f"must be true or false, {got_text}"
    if kind.startswith("string_"):
        if kind == "string_too_short":
            return "must not be empty"
        return f"must be text, {got_text}"
    if kind in ("dict_type", "model_type", "model_attributes_type", "dataclass_type"):
        return f"must be a mapping, {got_text}"
    if kind in ("list_type", "tuple_type"):
        return f"must be a list, {got_text}"
    if kind == "literal_error":
        expected = str(ctx.get("expected", "")).replace("'", "").replace(" or ", ", ")
        return f"must be one of {expected}, {got_text}"
    if kind in ("too_short", "too_long") and "actual_length" in ctx:
        bound, n = ("at least", ctx.get("min_length")) if kind == "too_short" else \
            ("at most", ctx.get("max_length"))
        return f"must have {bound} {n} item{'s' * (n != 1)}, got {ctx['actual_length']}"
    return str(e["msg"])


def _bounds(model: type[BaseModel], loc: Loc) -> tuple[float | None, float | None]:
    """The inclusive lower and upper bounds declared on the field at ``loc``."""
    import annotated_types as at  # noqa: PLC0415

    info = _field_at(model, loc)
    low = high = None  # inclusive bounds only: "between" reads as inclusive
    for m in info.metadata if info is not None else ():
        if isinstance(m, at.Ge):
            low = float(m.ge)  # type: ignore[arg-type]
        elif isinstance(m, at.Le):
            high = float(m.le)  # type: ignore[arg-type]
    return low, high


def _field_at(model: type[BaseModel], loc: Loc) -> FieldInfo | None:
    fields = [p for p in loc if isinstance(p, str)]
    if not fields:
        return None
    current = _model_in(model)
    info = None
    for part in fields:
        if current is None:
            return None
        info = current.model_fields.get(part)
        if info is None:
            return None
        current = _model_in(info.annotation)
    return info


def allowed_fields(model: type[BaseModel], loc: Loc) -> list[str]:
    """The field names of the model found at ``loc`` below ``model`` ([] if none)."""
    current: Any = model
    for part in loc:
        current = _model_in(current)
        if current is None:
            return []
        if isinstance(part, int):
            continue
        info = current.model_fields.get(part)
        if info is None:
            return []
        current = info.annotation
    found = _model_in(current)
    return sorted(f.alias or n for n, f in found.model_fields.items()) if found else []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model class an annotation holds (through Optional, list, dict, tuple)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = get_origin(annotation)
    if origin is None:
        return None
    args = get_args(annotation)
    if origin is dict:
        args = args[1:]
    if origin is Union or origin is not None:
        for a in args:
            found = _model_in(a)
            if found is not None:
                return found
    return None


# -- reusable field types ----------------------------------------------------------------


def checked(fn: Callable[[Any], T]) -> BeforeValidator:
    """A validator calling ``fn`` on the raw value; its ``VnstitchError`` / ``ValueError``
    message becomes the problem."""

    def run(value: Any) -> T:
        try:
            return fn(value)
        except (VnstitchError, TypeError) as exc:
            raise ValueError(str(exc)) from None

    return BeforeValidator(run)


def after(fn: Callable[[Any], T]) -> AfterValidator:
    """Like :func:`checked`, on the already typed value."""

    def run(value: Any) -> T:
        try:
            return fn(value)
        except (VnstitchError, TypeError) as exc:
            raise ValueError(str(exc)) from None

    return AfterValidator(run)


_HOST_PORT = (re.compile(r"^\[([^\]]+)\]:(\d+)$"), re.compile(r"^([^:]+):(\d+)$"))


def split_host_port(text: str) -> tuple[str, int]:
    """``IP:PORT`` or ``[IPv6]:PORT`` -> (host, port); ValueError naming the problem."""
    import ipaddress  # noqa: PLC0415

    m = _HOST_PORT[0].match(text) or _HOST_PORT[1].match(text)
    if m is None:
        raise ValueError(f"must be 'IP:PORT' (or '[IPv6]:PORT'), got {text!r}")
    try:
        host = str(ipaddress.ip_address(m.group(1)))
    except ValueError:
        raise ValueError(f"not an IP address: {m.group(1)!r}") from None
    port = int(m.group(2))
    if not 1 <= port <= 65535:
        raise ValueError(f"port must be in 1..65535, got {port}")
    return host, port
