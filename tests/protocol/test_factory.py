"""The one CoreFactory: fresh and restored cores, the sequence floor, and both runtimes
building their cores through it (nowhere else in sim or daemon)."""

from __future__ import annotations

import ast
import random
import re
from pathlib import Path

import pytest

from vnstitch.model import Component, SegmentId, VirtualNetwork, load_topology, partitioned
from vnstitch.model.ids import VNID
from vnstitch.protocol.api import StitchConstraints
from vnstitch.protocol.core import RouteManagerCore, encode_state
from vnstitch.protocol.errors import ProtocolError
from vnstitch.protocol.factory import CoreFactory, last_sequence
from vnstitch.protocol.testing import InMemoryNetwork

SRC = Path(__file__).resolve().parents[2] / "src" / "vnstitch"


def _established() -> tuple[InMemoryNetwork, RouteManagerCore, str]:
    segs = (SegmentId("seg02"), SegmentId("seg01"))
    vns = {s: [VirtualNetwork(VNID(100), s, (Component.parse(f"10.100.{i}.0/24"),))]
           for i, s in enumerate(segs)}
    net = InMemoryNetwork(partitioned(load_topology("zoo:Abilene"), 4), vns, seed=1)
    net.start()
    net.converge()
    o = net.core(segs[0])
    sid, out = o.request_stitch(VNID(100), StitchConstraints(100.0), net.now)
    net.process(o.rm_id, out)
    net.run_until(net.now + 3)
    return net, o, sid


def test_restored_core_keeps_its_stitches_and_numbers_above_the_floor() -> None:
    _, o, sid = _established()
    factory = CoreFactory(RouteManagerCore)
    used = last_sequence(o)
    assert used > 0
    peers = [p.peer for p in o.config.peers]
    back = factory.build(o.config, o.identity, o.trust, random.Random(1),
                         state=encode_state(o.export_state()), sequence_floor=used + 1000,
                         floor_for=peers)
    assert back.requests[sid].state.value == "established"
    assert back.link_usage() == o.link_usage()
    assert last_sequence(back) > used + 1000
    fresh = factory.build(o.config, o.identity, o.trust, random.Random(1))
    assert fresh.requests == {} and last_sequence(fresh) == 0  # control: no state, no floor


def test_unreadable_state_is_refused() -> None:
    _, o, _ = _established()
    with pytest.raises(ProtocolError, match="unreadable"):
        CoreFactory(RouteManagerCore).build(o.config, o.identity, o.trust, random.Random(1),
                                            state=b"\x81\xa1a")


def _builds_cores(path: Path) -> list[str]:
    """Calls that build a core directly: ``RouteManagerCore(...)``, ``X.from_state``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call):
            f = node.func
            if (isinstance(f, ast.Name) and f.id in {"RouteManagerCore", "ProtocolCore"}) or \
                    (isinstance(f, ast.Attribute) and f.attr == "from_state"):
                found.append(f"{path.name}:{node.lineno}")
    return found


def test_sim_and_daemon_build_cores_only_through_the_factory() -> None:
    direct = [hit for pkg in ("sim", "daemon") for p in sorted((SRC / pkg).glob("*.py"))
              for hit in _builds_cores(p)]
    assert direct == []
    uses = [p.name for pkg in ("sim", "daemon") for p in sorted((SRC / pkg).glob("*.py"))
            if re.search(r"\bCoreFactory\((RouteManagerCore|ProtocolCore)\)",
                         p.read_text(encoding="utf-8"))]
    assert sorted(uses) == ["protocol_cores.py", "protocoladapter.py"]
    # Control: the checker finds a direct build.
    assert _builds_cores(SRC / "protocol" / "testing.py")
