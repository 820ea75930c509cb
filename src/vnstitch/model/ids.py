"""Typed identifiers of the domain: virtual networks, segments and Route Managers.

Theory of operation: identifiers are ``NewType`` wrappers over plain ``int``/``str`` so
they cost nothing at run time yet mypy keeps them apart. The constructor functions
(:func:`vnid`, :func:`segment_id`, :func:`route_manager_id`) validate untrusted input and
raise :class:`~vnstitch.model.errors.ModelError` saying what is wrong.
"""

from __future__ import annotations

import hashlib
import re
from typing import NewType

from vnstitch.model.errors import ModelError

VNID = NewType("VNID", int)
"""A virtual network identifier; doubles as the VXLAN VNI, so it is 24 bits."""

SegmentId = NewType("SegmentId", str)
"""Name of a substrate segment (one Route Manager runs per segment)."""

RouteManagerId = NewType("RouteManagerId", str)
"""Route Manager id: 32 lowercase hex digits derived from the RM's Ed25519 public key."""

VNID_MAX = (1 << 24) - 1
_SEGMENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
_RM_RE = re.compile(r"^[0-9a-f]{32}$")


def vnid(value: object) -> VNID:
    """Validate ``value`` as a VNID (an int in 1..2**24-1)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ModelError(f"VNID must be an integer, got {type(value).__name__} {value!r}")
    if not 1 <= value <= VNID_MAX:
        raise ModelError(f"VNID {value} out of range 1..{VNID_MAX}")
    return VNID(value)


def segment_id(value: object) -> SegmentId:
    """Validate ``value`` as a segment name (1-64 chars of ``[A-Za-z0-9_.:-]``)."""
    if not isinstance(value, str) or not _SEGMENT_RE.match(value):
        raise ModelError(
            f"segment id must be 1-64 characters of letters, digits, '_.:-', got {value!r}"
        )
    return SegmentId(value)


def route_manager_id(value: object) -> RouteManagerId:
    """Validate ``value`` as a Route Manager id (32 lowercase hex digits)."""
    if not isinstance(value, str) or not _RM_RE.match(value):
        raise ModelError(f"Route Manager id must be 32 lowercase hex digits, got {value!r}")
    return RouteManagerId(value)


def route_manager_id_from_public_key(public_key: bytes) -> RouteManagerId:
    """Derive the RM id from a raw 32-byte Ed25519 public key (first 16 bytes of SHA-256)."""
    if len(public_key) != 32:
        raise ModelError(f"Ed25519 public key must be 32 bytes, got {len(public_key)}")
    return RouteManagerId(hashlib.sha256(public_key).hexdigest()[:32])
