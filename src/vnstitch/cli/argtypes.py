"""argparse value types that refuse what a command cannot use, with a one-line reason.

Theory of operation: ``type=float`` accepts ``inf``, ``nan`` and ``1e999``; these types
accept only finite numbers inside a stated range, so a bad flag ends as argparse's usage
error (exit 2), never as a traceback or a non-finite number sent to a daemon.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def finite_float(*, minimum: float = 0.0, strict: bool = True,
                 maximum: float = math.inf) -> Callable[[str], float]:
    """A float in (minimum, maximum] (``strict``) or [minimum, maximum]."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        if value < minimum or (strict and value == minimum):
            op = ">" if strict else ">="
            raise argparse.ArgumentTypeError(f"must be {op} {minimum:g}, got {text}")
        if value > maximum:
            raise argparse.ArgumentTypeError(f"must be at most {maximum:g}, got {text}")
        return value

    return parse


def bounded_int(minimum: int, maximum: int) -> Callable[[str], int]:
    """An integer in [minimum, maximum]."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(f"must be in {minimum}..{maximum}, got {text}")
        return value

    return parse
