"""FRR as the lab substrate's IGP: one zebra + ospfd per router namespace.

Theory of operation. :func:`ospf_config` renders a router's ``frr.conf`` (pure): every
substrate interface in OSPF area 0 as point-to-point with a 1 s hello and 4 s dead
interval (a cut link is noticed in seconds, and netlink carrier loss at once), the
loopback passive (it is the Route Manager's and the tunnels' endpoint), each interface's
cost from the topology, SPF throttled at 0/50/500 ms so the IGP reconverges quickly, and
a zebra route-map that gives every OSPF route the loopback as source address (so a
reroute never changes the address peers see this router's datagrams come from).
:func:`start` runs ``zebra`` then ``ospfd`` inside the namespace (``-N NS`` gives each
instance its own pathspace ``/var/run/frr/NS``, ``--vty_socket DIR`` its own vty
sockets), as the ``frr`` user, daemonised, with pid files in the router's folder.
Both daemons live inside the namespace, so destroying the namespace ends them
(:func:`vnstitch.lab.netns.destroy` terminates every process in it); :func:`cleanup`
then removes the pathspace folder FRR leaves. :func:`neighbors` reads adjacencies with
``vtysh --vty_socket DIR -c 'show ip ospf neighbor json'``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vnstitch.lab import netns
from vnstitch.lab.netns import LabError

FRR_BIN = Path("/usr/lib/frr")
PATHSPACE_ROOT = Path("/var/run/frr")
VTYSH = "vtysh"


@dataclass(frozen=True, slots=True)
class OspfInterface:
    name: str
    cost: int


def available() -> bool:
    return (FRR_BIN / "zebra").exists() and (FRR_BIN / "ospfd").exists() \
        and shutil.which(VTYSH) is not None


def ospf_config(hostname: str, router_id: str, interfaces: Sequence[OspfInterface],
                log_file: Path) -> str:
    lines = ["frr defaults traditional", f"hostname {hostname}",
             f"log file {log_file} informational", "!"]
    for itf in interfaces:
        lines += [f"interface {itf.name}", " ip ospf area 0",
                  " ip ospf network point-to-point", " ip ospf hello-interval 1",
                  " ip ospf dead-interval 4", f" ip ospf cost {itf.cost}", "!"]
    lines += ["interface lo", " ip ospf area 0", " ip ospf passive", "!",
              "router ospf", f" ospf router-id {router_id}",
              " timers throttle spf 0 50 500", "!",
              # Routes OSPF installs carry the loopback as source address: what this
              # router sends (Route Manager datagrams, WireGuard) keeps its configured
              # address when the IGP moves it to another interface.
              "route-map VNSTITCH-SRC permit 10", f" set src {router_id}", "!",
              "ip protocol ospf route-map VNSTITCH-SRC", "!", ""]
    return "\n".join(lines)


def start(ns: str, folder: Path, config: str) -> None:
    """Write ``frr.conf`` into ``folder`` and start zebra and ospfd in ``ns``."""
    if not available():
        raise LabError("FRR is not installed (Debian package frr: /usr/lib/frr/zebra, "
                       "ospfd, vtysh)")
    folder.mkdir(parents=True, exist_ok=True)
    conf = folder / "frr.conf"
    conf.write_text(config, encoding="utf-8")
    shutil.chown(folder, "frr", "frr")
    shutil.chown(conf, "frr", "frr")
    for daemon in ("zebra", "ospfd"):
        proc = netns.run_in(ns, [str(FRR_BIN / daemon), "-d", "-N", ns, "--vty_socket",
                                 str(folder), "-f", str(conf), "-u", "frr", "-g", "frr",
                                 "-i", str(folder / f"{daemon}.pid")], timeout_s=20)
        if proc.returncode != 0:
            raise LabError(f"{daemon} in {ns} failed to start (exit {proc.returncode}): "
                           f"{(proc.stderr or proc.stdout).strip()[-300:]}")


def vtysh_json(folder: Path, command: str, timeout_s: float = 10.0) -> Any:
    try:
        proc = subprocess.run([VTYSH, "--vty_socket", str(folder), "-c", command],
                              capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LabError(f"vtysh ({folder}): {exc}") from None
    if proc.returncode != 0:
        raise LabError(f"vtysh ({folder}) {command!r}: {proc.stderr.strip()[-300:]}")
    try:
        return json.loads(proc.stdout or "{}")
    except ValueError:
        raise LabError(f"vtysh ({folder}) {command!r}: not JSON: {proc.stdout[:200]!r}") \
            from None


def neighbors(folder: Path) -> list[dict[str, str]]:
    """This router's OSPF neighbours: router id, state (``Full``...), interface."""
    data = vtysh_json(folder, "show ip ospf neighbor json")
    out = []
    for rid, entries in (data.get("neighbors") or {}).items():
        for e in entries:
            out.append({"neighbor": rid,
                        "state": str(e.get("converged") or e.get("nbrState") or
                                     e.get("state", "")).split("/")[0],
                        "interface": str(e.get("ifaceName", "")).split(":")[0]})
    return out


def pathspace(ns: str) -> Path:
    return PATHSPACE_ROOT / ns


def cleanup(namespaces: Sequence[str]) -> None:
    """Remove the pathspace folders FRR made for ``namespaces`` (after they are gone)."""
    for ns in namespaces:
        shutil.rmtree(pathspace(ns), ignore_errors=True)


def leftover_pathspaces(prefix: str) -> list[str]:
    if not PATHSPACE_ROOT.is_dir():
        return []
    return sorted(p.name for p in PATHSPACE_ROOT.glob(f"{prefix}*") if p.is_dir())
