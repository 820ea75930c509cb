"""Live congestion reroute in the namespace lab (root): make-before-break, and its control.

Each test builds its own lab (unique run id, removed even on failure), adds the two cross
hosts (xa behind A, xt behind T), stitches VN 100 A -> B over A-T-B with a UDP flow
running through it, and congests A-T with cross traffic from xa. Kernel byte counters
are polled: A's l-u (the new path's first link) and T's l-b (only the stitch crosses
T -> B). With the daemons' congestion loop the stitch moves to A-U-B and the new path
carries the flow before the old one goes quiet; with it disabled (the control) the
stitch stays on A-T-B and the link stays congested.
"""

from __future__ import annotations

import contextlib
import itertools
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.rootutil import require_root
from vnstitch.lab import baseline, congestion, netns, substrate
from vnstitch.lab.routemgrs import LabRouteManagers, fast_arp, wait_for
from vnstitch.lab.substrate import Lab

pytestmark = [pytest.mark.root, pytest.mark.timeout(180)]

LINK_MBPS = 40.0
#: Bytes one poll interval must add before a link counts as carrying the stitch's flow
#: (the flow is 12 Mbit/s: 30 kB per 20 ms; control traffic is a few hundred bytes).
FLOW_BYTES = 8000


@contextlib.contextmanager
def _story(section: dict[str, Any] | None) -> Iterator[tuple[Lab, LabRouteManagers,
                                                             congestion.CounterPoller]]:
    lab = substrate.build()
    rms: LabRouteManagers | None = None
    procs: list[Any] = []
    try:
        fast_arp(lab)
        hosts = congestion.add_cross_hosts(lab)
        with tempfile.TemporaryDirectory(prefix="vst-congest-") as tmp:
            rms = LabRouteManagers(lab, Path(tmp), timers=congestion.TIMERS,
                                   link_capacities={frozenset("at"): LINK_MBPS})
            if section is not None:
                for seg in rms.rms:
                    congestion.set_congestion(rms, seg, section)
            rms.start_all()
            rms.wait_route("a", 100)
            assert rms.stitch("a", 100, 20.0)["established"]
            baseline.wait_reachable(lab, "ha1", "hb1", timeout_s=10)
            procs.append(netns.popen_in(lab.host("hb1").ns, ["iperf3", "-s", "-p", "5201"]))
            procs.append(netns.popen_in(hosts["xt"], ["iperf3", "-s", "-p", "5203"]))
            time.sleep(0.3)
            procs.append(netns.popen_in(lab.host("ha1").ns, [
                "iperf3", "-c", lab.host("hb1").ip, "-u", "-b", "12M", "-l", "1000",
                "-t", "40", "-p", "5201"]))
            time.sleep(1.0)
            poll = {"new": (lab.routers["a"].ns, lab.link("a", "u").a_dev),
                    "old": (lab.routers["t"].ns, lab.link("t", "b").a_dev)}
            with congestion.CounterPoller(poll, wireguard_in=lab.routers["a"].ns) as poller:
                procs.append(netns.popen_in(hosts["xa"], [
                    "iperf3", "-c", "10.3.2.2", "-u", "-b", "60M", "-l", "1000", "-t", "40",
                    "-p", "5203"]))
                yield lab, rms, poller
    finally:
        for p in procs:
            with contextlib.suppress(Exception):
                p.kill()
                p.communicate(timeout=5)
        if rms is not None:
            for seg in rms.rms:
                with contextlib.suppress(Exception):
                    rms.stop(seg)
        substrate.teardown(lab.run_id)


def _path(rms: LabRouteManagers) -> str:
    row = rms.live_stitch("a", 100)
    return rms.path_segments(row["path"]) if row else ""


def _carrying(poller: congestion.CounterPoller, key: str) -> list[int]:
    """Indexes of the polls at which ``key``'s link carried the flow since the previous."""
    rows = list(poller.rows)
    return [i + 1 for i, ((_, r0), (_, r1)) in enumerate(itertools.pairwise(rows))
            if r1[key] - r0[key] > FLOW_BYTES]


def test_congestion_moves_the_stitch_make_before_break() -> None:
    require_root()
    with _story({}) as (_, rms, poller):
        wait_for(lambda: _path(rms) == "A-U-B" or None, 40.0, "the stitch to move via U")
        wait_for(lambda: not any(s["status"] == "up" and "T" in rms.path_segments(s["path"])
                                 for s in rms.show("a", "stitches")) or None, 15.0,
                 "the old stitch to be released")
        wait_for(lambda: not (poller.wireguard[0] & poller.wireguard[-1]) or None, 20.0,
                 "the old tunnel's WireGuard device to go")
        decisions = [d["action"] for d in rms.show("a", "decisions")
                     if d.get("kind") == "congestion"]
        new, old = _carrying(poller, "new"), _carrying(poller, "old")
        rms_log = "\n".join(ln for ln in rms.logs("a", 80) if "dataplane" not in ln)
    assert poller.error is None and poller.wireguard
    for step in ("link-congested", "reroute", "made", "moved"):
        assert step in decisions, (decisions, rms_log)
    assert decisions.index("made") < decisions.index("moved")
    assert new and old, ("both paths carried the flow at some point", rms_log)
    first_new = min(new)
    before = poller.wireguard[0]  # A's WireGuard devices under the old stitch
    assert len(before) == 1
    # Make-before-break in the kernel: when the new path first carried the flow, the old
    # stitch's tunnel was still there (next to the new one); it went after that.
    assert before <= poller.wireguard[first_new] and len(poller.wireguard[first_new]) == 2
    assert not before & poller.wireguard[-1]


def test_control_without_the_loop_the_stitch_stays_and_the_link_stays_hot() -> None:
    require_root()
    with _story({"enabled": False}) as (lab, rms, poller):
        time.sleep(12.0)
        path = _path(rms)
        decisions = [d for d in rms.show("a", "decisions") if d.get("kind") == "congestion"]
        new = _carrying(poller, "new")
        at = lab.link("a", "t")
        with congestion.CounterPoller({"at": (lab.routers["a"].ns, at.a_dev)}) as hot:
            time.sleep(1.0)
        rows = hot.rows
    assert path == "A-T-B"
    assert decisions == []
    assert new == []  # nothing moved to the other path
    sent = rows[-1][1]["at"] - rows[0][1]["at"]
    # A-T still carries the stitch and the cross traffic: congested (the monitor's high).
    assert sent * 8 / 1e6 / (rows[-1][0] - rows[0][0]) > 0.8 * LINK_MBPS
