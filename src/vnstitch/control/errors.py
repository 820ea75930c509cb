"""The control layer's one root exception."""

from __future__ import annotations

from vnstitch.errors import VnstitchError


class ControlError(VnstitchError):
    """A controller was given an impossible policy or input."""
