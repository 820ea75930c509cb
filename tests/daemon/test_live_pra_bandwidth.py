"""Root test: the PRA's bandwidth decision is the HTB class rate the kernel holds.

Four live daemons (linux dataplane) in a namespace lab, each with an ``allocation:``
loop and a ``pra:`` section. A stitches VN 100 to B at 50 Mbit/s. With ``bandwidth``
under ``pra.vns.100`` the PRA sizes A's tunnel end: the rate of the HTB class on A's
VXLAN port, read back from the kernel, is the PRA's booking for the stitch (from its
cold start at the ``prior``), the ceil stays the negotiated bandwidth, and the
allocation loop leaves the end alone. Control: without it the allocation loop sizes the
same idle end down to its 1 Mbit/s minimum and the PRA has no bandwidth consumer.
Everything is removed afterwards, even on failure.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.daemon.livelab import live_lab
from tests.daemon.test_live_allocation import htb_rate
from tests.rootutil import require_root
from vnstitch.lab import baseline, netns
from vnstitch.lab.routemgrs import wait_for

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.timeout(180)]

NEGOTIATED = 50.0
TRAFFIC = 10.0
ALLOCATION = {"interval_s": 0.5, "hold_steps": 0, "min_mbps": 1, "default_class": "web"}


def _pra(bandwidth: bool) -> dict[str, Any]:
    vn: dict[str, Any] = {"class": "web", "profile": "database_access"}
    if bandwidth:
        vn["bandwidth"] = {"model": "naive", "prior": 8}
    return {"interval_s": 0.5, "min_fit": 1000, "vns": {100: vn}}


@pytest.mark.parametrize("pra_sizes", [True, False], ids=["pra", "allocation-control"])
def test_the_kernel_class_rate_is_the_pra_decision(tmp_path: Path, pra_sizes: bool) -> None:
    require_root()
    with live_lab(tmp_path / "rm", allocation=ALLOCATION, pra=_pra(pra_sizes)) as (lab, rms):
        rms.wait_route("a", 100)
        reply = rms.stitch("a", 100, NEGOTIATED)
        assert reply["established"], reply
        sid = reply["stitch_id"]
        baseline.wait_reachable(lab, "ha1", "hb1", timeout_s=10)

        def pra_row() -> dict[str, Any] | None:
            rows = [r for r in rms.show("a", "allocations")
                    if r.get("consumer") == f"{sid}/bandwidth" and "amount" in r]
            return rows[0] if rows else None

        def loop_row() -> dict[str, Any] | None:
            rows = rms.show("a", "status")["allocation"]["stitches"]
            return rows[0] if rows else None

        if pra_sizes:
            row = wait_for(pra_row, 20.0, "the PRA's first decision on the stitch")
            assert row["kind"] == "bandwidth" and row["cold_start"] is not None
            device = str(row["location"])
            class_id = _class_id(lab, device)

            def applied() -> tuple[float, float] | None:
                r = pra_row()
                rate, ceil = htb_rate(lab, "a", device, class_id)
                want = min(float(r["amount"]), NEGOTIATED) if r else -1.0
                seen = r is not None and float(r.get("forecast") or 0) > 2.0
                return (rate, ceil) if seen and rate == pytest.approx(want, rel=1e-3) \
                    else None

            with _udp(lab, TRAFFIC, seconds=30):  # the PRA sizes the end for this traffic
                rate, ceil = wait_for(applied, 25.0, "the PRA's booking as the kernel's rate")
            assert 1.0 < rate < NEGOTIATED  # neither the core's rate nor the loop's minimum
            loop_rows = [r for r in rms.show("a", "allocations")
                         if r.get("stitch_id") == sid]
            assert loop_rows == []  # the allocation loop never decided for this end
            assert loop_row() is None  # nor sees it
        else:
            device = str(wait_for(loop_row, 10.0, "the allocation loop's end")["device"])
            class_id = _class_id(lab, device)
            wait_for(lambda: htb_rate(lab, "a", device, class_id)[0] <= 1.0 or None, 10.0,
                     "the allocation loop's 1 Mbit/s minimum")
            rate, ceil = htb_rate(lab, "a", device, class_id)
            assert pra_row() is None
            assert [r for r in rms.show("a", "allocations") if r.get("stitch_id") == sid]
        assert ceil == pytest.approx(NEGOTIATED, rel=1e-3)
        print(f"\n{'PRA' if pra_sizes else 'allocation loop'}: HTB 1:{class_id:x} on "
              f"{device} rate={rate:g} ceil={ceil:g}")
        assert rms.show("a", "status")["dataplane_errors"] == 0


def _class_id(lab: Any, device: str) -> int:
    from pyroute2 import IPRoute  # noqa: PLC0415

    from vnstitch.dataplane import tc  # noqa: PLC0415

    with IPRoute(netns=lab.routers["a"].ns) as ipr:
        idx = ipr.link_lookup(ifname=device)[0]
        limits, _ = tc.observe(ipr, idx, device)
    assert len(limits) == 1, limits
    return limits[0].class_id


@contextlib.contextmanager
def _udp(lab: Any, mbps: float, seconds: float) -> Iterator[None]:
    """iperf3 UDP ha1 -> hb1 at ``mbps`` in the background while the body runs."""
    srv = netns.popen_in(lab.host("hb1").ns, ["iperf3", "-s", "-1", "-p", "5213"])
    cli = None
    try:
        wait_for(lambda: "5213" in netns.run_in(lab.host("hb1").ns, ["ss", "-lnt"],
                                                check=False).stdout or None,
                 5.0, "the iperf3 server to listen")
        cli = netns.popen_in(lab.host("ha1").ns,
                             ["iperf3", "-c", lab.host("hb1").ip, "-p", "5213", "-u",
                              "-b", f"{mbps:g}M", "-t", f"{seconds:g}"])
        yield
    finally:
        for p in (cli, srv):
            if p is not None:
                p.kill()
                p.communicate()
