"""Traffic demands: the wide traffic-matrix CSV (Abilene) and a gravity model.

Theory of operation: :func:`parse_tm_csv` turns the lines of a wide CSV -- header
``time,SRC->DST,...``, one row per matrix, values in Mbit/s -- into a
:class:`TrafficMatrices` (times, OD pairs, a rows x pairs array); every bad header cell,
row length or value raises :class:`DemandFileError` naming the line and column.
:func:`load_tm_csv` only opens the file (``.gz`` too) and hands its lines over.
:func:`gravity_demands` spreads a total volume over all ordered pairs in proportion to
the product of the end nodes' attached capacity (the usual gravity model).
"""

from __future__ import annotations

import gzip
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vnstitch.routing.errors import DemandFileError
from vnstitch.routing.te import ArcTable, Demand


@dataclass(frozen=True)
class TrafficMatrices:
    times: list[str]
    pairs: list[tuple[str, str]]
    mbps: np.ndarray  # rows x pairs

    def demands(self, row: int, *, scale: float = 1.0, qos_class: str = "default"
                ) -> list[Demand]:
        if not 0 <= row < len(self.times):
            raise DemandFileError("traffic matrix", row + 2, "time",
                                  f"row {row} out of range (0..{len(self.times) - 1})")
        return [Demand(s, d, float(v) * scale, qos_class)
                for (s, d), v in zip(self.pairs, self.mbps[row], strict=True)]


def parse_tm_csv(lines: Iterable[str], source: str = "<demands>") -> TrafficMatrices:
    it = iter(lines)
    header_line = next(it, None)
    if header_line is None:
        raise DemandFileError(source, 1, "header", "file is empty")
    header = [h.strip() for h in header_line.rstrip("\r\n").split(",")]
    if header[0] != "time":
        raise DemandFileError(source, 1, "1", f"first column must be 'time', got {header[0]!r}")
    pairs: list[tuple[str, str]] = []
    for col, name in enumerate(header[1:], start=2):
        src, sep, dst = name.partition("->")
        if not sep or not src or not dst or src == dst:
            raise DemandFileError(source, 1, f"{col} ({name!r})", "expected SRC->DST")
        pairs.append((src, dst))
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
    return TrafficMatrices(times, pairs, np.array(rows, dtype=float))


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


def scaled(demands: Sequence[Demand], factor: float) -> list[Demand]:
    return [Demand(d.src, d.dst, d.volume_mbps * factor, d.qos_class) for d in demands]
