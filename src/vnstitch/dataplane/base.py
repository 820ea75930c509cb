"""The dataplane driver interface, shared by the ``memory`` and ``linux`` drivers.

Theory of operation: a driver owns a set of kernel (or simulated) objects. ``observe()``
reads back what it owns; ``apply(ops)`` carries out a plan from
:func:`~vnstitch.dataplane.objects.plan`; ``reconcile(desired)`` is observe + plan +
apply, returning the ops it ran (empty when already converged). Drivers raise
:class:`DataplaneError` (the layer's one root exception) naming the op that failed.

*Per object.* One object the kernel refuses must not keep the others from converging:
``apply`` tries every op of the plan, and when some fail raises
:class:`DataplaneApplyError` listing each failed object (its key and error) and the ops
that did apply. ``reconcile(..., skip=keys)`` leaves the ops of ``skip`` out of this
pass -- the caller's per-object backoff (:mod:`vnstitch.dataplane.retry`) decides them.

Drivers that can also *measure* (both ``memory`` and ``linux``) implement
:class:`CountingDriver`: ``counters(device)`` reads a device's cumulative rx/tx byte
counters (the kernel's 64-bit link statistics; counters a test sets in memory). It is a
separate protocol so a driver view that only plans and applies (e.g. the daemon's
allocation override view) need not pretend to count.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from vnstitch.dataplane.objects import DataplaneState, Op, plan
from vnstitch.errors import VnstitchError


class DataplaneError(VnstitchError):
    """Root of every error raised by a dataplane driver."""


class DataplaneApplyError(DataplaneError):
    """Some ops of a plan failed, the others were applied.

    ``failures``: object key -> error text (naming the op); ``applied``: the ops that
    took effect, in order."""

    def __init__(self, failures: dict[str, str], applied: Sequence[Op]) -> None:
        super().__init__("; ".join(failures.values()))
        self.failures = dict(failures)
        self.applied = list(applied)


@runtime_checkable
class DataplaneDriver(Protocol):
    def observe(self) -> DataplaneState: ...

    def apply(self, ops: Sequence[Op]) -> None: ...


@dataclass(frozen=True, slots=True)
class DeviceCounters:
    """Cumulative bytes a device received and sent since it was created."""

    device: str
    rx_bytes: int
    tx_bytes: int


@runtime_checkable
class CountingDriver(DataplaneDriver, Protocol):
    def counters(self, device: str) -> DeviceCounters:
        """The device's byte counters; :class:`DataplaneError` naming it if it is missing."""
        ...


def reconcile(driver: DataplaneDriver, desired: DataplaneState,
              skip: Collection[str] = ()) -> list[Op]:
    """Bring ``driver`` to ``desired``, except objects whose key is in ``skip``; returns
    the ops applied (``[]`` if converged). :class:`DataplaneApplyError` when some failed."""
    ops = [op for op in plan(desired, driver.observe()) if op.obj.key not in skip]
    if ops:
        driver.apply(ops)
    return ops
