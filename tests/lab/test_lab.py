"""Root tests on a real namespace substrate: VXLAN over WireGuard by hand, A -> T -> B."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pyroute2 import IPRoute

from tests.rootutil import require_root
from vnstitch.dataplane import tc
from vnstitch.lab import baseline, netns, substrate
from vnstitch.lab.substrate import Lab

pytestmark = pytest.mark.root


@pytest.fixture
def lab() -> Iterator[Lab]:
    require_root()
    built = substrate.build()
    try:
        yield built
    finally:
        substrate.teardown(built.run_id)


def _overlay(lab: Lab) -> list[str]:
    return [h.address for h in lab.hosts]


def test_vn100_a_to_b_over_transit_is_encrypted(lab: Lab) -> None:
    baseline.hand_stitch(lab)
    baseline.wait_reachable(lab, "ha1", "hb1")
    transit = lab.link("a", "t").b_dev  # T's end of the A-T link
    (sent, got), cap = baseline.capture(lab.routers["t"].ns, transit, _overlay(lab),
                                        lambda: baseline.ping(lab, "ha1", "hb1", count=5))
    assert (sent, got) == (5, 5)
    assert cap.wireguard.get("data", 0) >= 10  # 5 requests + 5 replies, inside WireGuard
    assert cap.inner_icmp == 0 and cap.vxlan_in_clear == 0 and cap.encrypted
    # VN 200 was not stitched: its hosts stay apart.
    assert baseline.ping(lab, "ha2", "hb2", count=1, deadline_s=1)[1] == 0


def test_capture_does_see_inner_icmp_when_not_encrypted(lab: Lab) -> None:
    """The negative control: the same capture on plain VXLAN sees the inner ping."""
    baseline.hand_stitch(lab, encrypted=False)
    baseline.wait_reachable(lab, "ha1", "hb1")
    (_, got), cap = baseline.capture(lab.routers["t"].ns, lab.link("a", "t").b_dev,
                                     _overlay(lab),
                                     lambda: baseline.ping(lab, "ha1", "hb1", count=3))
    assert got == 3 and cap.vxlan_in_clear >= 6 and cap.inner_icmp >= 6
    assert not cap.encrypted


def test_reservation_is_an_htb_class_on_the_vxlan_port(lab: Lab) -> None:
    """The kernel holds the reservation (rates under load belong in benchmarks)."""
    rate = 50.0
    baseline.hand_stitch(lab, rate_mbps=rate)
    baseline.wait_reachable(lab, "ha1", "hb1")
    for seg in ("a", "b"):
        with IPRoute(netns=lab.routers[seg].ns) as ipr:
            idx = ipr.link_lookup(ifname="vx100")[0]
            limits, _ = tc.observe(ipr, idx, "vx100")
        assert [r.class_id for r in limits] == [10], limits
        assert limits[0].rate_mbps == pytest.approx(rate, rel=1e-3)
        assert limits[0].ceil_mbps == pytest.approx(rate, rel=1e-3)


def test_link_cut_reroutes_through_second_transit(lab: Lab) -> None:
    baseline.hand_stitch(lab)
    baseline.wait_reachable(lab, "ha1", "hb1")
    substrate.cut_link(lab, "a", "t")
    baseline.wait_reachable(lab, "ha1", "hb1", timeout_s=10)
    _, cap = baseline.capture(lab.routers["u"].ns, lab.link("a", "u").b_dev, _overlay(lab),
                              lambda: baseline.ping(lab, "ha1", "hb1", count=3))
    assert cap.wireguard.get("data", 0) >= 6 and cap.encrypted


def test_teardown_leaves_nothing_even_with_stray_processes() -> None:
    require_root()
    lab = substrate.build()
    try:
        baseline.hand_stitch(lab)
        stray = netns.popen_in(lab.host("hb1").ns, ["iperf3", "-s"])
        assert substrate.leftovers(lab.run_id)["wireguard"]
    finally:
        removed = substrate.teardown(lab.run_id)
    stray.communicate(timeout=5)
    assert stray.returncode is not None
    assert sorted(removed) == sorted(lab.namespaces())
    assert substrate.leftovers(lab.run_id) == {"namespaces": [], "wireguard": [],
                                               "processes": []}


def test_two_labs_coexist_and_names_do_not_collide(lab: Lab) -> None:
    other = substrate.build()
    try:
        assert set(other.namespaces()).isdisjoint(lab.namespaces())
        assert other.wg_name("a") != lab.wg_name("a") and len(other.wg_name("a")) <= 15
        baseline.hand_stitch(lab)
        baseline.hand_stitch(other)
        assert baseline.ping(other, "ha1", "hb1", count=1)[1] == 1
    finally:
        substrate.teardown(other.run_id)
    assert baseline.ping(lab, "ha1", "hb1", count=1)[1] == 1
