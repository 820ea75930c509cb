from __future__ import annotations

from pathlib import Path

import networkx as nx
import pytest

from vnstitch.model import (
    Component,
    ComponentKind,
    ModelError,
    Stitch,
    Substrate,
    TopologyLoadError,
    load_graphml,
    load_sndlib,
    load_topology,
    partition,
    route_manager_id_from_public_key,
    segment_id,
    vnid,
)
from vnstitch.model.loaders import DEFAULT_CAPACITY_MBPS


def test_vnid_validation() -> None:
    assert vnid(100) == 100
    for bad in (0, -1, 1 << 24, True, "5", 1.5):
        with pytest.raises(ModelError):
            vnid(bad)


def test_segment_and_rm_ids() -> None:
    assert segment_id("seg-A.1") == "seg-A.1"
    with pytest.raises(ModelError):
        segment_id("bad name")
    rid = route_manager_id_from_public_key(b"\x01" * 32)
    assert len(rid) == 32
    with pytest.raises(ModelError):
        route_manager_id_from_public_key(b"short")


def test_components_parse() -> None:
    assert Component.parse("10.1.0.0/24").kind is ComponentKind.PREFIX
    assert Component.parse("10.1.0.5").kind is ComponentKind.ENDPOINT
    with pytest.raises(ModelError, match="bad virtual network component"):
        Component.parse("10.1.0.0/33")


def test_stitch_rejects_loops() -> None:
    with pytest.raises(ModelError, match="loop"):
        Stitch("s1", vnid(5), (segment_id("a"), segment_id("b"), segment_id("a")), 10.0)


def test_substrate_rejects_bad_links() -> None:
    sub = Substrate("t")
    sub.add_node("a")
    sub.add_node("b")
    with pytest.raises(ModelError, match="capacity"):
        sub.add_link("a", "b", capacity_mbps=0, latency_ms=1)
    with pytest.raises(ModelError, match="unknown node"):
        sub.add_link("a", "c", capacity_mbps=1, latency_ms=1)


def test_topohub_builtin_and_partition() -> None:
    sub = load_topology("zoo:Abilene")
    assert sub.graph.number_of_nodes() >= 10
    mapping = partition(sub, 4)
    sub.assign_segments(mapping)
    assert len(sub.segments()) == 4
    for seg in sub.segments():
        assert nx.is_connected(sub.graph.subgraph(sub.nodes_in(seg)))
    assert nx.is_connected(sub.segment_graph())
    with pytest.raises(ModelError):
        partition(sub, 0)


@pytest.mark.data
def test_sndlib_abilene(data_dir: Path) -> None:
    sub = load_sndlib(data_dir / "abilene" / "abilene_topology_sndlib.xml")
    assert sub.graph.number_of_nodes() == 12
    assert sub.graph.number_of_edges() == 15
    caps = {link.capacity_mbps for link in sub.links()}
    assert 9920.0 in caps
    lat = sub.link("ATLAM5", "ATLAng").latency_ms
    assert 0.5 < lat < 1.0  # ~130 km at 5 us/km


@pytest.mark.data
@pytest.mark.parametrize("name", ["Cogentco", "GtsCe", "Kdl"])
def test_zoo_graphml(data_dir: Path, name: str) -> None:
    sub = load_graphml(data_dir / "topologyzoo" / "graphml" / f"{name}.graphml")
    assert nx.is_connected(sub.graph)
    assert sub.graph.number_of_nodes() > 100
    assert all(link.latency_ms > 0 and link.capacity_mbps > 0 for link in sub.links())
    k = 20
    sub.assign_segments(partition(sub, k))
    assert len(sub.segments()) == k


def test_loader_errors_name_file_and_element(tmp_path: Path) -> None:
    bad = tmp_path / "bad.xml"
    bad.write_text(
        '<network xmlns="http://sndlib.zib.de/network"><networkStructure><nodes>'
        '<node id="A"><coordinates><x>1</x><y>2</y></coordinates></node>'
        '<node id="B"><coordinates><x>oops</x><y>2</y></coordinates></node>'
        "</nodes></networkStructure></network>"
    )
    with pytest.raises(TopologyLoadError) as err:
        load_sndlib(bad)
    assert "bad.xml" in str(err.value) and "node 'B'" in str(err.value)
    missing_node = tmp_path / "m.xml"
    missing_node.write_text(
        '<network xmlns="http://sndlib.zib.de/network"><networkStructure><nodes>'
        '<node id="A"/></nodes><links><link id="L1"><source>A</source><target>Z</target>'
        "</link></links></networkStructure></network>"
    )
    with pytest.raises(TopologyLoadError, match=r"link 'L1'.*unknown node 'Z'"):
        load_sndlib(missing_node)
    garbage = tmp_path / "g.graphml"
    garbage.write_text("<graphml><graph")
    with pytest.raises(TopologyLoadError, match=r"g\.graphml: graphml"):
        load_graphml(garbage)
    with pytest.raises(ModelError, match="not a file"):
        load_topology(str(tmp_path / "nothing"))


def test_graphml_defaults_are_noted(tmp_path: Path) -> None:
    g = nx.Graph()
    g.add_node("x", Latitude=52.5, Longitude=13.4)
    g.add_node("y", Latitude=48.1, Longitude=11.6)
    g.add_node("z")
    g.add_edge("x", "y", LinkSpeedRaw=1e9)
    g.add_edge("y", "z")
    path = tmp_path / "t.graphml"
    nx.write_graphml(g, path)
    sub = load_graphml(path)
    assert sub.link("x", "y").capacity_mbps == 1000.0
    assert 2.5 < sub.link("x", "y").latency_ms < 3.0  # Berlin-Munich ~505 km
    assert sub.link("y", "z").capacity_mbps == DEFAULT_CAPACITY_MBPS
    assert any("without coordinates" in n for n in sub.notes)
