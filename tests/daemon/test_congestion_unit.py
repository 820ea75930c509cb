"""The daemon's congestion pieces without a kernel: config section, netlink parsing, the
successor's end built early."""

from __future__ import annotations

import struct
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from tests.daemon.test_config import _good
from vnstitch.daemon.config import CongestionConfig, parse_config
from vnstitch.daemon.congestion import CongestionRunner
from vnstitch.daemon.errors import ConfigError
from vnstitch.daemon.linksampler import IFF_LOWER_UP, RTM_DELLINK, RTM_NEWLINK, parse_link_events
from vnstitch.dataplane.objects import (
    Bridge,
    BridgePort,
    DataplaneObject,
    DataplaneState,
    FdbEntry,
    RateLimit,
    Route,
    VxlanPort,
    WireguardInterface,
    WireguardPeer,
)
from vnstitch.model.ids import VNID, RouteManagerId
from vnstitch.protocol.api import TunnelView


def test_congestion_section_defaults_and_overrides(tmp_path: Path) -> None:
    cfg = _good(tmp_path)
    assert parse_config(yaml.safe_dump(cfg), "c.yaml", tmp_path).congestion == \
        CongestionConfig()
    cfg["congestion"] = {"interval_s": 0.5, "holddown_s": 30, "enabled": False}
    got = parse_config(yaml.safe_dump(cfg), "c.yaml", tmp_path).congestion
    assert (got.interval_s, got.holddown_s, got.enabled) == (0.5, 30, False)


@pytest.mark.parametrize(("section", "field"), [
    ({"low": 0.9, "high": 0.8}, "congestion.low"),
    ({"interval_s": 0}, "congestion.interval_s"),
    ({"min_reports": 0}, "congestion.min_reports"),
    ({"enabled": "yes"}, "congestion.enabled"),
    ({"bogus": 1}, "congestion.bogus"),
])
def test_bad_congestion_section_is_refused_with_its_field(
        tmp_path: Path, section: dict[str, object], field: str) -> None:
    cfg = _good(tmp_path)
    cfg["congestion"] = section
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        parse_config(yaml.safe_dump(cfg), "c.yaml", tmp_path)


def _msg(kind: int, index: int, flags: int) -> bytes:
    body = struct.pack("=BxHiII", 0, 1, index, flags, 0)
    return struct.pack("=IHHII", 16 + len(body), kind, 0, 0, 0) + body


def test_link_events_parse_up_down_and_deleted() -> None:
    data = (_msg(RTM_NEWLINK, 3, IFF_LOWER_UP) + _msg(RTM_NEWLINK, 4, 0)
            + _msg(RTM_DELLINK, 5, IFF_LOWER_UP) + _msg(99, 6, 0))
    assert parse_link_events(data) == [(3, True), (4, False), (5, False)]
    assert parse_link_events(data[:10]) == []  # a truncated datagram is ignored


class _Views:
    """A core's tunnel views and objects: one successor end with its keys exchanged."""

    def __init__(self, state: str) -> None:
        self.state = state

    def tunnel_views(self) -> list[TunnelView]:
        return [TunnelView("t-new", "new", VNID(100), RouteManagerId("b" * 32), True,
                           self.state, (RouteManagerId("a" * 32), RouteManagerId("b" * 32)),
                           20.0, "vxnew", "wgnew", 1, None, 0.0)]

    def tunnel_objects(self, tunnel_id: str) -> tuple[DataplaneObject, ...]:
        assert tunnel_id == "t-new"
        peer = WireguardPeer("cGVlcg==", "10.0.0.2:51821", ("10.9.0.1/32",))
        return (WireguardInterface("wgnew", "a2V5", 51821, "10.9.0.0/31", (peer,)),
                VxlanPort("vxnew", 100, "10.9.0.0", "wgnew", 48200), Bridge("vn100"),
                BridgePort("vn100", "vxnew"), FdbEntry("vxnew", "10.9.0.1"),
                RateLimit("vxnew", 1, 20.0, 20.0), Route("10.2.0.0/24", "vn100", 3))


def _runner(state: str, successor: bool) -> CongestionRunner:
    daemon = SimpleNamespace(core=_Views(state), metrics=Counter(), rm_id=RouteManagerId("a" * 32))
    runner = CongestionRunner(daemon, CongestionConfig())  # type: ignore[arg-type]
    if successor:
        runner._successor_of["new"] = "old"
    return runner


def test_a_successors_end_is_built_without_peer_or_port_while_it_commits() -> None:
    base = DataplaneState([Bridge("vn100"), BridgePort("vn100", "vxold"),
                           Route("10.2.0.0/24", "vn100", 3)])
    out = _runner("keys_exchanged", successor=True).overlay(base)
    wg = out.get("wg:wgnew")
    assert isinstance(wg, WireguardInterface) and wg.peers == ()  # no handshake yet
    assert {"vxlan:vxnew", "fdb:vxnew:00:00:00:00:00:00:10.9.0.1", "rate:vxnew:1"} <= \
        {o.key for o in out}
    assert "port:vn100:vxnew" not in out  # never bridged before the move
    # controls: not a successor, or not yet at key exchange: nothing early
    assert _runner("keys_exchanged", successor=False).overlay(base) == base
    assert _runner("requested", successor=True).overlay(base) == base
