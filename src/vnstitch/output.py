"""Output for people and for programs: JSON printing, tables, progress bars.

Theory of operation: a command (or a benchmark) computes one plain ``dict`` result; with
``--json`` it is printed as one JSON object on stdout (and nothing else goes to stdout),
otherwise it is rendered for people with rich. Progress bars draw on stderr and only
when stderr is a terminal, so piping and CI logs stay clean.

Tables never cut an identifying column: :func:`table` returns a renderable that, at
render time, measures itself against the terminal. The key columns (the first ``keys``)
never wrap; the others may wrap their headers and text cells at spaces, never inside a
word (a number, an id, an address). When the whole table is still too wide it is
*stacked*: printed as several tables, each repeating the key columns with as many of the
other columns as fit. Values are formatted by
:func:`fmt` (no Python repr: dicts and tuples become ``key value`` text, floats get
fixed notation).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions, RenderResult
    from rich.measure import Measurement
    from rich.progress import Progress
    from rich.table import Table

# rich is imported where it is used: a Route Manager daemon imports this module through
# its CLI (``--json`` flags) and never draws a table, so it need not pay for loading rich.


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def json_safe(value: Any) -> Any:
    """JSON has no NaN/inf: map them to null so the output always parses."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def print_json(result: Mapping[str, Any]) -> None:
    sys.stdout.write(json.dumps(json_safe(dict(result)), indent=2, sort_keys=False) + "\n")


def console() -> Console:
    from rich.console import Console  # noqa: PLC0415

    return Console(highlight=False)


def progress(disable: bool = False) -> Progress:
    """A progress bar on stderr; silent when stderr is not a terminal or ``disable``."""
    from rich.console import Console  # noqa: PLC0415
    from rich.progress import (  # noqa: PLC0415
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    err = Console(stderr=True)
    return Progress(
        TextColumn("[progress.description]{task.description}"), BarColumn(),
        MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
        console=err, disable=disable or not err.is_terminal, transient=True,
    )


class StackedTable:
    """A table that stacks its non-key columns into several tables when too wide."""

    def __init__(self, title: str, columns: Sequence[str], rows: Sequence[Sequence[str]],
                 keys: int) -> None:
        self.title = title
        self.columns = list(columns)
        self.rows = [list(r) for r in rows]
        self.keys = max(0, min(keys, len(self.columns)))

    def _need(self, i: int) -> int:
        """Width column ``i`` needs: its widest cell, and its header (key columns) or the
        longest word of its header (other columns' headers may wrap at spaces)."""
        cells = [r[i] for r in self.rows if i < len(r)]
        width = max((len(line) for c in cells for line in c.splitlines()), default=0)
        header = len(self.columns[i]) if i < self.keys else max(
            (len(w) for w in self.columns[i].split()), default=0)
        return max(width, header, 1)

    def _widths(self, cols: Sequence[int], max_width: int) -> dict[int, int]:
        """Each column's width; when even one group is too wide, the non-key columns give
        up width (widest first, down to their longest header word) and wrap their cells,
        so the key columns are never cut."""
        widths = {i: self._need(i) for i in cols}
        excess = sum(widths.values()) + 3 * (len(cols) - 1) - max_width
        while excess > 0:
            free = [i for i in cols if i >= self.keys and widths[i] > self._floor(i)]
            if not free:
                break
            i = max(free, key=lambda c: widths[c])
            widths[i] -= 1
            excess -= 1
        return widths

    def _floor(self, i: int) -> int:
        """Narrowest column ``i`` may get: key columns never shrink; the others wrap at
        spaces only, so no word (a number, an id, an address) is ever broken."""
        if i < self.keys:
            return self._need(i)
        words = [w for r in self.rows if i < len(r) for w in r[i].split()]
        words += self.columns[i].split()
        return max([len(w) for w in words] + [1])

    def _table(self, cols: Sequence[int], max_width: int) -> Table:
        from rich import box  # noqa: PLC0415
        from rich.table import Table  # noqa: PLC0415

        t = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
        widths = self._widths(cols, max_width)
        for i in cols:
            # Fixed widths: rich would otherwise shrink columns to fit, cutting cells.
            right = i >= self.keys and all(_numeric(r[i]) for r in self.rows if i < len(r))
            t.add_column(self.columns[i], justify="right" if right else "left",
                         no_wrap=i < self.keys, overflow="fold", width=widths[i])
        for r in self.rows:
            t.add_row(*(r[i] if i < len(r) else "" for i in cols))
        return t

    def _fits(self, options: ConsoleOptions, cols: Sequence[int]) -> bool:
        """Whether ``cols`` fit side by side, wrapping text cells at spaces if need be."""
        return sum(self._floor(i) for i in cols) + 3 * (len(cols) - 1) <= options.max_width

    def _groups(self, options: ConsoleOptions) -> list[list[int]]:
        """The fewest groups of columns that fit (greedy), then the same number of groups
        with the columns spread evenly, when that fits too (no lone last column)."""
        key = list(range(self.keys))
        rest = list(range(self.keys, len(self.columns)))
        greedy: list[list[int]] = []
        current = list(key)
        for i in rest:
            if len(current) > len(key) and not self._fits(options, [*current, i]):
                greedy.append(current)
                current = [*key, i]
            else:
                current.append(i)
        greedy.append(current)
        n = len(greedy)
        size, extra = divmod(len(rest), n)
        even: list[list[int]] = []
        start = 0
        for g in range(n):
            stop = start + size + (1 if g < extra else 0)
            even.append([*key, *rest[start:stop]])
            start = stop
        return even if all(self._fits(options, g) for g in even) else greedy

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        from rich.text import Text  # noqa: PLC0415

        everything = list(range(len(self.columns)))
        groups = [everything] if self._fits(options, everything) else self._groups(options)
        for n, cols in enumerate(groups, 1):
            # The title is a line of its own: it wraps at the terminal, not the table.
            if self.title:
                yield Text(self.title if len(groups) == 1
                           else f"{self.title} ({n}/{len(groups)})", style="italic")
            yield self._table(cols, options.max_width)

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        from rich.measure import Measurement  # noqa: PLC0415

        return Measurement(1, options.max_width)


def _numeric(cell: str) -> bool:
    """A cell that reads as a number ("1,234", "5.2%", "-") is right-aligned."""
    text = cell.replace(",", "").rstrip("%").strip()
    if text in ("", "-"):
        return True
    try:
        float(text)
    except ValueError:
        return False
    return True


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[object]], *,
          keys: int = 1) -> StackedTable:
    """A table for people: the first ``keys`` columns identify a row and are never cut."""
    return StackedTable(title, columns, [[fmt(v) for v in row] for row in rows], keys)


def fmt(value: object) -> str:
    """One value as text for people: fixed-notation floats, no Python repr."""
    if isinstance(value, bool) or value is None:
        return {True: "yes", False: "no", None: "-"}[value]
    if isinstance(value, float):
        if not math.isfinite(value):
            return "-"
        if value == 0:
            return "0"
        if abs(value) >= 1e9 or abs(value) < 1e-4:
            return f"{value:.3g}"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.4g}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {fmt(v)}" for k, v in value.items()) or "none"
    if isinstance(value, list | tuple | set | frozenset):
        return ", ".join(fmt(v) for v in value) or "none"
    return str(value)

