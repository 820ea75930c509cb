"""The live run's view of a stitch when a congestion move leaves two rows of one VN."""

from __future__ import annotations

from typing import Any

from vnstitch.lab.scenario_run import current_rows, decision_kind


def _row(sid: str, status: str, desired: str, path: list[str], *, vnid: int = 1,
         role: str = "origin") -> dict[str, Any]:
    return {"stitch_id": sid, "vnid": vnid, "status": status, "desired": desired,
            "path": path, "role": role}


def test_one_row_per_stitch_whatever_the_order() -> None:
    old_down = _row("a", "down", "released", ["r0", "r2"])
    new_up = _row("b", "up", "up", ["r0", "r4", "r2"])
    old_up = _row("a", "up", "released", ["r0", "r2"])  # draining before its release
    other = _row("c", "up", "up", ["r0", "r1"], vnid=2)
    transit = _row("d", "up", "up", ["r3", "r0"], vnid=3, role="transit")
    for rows in ([old_down, new_up, other], [new_up, old_down, other],
                 [old_up, new_up, other, transit], [new_up, old_up, other]):
        got = current_rows("seg00", rows)
        assert set(got) == {"seg00/vn1", "seg00/vn2"}
        assert got["seg00/vn1"]["stitch_id"] == "b"
    # Control: the old stitch alone, down, is what the run sees (a real outage).
    assert current_rows("seg00", [old_down])["seg00/vn1"]["status"] == "down"


def test_live_decisions_are_named_as_the_simulator_names_them() -> None:
    assert decision_kind({"kind": "congestion", "action": "reroute"}) == "renegotiate"
    assert decision_kind({"kind": "congestion", "action": "return"}) == "return"
    assert decision_kind({"kind": "endpoint", "action": "reset"}) == "endpoint-reset"
    for step in ("link-congested", "watch", "hold", "made", "moved", "stay", "link-down"):
        assert decision_kind({"kind": "congestion", "action": step}) is None
    assert decision_kind({"kind": "allocation", "action": "resize"}) == "allocation"
