"""Errors of the daemon layer (one root: :class:`DaemonError`).

Theory of operation: everything the daemon raises on purpose -- a bad config field, an
unreadable key file, a corrupted state database, a control request that failed -- derives
from :class:`DaemonError`, itself a :class:`~vnstitch.errors.VnstitchError`, so the CLI
prints one line and exits 2. Peer faults are never raised: the core turns them into
events that the daemon counts.
"""

from __future__ import annotations

from vnstitch.errors import VnstitchError


class DaemonError(VnstitchError):
    """Root of every error raised by :mod:`vnstitch.daemon`."""


class ConfigError(DaemonError):
    """A config file is invalid; the message names file, line, field path and problem."""


class KeyFileError(DaemonError):
    """A key file is missing, malformed or readable by others."""


class StateError(DaemonError):
    """The SQLite state database cannot be opened or is corrupted / of another schema."""


class ControlError(DaemonError):
    """A control-socket request failed (daemon not running, bad request, refused)."""
