"""The dataplane driver interface, shared by the ``memory`` and ``linux`` drivers.

Theory of operation: a driver owns a set of kernel (or simulated) objects. ``observe()``
reads back what it owns; ``apply(ops)`` carries out a plan from
:func:`~vnstitch.dataplane.objects.plan`; ``reconcile(desired)`` is observe + plan +
apply, returning the ops it ran (empty when already converged). Drivers raise
:class:`DataplaneError` (the layer's one root exception) naming the op that failed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from vnstitch.dataplane.objects import DataplaneState, Op, plan
from vnstitch.errors import VnstitchError


class DataplaneError(VnstitchError):
    """Root of every error raised by a dataplane driver."""


@runtime_checkable
class DataplaneDriver(Protocol):
    def observe(self) -> DataplaneState: ...

    def apply(self, ops: Sequence[Op]) -> None: ...


def reconcile(driver: DataplaneDriver, desired: DataplaneState) -> list[Op]:
    """Bring ``driver`` to ``desired``; returns the ops applied (``[]`` if converged)."""
    ops = plan(desired, driver.observe())
    if ops:
        driver.apply(ops)
    return ops
