"""The demo stitches across a transit segment in three round trips, then simulates.

The full demo runs once (module fixture, report left to its default temporary folder);
the JSON, the text and the report are all checked on that one run.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from vnstitch.cli import build_parser, main
from vnstitch.cli.demo import DemoRun, collect, render


def test_demo_closeup_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--json", "--no-simulation"]) == 0
    r = json.loads(capsys.readouterr().out)["closeup"]
    assert len(r["stitch"]["path"]) >= 3  # a transit segment in between
    assert r["stitch"]["round_trips"] == pytest.approx(3.0)
    assert {t["state"] for t in r["tunnels"]} == {"up"} and len(r["tunnels"]) == 2
    assert r["converged_after_messages"] > 0 and not r["dropped"]


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DemoRun, Path]]:
    tmp = tmp_path_factory.mktemp("demo-tmp")
    saved = tempfile.tempdir
    tempfile.tempdir = str(tmp)  # where the default report folder goes
    try:
        args = build_parser("demo").parse_args(["demo"])
        yield collect(args), tmp
    finally:
        tempfile.tempdir = saved


def test_demo_full_writes_report_to_a_temporary_folder(
        full: tuple[DemoRun, Path]) -> None:
    run, tmp = full
    out = json.loads(json.dumps(run.as_json()))  # what --json prints
    report = Path(out["simulation"]["report"])
    assert report.is_file() and report.parent.parent == tmp
    summary = out["simulation"]["summary"]
    assert summary["committed"] > 0 and summary["overcommit_violations"] == 0
    story = "\n".join(out["simulation"]["story"])
    assert "crash" in story and "flows again" in story
    part4 = out["forecast_allocation"]
    assert {v["vn"] for v in part4["vns"]} == {"video", "database", "e-mail"}
    assert all(set(v["policies"]) == {"static-p95", "reactive", "predictive"}
               for v in part4["vns"])
    assert run.ok


def test_demo_text_names_the_report_and_has_no_python_repr(
        full: tuple[DemoRun, Path], capsys: pytest.CaptureFixture[str]) -> None:
    run, _ = full
    render(run)
    out = capsys.readouterr().out
    assert "Part 4" in out and "What next" in out  # control: the whole story printed
    assert run.sim is not None and run.sim["report"] in out.replace("\n", "")
    assert "{'" not in out and "('" not in out
