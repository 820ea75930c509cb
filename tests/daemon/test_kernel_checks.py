"""The pure judges behind ``diagnose``'s kernel checks and ``verify``'s matrix."""

from __future__ import annotations

from typing import Any

from vnstitch.daemon.diagnosis import diagnose, kernel_checks
from vnstitch.daemon.verification import Endpoint, PairResult, judge, plan_pairs

VIEWS: dict[str, Any] = {"vnids": [
    {"vnid": 100, "where": "local", "components": ["192.168.100.0/24"]},
    {"vnid": 100, "where": "remote", "components": ["192.168.100.0/24"]}]}


def _route(dst: str, dev: str, metric: int, gateway: str | None = None) -> dict[str, Any]:
    return {"dst": dst, "dev": dev, "metric": metric, "gateway": gateway,
            "protocol": "static", "table": None}


def test_route_conflict_fails_only_when_the_substrate_route_wins() -> None:
    ours = _route("192.168.100.0/24", "vn100", 100)
    losing = _route("192.168.0.0/16", "l-t", 200, "10.1.1.2")
    winning = _route("192.168.100.0/25", "l-t", 500, "10.1.1.2")  # longer prefix wins
    assert kernel_checks({"routes": [ours]}, VIEWS) == []  # control: only our route
    [warn] = kernel_checks({"routes": [ours, losing]}, VIEWS)
    assert warn.verdict == "warn"
    [fail] = kernel_checks({"routes": [ours, winning]}, VIEWS)
    assert fail.verdict == "fail" and "192.168.100.0/25 dev l-t via 10.1.1.2" in fail.evidence


def test_wireguard_mtu_and_htb_verdicts() -> None:
    evidence = {
        "wireguard": {
            "wg1": {"present": False},
            "wg2": {"present": True, "peers": [{"endpoint": "10.0.0.4:51820",
                                                "handshake_age_s": 5.0, "rx_bytes": 1,
                                                "tx_bytes": 2}]},
            "wg3": {"present": True, "peers": [{"endpoint": "10.0.0.4:51821",
                                                "handshake_age_s": None}]}},
        "path_mtu": [{"interface": "wg2", "endpoint": "10.0.0.4", "needed": 1480,
                      "passes": False, "largest": 1296},
                     {"interface": "wg3", "endpoint": "10.0.0.4", "needed": 1480,
                      "passes": True, "largest": 1480}],
        "htb": [{"device": "vx1", "handle": "1:1", "bytes": 10, "drops": 3}],
    }
    got = {(c.check, c.subject): c for c in kernel_checks(evidence, {})}
    assert got[("wireguard", "wg1")].verdict == "fail"
    assert "WireGuard killed" in got[("wireguard", "wg1")].cause
    assert got[("wireguard", "wg2")].verdict == "ok"
    assert got[("wireguard", "wg3")].verdict == "fail"  # never a handshake
    assert got[("path-mtu", "wg2->10.0.0.4")].verdict == "fail"
    assert "MTU too small" in got[("path-mtu", "wg2->10.0.0.4")].cause
    assert got[("path-mtu", "wg3->10.0.0.4")].verdict == "ok"
    assert got[("htb-drops", "vx1 1:1")].verdict == "warn"


def test_per_peer_fault_reasons_blame_only_that_peer() -> None:
    peers = [{"id": "a" * 32, "address": "10.0.0.2:7700", "received": 9, "faults": 4,
              "fault_reasons": {"unknown_sender": 4}, "last_heard_s_ago": None},
             {"id": "b" * 32, "address": "10.0.0.3:7700", "received": 9, "faults": 1,
              "fault_reasons": {"replayed": 1}, "last_heard_s_ago": 0.1}]
    checks = diagnose({"peers": peers}, faults={"unknown_sender": 4, "replayed": 1})
    trust = {c.subject: c.verdict for c in checks if c.check == "peer-trust"}
    assert trust == {"a" * 32: "fail", "b" * 32: "ok"}


def test_verify_plans_cross_segment_pairs_and_judges_them() -> None:
    eps = [Endpoint("ha1", "n1", "192.168.100.1", 100, "a"),
           Endpoint("hb1", "n2", "192.168.100.2", 100, "b"),
           Endpoint("ha3", "n5", "192.168.100.3", 100, "a"),
           Endpoint("ha2", "n3", "192.168.200.1", 200, "a"),
           Endpoint("hb2", "n4", "192.168.200.2", 200, "b")]
    pairs = [(a.name, b.name) for a, b in plan_pairs(eps)]
    assert pairs == [("ha1", "hb1"), ("ha3", "hb1"), ("ha2", "hb2")]
    assert [(a.name, b.name) for a, b in plan_pairs(eps, [200])] == [("ha2", "hb2")]
    a, b = eps[0], eps[1]
    assert judge(PairResult(a, b, 3, 0)).verdict == "fail"
    assert judge(PairResult(a, b, 3, 3, mtu=1370, mtu_passes=False, mtu_largest=1296)
                 ).reason.startswith("MTU too small")
    assert judge(PairResult(a, b, 3, 2, mtu=1370, mtu_passes=True)).verdict == "warn"
    assert judge(PairResult(a, b, 3, 3, mtu=1370, mtu_passes=True, iperf_mbps=50)
                 ).verdict == "ok"
