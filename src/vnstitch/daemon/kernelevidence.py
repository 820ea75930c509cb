"""Kernel evidence for ``vnstitch diagnose``: read inside a running daemon's namespace.

Theory of operation: :func:`collect` takes the daemon's views (``status`` carries its
pid; ``tunnels``, ``qos`` and ``vnids`` name its WireGuard interfaces, HTB classes and VN
components) and runs the host's own tools inside the daemon's network namespace
(``nsenter -t PID -n``; the daemon's own namespace when the pid is ours): ``wg show IF
dump`` (wireguard-go answers it over its UAPI socket) for each tunnel interface's
handshake age and byte counters, ``ip -j link`` for interface MTUs, ``tc -s -j class`` for
HTB drops per class, ``ip -j route show table all`` for routes competing with the
stitches', and a path-MTU probe per WireGuard peer endpoint (``ping -M do``: the outer
packet a full inner one needs, then a bisection for the largest that passes). The result
is plain JSON-like data; :func:`vnstitch.daemon.diagnosis.kernel_checks` judges it. Every
step that fails is recorded as an error in the evidence, never raised.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Mapping, Sequence
from typing import Any

#: IPv4 + UDP + WireGuard header and tag: what WireGuard adds to each inner packet.
WG_OVERHEAD = 20 + 8 + 32
#: IPv4 + ICMP echo header: ``ping -s`` counts the payload only.
ICMP_OVERHEAD = 28


class NamespaceRunner:
    """Runs commands in the network namespace of process ``pid``, or in the named
    namespace ``netns`` (``ip netns``); in our own when neither is given."""

    def __init__(self, pid: int | None = None, netns: str | None = None) -> None:
        self.pid, self.netns = pid, netns

    def argv(self, cmd: Sequence[str]) -> list[str]:
        if self.netns is not None:
            return ["ip", "netns", "exec", self.netns, *cmd]
        if self.pid is None or self.pid == os.getpid():
            return list(cmd)
        return ["nsenter", "-t", str(self.pid), "-n", *cmd]

    def run(self, cmd: Sequence[str], timeout_s: float = 10.0
            ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(cmd), capture_output=True, text=True,
                              timeout=timeout_s, check=False)

    def json(self, cmd: Sequence[str]) -> Any:
        done = self.run(cmd)
        if done.returncode != 0:
            raise RuntimeError((done.stderr or done.stdout).strip() or
                               f"{cmd[0]} exited {done.returncode}")
        return json.loads(done.stdout or "[]")


def usable(status: Mapping[str, Any]) -> str:
    """'' when the kernel can be read for this daemon, else why not."""
    if status.get("driver") != "linux":
        return f"the daemon uses the {status.get('driver')} dataplane (no kernel objects)"
    if os.geteuid() != 0:
        return "reading another process's namespace needs root"
    pid = status.get("pid")
    if not isinstance(pid, int) or not os.path.exists(f"/proc/{pid}/ns/net"):
        return "the daemon's process is not on this host"
    return ""


def collect(views: Mapping[str, Any], probe_mtu: bool = True) -> dict[str, Any]:
    """Evidence from the daemon's namespace (see the module docstring)."""
    status = views.get("status", {})
    run = NamespaceRunner(status.get("pid"))
    out: dict[str, Any] = {"errors": []}
    try:
        links = {str(lk["ifname"]): lk for lk in run.json(["ip", "-j", "link", "show"])}
    except (RuntimeError, ValueError, OSError, subprocess.SubprocessError) as exc:
        out["errors"].append(f"ip link: {exc}")
        links = {}
    out["links"] = {n: {"mtu": lk.get("mtu"), "operstate": lk.get("operstate"),
                        "master": lk.get("master"), "kind": lk.get("linkinfo", {})
                        .get("info_kind")} for n, lk in links.items()}
    out["wireguard"] = {}
    for t in views.get("tunnels", []):
        ifname = t.get("interface")
        if ifname:
            out["wireguard"][ifname] = _wg_dump(run, str(ifname), links.get(str(ifname)))
    out["htb"] = []
    for dev in sorted({str(q["device"]) for q in views.get("qos", [])} & set(links)):
        # iproute2 6.1 prints classes as text even with -j: parse the text.
        try:
            done = run.run(["tc", "-s", "class", "show", "dev", dev])
        except (OSError, subprocess.SubprocessError) as exc:
            out["errors"].append(f"tc class show dev {dev}: {exc}")
            continue
        if done.returncode != 0:
            out["errors"].append(f"tc class show dev {dev}: {done.stderr.strip()}")
        for m in _HTB_CLASS.finditer(done.stdout):
            out["htb"].append({"device": dev, "handle": m.group(1), "bytes": int(m.group(2)),
                               "packets": int(m.group(3)), "drops": int(m.group(4)),
                               "overlimits": int(m.group(5))})
    try:
        out["routes"] = [{k: r.get(k) for k in ("dst", "dev", "gateway", "metric", "protocol",
                                                "table", "type")}
                         for r in run.json(["ip", "-j", "route", "show", "table", "all"])]
    except (RuntimeError, ValueError, OSError, subprocess.SubprocessError) as exc:
        out["errors"].append(f"ip route: {exc}")
        out["routes"] = []
    out["path_mtu"] = []
    if probe_mtu:
        for ifname, wg in out["wireguard"].items():
            mtu = (out["links"].get(ifname) or {}).get("mtu")
            for peer in wg.get("peers", []):
                host = _endpoint_host(peer.get("endpoint"))
                if host and isinstance(mtu, int):
                    out["path_mtu"].append({"interface": ifname, "endpoint": host,
                                            **probe_path_mtu(run, host, mtu + WG_OVERHEAD)})
    return out


def _wg_dump(run: NamespaceRunner, ifname: str, link: Mapping[str, Any] | None
             ) -> dict[str, Any]:
    if link is None:
        return {"present": False, "error": "no such interface in the daemon's namespace"}
    try:
        done = run.run(["wg", "show", ifname, "dump"])
    except (OSError, subprocess.SubprocessError) as exc:
        return {"present": True, "error": f"wg show: {exc}"}
    if done.returncode != 0:
        return {"present": True, "error": (done.stderr or done.stdout).strip()}
    lines = done.stdout.strip().splitlines()
    now = time.time()
    peers = []
    for line in lines[1:]:
        f = line.split("\t")
        if len(f) < 8:
            continue
        hs = int(f[4]) if f[4].isdigit() else 0
        peers.append({"public_key": f[0], "endpoint": None if f[2] == "(none)" else f[2],
                      "latest_handshake": hs,
                      "handshake_age_s": None if hs == 0 else round(now - hs, 1),
                      "rx_bytes": int(f[5]), "tx_bytes": int(f[6])})
    return {"present": True, "listen_port": lines[0].split("\t")[2] if lines else None,
            "peers": peers}


def _endpoint_host(endpoint: object) -> str | None:
    if not isinstance(endpoint, str) or ":" not in endpoint:
        return None
    host = endpoint.rsplit(":", 1)[0]
    return host.strip("[]")


_RECEIVED = re.compile(r"(\d+) received")
_HTB_CLASS = re.compile(r"class htb (\S+) .*\n\s*Sent (\d+) bytes (\d+) pkt \(dropped (\d+), "
                        r"overlimits (\d+)")


def _df_ping(run: NamespaceRunner, host: str, packet: int, count: int = 1) -> bool:
    """True if a ``packet``-byte (IP size) DF echo to ``host`` is answered (one of
    ``count``)."""
    done = run.run(["ping", "-n", "-q", "-c", str(count), "-i", "0.2", "-W", "1", "-M", "do",
                    "-s", str(packet - ICMP_OVERHEAD), host], timeout_s=5 + count)
    m = _RECEIVED.search(done.stdout)
    return bool(m and int(m.group(1)) > 0)


def probe_path_mtu(run: NamespaceRunner, host: str, needed: int, count: int = 2
                   ) -> dict[str, Any]:
    """Whether a ``needed``-byte DF packet reaches ``host`` (one of ``count`` tries), and
    if not the largest that does (bisection, 96 .. needed), or that even a small one is
    lost (``largest`` None)."""
    if _df_ping(run, host, needed, count):
        return {"needed": needed, "passes": True, "largest": needed}
    low, high = 68 + ICMP_OVERHEAD, needed - 1
    if not _df_ping(run, host, low):
        return {"needed": needed, "passes": False, "largest": None}
    while high - low > 8:
        mid = (low + high) // 2
        if _df_ping(run, host, mid):
            low = mid
        else:
            high = mid
    return {"needed": needed, "passes": False, "largest": low}
