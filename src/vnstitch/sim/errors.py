"""Errors of the simulator layer (one root: :class:`SimError`)."""

from __future__ import annotations

from vnstitch.errors import VnstitchError


class SimError(VnstitchError):
    """Root of every error raised on purpose by :mod:`vnstitch.sim`."""


class ScenarioError(SimError):
    """A scenario is invalid; the message names the file, the field and the problem."""

    def __init__(self, source: str, field: str, problem: str) -> None:
        where = f"{source}: {field}" if field else source
        super().__init__(f"{where}: {problem}")
        self.source = source
        self.field = field
        self.problem = problem
