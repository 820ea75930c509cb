"""The package's root exception.

Theory of operation: every layer has one root exception (``ModelError``,
``DataplaneError``, ``ProtocolError``, ...) and each of those derives from
:class:`VnstitchError`, so the CLI can turn any of them into a one-line message and exit
code 2 without catching programming errors.
"""

from __future__ import annotations


class VnstitchError(Exception):
    """Root of every error vnstitch raises on purpose (bad input, failed operation)."""
