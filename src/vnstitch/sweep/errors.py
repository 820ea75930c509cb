"""Errors of the sweep layer (one root: :class:`SweepError`)."""

from __future__ import annotations

from vnstitch.errors import VnstitchError


class SweepError(VnstitchError):
    """Root of every error raised on purpose by :mod:`vnstitch.sweep`."""


class SpecError(SweepError):
    """A sweep spec is invalid; the message names the file, the field and the problem."""

    def __init__(self, source: str, field: str, problem: str) -> None:
        where = f"{source}: {field}" if field else source
        super().__init__(f"{where}: {problem}")
        self.source = source
        self.field = field
        self.problem = problem


class ResultsError(SweepError):
    """A results file cannot be read or does not belong to this sweep."""
