"""Run the project's benchmarks from one command.

Usage: ``python benchmarks/run.py [NAME ...] [--json] [-- extra args]``. Each benchmark
is a script ``benchmarks/NAME.py`` with its own ``--help`` and ``--json``; this runner
runs the named ones (all by default) one after the other, each in its own process so
peak-memory figures are not polluted by the previous one, and prints their output. With
``--json`` it prints one JSON object ``{NAME: <that benchmark's JSON>}``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def available() -> list[str]:
    return sorted(p.stem for p in HERE.glob("*.py") if p.stem not in {"run", "__init__"}
                  and not p.stem.startswith("_"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help=f"benchmarks to run (default all): {available()}")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args, extra = parser.parse_known_args(argv)
    names = args.names or available()
    unknown = sorted(set(names) - set(available()))
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; have {available()}")
    results: dict[str, object] = {}
    code = 0
    for name in names:
        cmd = [sys.executable, str(HERE / f"{name}.py"), *extra]
        if args.json:
            proc = subprocess.run([*cmd, "--json"], capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                sys.stderr.write(proc.stderr)
                code = proc.returncode
                continue
            results[name] = json.loads(proc.stdout)
        else:
            print(f"== {name}", flush=True)
            code = subprocess.run(cmd, check=False).returncode or code
    if args.json:
        print(json.dumps(results, indent=2))
    return code


if __name__ == "__main__":
    raise SystemExit(main())
