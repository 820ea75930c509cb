"""A restarted Route Manager answers sooner the less it imports: ``routemgr run`` must not
load the numeric and presentation stacks it never uses (numpy, scipy, networkx, rich,
pydantic, aiohttp) unless its config asks for them (``allocation:``, ``http:``).

Measured in a fresh interpreter, since this test process has them all loaded already."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("numpy", "scipy", "networkx", "rich", "pydantic", "aiohttp", "pandas", "torch")
# What `vnstitch routemgr run` imports before it reads its config (cli/routemgr.py _run).
DAEMON_START = """
import vnstitch.cli
vnstitch.cli.build_parser("routemgr")
from vnstitch.daemon.config import load_config
from vnstitch.daemon.coreadapter import make_driver, protocol_core_factory
from vnstitch.daemon.logfmt import configure_logging
from vnstitch.daemon.runtime import RouteManagerDaemon, run_daemon
import vnstitch.daemon.control
import vnstitch.dataplane.linux
"""


def _heavy_loaded(code: str) -> list[str]:
    probe = code + f"\nimport json, sys\nprint(json.dumps([m for m in {HEAVY!r} " \
                   "if m in sys.modules]))\n"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, env={"PYTHONPATH": str(ROOT / "src")}, timeout=60)
    loaded: list[str] = json.loads(out.stdout)
    return loaded


def test_daemon_start_loads_no_numeric_or_presentation_stack() -> None:
    assert _heavy_loaded(DAEMON_START) == []


def test_control_the_probe_sees_a_heavy_import() -> None:
    # The lazy names of vnstitch.model still work, and do load what they need.
    loaded = _heavy_loaded("from vnstitch.model import partitioned\nassert callable(partitioned)")
    assert {"numpy", "scipy", "networkx"} <= set(loaded)
