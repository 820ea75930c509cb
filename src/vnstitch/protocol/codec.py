"""The signed envelope: encode a message for one peer; decode + verify + replay-check.

Theory of operation. A datagram is::

    "VS" | version (1 byte) | sender id (16) | recipient id (16) | body | signature (64)

where ``body`` is msgpack ``[seq, timestamp, type, payload]`` and the Ed25519 signature
covers every byte before it (so header, version and body are all authenticated). The
fixed header lets the receiver find the sender's key and verify *before* it unpacks
anything, so attacker-controlled msgpack never reaches the parser unless signed by a
trusted key. Decoding checks, in order: size, magic, version, known sender, signature,
recipient is us, timestamp within ``max_skew_s`` of ``now``, sequence number not
replayed, then the payload schema. Any failure raises
:class:`~vnstitch.protocol.errors.RemoteProtocolError` with a counter key as reason.

Sequence numbers are kept per (sender, recipient) pair, so each receiver sees a dense
series and a small window suffices.

:meth:`Codec.peek` reads the header and the start of the body *without* verifying
anything, for admission control before the (expensive) signature check: who claims to
send, the message type and whether the sequence number falls in the receive window.
Nothing it returns is trusted; it only decides how soon a datagram is verified. It comes
in two steps, :meth:`Codec.peek_header` (struct only) and :meth:`Codec.peek_body`
(msgpack), so a caller can drop a datagram on its header and source address before
paying for the body.

:data:`MAX_DATAGRAM` is a hard limit both ways: the encoder refuses to build a bigger
datagram (callers chunk), the decoder drops one.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import msgpack

from vnstitch.model.ids import RouteManagerId
from vnstitch.protocol.errors import ProtocolError, RemoteProtocolError
from vnstitch.protocol.identity import Identity, TrustStore
from vnstitch.protocol.messages import Message, message_from_wire
from vnstitch.protocol.replay import DEFAULT_WINDOW, ReplayWindow

MAGIC = b"VS"
VERSION = 1
HEADER_LEN = 2 + 1 + 16 + 16
SIGNATURE_LEN = 64
#: Hard size limit of one datagram: fits a 1500-byte MTU path with IPv6+UDP headers and
#: a WireGuard/VXLAN-free control channel to spare.
MAX_DATAGRAM = 1400
MIN_DATAGRAM = HEADER_LEN + 1 + SIGNATURE_LEN
DEFAULT_MAX_SKEW_S = 30.0
#: On restore, skip this many sequence numbers past the exported high-water mark so
#: numbers used after the last export (and before a crash) are never reused.
RESTART_SEQUENCE_GAP = 1 << 16

_HEADER = struct.Struct("!2sB16s16s")
#: How far above the highest sequence number seen from a sender a peeked number still
#: counts as "in window" (a peer sends densely; a restart jumps far beyond this).
PEEK_AHEAD = 4096


@dataclass(frozen=True, slots=True)
class Peek:
    """An unverified look at a datagram: ``problem`` is the drop reason the full decode
    would give for sure (None: it has to be verified to know)."""

    sender: RouteManagerId | None = None
    type_code: int | None = None
    in_window: bool = False
    problem: str | None = None


_OVERSIZED = Peek(problem="oversized")
_TRUNCATED = Peek(problem="truncated")
_BAD_MAGIC = Peek(problem="bad_magic")
_BAD_VERSION = Peek(problem="bad_version")


def _peek_body(body: bytes) -> tuple[int | None, int | None]:
    """(sequence number, message type) from ``[seq, ts, type, payload]``, if readable."""
    try:
        unpacker = msgpack.Unpacker(max_buffer_size=MAX_DATAGRAM)
        unpacker.feed(body)
        if unpacker.read_array_header() != 4:
            return None, None
        seq, _ts, type_code = unpacker.unpack(), unpacker.unpack(), unpacker.unpack()
    except Exception:  # msgpack raises several unrelated types on bad input
        return None, None
    return (seq if type(seq) is int else None,
            type_code if type(type_code) is int else None)


class Codec:
    """Signs outgoing and checks incoming datagrams for one Route Manager."""

    def __init__(
        self,
        identity: Identity,
        trust: TrustStore,
        *,
        max_skew_s: float = DEFAULT_MAX_SKEW_S,
        replay_window: int = DEFAULT_WINDOW,
    ) -> None:
        self.identity = identity
        self.trust = trust
        self.max_skew_s = max_skew_s
        self.replay_window = replay_window
        self._own_raw = bytes.fromhex(identity.rm_id)
        self._send_seq: dict[RouteManagerId, int] = {}
        self._windows: dict[RouteManagerId, ReplayWindow] = {}

    # -- encode --------------------------------------------------------------------------
    def encode(self, recipient: RouteManagerId, msg: Message, now: float) -> bytes:
        seq = self._send_seq.get(recipient, 0) + 1
        self._send_seq[recipient] = seq
        return self.encode_with(recipient, msg, now, seq)

    def encode_with(self, recipient: RouteManagerId, msg: Message, now: float,
                    seq: int) -> bytes:
        """Encode with an explicit sequence number (tests use it to build replays)."""
        head = _HEADER.pack(MAGIC, VERSION, self._own_raw, bytes.fromhex(recipient))
        body: bytes = msgpack.packb([seq, float(now), int(msg.TYPE), msg.to_wire()],
                                    use_bin_type=True)
        signed = head + body
        if len(signed) + SIGNATURE_LEN > MAX_DATAGRAM:
            raise ProtocolError(
                f"{msg.TYPE.name} message of {len(signed) + SIGNATURE_LEN} bytes exceeds the "
                f"{MAX_DATAGRAM}-byte limit (callers must chunk)")
        return signed + self.identity.sign(signed)

    # -- decode --------------------------------------------------------------------------
    def decode(self, datagram: bytes, now: float) -> tuple[RouteManagerId, Message]:
        """Return (sender, message) or raise RemoteProtocolError(reason)."""
        if not isinstance(datagram, bytes | bytearray | memoryview):
            raise RemoteProtocolError("malformed", "not bytes")
        size = len(datagram)
        if size > MAX_DATAGRAM:
            raise RemoteProtocolError("oversized", f"{size} > {MAX_DATAGRAM} bytes")
        if size < MIN_DATAGRAM:
            raise RemoteProtocolError("truncated", f"{size} bytes")
        data = bytes(datagram)
        magic, version, sender_raw, recipient_raw = _HEADER.unpack_from(data)
        if magic != MAGIC:
            raise RemoteProtocolError("bad_magic")
        if version != VERSION:
            raise RemoteProtocolError("bad_version", f"version {version}")
        sender = RouteManagerId(sender_raw.hex())
        if sender not in self.trust:
            raise RemoteProtocolError("unknown_sender", sender)
        signed = data[:-SIGNATURE_LEN]
        if not self.trust.verify(sender, data[-SIGNATURE_LEN:], signed):
            raise RemoteProtocolError("bad_signature", sender)
        if recipient_raw != self._own_raw:
            raise RemoteProtocolError("wrong_recipient", sender)
        try:
            body: Any = msgpack.unpackb(signed[HEADER_LEN:], raw=False, strict_map_key=True,
                                        max_bin_len=MAX_DATAGRAM, max_str_len=MAX_DATAGRAM)
        except Exception as exc:  # msgpack raises several unrelated types on bad input
            raise RemoteProtocolError("malformed", f"msgpack: {type(exc).__name__}") from None
        if type(body) is not list or len(body) != 4:
            raise RemoteProtocolError("malformed", "envelope is not [seq, ts, type, payload]")
        seq, ts, type_code, payload = body
        if type(seq) is not int or seq < 1 or type(ts) is not float:
            raise RemoteProtocolError("malformed", "sequence number or timestamp")
        if not abs(now - ts) <= self.max_skew_s:  # also catches NaN
            raise RemoteProtocolError("stale", f"timestamp {ts} vs now {now}")
        window = self._windows.get(sender)
        if window is None:
            window = self._windows[sender] = ReplayWindow(self.replay_window)
        refused = window.check(seq)
        if refused is not None:
            raise RemoteProtocolError(refused, f"sequence {seq}")
        return sender, message_from_wire(type_code, payload)

    # -- unverified peek (admission control) -----------------------------------------------
    def peek(self, datagram: bytes) -> Peek:
        """What the datagram *claims*, cheaply and unverified (see the module docstring)."""
        head = self.peek_header(datagram)
        return head if head.problem is not None else self.peek_body(datagram, head)

    def peek_header(self, datagram: bytes) -> Peek:
        """The fixed header only (size, magic, version, sender, recipient): no msgpack.
        Enough to drop what the full decode would refuse, and to check the claimed
        sender against the source address, before :meth:`peek_body` unpacks anything."""
        size = len(datagram)
        if size > MAX_DATAGRAM:
            return _OVERSIZED
        if size < MIN_DATAGRAM:
            return _TRUNCATED
        magic, version, sender_raw, recipient_raw = _HEADER.unpack_from(datagram)
        if magic != MAGIC:
            return _BAD_MAGIC
        if version != VERSION:
            return _BAD_VERSION
        sender = RouteManagerId(sender_raw.hex())
        if sender not in self.trust:
            return Peek(sender, problem="unknown_sender")
        if recipient_raw != self._own_raw:
            return Peek(sender, problem="wrong_recipient")
        return Peek(sender)

    def peek_body(self, datagram: bytes, head: Peek) -> Peek:
        """``head`` (a problem-free :meth:`peek_header`) plus the claimed sequence number's
        place in the receive window and the message type, from the start of the body."""
        seq, type_code = _peek_body(bytes(datagram[HEADER_LEN:-SIGNATURE_LEN]))
        window = self._windows.get(head.sender) if head.sender is not None else None
        in_window = (seq is not None and window is not None and window.highest > 0
                     and window.highest - self.replay_window < seq
                     <= window.highest + PEEK_AHEAD)
        return Peek(head.sender, type_code, in_window)

    # -- persistence ---------------------------------------------------------------------
    def export_state(self) -> dict[str, Any]:
        return {"send_seq": dict(self._send_seq),
                "recv_high": {rm: w.highest for rm, w in self._windows.items()}}

    def restore_state(self, state: dict[str, Any]) -> None:
        for rm, seq in state.get("send_seq", {}).items():
            self._send_seq[RouteManagerId(rm)] = int(seq) + RESTART_SEQUENCE_GAP
        for rm, high in state.get("recv_high", {}).items():
            self._windows[RouteManagerId(rm)] = ReplayWindow(self.replay_window, int(high))
