"""Sweep specs: grid expansion, overrides reaching the scenario, errors naming fields."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.sweep.conftest import write_spec
from vnstitch.sweep.errors import SpecError
from vnstitch.sweep.spec import load_spec, parse_path, set_path


def test_grid_expands_in_written_order_with_overrides_applied(small_spec: Path) -> None:
    spec = load_spec(small_spec)
    assert len(spec.cells) == 8
    assert spec.group_by == ("topology", "network.loss")
    first, last = spec.cells[0], spec.cells[-1]
    assert first.params == {"topology": "zoo:Abilene", "network.loss": 0, "seed": 1}
    assert last.params["seed"] == 2 and last.params["network.loss"] == 0.05
    # The overrides reach the scenario the simulator will run.
    assert last.scenario.network.loss == 0.05 and last.scenario.seed == 2
    assert first.scenario.requests.count == 4 and first.scenario.vns.count == 3
    # A topology path is relative to the spec file.
    assert last.scenario.topology == str(small_spec.parent / "topo" / "tiny.graphml")
    assert len({c.run_id for c in spec.cells}) == 8


def test_run_ids_are_stable_across_loads(small_spec: Path) -> None:
    assert [c.run_id for c in load_spec(small_spec).cells] == \
        [c.run_id for c in load_spec(small_spec).cells]


@pytest.mark.parametrize(("body", "field", "words"), [
    ("base: builtin:small\ngrid: {seed: [1]}\nmetrics: [x]\nextra: 1\n", "extra",
     "unknown field"),
    ("grid: {seed: [1]}\nmetrics: [x]\n", "base", "required"),
    ("base: builtin:nope\ngrid: {seed: [1]}\nmetrics: [x]\n", "base", "no built-in"),
    ("base: builtin:small\ngrid: {seed: 1}\nmetrics: [x]\n", "grid.seed", "non-empty list"),
    ("base: builtin:small\ngrid: {network.loss: [0, 2]}\nmetrics: [x]\n",
     "grid.network.loss", "between 0 and 1"),
    ("base: builtin:small\ngrid: {segments: [0]}\nmetrics: [x]\n", "grid.segments",
     "between 1 and"),
    ("base: builtin:small\ngrid: {network.los: [0.1]}\nmetrics: [x]\n",
     "grid.network.los", "unknown field"),
    ("base: builtin:small\ngrid: {seed: [1, 1]}\nmetrics: [x]\n", "grid.seed", "twice"),
    ("base: builtin:small\ngrid: {seed: [1]}\nmetrics: [seed]\n", "metrics[0]",
     "already a parameter"),
    ("base: builtin:small\ngrid: {seed: [1]}\nmetrics: []\n", "metrics", "required"),
    ("base: builtin:small\ngrid: {seed: [1]}\nmetrics: [x]\ngroup_by: [topology]\n",
     "group_by[0]", "not a grid key"),
    ("base: builtin:small\ngrid: {seed: [[1]]}\nmetrics: [x]\n", "grid.seed[0]",
     "scalar"),
    ("base: builtin:small\ngrid: {'a..b': [1]}\nmetrics: [x]\n", "grid.a..b", "empty"),
    ("base: builtin:small\nset: {seed: 1}\ngrid: {seed: [1]}\nmetrics: [x]\n",
     "grid.seed", "also under set"),
])
def test_bad_specs_name_the_field(tmp_path: Path, body: str, field: str,
                                  words: str) -> None:
    with pytest.raises(SpecError) as err:
        load_spec(write_spec(tmp_path, body))
    assert err.value.field == field, str(err.value)
    assert words in str(err.value)


def test_yaml_errors_name_line_and_column(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"line \d+, column \d+"):
        load_spec(write_spec(tmp_path, "base: builtin:small\ngrid: {seed: [1\n"))


def test_missing_spec_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read"):
        load_spec(tmp_path / "absent.yaml")


def test_paths() -> None:
    assert parse_path("faults[0].at") == ["faults", 0, "at"]
    with pytest.raises(ValueError):
        parse_path("[0]")
    data: dict[str, object] = {"network": None, "faults": [{"at": 1}]}
    set_path(data, "network.loss", 0.1)
    set_path(data, "faults[0].at", 5)
    assert data == {"network": {"loss": 0.1}, "faults": [{"at": 5}]}
    with pytest.raises(ValueError, match=r"no list item \[3\]"):
        set_path(data, "faults[3].at", 1)
