"""Errors of the Stitching Protocol layer (one root: :class:`ProtocolError`).

Theory of operation: :class:`RemoteProtocolError` is what the decoder raises for bytes a
peer sent (it carries a short machine-readable ``reason`` used as a drop counter key);
the core catches it and turns it into a ``PeerFault`` event, so it never reaches a
driver. :class:`InvalidTransitionError` is a local programming/logic error: a state machine
was asked for a transition its table does not allow.
"""

from __future__ import annotations

from vnstitch.errors import VnstitchError


class ProtocolError(VnstitchError):
    """Root of every error raised by :mod:`vnstitch.protocol`."""


class RemoteProtocolError(ProtocolError):
    """A datagram from a peer is unusable; ``reason`` is a short counter key."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class InvalidTransitionError(ProtocolError):
    """A state machine was asked for a transition its table forbids."""

    def __init__(self, machine: str, old: str, new: str) -> None:
        super().__init__(f"{machine}: invalid transition {old} -> {new}")
        self.machine = machine
        self.old = old
        self.new = new
