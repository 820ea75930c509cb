"""Traffic demands: the wide traffic-matrix CSV (Abilene) and a gravity model.

Theory of operation: :func:`parse_tm_csv` turns the lines of a wide CSV -- header
``time,SRC->DST,...``, one row per matrix, values in Mbit/s -- into a
:class:`TrafficMatrices` (times, OD pairs, a rows x pairs array). A header cell may name
the demand's QoS class as ``SRC->DST@CLASS`` (default class ``default``), so one pair can
carry several classes, one column each; every bad header cell,
row length or value raises :class:`DemandFileError` naming the line and column.
:func:`load_tm_csv` only opens the file (``.gz`` too) and hands its lines over.
:func:`gravity_demands` spreads a total volume over all ordered pairs in proportion to
the product of the end nodes' attached capacity (the usual gravity model).
"""

from __future__ import annotations

import gzip
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vnstitch.routing.errors import DemandFileError, RoutingError
from vnstitch.routing.te import ArcTable, Demand

DEFAULT_CLASS = "default"


@dataclass(frozen=True)
class TrafficMatrices:
    times: list[str]
    pairs: list[tuple[str, str]]
    mbps: np.ndarray  # rows x pairs
    classes: list[str] = field(default_factory=list)  # per column; empty = all "default"

    def class_of(self, col: int) -> str:
        return self.classes[col] if self.classes else DEFAULT_CLASS

    def demands(self, row: int, *, scale: float = 1.0) -> list[Demand]:
        if not 0 <= row < len(self.times):
            raise DemandFileError("traffic matrix", row + 2, "time",
                                  f"row {row} out of range (0..{len(self.times) - 1})")
        return [Demand(s, d, float(v) * scale, self.class_of(j))
                for j, ((s, d), v) in enumerate(zip(self.pairs, self.mbps[row], strict=True))]


def parse_tm_csv(lines: Iterable[str], source: str = "<demands>") -> TrafficMatrices:
    it = iter(lines)
    header_line = next(it, None)
    if header_line is None:
        raise DemandFileError(source, 1, "header", "file is empty")
    header = [h.strip() for h in header_line.rstrip("\r\n").split(",")]
    if header[0] != "time":
        raise DemandFileError(source, 1, "1", f"first column must be 'time', got {header[0]!r}")
    pairs: list[tuple[str, str]] = []
    classes: list[str] = []
    seen: set[tuple[str, str, str]] = set()
    for col, name in enumerate(header[1:], start=2):
        od, at, cls = name.partition("@")
        src, sep, dst = od.partition("->")
        if not sep or not src or not dst or src == dst or (at and not cls):
            raise DemandFileError(source, 1, f"{col} ({name!r})",
                                  "expected SRC->DST or SRC->DST@CLASS")
        cls = cls if at else DEFAULT_CLASS
        if (src, dst, cls) in seen:
            raise DemandFileError(source, 1, f"{col} ({name!r})",
                                  f"{src}->{dst} in class {cls!r} appears twice")
        seen.add((src, dst, cls))
        pairs.append((src, dst))
        classes.append(cls)
    times: list[str] = []
    rows: list[list[float]] = []
    for lineno, line in enumerate(it, start=2):
        if not line.strip():
            continue
        cells = line.rstrip("\r\n").split(",")
        if len(cells) != len(header):
            raise DemandFileError(source, lineno, str(min(len(cells), len(header)) + 1),
                                  f"expected {len(header)} columns, got {len(cells)}")
        values = []
        for col, cell in enumerate(cells[1:], start=2):
            try:
                v = float(cell)
            except ValueError:
                raise DemandFileError(source, lineno, f"{col} ({header[col - 1]})",
                                      f"not a number: {cell!r}") from None
            if not math.isfinite(v) or v < 0:
                raise DemandFileError(source, lineno, f"{col} ({header[col - 1]})",
                                      f"must be finite and >= 0, got {cell!r}")
            values.append(v)
        times.append(cells[0])
        rows.append(values)
    if not rows:
        raise DemandFileError(source, 2, "time", "no data rows")
    return TrafficMatrices(times, pairs, np.array(rows, dtype=float), classes)


def load_tm_csv(path: str | Path) -> TrafficMatrices:
    p = Path(path)
    try:
        if p.suffix == ".gz":
            with gzip.open(p, "rt", encoding="utf-8") as fh:
                return parse_tm_csv(fh, str(p))
        with p.open(encoding="utf-8") as fh:
            return parse_tm_csv(fh, str(p))
    except FileNotFoundError:
        raise DemandFileError(str(p), 0, "-", "file not found") from None
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise DemandFileError(str(p), 0, "-", f"cannot read: {exc}") from None


def check_nodes(tm: TrafficMatrices, table: ArcTable, source: str) -> None:
    """Every OD pair must name topology nodes (or their labels: matched by label too)."""
    for col, (s, d) in enumerate(tm.pairs, start=2):
        for end in (s, d):
            if end not in table.node_index:
                raise DemandFileError(source, 1, f"{col} ({s}->{d})",
                                      f"node {end!r} is not in the topology")


def gravity_demands(table: ArcTable, total_mbps: float = 1.0,
                    nodes: Sequence[str] | None = None) -> list[Demand]:
    """All ordered pairs, volume proportional to the product of attached capacities."""
    names = list(nodes) if nodes is not None else table.nodes
    weight = {n: 0.0 for n in names}
    for (u, _), cap in zip(table.arcs, table.capacity, strict=True):
        if u in weight:
            weight[u] += float(cap)
    pairs = [(a, b) for a in names for b in names if a != b]
    norm = sum(weight[a] * weight[b] for a, b in pairs)
    return [Demand(a, b, total_mbps * weight[a] * weight[b] / norm) for a, b in pairs]


def split_classes(demands: Sequence[Demand], shares: Sequence[tuple[str, float]]
                  ) -> list[Demand]:
    """Split every demand of the default class into ``(class, share)`` parts (shares are
    normalised to sum to one); demands that already have a class are kept as they are."""
    total = sum(w for _, w in shares)
    if not shares or not all(math.isfinite(w) and w >= 0 for _, w in shares) or total <= 0:
        raise RoutingError(f"class shares {list(shares)}: need >= 0 with a positive sum")
    out: list[Demand] = []
    for d in demands:
        if d.qos_class != DEFAULT_CLASS:
            out.append(d)
            continue
        out += [Demand(d.src, d.dst, d.volume_mbps * w / total, c) for c, w in shares if w > 0]
    return out


def scaled(demands: Sequence[Demand], factor: float) -> list[Demand]:
    return [Demand(d.src, d.dst, d.volume_mbps * factor, d.qos_class) for d in demands]
