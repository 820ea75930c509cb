"""The dataplane driver interface, shared by the ``memory`` and ``linux`` drivers.

Theory of operation: a driver owns a set of kernel (or simulated) objects. ``observe()``
reads back what it owns; ``apply(ops)`` carries out a plan from
:func:`~vnstitch.dataplane.objects.plan`; ``reconcile(desired)`` is observe + plan +
apply, returning the ops it ran (empty when already converged). Drivers raise
:class:`DataplaneError` (the layer's one root exception) naming the op that failed.

Drivers that can also *measure* (both ``memory`` and ``linux``) implement
:class:`CountingDriver`: ``counters(device)`` reads a device's cumulative rx/tx byte
counters (the kernel's 64-bit link statistics; counters a test sets in memory). It is a
separate protocol so a driver view that only plans and applies (e.g. the daemon's
allocation override view) need not pretend to count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from vnstitch.dataplane.objects import DataplaneState, Op, plan
from vnstitch.errors import VnstitchError


class DataplaneError(VnstitchError):
    """Root of every error raised by a dataplane driver."""


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


def reconcile(driver: DataplaneDriver, desired: DataplaneState) -> list[Op]:
    """Bring ``driver`` to ``desired``; returns the ops applied (``[]`` if converged)."""
    ops = plan(desired, driver.observe())
    if ops:
        driver.apply(ops)
    return ops
