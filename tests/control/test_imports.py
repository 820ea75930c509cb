"""Import rules of the one controller, checked on the source (AST), not by importing.

``vnstitch.control`` is pure: no asyncio, socket, time, pyroute2, and neither runtime.
Both runtimes import it, and neither imports ``vnstitch.forecast`` (the controller does).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "vnstitch"
FORBIDDEN_IN_CONTROL = ("asyncio", "socket", "time", "pyroute2", "random",
                        "vnstitch.daemon", "vnstitch.sim")
#: The demo's offline forecast story backtests forecasters on synthetic profiles; it is a
#: report, not part of the simulated control loop.
NOT_RUNTIME = {"sim/forecast_story.py"}


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


def hits(names: set[str], prefix: str) -> list[str]:
    return sorted(n for n in names if n == prefix or n.startswith(prefix + "."))


def modules(package: str) -> list[Path]:
    return sorted((SRC / package).rglob("*.py"))


@pytest.mark.parametrize("path", modules("control"), ids=lambda p: p.name)
def test_control_is_pure(path: Path) -> None:
    names = imports(path)
    bad = [n for prefix in FORBIDDEN_IN_CONTROL for n in hits(names, prefix)]
    assert bad == [], f"{path.name} imports {bad}"


@pytest.mark.parametrize("package", ["sim", "daemon"])
def test_runtimes_use_the_controller_not_the_forecasters(package: str) -> None:
    uses_control = False
    for path in modules(package):
        rel = str(path.relative_to(SRC))
        names = imports(path)
        uses_control |= bool(hits(names, "vnstitch.control"))
        if rel not in NOT_RUNTIME:
            assert hits(names, "vnstitch.forecast") == [], f"{rel} imports a forecaster"
    assert uses_control, f"vnstitch.{package} does not drive vnstitch.control"


def test_the_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    """Control: the same walk flags what the rules forbid."""
    bad = tmp_path / "bad.py"
    bad.write_text("import time\nfrom vnstitch.forecast.base import make_forecaster\n"
                   "from asyncio import sleep\n")
    names = imports(bad)
    assert hits(names, "time") == ["time"]
    assert hits(names, "asyncio") and hits(names, "vnstitch.forecast")
