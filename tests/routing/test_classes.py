"""Strict class precedence and max-min fairness inside a class, on cases solved by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vnstitch.cli import main
from vnstitch.model.substrate import substrate_from_links
from vnstitch.routing.demands import parse_tm_csv
from vnstitch.routing.errors import DemandFileError
from vnstitch.routing.paths import k_shortest_paths
from vnstitch.routing.qos_te import class_order, solve_classes
from vnstitch.routing.te import ArcTable, Demand


def _line() -> ArcTable:
    # a - b (10 Mb/s) - c (10 Mb/s): every demand a->c crosses both links.
    return ArcTable(substrate_from_links("line", "abc", [
        ("a", "b", 10, 1, 1), ("b", "c", 10, 1, 1)]).graph)


def _cands(table: ArcTable, demands: list[Demand], k: int = 3) -> list[list[tuple[int, ...]]]:
    return [[table.arc_path(p) for p in k_shortest_paths(table.graph, d.src, d.dst, k)]
            for d in demands]


def test_higher_class_first_lower_class_shares_the_rest_fairly() -> None:
    t = _line()
    demands = [Demand("a", "c", 4, "interactive"), Demand("a", "c", 3, "database"),
               Demand("a", "c", 5, "email"), Demand("a", "c", 5, "bulk")]
    alloc = solve_classes(t, demands, _cands(t, demands))
    # interactive 4 and database 3 are fully served; bulk precedes email: 3 left -> bulk.
    assert alloc.rate_mbps == pytest.approx([4, 3, 0, 3], abs=1e-6)
    assert class_order(demands) == ["interactive", "database", "bulk", "email"]


def test_max_min_fair_inside_a_class() -> None:
    t = _line()
    demands = [Demand("a", "c", 2, "bulk"), Demand("a", "c", 20, "bulk"),
               Demand("b", "c", 20, "bulk")]
    alloc = solve_classes(t, demands, _cands(t, demands))
    # b->c has 10: the small demand gets all of its 2, the two big ones split 8 equally;
    # then a->b has spare capacity but the 20-demand a->c is stuck at b->c.
    assert alloc.rate_mbps == pytest.approx([2, 4, 4], abs=1e-6)
    assert alloc.arc_load.max() <= 10 + 1e-6


def test_fairness_uses_alternative_paths() -> None:
    # Two parallel routes a-b-d and a-c-d of 10 each: a->d of 30 (interactive) gets 20,
    # and a bulk b->d demand gets nothing, because interactive came first.
    t = ArcTable(substrate_from_links("sq", "abcd", [
        ("a", "b", 10, 1, 1), ("b", "d", 10, 1, 1), ("a", "c", 10, 2, 1),
        ("c", "d", 10, 2, 1)]).graph)
    demands = [Demand("a", "d", 30, "interactive"), Demand("b", "d", 5, "bulk")]
    alloc = solve_classes(t, demands, _cands(t, demands))
    assert alloc.rate_mbps == pytest.approx([20, 0], abs=1e-6)
    assert len(alloc.routing[0]) == 2
    assert alloc.satisfied(demands) == pytest.approx([2 / 3, 0], abs=1e-6)


def _line_files(tmp_path: Path) -> tuple[Path, Path]:
    topo = tmp_path / "line.xml"
    links = "".join(
        f"<link id='{a}{b}'><source>{a}</source><target>{b}</target>"
        "<preInstalledModule><capacity>10</capacity><cost>1</cost></preInstalledModule></link>"
        for a, b in (("a", "b"), ("b", "c")))
    topo.write_text("<network><networkStructure><nodes><node id='a'/><node id='b'/>"
                    f"<node id='c'/></nodes><links>{links}</links></networkStructure></network>")
    tm = tmp_path / "tm.csv"
    tm.write_text("time,a->c@interactive,a->c@email,a->c@bulk\nt0,4,5,5\n")
    return topo, tm


def test_cli_serves_file_classes_in_precedence(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    topo, tm = _line_files(tmp_path)
    args = ["route", "te", "--topology", str(topo), "--demands", str(tm), "--method",
            "classes", "--json"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    served = {c["class"]: c["served_mbps"] for c in out["classes"]}
    assert [c["class"] for c in out["classes"]] == ["interactive", "bulk", "email"]
    assert served == pytest.approx({"interactive": 4, "bulk": 5, "email": 1}, abs=1e-6)
    assert out["demand_satisfied"] == pytest.approx(10 / 14)
    # --precedence reorders: e-mail first now, bulk gets what is left.
    assert main([*args, "--precedence", "email,interactive,bulk"]) == 0
    served = {c["class"]: c["served_mbps"]
              for c in json.loads(capsys.readouterr().out)["classes"]}
    assert served == pytest.approx({"email": 5, "interactive": 4, "bulk": 1}, abs=1e-6)


def test_cli_splits_unclassed_demands_by_share(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    topo, _ = _line_files(tmp_path)
    tm = tmp_path / "plain.csv"
    tm.write_text("time,a->c,c->a\nt0,20,2\n")
    out_file = tmp_path / "routing.json"
    assert main(["route", "te", "--topology", str(topo), "--demands", str(tm), "--method",
                 "classes", "--classes", "interactive=1,email=3", "--routing-out",
                 str(out_file), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    served = {c["class"]: c["served_mbps"] for c in out["classes"]}
    # a->c: interactive 5 fits, e-mail 15 gets the other 5; c->a: 0.5 + 1.5 both fit.
    assert served == pytest.approx({"interactive": 5.5, "email": 6.5}, abs=1e-6)
    rows = json.loads(out_file.read_text())["demands"]
    assert {r["class"] for r in rows} == {"interactive", "email"}
    assert main(["route", "te", "--topology", str(topo), "--demands", str(tm), "--method",
                 "classes", "--classes", "interactive=x"]) == 2
    assert "interactive=x" in capsys.readouterr().err


def test_duplicate_class_column_is_named() -> None:
    with pytest.raises(DemandFileError, match=r"column 3 .*appears twice"):
        parse_tm_csv(["time,a->b@bulk,a->b@bulk", "t0,1,2"], "m.csv")
    tm = parse_tm_csv(["time,a->b@bulk,a->b", "t0,1,2"], "m.csv")
    assert [d.qos_class for d in tm.demands(0)] == ["bulk", "default"]
