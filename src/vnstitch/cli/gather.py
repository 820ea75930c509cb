"""``vnstitch gather``: one tarball for a bug report (state, decisions, metrics, logs,
kernel objects).

Theory of operation: the daemon's views are read through its control socket or HTTP API
and stored as JSON (``state/*.json``), its metrics as text, the config file as written
(it names key and token files but holds no secret; those files are never copied, nor the
state database, which holds tunnel keys), the log files given with ``--log``, and, for
the ``linux`` dataplane, the kernel objects (``ip -d link``, routes, ``tc -s`` qdiscs and
classes, ``wg show`` -- which hides private keys) read inside the config's namespace.
``manifest.json`` lists every member with how it was obtained and what failed; a failed
step is recorded, never fatal.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Any

from vnstitch.cli.daemonclient import add_target_args, send
from vnstitch.cli.output import add_json_flag, console, print_json
from vnstitch.errors import VnstitchError

VIEWS = ("status", "peers", "vnids", "stitches", "tunnels", "routes", "qos", "allocations",
         "decisions")
KERNEL = (("ip-link.txt", ["ip", "-d", "-s", "link", "show"]),
          ("ip-addr.txt", ["ip", "addr", "show"]),
          ("ip-route.txt", ["ip", "route", "show", "table", "all"]),
          ("tc-qdisc.txt", ["tc", "-s", "qdisc", "show"]),
          ("tc-class.txt", ["tc", "-s", "class", "show"]),
          ("wg-show.txt", ["wg", "show", "all"]))


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "gather", help="write one tarball with a daemon's state, decisions, metrics, logs "
                       "and kernel objects for a bug report",
        description="Collect what a bug report needs from a running Route Manager into "
        "one .tar.gz (no private keys, tokens or state database).")
    p.add_argument("--out", type=Path, help="tarball to write (default "
                   "vnstitch-gather-TIME.tar.gz in the current folder)")
    p.add_argument("--log", type=Path, action="append", default=[], metavar="FILE",
                   help="a log file to include (repeatable)")
    add_target_args(p)
    add_json_flag(p)
    p.set_defaults(handler=_gather)


def _gather(args: argparse.Namespace) -> int:
    out: Path = args.out or Path(f"vnstitch-gather-{time.strftime('%Y%m%dT%H%M%S')}.tar.gz")
    members: dict[str, bytes] = {}
    manifest: list[dict[str, Any]] = []

    def add(name: str, data: bytes, how: str, ok: bool = True, error: str = "") -> None:
        members[name] = data
        manifest.append({"file": name, "how": how, "ok": ok, "error": error})

    driver, netns = None, None
    for view in VIEWS:
        try:
            result = send(args, {"cmd": "show", "what": view})
        except VnstitchError as exc:
            manifest.append({"file": f"state/{view}.json", "how": f"show {view}", "ok": False,
                             "error": str(exc)})
            continue
        add(f"state/{view}.json", json.dumps(result, indent=2).encode(), f"show {view}")
        if view == "status":
            driver = result.get("driver")
    try:
        add("metrics.prom", str(send(args, {"cmd": "show", "what": "metrics"})).encode(),
            "show metrics")
    except VnstitchError as exc:
        manifest.append({"file": "metrics.prom", "how": "show metrics", "ok": False,
                         "error": str(exc)})
    if args.config is not None:
        add("config.yaml", Path(args.config).read_bytes(), f"copy of {args.config}")
        from vnstitch.daemon.config import load_config  # noqa: PLC0415

        netns = load_config(args.config).dataplane.netns
    for log in args.log:
        try:
            add(f"logs/{log.name}", log.read_bytes(), f"copy of {log}")
        except OSError as exc:
            manifest.append({"file": f"logs/{log.name}", "how": f"copy of {log}",
                             "ok": False, "error": exc.strerror or str(exc)})
    if driver == "linux":
        for name, cmd in KERNEL:
            full = (["ip", "netns", "exec", netns, *cmd] if netns else cmd)
            data, ok, err = _run(full)
            add(f"kernel/{name}", data, " ".join(full), ok, err)
    else:
        manifest.append({"file": "kernel/", "how": "-", "ok": True,
                         "error": f"skipped: the {driver} dataplane has no kernel objects"})
    add("manifest.json", json.dumps(manifest, indent=2).encode(), "this list")
    with tarfile.open(out, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(f"vnstitch-gather/{name}")
            info.size, info.mtime, info.mode = len(data), int(time.time()), 0o600
            tar.addfile(info, io.BytesIO(data))
    failed = [m for m in manifest if not m["ok"]]
    if args.json:
        print_json({"tarball": str(out), "files": len(members), "failed": failed})
    else:
        console().print(f"wrote {out} ({len(members)} files, {len(failed)} steps failed)")
    return 0


def _run(cmd: list[str]) -> tuple[bytes, bool, str]:
    if shutil.which(cmd[0]) is None:
        return b"", False, f"{cmd[0]} not installed"
    try:
        r = subprocess.run(cmd, capture_output=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return b"", False, str(exc)
    return r.stdout, r.returncode == 0, r.stderr.decode(errors="replace").strip()
