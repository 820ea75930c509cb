"""One live Route Manager daemon per lab segment: configs, processes, control, traffic probes.

Theory of operation: :class:`LabRouteManagers` writes, for every segment router of a
:class:`~vnstitch.lab.substrate.Lab`, an Ed25519 key file and a daemon config into a
work directory (peers = the lab's substrate links, addressed by the routers' loopbacks;
local VNs = the lab's hosts on that segment, their router-side veth as host port, with
membership on: each VN gets an owner key and each of its segments a grant; the
``linux`` dataplane; the loopback as WireGuard endpoint), then starts
``python -m vnstitch routemgr run`` *inside* the router's namespace (``setns(2)`` in a
``preexec`` hook, :func:`vnstitch.lab.netns.popen_in`): the daemon's UDP socket, its
netlink calls and the ``wireguard-go`` processes it launches all live there. The
control sockets are files in the work directory, reachable from the caller's namespace.

:class:`PingStream` runs ``ping -D`` (a timestamp per reply) between two lab hosts in the
background; its replies give the moment traffic first crossed a stitch and every gap in
delivery (the reroute outage). Nothing here decides anything about the protocol; it
only runs and watches the real programs.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import itertools
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

import vnstitch
from vnstitch.daemon import control
from vnstitch.daemon.errors import ControlError
from vnstitch.daemon.identity import KeyInfo, write_key_file
from vnstitch.daemon.vnowner import OwnerDirectory
from vnstitch.dataplane.base import reconcile
from vnstitch.dataplane.linux import LinuxDataplane
from vnstitch.dataplane.objects import DataplaneState
from vnstitch.lab import netns
from vnstitch.lab.netns import LabError
from vnstitch.lab.substrate import Lab

T = TypeVar("T")

RM_PORT = 7700
#: Validity of the membership grants the lab issues.
GRANT_DAYS = 7.0
WG_PORT_BASE = 51820
#: Substrate cost per lab link: the protocol should prefer A-T-B (2) over A-U-B (4).
LINK_COST = {frozenset("at"): 1.0, frozenset("tb"): 1.0, frozenset("au"): 2.0,
             frozenset("ub"): 2.0}
#: Fast timers so a lab run takes seconds: the tunnel-death bound is
#: probe_interval_s x probe_misses (plus one interval).
LAB_TIMERS = {"announce_interval_s": 0.5, "hold_time_s": 1.5, "probe_interval_s": 0.3,
              "probe_misses": 3, "query_timeout_s": 1.0, "reservation_hold_s": 2.0,
              "persist_interval_s": 1.0}


def segment_name(seg: str) -> str:
    """The protocol's segment id for lab segment ``seg`` (``a`` -> ``A``)."""
    return seg.upper()


def owner_tag(seg: str) -> str:
    """The dataplane owner tag the daemon of ``seg`` uses (see ``make_driver``)."""
    return f"rm-{segment_name(seg)}"


def wait_for(predicate: Callable[[], T | None], timeout_s: float, what: str,
             step_s: float = 0.05) -> T:
    """Poll ``predicate`` until it returns something truthy; LabError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise LabError(f"timed out after {timeout_s:g}s waiting for {what}")
        time.sleep(step_s)


@dataclass
class LabRouteManager:
    segment: str  # lab segment name, "a"
    ns: str
    key: KeyInfo
    config_path: Path
    socket: Path
    log_path: Path
    proc: subprocess.Popen[str] | None = None
    starts: int = 0


@dataclass
class LabRouteManagers:
    """The Route Managers of one lab (one daemon process per segment router)."""

    lab: Lab
    workdir: Path
    capacity_mbps: float = 1000.0
    timers: dict[str, float] = field(default_factory=lambda: dict(LAB_TIMERS))
    rms: dict[str, LabRouteManager] = field(default_factory=dict)
    #: the daemons' ``allocation:`` config section (None: no allocation loop)
    allocation: dict[str, Any] | None = None
    #: the daemons' ``pra:`` section (None: no live PRA)
    pra: dict[str, Any] | None = None
    #: per link ({segment, segment}): the protocol's cost and capacity (a topology lab
    #: sets them from the topology; the fixed lab uses LINK_COST and ``capacity_mbps``)
    link_costs: dict[frozenset[str], float] = field(default_factory=lambda: dict(LINK_COST))
    link_capacities: dict[frozenset[str], float] = field(default_factory=dict)
    #: the daemons' ``qos:`` section (policy, borrow, stitching_priority; None: no QoS);
    #: each RM's ``interfaces`` are its ends of the links in ``qos_links`` (link ->
    #: capacity in Mbit/s the classes are scaled to)
    qos: dict[str, Any] | None = None
    qos_links: dict[frozenset[str], float] = field(default_factory=dict)
    #: the daemons' ``congestion:`` section (None: the daemon's defaults)
    congestion: dict[str, Any] | None = None
    #: tunnels follow the substrate's routes (``dataplane.wireguard.follow_routes``)
    follow_routes: bool = True

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        keys = {seg: write_key_file(self.workdir / f"{seg}.key") for seg in self.lab.routers}
        self._issue_grants(keys)
        for seg, router in self.lab.routers.items():
            path = self.workdir / f"{seg}.yaml"
            path.write_text(yaml.safe_dump(self._config(seg, keys), sort_keys=False))
            self.rms[seg] = LabRouteManager(seg, router.ns, keys[seg], path,
                                            self.workdir / f"{seg}.sock",
                                            self.workdir / f"{seg}.log")

    def _issue_grants(self, keys: dict[str, KeyInfo]) -> None:
        """Membership is on in the lab: each VN gets an owner directory, and every segment
        with a host in the VN a grant (as an operator would with ``vnstitch vn``)."""
        now = time.time()
        for vnid in sorted({h.vnid for h in self.lab.hosts}):
            owner = self.owner(vnid)
            if not owner.state_path.exists():  # a work directory reused keeps its owners
                owner = OwnerDirectory.create(owner.root, vnid)
            for seg in sorted({h.segment for h in self.lab.hosts if h.vnid == vnid}):
                owner.grant(keys[seg].rm_id, now + GRANT_DAYS * 86400.0, now,
                            self.grant_path(seg, vnid))

    def grant_path(self, seg: str, vnid: int) -> Path:
        return self.workdir / f"{seg}-vn{vnid}.grant"

    def owner(self, vnid: int) -> OwnerDirectory:
        """The owner directory of lab VN ``vnid`` (revoke with it to test membership)."""
        return OwnerDirectory(self.workdir / f"vn{vnid}")

    def _config(self, seg: str, keys: dict[str, KeyInfo]) -> dict[str, Any]:
        lab, me = self.lab, self.lab.routers[seg]
        peers = []
        for lk in lab.links:
            if seg not in (lk.a, lk.b):
                continue
            other = lk.b if lk.a == seg else lk.a
            pair = frozenset((seg, other))
            peers.append({"id": keys[other].rm_id,
                          "address": f"{lab.routers[other].loopback}:{RM_PORT}",
                          "capacity_mbps": self.link_capacities.get(pair,
                                                                    self.capacity_mbps),
                          "latency_ms": 1.0, "cost": self.link_costs.get(pair, 1.0)})
        vns: dict[int, dict[str, Any]] = {}
        for h in lab.hosts:
            if h.segment == seg:
                net = str(ipaddress.ip_interface(h.address).network)
                owner = self.owner(h.vnid)
                vn = vns.setdefault(h.vnid, {
                    "vnid": h.vnid, "components": [net], "host_ports": [],
                    "owner": owner.owner_b64, "grant": str(self.grant_path(seg, h.vnid)),
                    "revocations": str(owner.revocations_path)})
                vn["host_ports"].append(h.router_port)
        cfg: dict[str, Any] = {
            "segment": segment_name(seg),
            "listen": {"address": me.loopback, "port": RM_PORT},
            "key_file": f"{seg}.key",
            "trust": [{"public_key": k.public_key_b64, "name": segment_name(s)}
                      for s, k in keys.items()],
            "peers": peers,
            "local_vns": list(vns.values()),
            "dataplane": {"driver": "linux", "netns": None,
                          "wireguard": {"endpoint": me.loopback, "port": WG_PORT_BASE,
                                        "follow_routes": self.follow_routes}},
            "timers": self.timers,
            "state_db": f"{seg}.db",
            "control_socket": f"{seg}.sock",
        }
        if self.allocation is not None:
            cfg["allocation"] = self.allocation
        if self.pra is not None:
            cfg["pra"] = self.pra
        if self.congestion is not None:
            cfg["congestion"] = self.congestion
        if self.qos is not None:
            cfg["qos"] = {**self.qos, "interfaces": [
                {"device": lk.a_dev if lk.a == seg else lk.b_dev, "capacity_mbps": mbps}
                for lk in lab.links for pair, mbps in self.qos_links.items()
                if seg in (lk.a, lk.b) and frozenset((lk.a, lk.b)) == pair]}
        return cfg

    # -- processes ----------------------------------------------------------------------
    def rm_id(self, seg: str) -> str:
        return self.rms[seg].key.rm_id

    def segment_of(self, rm_id: str) -> str:
        for seg, rm in self.rms.items():
            if rm.key.rm_id == rm_id:
                return seg
        raise LabError(f"no lab Route Manager {rm_id}")

    def start(self, seg: str, timeout_s: float = 15.0) -> None:
        """Start the daemon of ``seg`` inside its router namespace; wait for its socket."""
        self._spawn(seg)
        wait_for(lambda: self._answers(seg), timeout_s, f"Route Manager {seg} to start")

    def _spawn(self, seg: str) -> None:
        rm = self.rms[seg]
        if rm.proc is not None and rm.proc.poll() is None:
            raise LabError(f"Route Manager {seg} is already running")
        env = dict(os.environ)
        src = str(Path(vnstitch.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
        with open(rm.log_path, "a") as log:
            rm.proc = netns.popen_in(
                rm.ns, [sys.executable, "-m", "vnstitch", "routemgr", "run", "--config",
                        str(rm.config_path), "--log-level", "info"],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(self.workdir))
        rm.starts += 1

    def _answers(self, seg: str) -> bool:
        rm = self.rms[seg]
        if rm.proc is not None and rm.proc.poll() is not None:
            tail = rm.log_path.read_text().strip().splitlines()[-3:]
            raise LabError(f"Route Manager {seg} exited {rm.proc.returncode}: {tail}")
        try:
            control.request(rm.socket, {"cmd": "show", "what": "status"}, timeout_s=1.0)
        except (ControlError, OSError):
            return False
        return True

    def start_all(self, timeout_s: float = 20.0) -> None:
        """Start every daemon (in parallel) and wait until all answer."""
        for seg in self.rms:
            self._spawn(seg)
        for seg in self.rms:
            wait_for(functools.partial(self._answers, seg), timeout_s,
                     f"Route Manager {seg} to start")

    def running(self, seg: str) -> bool:
        proc = self.rms[seg].proc
        return proc is not None and proc.poll() is None

    def stop(self, seg: str, sig: int = signal.SIGTERM, timeout_s: float = 10.0) -> int | None:
        """Signal the daemon of ``seg`` and reap it; returns its exit status."""
        rm = self.rms[seg]
        if rm.proc is None:
            return None
        with contextlib.suppress(ProcessLookupError):
            rm.proc.send_signal(sig)
        try:
            code = rm.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            rm.proc.kill()
            code = rm.proc.wait()
        rm.proc = None
        return code

    def kill(self, seg: str) -> int | None:
        """``kill -9``: no clean shutdown, nothing persisted beyond what already was."""
        return self.stop(seg, signal.SIGKILL)

    def stop_all(self) -> None:
        for seg in self.rms:
            self.stop(seg)

    def purge_dataplane(self, seg: str) -> None:
        """Remove every kernel object the daemon of ``seg`` owns (it must be stopped)."""
        with LinuxDataplane(self.lab.routers[seg].ns, owner=owner_tag(seg)) as dp:
            reconcile(dp, DataplaneState())

    # -- control ------------------------------------------------------------------------
    def request(self, seg: str, req: dict[str, Any], timeout_s: float = 5.0) -> Any:
        return control.request(self.rms[seg].socket, req, timeout_s=timeout_s)

    def show(self, seg: str, what: str) -> Any:
        return self.request(seg, {"cmd": "show", "what": what})

    def wait_route(self, seg: str, vnid: int, path: str = "A-T-B", timeout_s: float = 10.0
                   ) -> list[str]:
        """Wait until ``seg``'s RM learned the route ``path`` (segment names) to ``vnid``."""
        def found() -> list[str] | None:
            for v in self.show(seg, "vnids"):
                if v["where"] == "remote" and v["vnid"] == vnid and \
                        self.path_segments(v["via"]) == path:
                    return list(v["via"])
            return None
        return wait_for(found, timeout_s, f"{seg} to learn the route {path} to VN {vnid}")

    def stitch(self, seg: str, vnid: int, bandwidth_mbps: float, wait_s: float = 10.0
               ) -> dict[str, Any]:
        reply: dict[str, Any] = self.request(
            seg, {"cmd": "stitch", "vnid": vnid, "bandwidth_mbps": bandwidth_mbps,
                  "wait_s": wait_s}, timeout_s=wait_s + 5)
        return reply

    def stitch_row(self, seg: str, stitch_id: str) -> dict[str, Any] | None:
        """``seg``'s row for ``stitch_id``; while a make-before-break move is finishing
        the id has two rows (the old path, being released, and the new one): the up one
        is the stitch's current state."""
        rows: list[dict[str, Any]] = [s for s in self.show(seg, "stitches")
                                      if s["stitch_id"] == stitch_id]
        return next((r for r in rows if r["status"] == "up"), rows[0] if rows else None)

    def live_stitch(self, seg: str, vnid: int) -> dict[str, Any] | None:
        """The up stitch ``seg`` originated for ``vnid`` (its id changes when it is
        renegotiated make-before-break), or None."""
        for s in self.show(seg, "stitches"):
            if s["vnid"] == vnid and s["status"] == "up" and s["role"] == "origin":
                row: dict[str, Any] = s
                return row
        return None

    def path_segments(self, path: list[str]) -> str:
        return "-".join(segment_name(self.segment_of(r)) for r in path)

    def reserved_mbps(self, seg: str) -> float:
        """Bandwidth ``seg``'s core holds on its links (origin, transit or target)."""
        usage = self.show(seg, "status")["link_usage"]
        return float(sum(u["reserved_mbps"] for u in usage.values()))

    def logs(self, seg: str, lines: int = 20) -> list[str]:
        path = self.rms[seg].log_path
        return path.read_text().splitlines()[-lines:] if path.exists() else []


def fast_arp(lab: Lab, retrans_ms: int = 100) -> None:
    """Lower the hosts' ARP retransmit timer (default 1 s) so that "first packet
    delivered" measures the stitch, not how long a host waits to ask again for a MAC
    address it could not resolve before the stitch existed."""
    for h in lab.hosts:
        netns.sysctl(h.ns, "net.ipv4.neigh.eth0.retrans_time_ms", str(retrans_ms))


_REPLY_RE = re.compile(r"^\[(\d+\.\d+)\].*icmp_seq=(\d+)")


@dataclass
class PingStream:
    """``ping -D`` from one lab host to another in the background; reply timestamps."""

    lab: Lab
    src: str
    dst: str
    interval_s: float = 0.02
    proc: subprocess.Popen[str] | None = None
    started_at: float = 0.0
    replies: list[float] = field(default_factory=list)  # unix times of replies

    def __enter__(self) -> PingStream:
        self.started_at = time.time()
        self.proc = netns.popen_in(
            self.lab.host(self.src).ns,
            ["ping", "-n", "-D", "-i", str(self.interval_s), "-W", "1",
             self.lab.host(self.dst).ip])
        return self

    def stop(self) -> list[float]:
        """Stop ping (SIGINT flushes its output) and parse every reply's timestamp."""
        if self.proc is None:
            return self.replies
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGINT)
        try:
            out, _ = self.proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        self.proc = None
        self.replies = sorted(float(m.group(1)) for line in out.splitlines()
                              if (m := _REPLY_RE.match(line)))
        return self.replies

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def first_reply_after(self, t: float) -> float | None:
        return next((r for r in self.replies if r >= t), None)

    def gaps_after(self, t: float, min_gap_s: float) -> list[tuple[float, float]]:
        """Delivery gaps longer than ``min_gap_s`` after time ``t``: (start, end) pairs."""
        times = [t] + [r for r in self.replies if r > t]
        return [(a, b) for a, b in itertools.pairwise(times) if b - a > min_gap_s]
