"""Replay protection: a sliding-window bitmap of seen sequence numbers per sender.

Theory of operation (as in IPsec, RFC 4303 3.4.3): for each sender we keep the highest
sequence number accepted and a bitmap of which of the ``size`` numbers below it were
seen. A number above the highest slides the window; one inside it is accepted once; one
older than the window is refused (it cannot be told apart from a replay). Sequence
numbers start at 1. The state is two ints, so exporting it for a restart is trivial;
after a restart the restored window treats everything up to the high-water mark as seen.
"""

from __future__ import annotations

DEFAULT_WINDOW = 256


class ReplayWindow:
    __slots__ = ("bitmap", "highest", "mask", "size")

    def __init__(self, size: int = DEFAULT_WINDOW, highest: int = 0) -> None:
        self.size = size
        self.mask = (1 << size) - 1
        self.highest = highest
        # Bit i set: sequence number ``highest - i`` was seen. On restore, all of them.
        self.bitmap = self.mask if highest else 1

    def check(self, seq: int) -> str | None:
        """None if ``seq`` is fresh (and marks it seen); else the drop reason."""
        if seq > self.highest:
            self.bitmap = ((self.bitmap << (seq - self.highest)) | 1) & self.mask
            self.highest = seq
            return None
        offset = self.highest - seq
        if offset >= self.size:
            return "too_old"
        bit = 1 << offset
        if self.bitmap & bit:
            return "replayed"
        self.bitmap |= bit
        return None
