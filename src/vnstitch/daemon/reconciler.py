"""Keeps the dataplane at the daemon's desired state: inline or in a worker thread, with
per-object backoff.

Theory of operation. :meth:`Reconciler.request` asks for a pass against the *latest*
desired state. With the in-memory driver the pass runs inline. The Linux driver does
netlink round trips and starts ``wireguard-go`` (tens to hundreds of milliseconds) and
refuses to run on the event loop's thread, so for it a request only marks the dataplane
dirty; one worker at a time runs ``reconcile`` via ``asyncio.to_thread`` and runs again
if the state changed meanwhile (changes coalesce, never interleave). Datagrams of a
batch that changed the dataplane (and any sent after them, to keep per-peer order) are
held in a bounded queue (:meth:`defer`) and sent after the pass covering that change:
the target's COMMIT_ACK must not reach the origin before the target's WireGuard device
listens, or the origin's first handshake is lost and WireGuard waits its 5 s rekey.

Per object: the driver tries every op and names the objects that failed
(:class:`~vnstitch.dataplane.base.DataplaneApplyError`); those wait out a capped
exponential backoff with jitter (:class:`~vnstitch.dataplane.retry.ObjectRetry`) and are
left out of passes until due, while every other object keeps converging. A pass that
fails as a whole (the driver cannot even observe) is retried after
:data:`RECONCILE_RETRY_S`.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from collections.abc import Callable

from vnstitch.dataplane.base import (
    DataplaneApplyError,
    DataplaneDriver,
    DataplaneError,
    reconcile,
)
from vnstitch.dataplane.objects import DataplaneState, Op
from vnstitch.dataplane.retry import ObjectRetry
from vnstitch.protocol.api import SendDatagram

log = logging.getLogger("vnstitch.daemon")

#: Retry delay after a reconcile pass that failed as a whole.
RECONCILE_RETRY_S = 1.0
#: Datagrams held back while a reconcile pass runs (the protocol retransmits the rest).
MAX_DEFERRED_SENDS = 4096


class Reconciler:
    def __init__(self, driver: DataplaneDriver, *, offload: bool, rng: random.Random,
                 desired: Callable[[], DataplaneState], now: Callable[[], float],
                 send: Callable[[SendDatagram], None], metrics: Counter[str]) -> None:
        self.driver = driver
        self.offload = offload
        self.retry = ObjectRetry(rng)
        self._desired, self._now, self._send, self._metrics = desired, now, send, metrics
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._dirty = False
        self._deferred: list[SendDatagram] = []
        self._holding = False
        self._retry_timer: asyncio.TimerHandle | None = None
        self.last_ops: list[str] = []
        #: Passes finished so far (whole or in part).
        self.passes = 0

    def open(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    async def stop(self) -> None:
        """No new passes or retries; let a running kernel apply finish."""
        if self._retry_timer is not None:
            self._retry_timer.cancel()
            self._retry_timer = None
        self._loop = None
        if self._task is not None:
            self._dirty = False
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    @property
    def busy(self) -> bool:
        """A worker pass is running (or about to)."""
        return self._task is not None

    def covering_pass(self) -> int:
        """How many passes must have finished (:attr:`passes` above it) before one that
        read the desired state as it is now has: a running pass may have read it before."""
        return self.passes + (1 if self.busy else 0)

    # -- passes -----------------------------------------------------------------------
    def request(self) -> None:
        """Bring the dataplane to the desired state (inline, or via the worker)."""
        if self._retry_timer is not None:
            self._retry_timer.cancel()
            self._retry_timer = None
        if self.offload:
            self._dirty = True
            if self._task is None and self._loop is not None:
                self._task = self._loop.create_task(self._worker())
            return
        now = self._now()
        waiting = self.retry.waiting(now)
        try:
            ops = reconcile(self.driver, self._desired(), waiting)
        except DataplaneError as exc:
            self._failed(exc, waiting, now)
            return
        self._reconciled(ops, waiting)

    async def pass_off_loop(self) -> bool:
        """One reconcile in a worker thread against the current desired state."""
        desired = self._desired()
        now = self._now()
        waiting = self.retry.waiting(now)
        try:
            ops = await asyncio.to_thread(reconcile, self.driver, desired, waiting)
        except DataplaneError as exc:
            self._failed(exc, waiting, now)
            return False
        self._reconciled(ops, waiting)
        return True

    async def _worker(self) -> None:
        try:
            while self._dirty and self._loop is not None:
                self._dirty = False
                sends, self._deferred = self._deferred, []
                # While this pass holds sends, later ones wait too (per-peer order; a
                # retransmitted COMMIT's ack must not beat the first one's pass).
                self._holding = bool(sends)
                ok = await self.pass_off_loop()
                self._holding = False
                for send in sends:  # sent even after a failed pass: the protocol goes on
                    self._send(send)
                if not ok:
                    break
        finally:
            self._task, self._holding = None, False
            sends, self._deferred = self._deferred, []
            for send in sends:
                self._send(send)

    def _reconciled(self, ops: list[Op], waiting: frozenset[str]) -> None:
        self.last_ops = [str(op) for op in ops]
        self.passes += 1
        self._metrics["dataplane_ops"] += len(ops)
        self._metrics["reconciles"] += 1
        # Every object tried in this pass converged (applied, or nothing to do).
        self.retry.succeeded([k for k in self.retry.failing if k not in waiting])
        if ops:
            log.info("dataplane: %s", "; ".join(self.last_ops))
        self._schedule_retry()

    def _failed(self, exc: DataplaneError, waiting: frozenset[str], now: float) -> None:
        self._metrics["dataplane_errors"] += 1
        if isinstance(exc, DataplaneApplyError):
            # Some objects failed, the others applied: back off those objects only.
            self._metrics["dataplane_object_errors"] += len(exc.failures)
            self.retry.failed(exc.failures, now)
            self._reconciled(exc.applied, waiting | frozenset(exc.failures))
            log.error("dataplane: %d object(s) failed (each retried with backoff): %s",
                      len(exc.failures), exc)
            return
        log.error("dataplane reconcile failed (will retry): %s", exc)
        if self._loop is not None:
            self._retry_timer = self._loop.call_later(RECONCILE_RETRY_S, self.request)

    def _schedule_retry(self) -> None:
        due = self.retry.next_due()
        if due is None or self._loop is None:
            return
        if self._retry_timer is not None:
            self._retry_timer.cancel()
        self._retry_timer = self._loop.call_later(max(0.0, due - self._now()), self.request)

    # -- sends held for a pass ---------------------------------------------------------
    def defer(self, sends: list[SendDatagram], dataplane_changed: bool) -> bool:
        """Hold ``sends`` until the running pass ends (True), or not (False: send now)."""
        if self._task is None or not (dataplane_changed or self._deferred or self._holding):
            return False
        self._deferred.extend(sends)
        if len(self._deferred) > MAX_DEFERRED_SENDS:  # bounded: drop the oldest
            drop = len(self._deferred) - MAX_DEFERRED_SENDS
            del self._deferred[:drop]
            self._metrics["deferred_sends_dropped"] += drop
        return True
