"""``vnstitch sweep`` end to end: JSON shape, resume after kill -9, unknown metrics."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.sweep.conftest import write_spec
from vnstitch.cli import main


def _sweep(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, object]]:
    """``vnstitch sweep ... --json`` in this process (only the kill -9 test needs its own)."""
    code = main(["sweep", *args, "--json"])
    out = capsys.readouterr()
    return code, (json.loads(out.out) if code == 0 else {"stderr": out.err})


@pytest.mark.slow
def test_json_has_runs_and_groups(small_spec: Path, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _sweep(capsys, "--spec", str(small_spec), "--out", str(tmp_path / "o"),
                       "--workers", "2")
    assert code == 0, out
    runs, groups = out["runs"], out["groups"]
    assert isinstance(runs, list) and len(runs) == 8
    assert {"run_id", "status", "topology", "network.loss", "seed",
            "success_rate_feasible"} <= set(runs[0])
    assert isinstance(groups, list) and len(groups) == 4
    assert all(g["runs"] == 2 for g in groups)
    # A second run over the same --out has nothing left to do.
    code, again = _sweep(capsys, "--spec", str(small_spec), "--out", str(tmp_path / "o"))
    assert code == 0 and again["ran"] == 0 and again["skipped"] == 8


@pytest.mark.slow
def test_killed_sweep_resumes_with_only_the_missing_runs(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_spec(tmp_path, """
base: builtin:small
set: {requests.count: 3, vns.count: 2}
grid: {seed: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]}
metrics: [committed]
""")
    out = tmp_path / "o"
    proc = subprocess.Popen([sys.executable, "-m", "vnstitch", "sweep", "--spec", str(spec),
                             "--out", str(out), "--engine", "serial", "--json"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = out / "runs.csv"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            if results.exists() and len(results.read_text().splitlines()) >= 4:
                break
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    with results.open() as f:
        before = {r["run_id"] for r in csv.DictReader(f)}
    assert 3 <= len(before) < 12
    code, out_json = _sweep(capsys, "--spec", str(spec), "--out", str(out))
    assert code == 0, out_json
    assert out_json["skipped"] == len(before)
    assert out_json["ran"] == 12 - len(before)
    runs = out_json["runs"]
    assert isinstance(runs, list) and len(runs) == 12


def test_unknown_metric_is_a_spec_error(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_spec(tmp_path, "base: builtin:small\ngrid: {seed: [1, 2]}\n"
                                "metrics: [committed, commited_typo]\n")
    code = main(["sweep", "--spec", str(spec), "--out", str(tmp_path / "o"),
                 "--engine", "serial"])
    assert code == 2
    assert "metrics[1]" in capsys.readouterr().err


def test_bad_arguments_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["sweep", "--spec", "x.yaml", "--workers", "0"])
    assert exc.value.code == 2
    code = main(["sweep", "--spec", str(tmp_path / "missing.yaml")])
    assert code == 2
