"""Errors of the domain-model layer (one root: :class:`ModelError`)."""

from __future__ import annotations

from vnstitch.errors import VnstitchError


class ModelError(VnstitchError):
    """Root of every error raised by :mod:`vnstitch.model`."""


class TopologyLoadError(ModelError):
    """A topology file could not be loaded; the message names file, element and problem."""

    def __init__(self, source: str, element: str, problem: str) -> None:
        super().__init__(f"{source}: {element}: {problem}")
        self.source = source
        self.element = element
        self.problem = problem
