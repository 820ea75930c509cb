"""The non-member scenario: segments that declare a VN without belonging to it never get
a stitch into it, and the refusals are counted (control: the same run with open VNs
lets the same requests in)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from vnstitch.model.ids import VNID, SegmentId
from vnstitch.model.substrate import Substrate
from vnstitch.protocol.grants import AccessPolicy
from vnstitch.sim.cores import CoreFactory
from vnstitch.sim.protocol_cores import ProtocolCoreFactory
from vnstitch.sim.runner import run
from vnstitch.sim.scenario import Scenario, load_scenario


class _OpenFactory(ProtocolCoreFactory):
    """Ignores the scenario's policies: every VN open (the behaviour before membership)."""

    @property
    def access(self) -> Callable[[SegmentId], Mapping[VNID, AccessPolicy]]:
        return lambda _s: {}

    @access.setter
    def access(self, _value: object) -> None:
        pass


def _open(scenario: Scenario, _sub: Substrate) -> CoreFactory:
    return _OpenFactory(scenario.seed, scenario.protocol, source=scenario.source)


def test_non_members_get_no_stitch_and_refusals_are_counted() -> None:
    sc = load_scenario("builtin:nonmember")
    res = run(sc, check_every_step=False)
    m = res.summary["membership"]
    assert m["non_member_requests"] > 0
    assert m["non_member_stitches_established"] == 0
    assert m["non_member_refused_not_authorised"] == m["non_member_requests"]
    assert m["refusals_counted_at_targets"] >= m["non_member_requests"]
    assert res.summary["failures_by_reason"] == {"not_authorised": m["non_member_requests"]}
    # members are unaffected: every other request is established
    assert res.summary["committed"] == sc.requests.count - m["non_member_requests"]

    # control: the same placements and requests with open VNs -- the non-members get in
    outsiders = {(r.vnid, r.origin) for r in res.simulation.metrics.records.values()
                 if r.reason == "not_authorised"}
    ctl = run(sc, _open, check_every_step=False)
    let_in = [r for r in ctl.simulation.metrics.records.values()
              if (r.vnid, r.origin) in outsiders and r.established_at is not None]
    assert let_in
