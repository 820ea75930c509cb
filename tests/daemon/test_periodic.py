"""PeriodicTask (daemon/periodic.py): the waits follow the loop's clock, a failing tick
is logged and counted and the next one still runs, stop ends it."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from tests.daemon.virtualtime import run_virtual
from vnstitch.daemon.periodic import PeriodicTask


def test_ticks_every_interval_and_a_failing_tick_does_not_end_the_loop(
        caplog: pytest.LogCaptureFixture) -> None:
    async def body() -> tuple[list[float], PeriodicTask, Counter[str]]:
        loop = asyncio.get_running_loop()
        start = loop.time()
        times: list[float] = []

        async def tick() -> None:
            times.append(loop.time() - start)
            if len(times) in (2, 3):
                raise RuntimeError("boom")

        counters: Counter[str] = Counter()
        task = PeriodicTask("demo", tick, 10.0, counters=counters)
        task.start()
        task.start()  # a second start is a no-op, not a second loop
        await asyncio.sleep(55.0)  # virtual seconds
        await task.stop()
        await asyncio.sleep(30.0)  # stopped: no more ticks
        return times, task, counters

    times, task, counters = run_virtual(body())
    assert times == pytest.approx([10.0, 20.0, 30.0, 40.0, 50.0])
    assert task.ticks == 5 and task.failures == 2 and not task.running
    assert counters == Counter({"demo_errors": 2})
    assert sum("demo tick failed" in r.getMessage() for r in caplog.records) == 2


def test_at_once_and_an_injected_wait() -> None:
    async def body() -> tuple[list[float], list[float]]:
        loop = asyncio.get_running_loop()
        start = loop.time()
        ticks: list[float] = []
        waits: list[float] = []

        async def tick() -> None:
            ticks.append(loop.time() - start)

        async def wait(seconds: float) -> None:  # the clock passed in
            waits.append(seconds)
            await asyncio.sleep(seconds / 2)

        task = PeriodicTask("fast", tick, 4.0, at_once=True, sleep=wait)
        task.start()
        await asyncio.sleep(5.0)
        await task.stop()
        return ticks, waits

    ticks, waits = run_virtual(body())
    assert ticks == pytest.approx([0.0, 2.0, 4.0])
    assert waits == [4.0, 4.0, 4.0]
