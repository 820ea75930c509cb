"""The daemon's congestion pieces without a kernel: config section, netlink parsing."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
import yaml

from tests.daemon.test_config import _good
from vnstitch.daemon.config import CongestionConfig, parse_config
from vnstitch.daemon.errors import ConfigError
from vnstitch.daemon.linksampler import IFF_LOWER_UP, RTM_DELLINK, RTM_NEWLINK, parse_link_events


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
