"""Explicit state machines: Enum states plus a transition table; bad moves raise.

Theory of operation: every stateful protocol object (stitch request, reservation hold,
tunnel) owns a :class:`Machine`. Its table maps each state to the set of states it may
move to; :meth:`Machine.move` checks the table and raises
:class:`~vnstitch.protocol.errors.InvalidTransitionError` otherwise. The tables are module
constants, so PROTOCOL.md can be generated from them (:func:`render_table`) and a test
checks the document matches the code.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Generic, TypeVar

from vnstitch.protocol.errors import InvalidTransitionError

S = TypeVar("S", bound=enum.Enum)


class Machine(Generic[S]):
    """The current state of one object and the table that constrains it."""

    __slots__ = ("name", "state", "table")

    def __init__(self, name: str, table: Mapping[S, frozenset[S]], initial: S) -> None:
        self.name = name
        self.table = table
        self.state = initial

    def can(self, new: S) -> bool:
        return new in self.table.get(self.state, frozenset())

    def move(self, new: S) -> S:
        """Go to ``new``; returns the old state. Raises InvalidTransitionError if not allowed."""
        old = self.state
        if new not in self.table.get(old, frozenset()):
            raise InvalidTransitionError(self.name, str(old.value), str(new.value))
        self.state = new
        return old


def render_table(title: str, table: Mapping[S, frozenset[S]]) -> str:
    """Markdown rendering of a transition table (used in PROTOCOL.md)."""
    lines = [f"#### {title}", "", "| from | to |", "|---|---|"]
    for old, news in table.items():
        targets = ", ".join(sorted(str(n.value) for n in news)) or "(terminal)"
        lines.append(f"| {old.value} | {targets} |")
    return "\n".join(lines) + "\n"
