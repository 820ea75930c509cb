"""Bounds of the numbers an operator may ask a Route Manager for (one home for them).

Theory of operation: the request models of the control socket and the HTTP API
(:mod:`vnstitch.daemon.api_models`) refuse values outside these bounds and the
CLI refuses the same flags before sending anything, so a typo or a hostile client gets a
one-line reason instead of a stored ``Infinity`` or an ``OverflowError``.
"""

from __future__ import annotations

#: Largest bandwidth one stitch may ask for (1 Tbit/s): anything above is a typo.
MAX_BANDWIDTH_MBPS = 1_000_000.0
#: Longest a client may wait on one control request.
MAX_WAIT_S = 3600.0
#: Most Route Managers a path may cross.
MAX_HOP_LIMIT = 255
#: Longest a stitch request may ask its capacity refusals to be retried (a year).
MAX_RETRY_FOR_S = 365 * 86400.0
