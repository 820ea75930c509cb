"""The top-level CLI: every subcommand listed without importing it, and dispatch."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from vnstitch.cli import SUBCOMMANDS, build_parser, main


def _help_lines(parser: argparse.ArgumentParser) -> dict[str, str | None]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {c.dest: c.help for c in sub._choices_actions}


def test_placeholder_help_matches_what_each_module_registers() -> None:
    assert _help_lines(build_parser("")) == _help_lines(build_parser())
    assert list(_help_lines(build_parser())) == list(SUBCOMMANDS)


def test_top_level_help_imports_no_subcommand_module() -> None:
    code = ("import sys, contextlib, io\n"
            "from vnstitch.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
            "    try: main(['--help'])\n"
            "    except SystemExit: pass\n"
            "assert 'simulate' in out.getvalue()\n"
            "print(sorted(m for m in sys.modules if m.startswith(('vnstitch.cli.', "
            "'vnstitch.sim', 'numpy', 'matplotlib', 'highspy'))))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_a_subcommand_still_parses_its_own_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["topology", "show", "--help"])
    assert "--segments" in capsys.readouterr().out
    assert main(["topology", "show", "zoo:Abilene", "--json"]) == 0
    assert '"nodes"' in capsys.readouterr().out


def test_unknown_command_is_an_argparse_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["nosuch"])
    assert exc.value.code == 2
    assert "invalid choice: 'nosuch'" in capsys.readouterr().err
