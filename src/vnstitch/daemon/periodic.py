"""One asyncio task that runs a coroutine every so often, for the daemon's runners.

Theory of operation: allocation, congestion, the PRA and the held-path sampler each
repeat one step (a *tick*) on the daemon's event loop. :class:`PeriodicTask` is that
loop, once: it waits ``interval_s`` (first, or after the first tick with
``at_once=True``), awaits the tick, and repeats until :meth:`PeriodicTask.stop`. A tick
that raises is logged with its name and counted (``failures``, and ``counters[key]``
when a counter is passed in, such as the daemon's metrics) and the next one runs on
time: a failing tick never ends the loop. Cancellation is the only way out.

Clock: the wait is the ``sleep`` passed in, by default :func:`asyncio.sleep`, which
runs on the event loop's clock; tests on a loop in virtual time
(``tests/daemon/virtualtime.py``) therefore skip the waits instead of sleeping. The wait
is measured from the end of one tick to the start of the next (no catch-up bursts after
a slow tick on a loaded host).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable

log = logging.getLogger("vnstitch.daemon")


class PeriodicTask:
    """Runs ``tick`` every ``interval_s`` on the running loop; ``start()``, ``await
    stop()``. ``interval_s`` may change between ticks (read before each wait)."""

    def __init__(self, name: str, tick: Callable[[], Awaitable[object]], interval_s: float,
                 *, at_once: bool = False, counters: Counter[str] | None = None,
                 key: str = "", sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
                 logger: logging.Logger = log) -> None:
        self.name = name
        self.interval_s = interval_s
        self.ticks = 0
        self.failures = 0
        self._tick = tick
        self._at_once = at_once
        self._counters = counters
        self._key = key or f"{name}_errors"
        self._sleep = sleep
        self._log = logger
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Start on ``loop`` (default: the running one); no-op when already started."""
        if self._task is None:
            loop = loop if loop is not None else asyncio.get_running_loop()
            self._task = loop.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        """Cancel the loop and wait until it has ended (a tick in progress is cancelled)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        if not self._at_once:
            await self._sleep(self.interval_s)
        while True:
            try:
                await self._tick()
            except Exception:  # never let the loop die: log, count, next interval
                self._log.exception("%s tick failed", self.name)
                self.failures += 1
                if self._counters is not None:
                    self._counters[self._key] += 1
            self.ticks += 1
            await self._sleep(self.interval_s)
