"""Stitch intents in the daemon: a stitch comes back by itself after its target restarts."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from collections.abc import Iterable
from pathlib import Path

import pytest

from tests.daemon.helpers import run, start_daemon, until, write_cluster
from tests.daemon.virtualtime import run_virtual
from vnstitch.control.demand import wake_on_route
from vnstitch.daemon import control
from vnstitch.daemon import intents as daemon_intents
from vnstitch.daemon.config import load_config
from vnstitch.daemon.coreadapter import make_driver, protocol_core_factory
from vnstitch.daemon.errors import ControlError
from vnstitch.daemon.runtime import RouteManagerDaemon
from vnstitch.model.ids import VNID
from vnstitch.protocol.api import StitchConstraints
from vnstitch.protocol.intent import Intent, IntentState
from vnstitch.protocol.messages import Hello

pytestmark = pytest.mark.timeout(60)

VNS = {"A": [{"vnid": 100, "components": ["10.1.0.0/24"]}],
       "B": [{"vnid": 100, "components": ["10.2.0.0/24"]}]}


def _row(d: RouteManagerDaemon, sid: str) -> dict[str, object]:
    rows = [r for r in control.view(d, "stitches") if r["stitch_id"] == sid]
    assert len(rows) == 1, rows
    row: dict[str, object] = rows[0]
    return row


def test_stitch_returns_after_the_target_is_down_for_a_while(tmp_path: Path) -> None:
    nodes = write_cluster(tmp_path, ["A", "B"], [("A", "B")], VNS)

    async def body() -> None:
        a = await start_daemon(nodes["A"].config_path, protocol_core_factory)
        cfg_a = a.config
        b = await start_daemon(nodes["B"].config_path, protocol_core_factory)
        try:
            await until(lambda: a.routes.get(100) is not None, 5)
            sid, fut = a.request_stitch(VNID(100), StitchConstraints(20.0))
            assert (await asyncio.wait_for(fut, 5)).established
            await b.stop()  # the target is gone for 3 s, longer than any lease
            await until(lambda: a.intents.table.intents[sid].failures >= 2, 15)
            row = _row(a, sid)
            assert row["desired"] == "up" and row["status"] != "up"
            assert row["last_failure"] and row["next_attempt_s"] is not None
            await asyncio.sleep(1.0)
            b = await start_daemon(nodes["B"].config_path, protocol_core_factory)
            took = await until(
                lambda: a.intents.table.intents[sid].state is IntentState.UP, 20)
            row = _row(a, sid)
            assert row["status"] == "up" and row["reserved_mbps"] == 20.0, row
            assert int(str(row["attempts"])) >= 2
            print(f"stitch back {took:.2f} s after the target restarted")
            # Control: released, it stays released (no retry brings it back).
            a.release_stitch(sid)
            await asyncio.sleep(0.5)
            assert sid not in a.intents.table.intents
            assert [r for r in control.view(a, "stitches") if r["status"] == "up"] == []
        finally:
            await a.stop()
            await b.stop()
        # The intent table survives a restart of the origin too.
        a2 = RouteManagerDaemon(cfg_a, protocol_core_factory, make_driver(cfg_a))
        await a2.start()
        try:
            assert a2.intents.table.intents == {}
        finally:
            await a2.stop()

    run_virtual(body(), timeout_s=50)  # virtual seconds: no real waiting


def test_second_stitch_for_a_vnid_is_refused_with_a_reason(tmp_path: Path) -> None:
    nodes = write_cluster(tmp_path, ["A", "B"], [("A", "B")], VNS)

    async def body() -> None:
        a = await start_daemon(nodes["A"].config_path, protocol_core_factory)
        b = await start_daemon(nodes["B"].config_path, protocol_core_factory)
        try:
            await until(lambda: a.routes.get(100) is not None, 5)
            sock = a.config.control_socket
            req = {"cmd": "stitch", "vnid": 100, "bandwidth_mbps": 5, "wait_s": 5}
            first = await asyncio.to_thread(control.request, sock, req)
            assert first["established"]
            with pytest.raises(ControlError, match=f"already has stitch {first['stitch_id']}"):
                await asyncio.to_thread(control.request, sock, req)
            assert len(control.view(a, "stitches")) == 1
            await asyncio.to_thread(control.request, sock,
                                    {"cmd": "release", "stitch_id": first["stitch_id"]})
            again = await asyncio.to_thread(control.request, sock, req)  # control
            assert again["established"]
        finally:
            await a.stop()
            await b.stop()

    run(body())


def test_intent_is_restored_from_sqlite_after_an_origin_restart(tmp_path: Path) -> None:
    nodes = write_cluster(tmp_path, ["A", "B"], [("A", "B")], VNS)
    cfg = load_config(nodes["A"].config_path)

    async def body() -> None:
        a = RouteManagerDaemon(cfg, protocol_core_factory, make_driver(cfg),
                               rng=random.Random(5))
        await a.start()
        try:  # B is not running: the intent keeps waiting
            sid, _ = a.request_stitch(VNID(100), StitchConstraints(5.0), retry_for_s=None)
            await until(lambda: a.intents.table.intents[sid].failures >= 1, 10)
        finally:
            await a.stop()
        a2 = RouteManagerDaemon(cfg, protocol_core_factory, make_driver(cfg))
        b = await start_daemon(nodes["B"].config_path, protocol_core_factory)
        await a2.start()
        try:
            assert sid in a2.intents.table.intents
            await until(lambda: a2.intents.table.intents[sid].state is IntentState.UP, 20)
        finally:
            await a2.stop()
            await b.stop()

    run_virtual(body(), timeout_s=50)


@pytest.mark.parametrize("source_filter", [True, False])
def test_a_forged_flood_is_dropped_before_verification_and_the_stitch_stays_up(
        tmp_path: Path, source_filter: bool) -> None:
    """From an address B is not configured at: with the kernel's source filter
    (daemon/transport.py) none of it reaches user space; without it (the control) the
    admission checks drop it, still before any signature is verified."""
    nodes = write_cluster(tmp_path, ["A", "B"], [("A", "B")], VNS)

    async def body() -> None:
        a = await start_daemon(nodes["A"].config_path, protocol_core_factory,
                               source_filter=source_filter)
        b = await start_daemon(nodes["B"].config_path, protocol_core_factory)
        try:
            await until(lambda: a.routes.get(100) is not None, 5)
            sid, fut = a.request_stitch(VNID(100), StitchConstraints(10.0))
            assert (await asyncio.wait_for(fut, 5)).established
            # B's id, a random signature, sent from an address B is not configured at.
            genuine = b.core.codec.encode(a.rm_id, Hello(1, 1), b.now())  # type: ignore[attr-defined]
            forged = genuine[:-64] + bytes(64)
            verified_before = a.core.counters.dropped.get("bad_signature", 0)
            kernel_before, received_before = a.udp_socket_drops(), \
                a.metrics["datagrams_received"]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.setblocking(False)
                for n in range(20_000):
                    with contextlib.suppress(BlockingIOError):
                        s.sendto(forged, a.local_address)
                    if n % 50 == 0:
                        await asyncio.sleep(0.001)  # let A read (one loop for both)
            if source_filter:  # refused by the kernel, before the receive buffer
                await until(lambda: a.udp_socket_drops() - kernel_before >= 5000, 5)
                assert a.faults["address_mismatch"] == 0
            else:
                await until(lambda: a.faults["address_mismatch"] >= 5000, 5)
            await asyncio.sleep(1.0)
            if source_filter:  # the genuine ones from B still arrive
                assert a.metrics["datagrams_received"] > received_before
            # None of them reached signature verification; the stitch never flapped.
            assert a.core.counters.dropped.get("bad_signature", 0) == verified_before
            assert a.intents.table.intents[sid].state is IntentState.UP
            assert a.intents.table.intents[sid].failures == 0
            heard = a.peers[b.rm_id].last_heard
            assert heard is not None and a.now() - heard < 1.0  # B is still heard
        finally:
            await a.stop()
            await b.stop()

    run(body())


def test_a_stitch_asked_before_any_route_starts_its_next_attempt_when_one_is_learned(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same case as the simulator's on-demand ask: requested while nobody announces
    the VNID, the intent fails (no route) and waits on its backoff; the route learned
    when the target comes up starts the next attempt at once, not at the backoff."""
    nodes = write_cluster(tmp_path, ["A", "B"], [("A", "B")],
                          {"A": [{"vnid": 200, "components": ["10.1.0.0/24"]}],
                           "B": [{"vnid": 200, "components": ["10.2.0.0/24"]}]})
    wakes: list[tuple[float, list[str], list[float | None]]] = []

    def recording(intents: Iterable[Intent], vnid: int, now: float) -> list[Intent]:
        items = list(intents)
        due = [i.next_attempt_at for i in items if i.vnid == vnid]
        woken = wake_on_route(items, vnid, now)
        wakes.append((now, [i.intent_id for i in woken], due))
        return woken

    monkeypatch.setattr(daemon_intents, "wake_on_route", recording)

    async def body() -> None:
        a = await start_daemon(nodes["A"].config_path, protocol_core_factory)
        b: RouteManagerDaemon | None = None
        try:
            sid, _ = a.request_stitch(VNID(200), StitchConstraints(20.0))
            intent = a.intents.table.intents[sid]
            await until(lambda: intent.failures >= 2, 30)  # nobody else has VNID 200
            assert intent.last_failure is not None and "no_route" in intent.last_failure
            assert wakes == []
            b = await start_daemon(nodes["B"].config_path, protocol_core_factory)
            await until(lambda: intent.state is IntentState.UP, 20)
            woke = [(now, due) for now, ids, due in wakes if sid in ids]
            assert len(woke) == 1
            now, due = woke[0]
            assert due[0] is not None and due[0] > now  # its backoff was still running
            assert intent.attempt_started_at == pytest.approx(now)  # started at the route
        finally:
            await a.stop()
            if b is not None:
                await b.stop()

    run_virtual(body(), timeout_s=60)
