"""Small sweep specs for the sweep tests (a few short runs of builtin:small)."""

from __future__ import annotations

from pathlib import Path

import pytest

TINY_GRAPHML = """<?xml version="1.0" encoding="utf-8"?>
<graphml xmlns="http://graphml.graphdrawing.org/xmlns">
  <key attr.name="label" attr.type="string" for="node" id="d0"/>
  <graph edgedefault="undirected">
    <node id="0"><data key="d0">A</data></node>
    <node id="1"><data key="d0">B</data></node>
    <node id="2"><data key="d0">C</data></node>
    <node id="3"><data key="d0">D</data></node>
    <edge source="0" target="1"/><edge source="1" target="2"/>
    <edge source="2" target="3"/><edge source="3" target="0"/>
  </graph>
</graphml>
"""


def write_spec(folder: Path, body: str) -> Path:
    path = folder / "spec.yaml"
    path.write_text(body, encoding="utf-8")
    return path


@pytest.fixture
def small_spec(tmp_path: Path) -> Path:
    """2 topologies (one a file path) x 2 loss rates x 2 seeds = 8 short runs."""
    (tmp_path / "topo").mkdir()
    (tmp_path / "topo" / "tiny.graphml").write_text(TINY_GRAPHML, encoding="utf-8")
    return write_spec(tmp_path, """
name: tiny
base: builtin:small
set: {requests.count: 4, vns.count: 3}
grid:
  topology: [zoo:Abilene, topo/tiny.graphml]
  network.loss: [0, 0.05]
  seed: [1, 2]
metrics: [success_rate_feasible, messages_per_rm_per_second, setup_seconds_median]
""")
