"""Datagrams held for a reconcile pass keep their order: one that comes while a pass
holds earlier ones waits too (a retransmitted COMMIT's ack must not overtake the ack of
the first COMMIT, which waits for the pass that creates the tunnel's devices)."""

from __future__ import annotations

import asyncio
import random
import threading
from collections import Counter
from collections.abc import Sequence

import pytest

from tests.daemon.helpers import run, until
from vnstitch.daemon.reconciler import Reconciler
from vnstitch.dataplane.memory import MemoryDataplane
from vnstitch.dataplane.objects import Bridge, DataplaneState, Op
from vnstitch.model.ids import RouteManagerId
from vnstitch.protocol.api import SendDatagram

pytestmark = pytest.mark.timeout(30)


class _GatedDriver(MemoryDataplane):
    """Applies only once the test opens the gate: a pass that takes its time."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.applying = threading.Event()

    def apply(self, ops: Sequence[Op]) -> None:
        self.applying.set()
        if not self.gate.wait(10):
            raise TimeoutError("gate never opened")
        super().apply(ops)


def _send(n: int) -> SendDatagram:
    return SendDatagram(RouteManagerId("a" * 32), f"ack {n}".encode())


def _during_a_pass(held: bool) -> tuple[bool, list[bytes]]:
    """Start a pass (holding ack 1 for it, or nothing); while it runs, offer ack 2 (no
    dataplane change). Whether ack 2 was held, and the order the datagrams went out."""
    sent: list[bytes] = []
    waited: list[bool] = []

    async def body() -> None:
        driver = _GatedDriver()
        r = Reconciler(driver, offload=True, rng=random.Random(1),
                       desired=lambda: DataplaneState([Bridge("vn1")]), now=lambda: 0.0,
                       send=lambda s: sent.append(s.payload), metrics=Counter())
        r.open(asyncio.get_running_loop())
        r.request()
        if held:
            assert r.defer([_send(1)], dataplane_changed=True)
        await until(driver.applying.is_set, 10)  # the pass is running
        waited.append(r.defer([_send(2)], dataplane_changed=False))
        if not waited[0]:
            sent.append(_send(2).payload)  # the caller sends it itself
        driver.gate.set()
        await until(lambda: not r.busy, 10)
        assert "bridge:vn1" in driver.observe()

    run(body())
    return waited[0], sent


def test_a_send_during_a_pass_that_holds_sends_waits_behind_them() -> None:
    assert _during_a_pass(held=True) == (True, [b"ack 1", b"ack 2"])


def test_control_a_pass_that_holds_nothing_delays_nothing() -> None:
    assert _during_a_pass(held=False) == (False, [b"ack 2"])
