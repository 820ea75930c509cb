"""Field validators of the Stitching Protocol's wire form, shared by every message module.

Theory of operation: each validator takes one decoded msgpack value and the field's name,
and returns the typed value or raises :class:`~vnstitch.protocol.errors.RemoteProtocolError`
("malformed") naming the field, so a bad datagram is refused with what and where. The size
limits here bound every message (one datagram, see :mod:`vnstitch.protocol.codec`).
"""

from __future__ import annotations

import enum
import math
from typing import Any

from vnstitch.model.ids import VNID, RouteManagerId
from vnstitch.protocol.errors import RemoteProtocolError

#: Longest path (RMs) a message carries: 64 x 16 bytes still fits one datagram.
MAX_PATH = 64
MAX_COMPONENTS = 24
MAX_COMPONENT_LEN = 48
MAX_ENTRIES = 64
#: Most reservation tokens one LEASES message lists (tokens are <= 40 characters).
MAX_TOKENS = 64
MAX_TOKEN_LEN = 40


class MsgType(enum.IntEnum):
    HELLO = 1
    UPDATE = 2
    RESYNC = 3
    QUERY = 4
    OFFER = 5
    HOLD = 6
    HOLD_OK = 7
    HOLD_REFUSED = 8
    COMMIT = 9
    COMMIT_ACK = 10
    ABORT = 11
    PROBE = 12
    PROBE_REPLY = 13
    PATH_DOWN = 14
    LEASES = 15
    RESIZE = 16
    RESIZE_OK = 17
    RESIZE_REFUSED = 18
    QUERY_REFUSED = 19
    REVOCATIONS = 20
    CONGESTION = 21


# -- field validators (raise RemoteProtocolError("malformed", field)) ----------------


def _bad(field: str, value: object) -> RemoteProtocolError:
    return RemoteProtocolError("malformed", f"field {field}: bad value {value!r:.60}")


def _int(v: Any, field: str, lo: int = 0, hi: int = (1 << 63) - 1) -> int:
    if type(v) is not int or not lo <= v <= hi:
        raise _bad(field, v)
    return v


def _num(v: Any, field: str, allow_inf: bool = False) -> float:
    if type(v) is int:
        v = float(v)
    if type(v) is not float or math.isnan(v) or v < 0 or (not allow_inf and math.isinf(v)):
        raise _bad(field, v)
    return v


def _str(v: Any, field: str, maxlen: int) -> str:
    if type(v) is not str or len(v) > maxlen:
        raise _bad(field, v)
    return v


def _bytes(v: Any, field: str, n: int) -> bytes:
    if type(v) is not bytes or len(v) != n:
        raise _bad(field, v)
    return v


def _list(v: Any, field: str, maxlen: int, n: int | None = None) -> list[Any]:
    if type(v) is not list or len(v) > maxlen or (n is not None and len(v) != n):
        raise _bad(field, v)
    return v


def _rm(v: Any, field: str) -> RouteManagerId:
    return RouteManagerId(_bytes(v, field, 16).hex())


def _path(v: Any, field: str, min_len: int = 1) -> tuple[RouteManagerId, ...]:
    """A path travels as one byte string: the 16-byte ids back to back (one msgpack
    header and one hex conversion per path instead of one per hop)."""
    if type(v) is not bytes or len(v) % 16 or not min_len * 16 <= len(v) <= MAX_PATH * 16:
        raise _bad(field, v)
    h = v.hex()
    # RouteManagerId is a NewType of str: slicing gives the ids without a call per hop.
    path: tuple[RouteManagerId, ...] = tuple([h[i:i + 32]  # type: ignore[misc]
                                              for i in range(0, len(h), 32)])
    if len(set(path)) != len(path):
        raise _bad(field, "repeated Route Manager in path")
    return path


def _vnid(v: Any, field: str = "vnid") -> VNID:
    return VNID(_int(v, field, 1, (1 << 24) - 1))


def _comps(v: Any, field: str = "components") -> tuple[str, ...]:
    return tuple(_str(c, field, MAX_COMPONENT_LEN) for c in _list(v, field, MAX_COMPONENTS))


def wire_rm(rm: RouteManagerId) -> bytes:
    return bytes.fromhex(rm)


def wire_path(path: tuple[RouteManagerId, ...]) -> bytes:
    return bytes.fromhex("".join(path))


def _unpack(payload: Any, n: int, name: str) -> list[Any]:
    return _list(payload, name, n, n)
