"""The allocation layer's one root exception.

Theory of operation: everything the allocator raises on purpose (bad trace, bad profile,
unknown resource, a provider refusing malformed input) is an :class:`AllocateError`, which
derives from :class:`vnstitch.errors.VnstitchError` so the CLI turns it into one line and
exit code 2. Refusals that are part of normal operation (quota exhausted, scheduled
failure) are *not* exceptions: providers return them as results with a reason.
"""

from __future__ import annotations

from vnstitch.errors import VnstitchError


class AllocateError(VnstitchError):
    """Root of every error raised by :mod:`vnstitch.allocate`."""
