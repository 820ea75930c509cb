"""The forecast CLI: JSON shape, errors as one line with exit 2, plot output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vnstitch.cli import main


def make_csv(tmp_path: Path, n: int = 24 * 6) -> Path:
    rng = np.random.default_rng(3)
    t = np.arange(n)
    rows = ["time,a->b,c->d"]
    for i in t:
        a = 10 + 3 * np.sin(2 * np.pi * i / 24) + rng.normal(0, 0.3)
        b = 4 + np.cos(2 * np.pi * i / 24) + rng.normal(0, 0.2)
        rows.append(f"200403{1 + i // 24:02d}-{i % 24:02d}00,{a:.3f},{b:.3f}")
    p = tmp_path / "tm.csv"
    p.write_text("\n".join(rows) + "\n")
    return p


def test_backtest_json_shape(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = make_csv(tmp_path)
    png = tmp_path / "bt.png"
    code = main(["forecast", "backtest", "--data", str(p), "--season", "24", "--horizon", "3",
                 "--test-steps", "24", "--models", "naive,seasonal_naive,ets,auto", "--json",
                 "--plot", str(png)])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["horizon"] == 3 and out["series"] == 2
    assert list(out["models"]) == ["naive", "seasonal_naive", "ets", "auto"]
    for r in out["models"].values():
        assert set(r) == {"nmae", "mase", "pinball", "coverage_80", "fit_seconds",
                          "predict_seconds"}
    assert out["models"]["ets"]["nmae"] < out["models"]["naive"]["nmae"]
    assert png.stat().st_size > 1000


def test_run_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = make_csv(tmp_path)
    assert main(["forecast", "run", "--data", str(p), "--horizon", "4", "--season", "24",
                 "--model", "ets", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["times"]) == 4
    s = out["series"]["a->b"]
    assert len(s["mean"]) == 4 and set(s["quantiles"]) == {"0.1", "0.5", "0.9"}


def test_bad_file_is_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "bad.csv"
    p.write_text("time,a\n20040301-0000,1\n20040301-0005,oops\n")
    code = main(["forecast", "run", "--data", str(p), "--horizon", "2"])
    assert code == 2
    err = capsys.readouterr().err
    assert "bad.csv:3: column 'a': not a number" in err


def test_unknown_model_rejected(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["forecast", "backtest", "--data", "x", "--season", "2", "--horizon", "1",
              "--models", "naive,magic"])


@pytest.mark.parametrize("args", [
    ["run", "--horizon", "0"], ["run", "--horizon", "-2"], ["run", "--horizon", "x"],
    ["run", "--horizon", "2", "--season", "0"],
    ["backtest", "--horizon", "0", "--season", "24"],
    ["backtest", "--horizon", "2", "--season", "-1"],
    ["backtest", "--horizon", "2", "--season", "24", "--test-steps", "0"],
    ["backtest", "--horizon", "2", "--season", "24", "--test-steps", "100000"],
])
def test_bad_numbers_are_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      args: list[str]) -> None:
    p = make_csv(tmp_path)
    with pytest.raises(SystemExit) as info:  # argparse: usage error
        code = main(["forecast", args[0], "--data", str(p), *args[1:]])
        raise SystemExit(code)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip()
    # control: the same command with sane numbers works
    assert main(["forecast", "run", "--data", str(p), "--horizon", "2", "--season", "24",
                 "--model", "naive", "--json"]) == 0


def _with_constant_series(tmp_path: Path) -> Path:
    """The demo CSV plus a constant series, which the statsforecast models cannot fit."""
    p = make_csv(tmp_path)
    lines = p.read_text().splitlines()
    out = [lines[0] + ",flat"] + [row + ",5.000" for row in lines[1:]]
    p.write_text("\n".join(out) + "\n")
    return p


@pytest.mark.parametrize("as_json", [False, True])
def test_fallbacks_are_printed_as_notes(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        as_json: bool) -> None:
    p = _with_constant_series(tmp_path)
    flag = ["--json"] if as_json else []
    assert main(["forecast", "backtest", "--data", str(p), "--season", "24", "--horizon", "2",
                 "--test-steps", "24", "--models", "naive,sf_autoarima", *flag]) == 0
    out = capsys.readouterr().out
    if as_json:
        notes = json.loads(out)["notes"]
        assert list(notes) == ["sf_autoarima"]  # control: naive never falls back
        assert any("constant series" in n and n.endswith("series 2")
                   for n in notes["sf_autoarima"])
    else:
        assert "note: sf_autoarima:" in out and "note: naive" not in out
    assert main(["forecast", "run", "--data", str(p), "--horizon", "2", "--season", "24",
                 "--model", "sf_autoets", *flag]) == 0
    out = capsys.readouterr().out
    if as_json:
        assert json.loads(out)["notes"]
    else:
        assert "note: sf_autoets:" in out
