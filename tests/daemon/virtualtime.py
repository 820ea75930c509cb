"""An asyncio event loop in virtual time, for daemon tests that would otherwise sleep.

Theory of operation: the loop's ``time()`` is a number this module keeps. Its selector
polls the real sockets without waiting; when nothing is ready, instead of blocking for
the time until the next timer it adds that time to the clock, so the timer is due at
once. Datagrams between daemons in one process over loopback UDP are already in the
receiving socket when ``sendto`` returns, so nothing in flight is skipped over. For work
that finishes in another thread (the Linux driver's reconcile, ``asyncio.to_thread``
clients of the control socket) the clock would run ahead of it: such tests stay in real
time, and these use the in-memory dataplane. With no timer at all it waits for real.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Awaitable, Mapping
from typing import Any, TypeVar

T = TypeVar("T")


class _JumpingSelector(selectors.BaseSelector):
    def __init__(self, loop: VirtualTimeLoop) -> None:
        self._real = selectors.DefaultSelector()
        self._loop = loop

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def select(self, timeout: float | None = None
               ) -> list[tuple[selectors.SelectorKey, int]]:
        ready = self._real.select(0)
        if ready or timeout is None:
            return ready or self._real.select(None)
        self._loop.advance(timeout)
        return []

    def close(self) -> None:
        self._real.close()

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._real.get_map()


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """A selector event loop whose clock jumps to the next timer when nothing is ready."""

    def __init__(self) -> None:
        self._virtual_now = 0.0
        super().__init__(_JumpingSelector(self))

    def time(self) -> float:
        return self._virtual_now

    def advance(self, seconds: float) -> None:
        self._virtual_now += max(seconds, 0.0)


def run_virtual(coro: Awaitable[T], timeout_s: float = 600.0) -> T:
    """Run one async test body on a :class:`VirtualTimeLoop` (``timeout_s`` virtual)."""
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(asyncio.wait_for(coro, timeout_s))
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
