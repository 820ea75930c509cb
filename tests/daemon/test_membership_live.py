"""Acceptance: membership between three Route Managers on loopback (memory dataplane).

A hosts VN 100 and admits only grant holders; A and B hold grants signed by the VN's
owner (membership is checked both ways: an origin admits its target too); C declares VN
100 too but holds none. B's stitch is established, C's is refused with
``not_authorised`` (exit 1 from ``routemgr stitch``) and reserves nothing anywhere, and
C's ``show vnids`` holds no component of A's or B's VN. ``vnstitch vn revoke`` of B
tears B's stitch down within two announce intervals and a new request is refused.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.daemon.helpers import Node, daemons_in_thread
from vnstitch.cli import main
from vnstitch.daemon.coreadapter import protocol_core_factory
from vnstitch.daemon.runtime import RouteManagerDaemon
from vnstitch.daemon.vnowner import OwnerDirectory
from vnstitch.protocol.negotiation import StitchState
from vnstitch.protocol.reservation import ReservationState

PREFIX = {"A": "10.1.0.0/24", "B": "10.2.0.0/24", "C": "10.3.0.0/24"}
INTERVAL = 0.5
TIMERS = {"announce_interval_s": INTERVAL, "probe_interval_s": 0.2, "probe_misses": 3}


def _stitch(sock: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, object]]:
    code = main(["routemgr", "stitch", "--vnid", "100", "--bandwidth", "10", "--wait", "5",
                 "--socket", str(sock), "--json"])
    return code, json.loads(capsys.readouterr().out)


def _live(d: RouteManagerDaemon, sid: str) -> list[str]:
    core = d.core
    return [t for t, r in core.reservations.items()  # type: ignore[attr-defined]
            if t.startswith(sid) and r.state in (ReservationState.HELD,
                                                  ReservationState.COMMITTED)]


def test_only_members_stitch_and_revocation_tears_down(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    owner = OwnerDirectory.create(tmp_path / "vn100", 100)
    vn = {"vnid": 100, "owner": owner.owner_b64, "revocations": str(owner.revocations_path)}
    vns = {"A": [{**vn, "components": [PREFIX["A"]], "grant": "a-vn100.grant"}],
           "B": [{**vn, "components": [PREFIX["B"]], "grant": "b-vn100.grant"}],
           "C": [{**vn, "components": [PREFIX["C"]]}]}

    def issue(nodes: dict[str, Node]) -> None:  # A and B are members; C is not
        for n in ("A", "B"):
            owner.grant(nodes[n].key.rm_id, time.time() + 3600, time.time(),
                        tmp_path / f"{n.lower()}-vn100.grant")

    with daemons_in_thread(tmp_path, protocol_core_factory, vns, names=("A", "B", "C"),
                           links=(("A", "B"), ("A", "C"), ("B", "C")), before_start=issue,
                           timers=TIMERS) as (a, b, c):
        code, ok = _stitch(b.config.control_socket, capsys)
        assert code == 0 and ok["established"], ok
        code, refused = _stitch(c.config.control_socket, capsys)
        assert code == 1 and not refused["established"], refused
        assert "not_authorised" in json.dumps(refused["detail"])
        sid_c = str(refused["stitch_id"])
        assert all(_live(d, sid_c) == [] for d in (a, b, c))  # nothing reserved anywhere
        assert all(r.stitch_id != sid_c for d in (a, b, c) for r in d.store.reservations())
        assert a.core.access_refusals[(c.core.rm_id, 100)] >= 1  # type: ignore[attr-defined]

        assert main(["routemgr", "show", "vnids", "--socket", str(c.config.control_socket),
                     "--json"]) == 0
        shown = capsys.readouterr().out
        assert PREFIX["A"] not in shown and PREFIX["B"] not in shown
        assert PREFIX["C"] in shown  # its own VN it does show
        # control: a member that showed its grant gets them (after the advertisement
        # interval that batches announcements)
        deadline = time.monotonic() + 3
        while True:
            assert main(["routemgr", "show", "vnids", "--socket",
                         str(b.config.control_socket), "--json"]) == 0
            if PREFIX["A"] in capsys.readouterr().out:
                break
            assert time.monotonic() < deadline, "the member never learnt A's components"
            time.sleep(0.05)
        assert main(["routemgr", "show", "vnids", "--socket", str(c.config.control_socket),
                     "--json"]) == 0
        assert PREFIX["A"] not in capsys.readouterr().out  # and still none at C

        sid_b = str(ok["stitch_id"])
        t0 = time.monotonic()
        assert main(["vn", "revoke", "--dir", str(owner.root), "--member",
                     b.core.rm_id]) == 0
        capsys.readouterr()
        req = b.core.request(sid_b)  # type: ignore[attr-defined]
        while req.state is StitchState.ESTABLISHED:
            assert time.monotonic() - t0 < 2 * INTERVAL, "not torn down in 2 intervals"
            time.sleep(0.01)
        took = time.monotonic() - t0
        deadline = time.monotonic() + 5
        while req.state not in (StitchState.FAILED,) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert req.state is StitchState.FAILED
        assert all(_live(d, sid_b) == [] for d in (a, b, c))
        code, again = _stitch(b.config.control_socket, capsys)
        assert code == 1 and "not_authorised" in json.dumps(again["detail"]), again
    print(f"revocation to teardown: {took:.3f} s (announce interval {INTERVAL} s)")
