"""The daemon's UDP endpoint (daemon/transport.py): the kernel source filter, batched
reads, and -- live, as root -- a stitch that survives the loss of its control datagrams
while its tunnel carries the far end's probes (protocol/heldpaths.py)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon.livelab import live_lab
from tests.rootutil import require_root
from vnstitch.daemon.transport import (
    UdpEndpoint,
    attach_filter,
    filter_length,
    socket_drops,
    source_filter,
)
from vnstitch.lab import baseline
from vnstitch.lab.routemgrs import LAB_TIMERS, RM_PORT, LabRouteManagers, PingStream, wait_for
from vnstitch.lab.substrate import Lab


@contextlib.contextmanager
def _udp(n: int) -> Iterator[list[socket.socket]]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        yield socks
    finally:
        for s in socks:
            s.close()


def _drain(sock: socket.socket, deadline_s: float = 2.0, want: int = 1) -> list[bytes]:
    """What ``sock`` receives until ``want`` datagrams or the deadline."""
    sock.settimeout(0.05)
    got: list[bytes] = []
    end = time.monotonic() + deadline_s
    while len(got) < want and time.monotonic() < end:
        with contextlib.suppress(TimeoutError):
            got.append(sock.recv(2048))
    return got


@pytest.mark.parametrize("filtered", [True, False])
def test_the_source_filter_drops_a_foreign_datagram_in_the_kernel(filtered: bool) -> None:
    """With the filter, a datagram from a configured peer's address arrives and one from
    the same host but another port is dropped by the kernel -- counted in the socket's
    drop counter, never queued. Control (no filter): both arrive, nothing is dropped."""
    with _udp(3) as (rx, peer, foreign):
        if filtered:
            prog = source_filter([peer.getsockname()], ["10.9.9.9"])
            attach_filter(rx, prog)
            assert filter_length(rx) == len(prog)  # read back from the kernel
        else:
            assert filter_length(rx) == 0
        before = socket_drops(rx)
        foreign.sendto(b"foreign", rx.getsockname())
        peer.sendto(b"peer", rx.getsockname())
        got = _drain(rx, want=2)
        if filtered:
            assert got == [b"peer"]
            assert socket_drops(rx) - before == 1
        else:
            assert sorted(got) == [b"foreign", b"peer"]
            assert socket_drops(rx) == before


def test_any_port_sources_and_an_empty_filter() -> None:
    """An any-port address passes from every port; the empty filter (what a socket has
    before the daemon names its peers) passes nothing."""
    with _udp(3) as (rx, a, b):
        attach_filter(rx, source_filter([], ["127.0.0.1"]))
        a.sendto(b"a", rx.getsockname())
        b.sendto(b"b", rx.getsockname())
        assert sorted(_drain(rx, want=2)) == [b"a", b"b"]
        attach_filter(rx, source_filter([], []))
        before = socket_drops(rx)
        a.sendto(b"a", rx.getsockname())
        assert _drain(rx, deadline_s=0.3) == []
        assert socket_drops(rx) - before == 1


def test_the_endpoint_reads_a_burst_in_batches_and_follows_its_sources() -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()
        got: list[tuple[bytes, tuple[str, int]]] = []
        metrics: Counter[str] = Counter()
        ep = UdpEndpoint.open(loop, "127.0.0.1", 0, lambda d, a: got.append((d, a)),
                              metrics)
        try:
            with _udp(2) as (peer, other):
                assert ep.allow_sources([peer.getsockname()], [])
                assert filter_length(ep.socket) == metrics["udp_source_filter_insns"] > 0
                for i in range(500):
                    peer.sendto(i.to_bytes(2, "big"), ep.get_extra_info("sockname"))
                other.sendto(b"no", ep.get_extra_info("sockname"))
                end = loop.time() + 5
                while len(got) < 500 and loop.time() < end:
                    await asyncio.sleep(0.01)
                assert [int.from_bytes(d, "big") for d, _ in got] == list(range(500))
                assert {a for _, a in got} == {peer.getsockname()}
                # The peers change: the new filter is in the kernel at once.
                assert ep.allow_sources([other.getsockname()], [])
                other.sendto(b"yes", ep.get_extra_info("sockname"))
                end = loop.time() + 5
                while got[-1][0] != b"yes" and loop.time() < end:
                    await asyncio.sleep(0.01)
                assert got[-1] == (b"yes", other.getsockname())
                ep.sendto(b"out", peer.getsockname())
                assert _drain(peer) == [b"out"]
        finally:
            ep.close()
        assert ep.closed.done()

    asyncio.run(asyncio.wait_for(body(), 20))


# -- live, as root ------------------------------------------------------------------------


def _metric(rms: LabRouteManagers, seg: str, name: str) -> float:
    m = re.search(rf"^vnstitch_{name}\{{[^}}]*\}} (\S+)$", rms.show(seg, "metrics"), re.M)
    assert m is not None, name
    return float(m.group(1))


def _drop_control_from(lab: Lab, src_seg: str, dst_seg: str) -> list[list[str]]:
    """Make ``dst_seg``'s kernel drop the control datagrams (to the RM port) from
    ``src_seg``'s RM address: a blackhole policy rule ahead of the local table (tc's drop
    action is not available on this kernel); the commands that undo it."""
    ip = ["ip", "netns", "exec", lab.routers[dst_seg].ns, "ip", "rule"]
    match = ["from", f"{lab.routers[src_seg].loopback}/32", "ipproto", "udp", "dport",
             str(RM_PORT)]
    for cmd in ([*ip, "add", "pref", "100", "lookup", "local"], [*ip, "del", "pref", "0"],
                [*ip, "add", "pref", "10", *match, "blackhole"]):
        subprocess.run(cmd, check=True)
    return [[*ip, "del", "pref", "10"], [*ip, "add", "pref", "0", "lookup", "local"],
            [*ip, "del", "pref", "100"]]


def _received_from(rms: LabRouteManagers, seg: str, peer_seg: str) -> int:
    rm = rms.rm_id(peer_seg)
    return sum(int(p["received"]) for p in rms.show(seg, "peers") if p["id"] == rm)


@pytest.mark.root
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_stitch_survives_losing_its_control_datagrams_while_the_tunnel_works(
        tmp_path: Path) -> None:
    """Everything T sends B's Route Manager is dropped at B's link (as a flood filling
    B's receive buffer would) for several leases; the origin's probes still cross the
    tunnel, so B keeps its lease with T: the stitch stays up on its first attempt and
    traffic flows. B's counter shows the data plane kept it; tc's shows the loss was
    real. When T is heard again the lease is confirmed as usual."""
    require_root()
    with live_lab(tmp_path / "rm") as (lab, rms):
        rms.wait_route("a", 100)
        reply = rms.stitch("a", 100, 20.0)
        assert reply["established"], reply
        sid = str(reply["stitch_id"])
        baseline.wait_reachable(lab, "ha1", "hb1", timeout_s=10)
        attempts = rms.stitch_row("a", sid)["attempts"]  # type: ignore[index]
        lease_s = LAB_TIMERS["hold_time_s"]
        with PingStream(lab, "ha1", "hb1", interval_s=0.05) as stream:
            started = time.time()
            undo = _drop_control_from(lab, "t", "b")
            heard = _received_from(rms, "b", "t")
            try:
                # Until B's lease with T has run out, and been kept, several times over.
                wait_for(lambda: _metric(rms, "b", "lease_kept_by_datapath_total") >= 10
                         or None, 30.0, "B to keep its lease through the tunnel")
                assert _received_from(rms, "b", "t") == heard  # T really is not heard
                row = rms.stitch_row("a", sid)
                assert row is not None and row["status"] == "up"
                assert row["attempts"] == attempts  # never re-negotiated
                assert [t["state"] for t in rms.show("b", "tunnels")] == ["up"]
                assert rms.reserved_mbps("t") == 40.0  # both of T's links, once each
            finally:
                for cmd in undo:
                    subprocess.run(cmd, check=False)
            stopped = time.time()
        assert time.time() - started >= lease_s  # the loss outlasted a lease
        # No outage: a torn-down stitch would stop the replies for a re-negotiation.
        assert stream.first_reply_after(stopped - 0.5) is not None
        assert not [g for g in stream.gaps_after(started, lease_s) if g[1] <= stopped]
        # T is heard again: its HELLOs confirm B's lease, the probes no longer need to.
        seen = [_metric(rms, "b", "lease_kept_by_datapath_total")]

        def settled() -> bool | None:
            time.sleep(lease_s)
            seen.append(_metric(rms, "b", "lease_kept_by_datapath_total"))
            return seen[-1] == seen[-2] or None

        wait_for(settled, 8 * lease_s, "B's lease to be confirmed by T again")
