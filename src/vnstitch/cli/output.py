"""Output helpers shared by subcommands: JSON printing, rich tables, progress bars.

Theory of operation: a command computes one plain ``dict`` result; with ``--json`` it is
printed as one JSON object on stdout (and nothing else goes to stdout), otherwise the
command renders it for people with rich. Progress bars draw on stderr and only when
stderr is a terminal, so piping and CI logs stay clean.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def _clean(value: Any) -> Any:
    """JSON has no NaN/inf: map them to null so the output always parses."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def print_json(result: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(_clean(result), indent=2, sort_keys=False) + "\n")


def console() -> Console:
    return Console(highlight=False)


def progress(disable: bool = False) -> Progress:
    """A progress bar on stderr; silent when stderr is not a terminal or ``disable``."""
    err = Console(stderr=True)
    return Progress(
        TextColumn("[progress.description]{task.description}"), BarColumn(),
        MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
        console=err, disable=disable or not err.is_terminal, transient=True,
    )


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[object]]) -> Table:
    t = Table(title=title, title_justify="left")
    for i, col in enumerate(columns):
        t.add_column(col, justify="left" if i == 0 else "right")
    for row in rows:
        t.add_row(*(fmt(v) for v in row))
    return t


def fmt(value: object) -> str:
    if isinstance(value, float):
        if not math.isfinite(value):
            return "-"
        if value != 0 and (abs(value) >= 1e9 or abs(value) < 1e-3):
            return f"{value:.3g}"
        return f"{value:.4g}"
    return str(value)
