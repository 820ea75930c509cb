"""Errors of the routing layer (one root: :class:`RoutingError`)."""

from __future__ import annotations

from vnstitch.errors import VnstitchError


class RoutingError(VnstitchError):
    """Root of every error raised by :mod:`vnstitch.routing`."""


class NoPathError(RoutingError):
    """No path satisfies the request (names the endpoints and the constraint)."""


class DemandFileError(RoutingError):
    """A demand file is malformed; the message names the file, line and column."""

    def __init__(self, source: str, line: int, column: str, problem: str) -> None:
        super().__init__(f"{source}: line {line}, column {column}: {problem}")
        self.source, self.line, self.column, self.problem = source, line, column, problem


class PolicyError(RoutingError):
    """A QoS policy is invalid; the message names the field (dotted path) and the problem."""

    def __init__(self, source: str, field: str, problem: str) -> None:
        super().__init__(f"{source}: {field}: {problem}")
        self.source, self.field, self.problem = source, field, problem
