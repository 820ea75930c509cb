"""``vnstitch lab demo --congestion``: cross traffic congests A-T, the stitch moves to A-U-B.

Theory of operation: a fresh lab with the A-T link shaped to ``link_mbps`` by the daemons'
``qos:`` section (HTB on both ends, classes ``video`` and ``email``; VN 100's stitched
traffic rides the ``video`` class on the substrate, DSCP 34 picks ``video`` at the tunnel
end), and that capacity configured for the A-T neighbours, so the Route Managers' link
samplers measure utilisation against it. Two substrate hosts (``xa`` behind router A,
``xt`` behind router T) carry the cross traffic. Then

1. A stitches VN 100 to B (A-T-B, the cheaper path) with ``stitch_mbps``;
2. two iperf3 UDP flows ha1 -> hb1 run for the whole story: *video* (DSCP 34) and
   *e-mail* (DSCP 10), together more than the stitch's bandwidth, so the tunnel end's
   classes decide who gives (the e-mail flow);
3. after ``warmup_s`` the cross traffic xa -> xt (UDP, ``cross_mbps``) starts: that is
   the *onset*. A's link sampler (and T's, on its end of the link) sees the link above
   ``high`` of its capacity; A (the origin) moves the stitch make-before-break around the
   A-T adjacency; T's CONGESTION reports reach A too;
4. a poller reads kernel counters every ``POLL_S``: A's l-u tx bytes (the new path's
   first link: ``rerouted_s`` is the first poll where it carries the stitch's rate) and
   T's l-b tx bytes (only the stitch crosses T->B: ``old_path_quiet_s`` is the last poll
   at which it carried the flow), and A's WireGuard devices: ``make_before_break`` is
   whether the old stitch's tunnel still existed when the new path first carried the
   flow (the bridge swaps ports in one pass, so the flow itself switches at once);
5. the iperf3 servers' 100 ms intervals give each flow's delivery: during congestion
   (onset to the end of the cross traffic) and, for video, in the move (from 300 ms
   before ``rerouted_s`` to 300 ms after ``old_path_quiet_s``). Interval times are mapped
   to wall clock by the client's start (+- one interval).

``route_metric_stitched`` / ``route_metric_substrate``: A's route to VN 100's prefix
through the stitch (the qos section's stitching priority band) and a substrate route to
the same prefix the demo installs through U (metric 20, as an IGP would), read back from
the kernel. Everything is torn down at the end, even on failure.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute
from pyroute2 import netns as pr_netns

from vnstitch.daemon.linksampler import RTM_NEWLINK, RTMGRP_LINK, link_messages
from vnstitch.dataplane.qos import route_metrics
from vnstitch.dataplane.routewatch import IFLA_IFNAME, attributes
from vnstitch.lab import baseline, netns, substrate
from vnstitch.lab.netns import LabError
from vnstitch.lab.routemgrs import LAB_TIMERS, RM_PORT, LabRouteManagers, fast_arp
from vnstitch.lab.substrate import NS_PREFIX, Lab, link_up

STEPS = ("build lab", "start route managers", "stitch VN 100 A->B", "video + e-mail flows",
         "congest A-T", "reroute", "tear down")
POLL_S = 0.02
VIDEO_DSCP, EMAIL_DSCP = 34, 10
PREFIX = "192.168.100.0/24"
QOS: dict[str, Any] = {
    "link_mbps": 100,
    "classes": [{"name": "video", "priority": 0, "guaranteed_mbps": 60, "max_mbps": 100},
                {"name": "email", "priority": 3, "guaranteed_mbps": 5, "max_mbps": 100}],
    "applications": [{"name": "tv", "class": "video", "dscp": [VIDEO_DSCP]},
                     {"name": "vn100", "class": "video", "vnid": 100},
                     # The Route Managers' own datagrams must not starve on the link
                     # they are reporting as congested.
                     {"name": "control", "class": "video", "ports": [RM_PORT]}],
    "stitching_priority": {"vnids": {100: 12}},
}
#: Cross-traffic hosts: (name, router, host address, router address).
CROSS_HOSTS = (("xa", "a", "10.3.1.2/30", "10.3.1.1/30"),
               ("xt", "t", "10.3.2.2/30", "10.3.2.1/30"))

#: The lab's fast timers, with more probe misses before a tunnel is declared dead: on this
#: loaded 2-core machine a new tunnel's first probes can outrun its own dataplane
#: (seen: successors declared dead 1-2.5 s after they were committed, under 64 Mbit/s of
#: UDP, with a load average near 20: their far end's dataplane appeared 2.6 s late, so
#: the first WireGuard handshake initiation was lost and is retried only after 5 s).
#: The commit phase may wait as long as the target's reconcile pass that creates its end
#: of the tunnel (its COMMIT_ACK is held until that device listens): seconds under load.
TIMERS = {**LAB_TIMERS, "probe_misses": 25, "reservation_hold_s": 6.0}

StepHook = Callable[[str, dict[str, Any]], None]


def _noop(step: str, facts: dict[str, Any]) -> None:
    del step, facts


def add_cross_hosts(lab: Lab) -> dict[str, str]:
    """Hosts xa (behind A) and xt (behind T) with routes across the A-T link; their
    namespaces carry the lab's prefix, so :func:`substrate.teardown` removes them."""
    ns = {}
    at = lab.link("a", "t")
    gw = {"a": at.b_addr.split("/")[0], "t": at.a_addr.split("/")[0]}  # the other end
    for name, router, host_addr, router_addr in CROSS_HOSTS:
        ns[name] = f"{NS_PREFIX}{lab.run_id}-{name}"
        netns.create(ns[name])
        r = lab.routers[router]
        with IPRoute(netns=ns[name]) as ipr:
            ipr.link("add", ifname="eth0", kind="veth",
                     peer={"ifname": f"x-{name}", "net_ns_fd": r.ns})
            link_up(ipr, "lo")
            link_up(ipr, "eth0", host_addr)
            ipr.route("add", dst="default", gateway=router_addr.split("/")[0])
        with IPRoute(netns=r.ns) as ipr:
            link_up(ipr, f"x-{name}", router_addr)
    for (_, router, _, _), (_, _, far_addr, _) in zip(CROSS_HOSTS, reversed(CROSS_HOSTS),
                                                      strict=True):
        net = far_addr.rsplit(".", 1)[0] + ".0/30"
        with IPRoute(netns=lab.routers[router].ns) as ipr:
            ipr.route("add", dst=net, gateway=gw[router])
    return ns


def link_names(data: bytes) -> list[tuple[int, str]]:
    """(RTM_NEWLINK or RTM_DELLINK, interface name) per link message in a netlink
    datagram."""
    out: list[tuple[int, str]] = []
    for kind, _, _, start, end in link_messages(data):
        raw = attributes(data, start, end).get(IFLA_IFNAME)
        if raw is not None:
            out.append((kind, raw.split(b"\0")[0].decode(errors="replace")))
    return out


class CounterPoller:
    """tx bytes of (namespace, device) pairs every POLL_S, in a thread, with wall time.

    Its sockets are opened and the first row is taken before ``__enter__`` returns (a
    socket in another namespace is made by a forked child: seconds under load), so the
    rows cover everything the caller starts inside the ``with``. A poll is two small
    netlink requests; with ``wireguard_in`` the WireGuard devices there are followed by
    link events (the kernel queues them), not by dumping every link each poll. Row ``i``
    of :attr:`wireguard` was read after row ``i`` of :attr:`rows`: a device in it still
    existed after those counters were read.
    """

    def __init__(self, devices: dict[str, tuple[str, str]],
                 wireguard_in: str | None = None) -> None:
        self.devices = devices
        self.rows: list[tuple[float, dict[str, int]]] = []
        #: With ``wireguard_in`` (a namespace): the WireGuard devices there, per poll.
        self.wireguard: list[frozenset[str]] = []
        #: What stopped the polling thread early, if anything.
        self.error: BaseException | None = None
        self._wg_ns = wireguard_in
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._handles: dict[str, IPRoute] = {}
        self._idx: dict[str, int] = {}
        self._events: socket.socket | None = None
        self._wg: set[str] = set()

    def __enter__(self) -> CounterPoller:
        try:
            for k, (ns, dev) in self.devices.items():
                self._handles[k] = IPRoute(netns=ns)
                self._idx[k] = self._handles[k].link_lookup(ifname=dev)[0]
            if self._wg_ns is not None:
                # Subscribed before the first dump, so no change falls between the two.
                self._events = pr_netns.create_socket(self._wg_ns, socket.AF_NETLINK,
                                                      socket.SOCK_RAW, socket.NETLINK_ROUTE)
                self._events.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
                self._events.bind((0, RTMGRP_LINK))
                self._events.setblocking(False)
                with IPRoute(netns=self._wg_ns) as ipr:
                    self._wg = {str(m.get_attr("IFLA_IFNAME")) for m in ipr.get_links()
                                if str(m.get_attr("IFLA_IFNAME")).startswith("wg")}
            self._poll()
        except BaseException:
            self._close()
            raise
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5.0)
        self._close()

    def _close(self) -> None:
        for ipr in self._handles.values():
            ipr.close()
        self._handles.clear()
        if self._events is not None:
            self._events.close()
            self._events = None

    def _poll(self) -> None:
        row = {}
        for k, ipr in self._handles.items():
            link = ipr.get_links(self._idx[k])[0]
            row[k] = int((link.get_attr("IFLA_STATS64") or {}).get("tx_bytes", 0))
        if self._events is not None:
            while True:
                try:
                    data = self._events.recv(1 << 16)
                except BlockingIOError:
                    break
                for kind, name in link_names(data):
                    if name.startswith("wg"):
                        (self._wg.add if kind == RTM_NEWLINK else self._wg.discard)(name)
            self.wireguard.append(frozenset(self._wg))
        self.rows.append((time.time(), row))

    def _run(self) -> None:
        try:
            while not self._stop.wait(POLL_S):
                self._poll()
        except BaseException as exc:  # kept for the caller: a silent stop hides rows
            self.error = exc

    def first_rate_above(self, key: str, after: float, mbps: float) -> float | None:
        """Wall time of the first poll after ``after`` whose rate since the previous poll
        exceeds ``mbps``."""
        for (t0, r0), (t1, r1) in itertools.pairwise(self.rows):
            if t1 > after and (r1[key] - r0[key]) * 8 / 1e6 / (t1 - t0) > mbps:
                return t1
        return None

    def last_rate_above(self, key: str, mbps: float) -> float | None:
        """Wall time of the last poll whose rate since the previous poll exceeds ``mbps``."""
        last = None
        for (t0, r0), (t1, r1) in itertools.pairwise(self.rows):
            if (r1[key] - r0[key]) * 8 / 1e6 / (t1 - t0) > mbps:
                last = t1
        return last


def _udp_client(lab: Lab, seconds: float, mbps: float, dscp: int, port: int
                ) -> tuple[float, Any]:
    started = time.time()
    proc = netns.popen_in(lab.host("ha1").ns, [
        "iperf3", "-c", lab.host("hb1").ip, "-u", "-b", f"{mbps}M", "-l", "1000",
        "-t", str(seconds), "--dscp", str(dscp), "-p", str(port), "-J",
        "--get-server-output"])
    return started, proc


#: iperf3 keeps its loss count unsigned: an interval whose count went down (reordered
#: datagrams found) is printed as 2**64 minus the drop, as a double.
_WRAPPED = 2.0 ** 63


def _intervals(stdout: str) -> tuple[list[tuple[float, float, int, int | None]], int | None]:
    """(start_s, end_s, packets, lost) per server interval of an iperf3 UDP client's JSON,
    and the run's final loss count (None if missing).

    ``lost`` is the interval's change of iperf3's loss count, kept signed: iperf3 counts a
    datagram that arrives after a later one (reordered when the stitch moves from a
    queued path to an empty one) as lost, then takes it back when it arrives -- a
    negative change in a later interval, which its JSON prints wrapped around 2**64 as a
    double (the size is lost in the rounding). With one such interval its size is
    exact: the positive changes minus the run's final loss count. With more, their
    ``lost`` is None (unknown). Only a sum over a window is a loss."""
    data = json.loads(stdout)
    server = data.get("server_output_json") or {}
    rows = [iv["sum"] for iv in server.get("intervals", [])]
    wrapped = [i for i, r in enumerate(rows) if float(r.get("lost_packets", 0)) >= _WRAPPED]
    total = ((server.get("end") or {}).get("sum") or {}).get("lost_packets")
    final = int(total) if isinstance(total, int | float) and total < _WRAPPED else None
    found: dict[int, int] = {}
    if len(wrapped) == 1 and final is not None:
        positive = sum(int(r.get("lost_packets", 0)) for i, r in enumerate(rows)
                       if i not in wrapped)
        found[wrapped[0]] = max(positive - final, 0)
    out: list[tuple[float, float, int, int | None]] = []
    for i, r in enumerate(rows):
        lost: int | None = int(r.get("lost_packets", 0))
        if i in wrapped:
            lost = -found[i] if i in found else None
        out.append((float(r["start"]), float(r["end"]), max(int(r.get("packets", 0)), 0),
                    lost))
    return out, final


def _delivered(ivs: list[tuple[float, float, int, int | None]], t0: float, a: float,
               b: float, final: int | None = None) -> tuple[float | None, int, int]:
    """Delivered fraction of the intervals inside [a, b] (wall clock; t0: flow start):
    the window's net loss, within [0, packets]. When every interval outside the window
    has a plain (not negative, known) count and ``final`` (the run's net loss) is given,
    the window's loss is ``final`` minus the losses outside it: exact, even when datagrams
    reordered inside the window were taken back in several intervals. Otherwise the
    window's own counts are summed, an unknown one as 0 (reordered datagrams then stay
    counted as lost: never an understatement)."""
    sent = lost = outside = 0
    plain_outside = True
    for s, e, packets, lost_p in ivs:
        if t0 + s >= a and t0 + e <= b:
            sent += packets
            lost += lost_p or 0
        elif lost_p is None or lost_p < 0:
            plain_outside = False
        else:
            outside += lost_p
    if final is not None and plain_outside:
        lost = final - outside
    lost = min(max(lost, 0), sent)
    return (None if sent == 0 else 1.0 - lost / sent), sent, lost


def run(*, link_mbps: float = 40.0, stitch_mbps: float = 20.0, video_mbps: float = 8.0,
        email_mbps: float = 16.0, cross_mbps: float = 40.0, warmup_s: float = 3.0,
        congest_s: float = 8.0, congestion: dict[str, Any] | None = None,
        on_step: StepHook = _noop, workdir: Path | None = None) -> dict[str, Any]:
    """The whole story on a fresh lab (module docstring); the lab is removed at the end."""
    result: dict[str, Any] = {"link_mbps": link_mbps, "stitch_mbps": stitch_mbps,
                              "cross_mbps": cross_mbps}
    total_s = warmup_s + congest_s + 3.0
    with tempfile.TemporaryDirectory(prefix="vnstitch-congest-") as tmp:
        lab = substrate.build()
        result["run_id"] = lab.run_id
        on_step("build lab", {"run_id": lab.run_id})
        rms: LabRouteManagers | None = None
        procs: list[Any] = []
        try:
            fast_arp(lab)
            hosts = add_cross_hosts(lab)
            at = frozenset("at")
            rms = LabRouteManagers(lab, workdir or Path(tmp), link_capacities={at: link_mbps},
                                   qos=QOS, qos_links={at: link_mbps}, timers=TIMERS)
            if congestion is not None:
                for seg in rms.rms:
                    set_congestion(rms, seg, congestion)
            rms.start_all()
            on_step("start route managers", {seg: rms.rm_id(seg)[:8] for seg in rms.rms})
            rms.wait_route("a", 100)
            reply = rms.stitch("a", 100, stitch_mbps)
            if not reply["established"]:
                raise LabError(f"stitch failed: {reply['detail']}")
            baseline.wait_reachable(lab, "ha1", "hb1", timeout_s=10)
            result["path_before"] = rms.path_segments(reply["detail"]["path"])
            on_step("stitch VN 100 A->B", {"path": result["path_before"]})
            _substrate_route(lab)
            for port in (5201, 5202):
                procs.append(netns.popen_in(lab.host("hb1").ns, [
                    "iperf3", "-s", "-1", "-p", str(port), "-i", "0.1", "-J"]))
            procs.append(netns.popen_in(hosts["xt"], ["iperf3", "-s", "-1", "-p", "5203"]))
            time.sleep(0.3)
            poll = {"new": (lab.routers["a"].ns, lab.link("a", "u").a_dev),
                    "old": (lab.routers["t"].ns, lab.link("t", "b").a_dev)}
            with CounterPoller(poll, wireguard_in=lab.routers["a"].ns) as poller:
                v0, video = _udp_client(lab, total_s, video_mbps, VIDEO_DSCP, 5201)
                e0, email = _udp_client(lab, total_s, email_mbps, EMAIL_DSCP, 5202)
                procs += [video, email]
                on_step("video + e-mail flows", {"video_mbps": video_mbps,
                                                  "email_mbps": email_mbps})
                time.sleep(warmup_s)
                onset = time.time()
                cross = netns.popen_in(hosts["xa"], [
                    "iperf3", "-c", "10.3.2.2", "-u", "-b", f"{cross_mbps}M", "-l", "1000",
                    "-t", str(congest_s), "-p", "5203"])
                procs.append(cross)
                on_step("congest A-T", {"cross_mbps": cross_mbps})
                cross.communicate(timeout=congest_s + 20)
                cross_end = time.time()
                v_out, _ = video.communicate(timeout=total_s + 20)
                e_out, _ = email.communicate(timeout=total_s + 20)
            result.update(_report(rms, poller, (onset, cross_end),
                                  ((v0, v_out), (e0, e_out)), stitch_mbps))
            metrics = route_metrics(lab.routers["a"].ns, PREFIX)
            result["route_metric_stitched"] = metrics.stitched_metric
            result["route_metric_substrate"] = metrics.substrate_metric
            result["decisions"] = [d for d in rms.show("a", "decisions")
                                   if d.get("kind") == "congestion"]
            on_step("reroute", {k: result[k] for k in ("path_after", "reroute_seconds",
                                                        "video_loss_during_reroute")})
        finally:
            for p in procs:
                with contextlib.suppress(Exception):
                    p.kill()
                    p.communicate(timeout=5)
            if rms is not None:
                for seg in rms.rms:
                    rms.stop(seg)
            substrate.teardown(lab.run_id)
        result["leftovers"] = substrate.leftovers(lab.run_id)
        on_step("tear down", {"leftovers": sum(len(v) for v in result["leftovers"].values())})
    return result


def set_congestion(rms: LabRouteManagers, seg: str, section: dict[str, Any]) -> None:
    import yaml  # noqa: PLC0415

    path = rms.rms[seg].config_path
    cfg = yaml.safe_load(path.read_text())
    cfg["congestion"] = section
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))


def _substrate_route(lab: Lab) -> None:
    """A substrate route to VN 100's prefix at A (through U, metric 20, as an IGP would
    install), for the stitched route to win over."""
    au = lab.link("a", "u")
    with IPRoute(netns=lab.routers["a"].ns) as ipr:
        ipr.route("add", dst=PREFIX, gateway=au.b_addr.split("/")[0], priority=20,
                  proto=4)


def _report(rms: LabRouteManagers, poller: CounterPoller, window: tuple[float, float],
            flows: tuple[tuple[float, str], tuple[float, str]], stitch_mbps: float
            ) -> dict[str, Any]:
    video, email = flows
    onset, cross_end = window
    # The stitch's traffic is well above a quarter of its bandwidth; control traffic and
    # probes are far below it.
    floor = stitch_mbps / 4
    rerouted = poller.first_rate_above("new", onset, floor)
    quiet = poller.last_rate_above("old", floor)
    # Make-before-break in the kernel: when the new path first carried the stitch's
    # flow, A still had the old stitch's WireGuard device (next to the new one).
    times = [t for t, _ in poller.rows]
    first_wg = poller.wireguard[0] if poller.wireguard else frozenset()
    old_alive = None
    if rerouted is not None and rerouted in times and first_wg:
        old_alive = first_wg <= poller.wireguard[times.index(rerouted)]
    detected = None
    for seg in ("a", "t"):
        for d in rms.show(seg, "decisions"):
            if d.get("action") == "link-congested" and float(d["now"]) >= onset - 0.5:
                t = float(d["now"])
                detected = t if detected is None else min(detected, t)
    row = rms.live_stitch("a", 100)
    (v_iv, v_final), (e_iv, _) = _intervals(video[1]), _intervals(email[1])
    out: dict[str, Any] = {
        "congestion_onset_s": 0.0,
        "congestion_detected_s": None if detected is None else round(detected - onset, 3),
        "rerouted_s": None if rerouted is None else round(rerouted - onset, 3),
        "old_path_quiet_s": None if quiet is None else round(quiet - onset, 3),
        "reroute_seconds": None if rerouted is None else round(rerouted - onset, 3),
        "path_before": None,
        "path_after": rms.path_segments(row["path"]) if row else None,
        "make_before_break": old_alive,
    }
    if rerouted is not None:
        end = quiet if quiet is not None and quiet > rerouted else rerouted
        frac, sent, _ = _delivered(v_iv, video[0], rerouted - 0.3, end + 0.3, v_final)
        out["video_loss_during_reroute"] = None if frac is None else round(1 - frac, 5)
        out["video_packets_in_move"] = sent
    else:
        out["video_loss_during_reroute"] = None
    for name, (t0, _), ivs in (("video", video, v_iv), ("email", email, e_iv)):
        frac, sent, _ = _delivered(ivs, t0, onset, cross_end)
        out[f"{name}_delivered_fraction"] = None if frac is None else round(frac, 4)
        out[f"{name}_packets_during_congestion"] = sent
    out.pop("path_before")
    return out

