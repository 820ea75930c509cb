"""``vnstitch simulate``: flags, JSON keys, report files, errors (double core, fast)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.sim.conftest import double_factory
from vnstitch.cli import build_parser, main
from vnstitch.cli.simulate import run_simulate

REQUIRED_KEYS = {
    "requests", "feasible_requests", "committed", "success_rate_feasible",
    "failures_by_reason", "convergence_seconds", "setup_seconds_median", "setup_rtts_median",
    "setup_rtts_p95", "messages_per_rm_per_second", "overcommit_violations", "loops_detected",
}


def _run(argv: list[str]) -> int:
    args = build_parser().parse_args(["simulate", *argv])
    return run_simulate(args, double_factory)


def test_json_has_every_key_and_flags_apply(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["--topology", "zoo:Abilene", "--segments", "3", "--vns", "4",
                 "--requests", "7", "--loss", "0.02", "--seed", "5", "--duration", "20",
                 "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) >= REQUIRED_KEYS
    assert data["requests"] == 7 and data["segments"] == 3 and data["vns"] == 4
    assert data["seed"] == 5


def test_same_seed_same_json_bytes(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--segments", "4", "--requests", "10", "--loss", "0.1", "--seed", "3",
            "--duration", "20", "--json"]
    _run(argv)
    first = capsys.readouterr().out
    _run(argv)
    assert capsys.readouterr().out == first


def test_table_output_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    html = tmp_path / "r.html"
    assert _run(["--scenario", "builtin:small", "--report", str(html)]) == 0
    out = capsys.readouterr().out
    assert "success rate" in out and "no_overcommit" in out
    text = html.read_text()
    assert "data:image/png;base64," in text and "<table>" in text
    png = tmp_path / "r.png"
    _run(["--duration", "15", "--report", str(png), "--json"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_input_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("network: {loss: 2}\n")
    assert main(["simulate", "--scenario", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:1:17: network.loss: must be between 0 and 1" in err
    assert main(["simulate", "--loss", "1.5", "--json"]) == 2
    assert "network.loss: out of range" in capsys.readouterr().err
    assert main(["simulate", "--segments", "500"]) == 2
    assert "segments: 500 segments but" in capsys.readouterr().err
