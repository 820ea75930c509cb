"""``vnstitch lab run --scenario F``: one scenario, live, on a topology lab.

Theory of operation. The scenario is resolved exactly as the simulator resolves it --
the same substrate partition, the same seeded workload, the same traffic VNs and flows
with their picks and percent rates (:mod:`vnstitch.sim.picks`) -- and made concrete for
the lab by :func:`vnstitch.lab.scenario_plan.plan_live`. Then, against a clock that
starts once every Route Manager answers (the simulator's time 0):

* the *timeline* (the calling thread) sends each stitch request to its origin's daemon
  (``stitch``, from a worker thread: it blocks until established or failed), releases
  held ones, and applies each fault when due: ``cut_link`` / ``repair_link`` delete and
  restore the veth between two segments (``busiest-adjacency`` resolved then, from the
  stitches' current paths, by the same function as the simulator), ``crash`` is
  ``kill -9`` of a daemon and ``restart`` starts it again on its state database,
  ``partition`` / ``heal`` cut and restore every veth leaving a group of segments;
* one *flow thread* per flow runs its constant-rate pieces as ``iperf3 -u`` with the
  class's DSCP; a run that fails (no stitch yet, or one down) is retried every 0.5 s
  until the piece ends, so its offered volume counts whether or not it got through;
* the *poller* reads every origin's stitch table (``show stitches``) every 0.2 s and
  records up and down transitions with their segment paths.

At the end the daemons' decisions are read, every record goes to the one pure
:func:`vnstitch.sim.parity.parity_summary`, and the lab (if this run built it) is torn
down and checked for leftovers. A lab that is already up can be used instead: the
scenario's hosts are added to it, the lab's own Route Managers are stopped for the run
(their state is kept) and the scenario's started, and afterwards the scenario's hosts
are removed and the lab's daemons started again.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import functools
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vnstitch.daemon.errors import ControlError
from vnstitch.lab import netns, substrate, topolab
from vnstitch.lab.netns import LabError
from vnstitch.lab.routemgrs import LabRouteManagers
from vnstitch.lab.scenario_plan import LiveFlow, LivePlan, Piece, plan_live
from vnstitch.lab.substrate import MANIFEST_DIR, Router, attach_hosts
from vnstitch.model import Substrate
from vnstitch.model.ids import VNID, SegmentId
from vnstitch.protocol.api import StitchConstraints
from vnstitch.sim.oracle import feasible_path
from vnstitch.sim.parity import (
    DecisionMade,
    FaultApplied,
    FlowDelivery,
    Record,
    StitchDown,
    StitchRequested,
    StitchUp,
    parity_summary,
    stitch_key,
)
from vnstitch.sim.picks import adjacency_links, busiest_adjacency, busiest_transit
from vnstitch.sim.protocol_cores import timers_with
from vnstitch.sim.runner import build, load_substrate, workload
from vnstitch.sim.scenario import FaultSpec, Scenario
from vnstitch.sim.traffic_matrix import build_traffic
from vnstitch.sim.workload import BUSIEST_TRANSIT, FaultKind

POLL_S = 0.2
RETRY_S = 0.5
Progress = Callable[[float, str], None]


def _noop(t: float, what: str) -> None:
    del t, what


#: A daemon's decision rows that count as decisions in the parity summary, named as
#: the simulator names them: the congestion loop's move of a stitch around an element
#: is the simulator's "renegotiate"; its monitor's state changes, watches and holds, and
#: the steps of a move (made, moved, stay) are not decisions of their own.
_LIVE_DECISIONS = {("congestion", "reroute"): "renegotiate",
                   ("congestion", "return"): "return",
                   ("endpoint", "reset"): "endpoint-reset"}


def decision_kind(row: dict[str, Any]) -> str | None:
    """The parity kind of one ``show decisions`` row (None: not counted)."""
    kind = str(row.get("kind", "unknown"))
    if kind in ("congestion", "endpoint"):
        return _LIVE_DECISIONS.get((kind, str(row.get("action", ""))))
    return kind


def current_rows(seg: str, rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """One row per stitch of origin ``seg`` (key: origin + VN). A congestion move leaves
    two rows of one VN for a while (the successor, and the old stitch until it is
    released, then down): the stitch is up when one of them is, on the path of the one
    the operator's intent follows (``desired: up``)."""
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row.get("role") != "origin":
            continue
        key = stitch_key(seg, int(row["vnid"]))
        best = out.get(key)
        if best is None or _rank(row) > _rank(best):
            out[key] = row
    return out


def _rank(row: dict[str, Any]) -> tuple[bool, bool]:
    return (row.get("status") == "up" and bool(row.get("path")),
            row.get("desired") == "up")


class LiveRun:
    """The threads of one live run and the records they make (module docstring)."""

    def __init__(self, topo: topolab.TopoLab, sub: Substrate, rms: LabRouteManagers,
                 plan: LivePlan, progress: Progress) -> None:
        self.topo, self.sub, self.rms, self.plan = topo, sub, rms, plan
        self.progress = progress
        self.records: list[Record] = []
        self.lock = threading.Lock()
        self.t0 = 0.0
        self.stop = threading.Event()
        self.paths: dict[str, tuple[str, ...]] = {}  # stitch key -> current path (up)
        self.tracked: set[str] = set()  # keys whose first reply came back
        self.stitch_ids: dict[str, str] = {}
        self.aliases: dict[str, Any] = {}
        self.fault_log: list[dict[str, Any]] = []
        self.flow_log: list[dict[str, Any]] = []
        self.down_segments: set[str] = set()
        self.cut: list[tuple[str, str]] = []

    def now(self) -> float:
        return time.monotonic() - self.t0

    def add(self, rec: Record) -> None:
        with self.lock:
            self.records.append(rec)

    # -- stitch state ----------------------------------------------------------------
    def _segments(self, rm_path: list[str]) -> tuple[str, ...]:
        return tuple(self.rms.segment_of(r) for r in rm_path)

    def poll_once(self) -> None:
        for seg in list(self.rms.rms):
            if seg in self.down_segments or not self.rms.running(seg):
                continue
            try:
                rows = self.rms.show(seg, "stitches")
            except (ControlError, OSError):
                continue
            at = self.now()
            for key, row in current_rows(seg, rows).items():
                if key not in self.tracked:
                    continue
                up = row["status"] == "up" and bool(row["path"])
                path = self._segments(row["path"]) if up else ()
                if up and row.get("stitch_id"):  # a congestion move's successor: its id
                    self.stitch_ids[key] = str(row["stitch_id"])
                with self.lock:
                    was = self.paths.get(key)
                    if up and path != was:
                        self.paths[key] = path
                        self.records.append(StitchUp(at, key, path))
                    elif not up and was is not None:
                        del self.paths[key]
                        self.records.append(StitchDown(at, key, str(row["status"])))

    def poller(self) -> None:
        while not self.stop.wait(POLL_S):
            self.poll_once()

    def request(self, origin: str, vnid: int, bandwidth_mbps: float, key: str,
                feasible: bool) -> None:
        at = self.now()
        self.add(StitchRequested(at, key, vnid, feasible))
        try:
            reply = self.rms.stitch(origin, vnid, bandwidth_mbps, wait_s=15.0)
        except (ControlError, OSError, LabError) as exc:
            self.fault_log.append({"at_s": round(at, 3), "request": key, "error": str(exc)})
            with self.lock:
                self.tracked.add(key)
            return
        detail = reply.get("detail") or {}
        self.stitch_ids[key] = str(reply.get("stitch_id"))
        with self.lock:
            self.tracked.add(key)
            if reply.get("established") and detail.get("path"):
                path = self._segments(detail["path"])
                setup = float(detail.get("setup_seconds") or (self.now() - at))
                if key not in self.paths:
                    self.paths[key] = path
                    self.records.append(StitchUp(at + setup, key, path))

    def release(self, origin: str, key: str) -> None:
        sid = self.stitch_ids.get(key)
        if sid is not None:
            with contextlib.suppress(ControlError, OSError):
                self.rms.request(origin, {"cmd": "release", "stitch_id": sid})

    # -- traffic ---------------------------------------------------------------------
    def run_flow(self, flow: LiveFlow, logdir: Path) -> None:
        """Every piece of one flow; delivered volume as the iperf3 server saw it."""
        log = logdir / f"iperf3-{flow.name}.log"
        offered = 0.0
        runs = failures = 0
        with open(log, "w") as out:
            srv = netns.popen_in(flow.dst.ns, ["iperf3", "-s", "-p", str(flow.port), "-i",
                                               "1", "--forceflush"], stdout=out,
                                 stderr=subprocess.STDOUT)
            try:
                for piece in flow.pieces:
                    sent, n, bad = self._piece(flow, piece)
                    offered += sent
                    runs, failures = runs + n, failures + bad
            finally:
                srv.kill()
                srv.communicate()
        delivered = min(received_mbit(log.read_text()), offered)
        self.add(FlowDelivery(flow.name, flow.qos_class, offered, delivered))
        self.flow_log.append({"flow": flow.name, "class": flow.qos_class, "dscp": flow.dscp,
                              "src": flow.src.name, "dst": flow.dst.name,
                              "mbps": [round(p.mbps, 3) for p in flow.pieces],
                              "offered_mbit": round(offered, 3),
                              "delivered_mbit": round(delivered, 3),
                              "iperf3_runs": runs, "iperf3_failed": failures})

    def _piece(self, flow: LiveFlow, piece: Piece) -> tuple[float, int, int]:
        """Run one piece as iperf3 runs of whole seconds (iperf3 -t takes whole
        seconds), retrying a run that fails to start (no stitch yet, or one down) every
        0.5 s. Returns the Mbit offered -- the piece, less the last fraction of a second
        no run could cover -- the runs and the failed ones."""
        if self.stop.wait(max(0.0, piece.start - self.now())):
            return 0.0, 0, 0
        runs = failed = 0
        while not self.stop.is_set():
            left = piece.end - self.now()
            if left < 1.0:
                break
            runs += 1
            seconds = int(left)
            started = self.now()
            bind = ["-B", flow.src.ip] if flow.vnid is None else []
            proc = netns.popen_in(flow.src.ns, [
                "iperf3", "-c", flow.dst.ip, *bind, "-p", str(flow.port), "-u", "-b",
                f"{piece.mbps:.3f}M", "-t", str(seconds), "--dscp", str(flow.dscp),
                "--connect-timeout", "1000"], stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + seconds + 5.0
            while proc.poll() is None:  # the run's end, a stuck client, or the stop
                if self.stop.wait(0.25) or time.monotonic() > deadline:
                    proc.kill()
            code = proc.wait()
            if code != 0 and self.now() - started < seconds:
                failed += 1
                self.stop.wait(RETRY_S)
        tail = max(0.0, piece.end - max(self.now(), piece.start))
        return piece.mbps * (piece.end - piece.start - min(tail, 1.0)), runs, failed

    # -- faults ----------------------------------------------------------------------
    def apply(self, f: FaultSpec) -> None:
        at = self.now()
        kind = FaultKind(f.action)
        with self.lock:
            paths = [list(p) for p in self.paths.values()]
        segments = [str(s) for s in self.sub.segments()]
        if kind in (FaultKind.CRASH, FaultKind.RESTART):
            assert f.segment is not None
            seg = f.segment
            if seg == BUSIEST_TRANSIT:
                seg = self.aliases.setdefault(seg, busiest_transit(paths, segments))
            if kind is FaultKind.CRASH:
                self.down_segments.add(seg)
                self.rms.kill(seg)
            else:
                self.rms.start(seg, timeout_s=90.0)  # a loaded machine starts slowly
                self.down_segments.discard(seg)
            target = seg
        elif kind in (FaultKind.CUT_LINK, FaultKind.REPAIR_LINK):
            if f.link_pick is not None:
                a, b = self.aliases.setdefault(f.link_pick, busiest_adjacency(paths, self.sub))
            else:
                assert f.link is not None
                a, b = (str(self.sub.segment_of(n)) for n in f.link)
            pairs = [(a, b)]
            self._wires(pairs, cut=kind is FaultKind.CUT_LINK)
            target = f"{a}-{b}"
        else:
            group = set(f.segments) if kind is FaultKind.PARTITION else set()
            if kind is FaultKind.PARTITION:
                pairs = [(str(x.a), str(x.b)) for x in self.sub.segment_adjacencies()
                         if (str(x.a) in group) != (str(x.b) in group)]
                self.aliases[f"partition:{f.name}"] = pairs
                self._wires(pairs, cut=True)
            else:
                pairs = self.aliases.pop(f"partition:{f.name}", [])
                self._wires(pairs, cut=False)
            target = f.name
        self.add(FaultApplied(at, kind.value, target))
        self.fault_log.append({"at_s": round(at, 3), "planned_s": f.at, "action": kind.value,
                               "target": target})
        self.progress(at, f"{kind.value} {target}")

    def apply_logged(self, f: FaultSpec) -> None:
        """Apply a fault; one that cannot be applied is logged (the run goes on)."""
        try:
            self.apply(f)
        except LabError as exc:
            self.fault_log.append({"at_s": round(self.now(), 3), "planned_s": f.at,
                                   "action": str(f.action), "error": str(exc)})

    def _wires(self, pairs: list[tuple[str, str]], *, cut: bool) -> None:
        for a, b in pairs:
            adjacency_links(self.sub, a, b)  # refuses segments that are not adjacent
            if cut and (a, b) not in self.cut:
                topolab.cut_wire(self.topo, a, b)
                self.cut.append((a, b))
            elif not cut and (a, b) in self.cut:
                topolab.restore_wire(self.topo, a, b, shape=self.plan.qos is None)
                self.cut.remove((a, b))

    # -- the run ---------------------------------------------------------------------
    def run(self) -> None:
        plan = self.plan
        events: list[tuple[float, int, Callable[[], object]]] = []
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(4, len(plan.requests)))
        for r in plan.requests:
            events.append((r.at, 0, functools.partial(
                pool.submit, self.request, r.origin, r.vnid, r.bandwidth_mbps, r.key,
                r.feasible)))
            if r.hold_s is not None:
                events.append((r.at + r.hold_s, 1,
                               functools.partial(self.release, r.origin, r.key)))
        for f in plan.faults:
            events.append((f.at, 2, functools.partial(self.apply_logged, f)))
        events.sort(key=lambda e: (e[0], e[1]))
        self.t0 = time.monotonic()
        threads = [threading.Thread(target=self.poller, daemon=True)]
        logdir = self.rms.workdir
        threads += [threading.Thread(target=self.run_flow, args=(fl, logdir), daemon=True)
                    for fl in plan.flows]
        for t in threads:
            t.start()
        try:
            for at, _, action in events:
                self.stop.wait(max(0.0, at - self.now()))
                action()
            self.stop.wait(max(0.0, plan.duration_s - self.now()))
            self.progress(self.now(), "collecting")
        finally:
            self.stop.set()
            pool.shutdown(wait=True)
            for t in threads:
                t.join(timeout=60)
        self.poll_once()
        with self.lock:  # an origin that is not running serves none of its stitches
            for key in [k for k in self.paths if not self.rms.running(k.split("/")[0])]:
                del self.paths[key]
                self.records.append(StitchDown(self.now(), key, "origin not running"))
        # The daemons stamp decisions with wall-clock seconds; records are run seconds.
        wall_t0 = time.time() - self.now()
        for seg in self.rms.rms:
            with contextlib.suppress(ControlError, OSError):
                for row in self.rms.show(seg, "decisions"):
                    kind = decision_kind(row)
                    if kind is not None:
                        at = float(row.get("now", 0.0) or 0.0) - wall_t0
                        self.add(DecisionMade(round(at, 3), kind,
                                              str(row.get("stitch_id") or
                                                  row.get("subject") or "")))
        self.records += plan.surges


_INTERVAL = re.compile(r"^\[\s*\d+\]\s+[\d.]+-[\d.]+\s+sec\s+([\d.]+)\s+([KMG]?)Bytes\s")
_UNIT = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}


def received_mbit(server_output: str) -> float:
    """Mbit an ``iperf3 -s -i 1`` server received: the sum of its per-second interval
    lines (a run cut short by a stuck client still has its intervals; the summary lines,
    marked ``receiver``, are not counted twice)."""
    total = 0.0
    for line in server_output.splitlines():
        m = _INTERVAL.match(line)
        if m and "receiver" not in line and "sender" not in line:
            total += float(m.group(1)) * _UNIT[m.group(2)]
    return total * 8 / 1e6


def prepare(scenario: Scenario, run_id: str, scale: float, sub: Substrate,
            routers: dict[str, Router]) -> LivePlan:
    """The scenario resolved as the simulator resolves it, made concrete for the lab."""
    if scenario.vns.non_members:
        raise LabError(f"{scenario.source}: vns.non_members is not run live (the lab "
                       "grants membership to every VN's segments)")
    w = workload(scenario, sub)
    traffic = build_traffic(scenario, sub)
    flows = traffic.flows if traffic is not None else []
    groups = [(g.vnid, g.origin, g.target, g.bandwidth_mbps)
              for g in (traffic.groups if traffic is not None else [])]
    spec = scenario.traffic
    sim = build(scenario, substrate=sub, check_every_step=False, traffic=traffic)
    sim.start()

    def feasible(origin: str, vnid: int, cons: StitchConstraints) -> bool:
        i = sim.seg_index[SegmentId(origin)]
        return feasible_path(sim, i, VNID(vnid), cons) is not None

    return plan_live(sub, run_id, placements=w.placements, requests=w.requests,
                     flows=flows, groups=groups,
                     policy=spec.policy if spec is not None else None,
                     faults=scenario.faults,
                     stitch_at_s=(spec.stitch_at_s or 0.0) if spec is not None else 0.0,
                     scale=scale, duration_s=scenario.duration_s,
                     timers=timers_with(scenario.protocol, scenario.source),
                     borrow=spec.borrow if spec is not None else "priority",
                     traffic=spec,
                     routers={s: (r.ns, r.loopback) for s, r in routers.items()},
                     feasible=feasible)


def run_live(scenario: Scenario, *, run_id: str | None = None, build: bool = True,
             max_link_mbps: float = 40.0, progress: Progress = _noop,
             ospf_timeout_s: float = 90.0, logs: Path | None = None,
             qos: bool = False) -> dict[str, Any]:
    """Run ``scenario`` live: on a lab built for it (``build``), or on lab ``run_id``
    that is up (module docstring). The result holds the parity summary and every
    record it was made from; ``logs``: copy the daemons' and iperf3's logs there;
    ``qos``: the daemons apply the scenario's QoS classes on tunnel ends and lab links
    (their HTB replaces the lab's tbf)."""
    t_start = time.monotonic()
    sub = load_substrate(scenario)
    if build:
        topo = topolab.plan(sub, run_id, max_link_mbps=max_link_mbps)
    else:
        if run_id is None:
            raise LabError("no lab given")
        topo = topolab.load(run_id)
        _check_same_lab(topo, sub)
    plan = prepare(scenario, topo.lab.run_id, topo.scale, sub, topo.lab.routers)
    if not qos:
        plan = dataclasses.replace(plan, qos=None)
    base_lab = topo.lab
    live = dataclasses.replace(topo, lab=dataclasses.replace(base_lab, hosts=plan.hosts))
    result: dict[str, Any] = {"scenario": scenario.name, "runtime": "live",
                              "topology": sub.name, "segments": len(sub.segments()),
                              "run_id": topo.lab.run_id, "scale": topo.scale,
                              "lab_built": build, "qos_live": plan.qos is not None}
    workdir = MANIFEST_DIR / topo.lab.run_id / "scenario"
    rms: LabRouteManagers | None = None
    lab_daemons: list[_Daemon] = []
    shaping_off = False
    try:
        if build:
            progress(0.0, "building the lab")
            topolab.build(live)
            result["ospf_converged_seconds"] = round(topolab.wait_converged(
                live, ospf_timeout_s), 2)
        else:
            progress(0.0, "adding the scenario's hosts")
            lab_daemons = _stop_lab_daemons(topo)
            for h in plan.hosts:
                netns.create(h.ns)
            attach_hosts(dataclasses.replace(base_lab, hosts=plan.hosts))
        if plan.qos is not None:  # the daemons' HTB (at each link's rate) replaces tbf
            topolab.set_shaping(live, on=False)
            shaping_off = True
        progress(0.0, "starting Route Managers")
        costs = {frozenset((t.a, t.b)): float(t.ospf_cost) for t in topo.rm_links}
        caps = {frozenset((t.a, t.b)): t.rate_mbps for t in topo.rm_links}
        rms = LabRouteManagers(live.lab, workdir, timers=dict(plan.timers),
                               link_costs=costs, link_capacities=caps, qos=plan.qos,
                               congestion=plan.congestion,
                               qos_links=caps if plan.qos is not None else {})
        rms.start_all(timeout_s=60.0)
        result["setup_seconds"] = round(time.monotonic() - t_start, 2)
        runner = LiveRun(live, sub, rms, plan, progress)
        runner.run()
        result["parity"] = parity_summary(runner.records)
        result["records"] = record_rows(runner.records)
        result["faults"] = runner.fault_log
        result["flows"] = runner.flow_log
        result["notes"] = plan.notes
    finally:
        if rms is not None:
            rms.stop_all()
        if logs is not None and workdir.is_dir():
            shutil.copytree(workdir, logs, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("*.sock", "*.key"))
        if build:
            topolab.destroy(topo.lab.run_id)
        else:
            for h in plan.hosts:
                netns.destroy(h.ns)
            shutil.rmtree(workdir, ignore_errors=True)
            if shaping_off:  # the daemons removed their HTB; the lab's tbf goes back
                topolab.set_shaping(topo, on=True)
            _start_lab_daemons(lab_daemons)
    left = substrate.leftovers(topo.lab.run_id)
    result["leftovers"] = sum(len(v) for v in left.values()) if build else \
        sum(1 for h in plan.hosts if netns.exists(h.ns))
    result["wall_seconds"] = round(time.monotonic() - t_start, 2)
    return result


def record_rows(records: list[Record]) -> list[dict[str, Any]]:
    """The records as plain rows in time order (what the summary was made from)."""
    rows = [{"record": type(r).__name__, **dataclasses.asdict(r)} for r in records]
    return sorted(rows, key=lambda r: r.get("at", float("inf")))


def _check_same_lab(topo: topolab.TopoLab, sub: Substrate) -> None:
    segs = [str(s) for s in sub.segments()]
    adj = sorted((str(a.a), str(a.b)) for a in sub.segment_adjacencies())
    have = sorted((t.a, t.b) for t in topo.rm_links)
    if topo.full or topo.segments != segs or have != adj:
        raise LabError(f"lab {topo.lab.run_id} ({topo.topology}, {len(topo.segments)} "
                       f"segments) is not the scenario's substrate ({sub.name} in "
                       f"{len(segs)} segments): give --topology and --segments to match, or "
                       "let the run build its own lab")


@dataclass(frozen=True)
class _Daemon:
    """A Route Manager ``lab up`` started: enough to start it again as it was."""

    ns: str
    argv: list[str]
    cwd: str
    env: dict[str, str]


def _stop_lab_daemons(topo: topolab.TopoLab) -> list[_Daemon]:
    """Stop the Route Managers ``lab up`` started in this lab's router namespaces (the
    ``routemgr run`` processes whose config is in the lab's folder) and return how to
    start them again."""
    folder = str(topolab.route_managers_dir(topo.lab.run_id)).encode()
    stopped = []
    for r in topo.lab.routers.values():
        for pid in netns.pids_in(r.ns):
            proc = Path(f"/proc/{pid}")
            try:
                argv = proc.joinpath("cmdline").read_bytes().rstrip(b"\0").split(b"\0")
                if b"routemgr" not in argv or not any(folder in a for a in argv):
                    continue
                env = dict(line.split("=", 1) for line in proc.joinpath("environ")
                           .read_bytes().decode(errors="replace").split("\0") if "=" in line)
                cwd = os.readlink(proc / "cwd")
            except OSError:
                continue
            stopped.append(_Daemon(r.ns, [a.decode() for a in argv], cwd, env))
            _terminate(pid)
    return stopped


def _start_lab_daemons(daemons: list[_Daemon]) -> None:
    for d in daemons:
        config = d.argv[d.argv.index("--config") + 1] if "--config" in d.argv else "rm.yaml"
        with open(Path(d.cwd) / Path(config).with_suffix(".log").name, "a") as log:
            netns.popen_in(d.ns, d.argv, cwd=d.cwd, env=d.env, stdout=log,
                           stderr=subprocess.STDOUT)


def _terminate(pid: int, timeout_s: float = 10.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    if Path(f"/proc/{pid}").exists():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
