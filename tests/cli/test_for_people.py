"""Output for people: help on every option, tables that fit, no Python repr, thin CLI."""

from __future__ import annotations

import argparse
import io
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from vnstitch.cli import build_parser, main
from vnstitch.output import fmt, table

ROOT = Path(__file__).resolve().parents[2]


def _parsers(parser: argparse.ArgumentParser, path: str = "vnstitch",
             ) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _parsers(child, f"{path} {name}")


def test_every_option_of_every_command_has_help() -> None:
    missing = []
    count = 0
    for path, parser in _parsers(build_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                continue
            count += 1
            if not action.help or action.help == argparse.SUPPRESS:
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    assert count > 50  # control: the walk really reached the subcommands' options
    assert missing == []


def test_help_text_shows_no_escaped_percent() -> None:
    for path, parser in _parsers(build_parser()):
        assert "%%" not in parser.format_help(), path


def test_vnstitch_alone_prints_its_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "usage: vnstitch" in out and "simulate" in out


def test_benchmarks_import_the_library_never_the_cli() -> None:
    files = sorted((ROOT / "benchmarks").glob("*.py"))
    assert len(files) > 5  # control: the benchmarks are where we look
    offenders = [f.name for f in files if "vnstitch.cli" in f.read_text()]
    assert offenders == []


def _render(renderable: object, width: int) -> str:
    con = Console(file=io.StringIO(), width=width, highlight=False, color_system=None)
    con.print(renderable)
    out = con.file.getvalue()  # type: ignore[attr-defined]
    assert isinstance(out, str)
    return out


def test_a_wide_table_stacks_and_keeps_every_identifying_cell_whole() -> None:
    names = ["static-peak", "static-p95", "reactive", "predictive", "oracle"]
    cols = ["policy", "P(a<d)", "unserved", "slack", "changes/h",
            *(f"cost r={r}" for r in (1, 5, 10, 50))]
    rows = [[n, 0.00625, 0.0021, 0.9598, 0.1389, 0.3086, 0.31, 0.3274, 123.25] for n in names]
    wide = _render(table("allocation", cols, rows), 200)
    narrow = _render(table("allocation", cols, rows), 80)
    assert "(1/2)" not in wide  # control: wide enough, one table
    assert "(1/2)" in narrow
    assert max(len(line) for line in narrow.splitlines()) <= 80
    for n in names:
        assert len(re.findall(rf"\b{n}\b", narrow)) == 2  # once per stacked part
    for cell in ("0.00625", "0.3274", "123.2", "changes/h"):
        assert cell in narrow


@pytest.mark.parametrize(("value", "text"), [
    ({"reason": 3}, "reason 3"), (("small", 2), "small, 2"), ({}, "none"),
    (30000.0, "30,000"), (True, "yes"), (None, "-"), (0.5, "0.5")])
def test_values_are_text_not_python_repr(value: object, text: str) -> None:
    assert fmt(value) == text


def _runner() -> object:
    import importlib.util  # noqa: PLC0415

    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "benchmarks" / "run.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_run"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def test_benchmark_runner_knows_every_benchmark_and_lists_it(
        capsys: pytest.CaptureFixture[str]) -> None:
    run = _runner()
    assert sorted(run.BENCHMARKS) == run.available()  # type: ignore[attr-defined]
    assert run.main(["--list"]) == 0  # type: ignore[attr-defined]
    out = capsys.readouterr().out
    for name, bench in run.BENCHMARKS.items():  # type: ignore[attr-defined]
        line = next(x for x in out.splitlines() if x.startswith(f"{name}  "))
        assert bench.typical in line
        assert ("needs root" in line) == bench.root
        assert not (bench.quick and bench.root)  # the default run never needs root


def test_demo_refuses_fewer_than_two_segments(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--segments", "1", "--no-simulation"])
    assert exc.value.code == 2
    assert "need K >= 2" in capsys.readouterr().err
