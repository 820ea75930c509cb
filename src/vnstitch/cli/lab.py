"""``vnstitch lab up|down|status|baseline|demo``: a real multi-segment substrate in namespaces.

Theory of operation: thin wrappers over :mod:`vnstitch.lab.substrate` (build, describe,
tear down by run id), :mod:`vnstitch.lab.baseline` (a hand-configured VXLAN-over-
WireGuard stitch with ping, iperf3 and a capture on the transit link) and
:mod:`vnstitch.lab.demo` (live Route Manager daemons stitch VN 100, traffic, reroute).
Needs root.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from vnstitch.cli.argtypes import bounded_int, finite_float
from vnstitch.cli.lab_pra import add_pra_args, run_pra
from vnstitch.cli.output import add_json_flag, console, print_json, table
from vnstitch.lab import baseline, substrate
from vnstitch.lab.netns import LabError


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "lab", help="build and tear down a namespace lab (root)",
        description="A real substrate in network namespaces: segment routers A, T, U, B "
        "(two transit paths A-T-B and A-U-B), veth links, hosts in VN 100 and VN 200 on A "
        "and B. Labs are named by a run id so several can coexist.")
    lsub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    up = lsub.add_parser(
        "up", help="build a lab and print its run id and layout",
        description="Without --topology: the fixed four-router lab (A, T, U, B, static "
        "routes). With --topology: one router namespace per segment of a real topology, "
        "veth links rate-limited to its capacities (one scale factor), FRR OSPF as the "
        "IGP, one host in VN 100 per segment and a live Route Manager per segment.")
    up.add_argument("--id", dest="run_id", help="run id to use (default: random)")
    up.add_argument("--topology", metavar="SPEC",
                    help="zoo:NAME | sndlib:NAME | a .graphml/.xml file: build a lab from it")
    up.add_argument("--segments", type=bounded_int(1, 250), default=5, metavar="K",
                    help="with --topology: cut it into K segments (default 5)")
    up.add_argument("--max-link-mbps", type=finite_float(), default=200.0, metavar="MBPS",
                    help="with --topology: the rate the largest link is scaled to "
                    "(default 200: what veths here carry comfortably)")
    up.add_argument("--full", action="store_true",
                    help="with --topology: one router namespace per node (up to 40 "
                    "nodes), each segment's Route Manager on its gateway node")
    up.add_argument("--no-route-managers", action="store_true",
                    help="with --topology: do not start a Route Manager per segment")
    up.add_argument("--timeout", type=finite_float(), default=90.0, metavar="S",
                    help="with --topology: seconds to wait for OSPF to converge "
                    "(default 90)")
    add_json_flag(up)
    up.set_defaults(handler=_up)
    down = lsub.add_parser("down", help="remove a lab (or all labs) leaving nothing")
    down.add_argument("run_id", nargs="?", help="run id (default: every lab on this host)")
    add_json_flag(down)
    down.set_defaults(handler=_down)
    st = lsub.add_parser("status", help="list labs, their namespaces and WireGuard daemons")
    st.add_argument("run_id", nargs="?", help="one lab (default: all)")
    add_json_flag(st)
    st.set_defaults(handler=_status)
    bl = lsub.add_parser("baseline", help="hand-configure VXLAN over WireGuard A<->B, "
                         "ping, iperf3, capture on the transit link")
    bl.add_argument("run_id", nargs="?", help="use this lab (default: build a temporary one)")
    bl.add_argument("--seconds", type=float, default=3.0, help="iperf3 duration (default 3)")
    add_json_flag(bl)
    bl.set_defaults(handler=_baseline)
    dm = lsub.add_parser("demo", help="one live Route Manager per segment stitches VN 100 "
                         "A->B: ping, iperf3, capture on the transit link, cut A-T, reroute",
                         description="Builds a temporary lab, starts 'vnstitch routemgr run' "
                         "inside each segment router's namespace (linux dataplane), requests "
                         "a stitch for VN 100 from A, measures real traffic through it, "
                         "cuts the A-T link and measures the reroute, then removes "
                         "everything.")
    dm.add_argument("--bandwidth", type=float, default=100.0, metavar="MBPS",
                    help="bandwidth to reserve for the stitch (default 100)")
    dm.add_argument("--seconds", type=float, default=3.0, help="iperf3 duration (default 3)")
    dm.add_argument("--pings", type=int, default=10, help="pings under capture (default 10)")
    dm.add_argument("--allocate", type=float, default=None, metavar="INTERVAL_S",
                    help="run the daemons' predictive allocation loop every INTERVAL_S "
                         "seconds and print A's allocation decisions after iperf3")
    add_pra_args(dm)
    dm.add_argument("--congestion", action="store_true",
                    help="instead: stitch VN 100 with a video and an e-mail flow (iperf3 "
                         "UDP, DSCP-marked), congest the A-T link with cross traffic from a "
                         "substrate host and measure the live make-before-break reroute")
    add_json_flag(dm)
    dm.set_defaults(handler=_demo)
    _register_run(lsub)


def _register_run(lsub: Any) -> None:
    rn = lsub.add_parser(
        "run", help="run a scenario live (the one vnstitch simulate runs) and print the "
        "same parity summary",
        description="Run a scenario file live: on a lab built for it from --topology "
        "(torn down afterwards), or on the topology lab that is up. Stitch requests go to "
        "the live Route Managers, each flow is iperf3 (UDP) with its class's DSCP, faults "
        "are real (veth cut and restored, Route Manager kill -9 and restart). The "
        "summary's 'parity' section has the schema of vnstitch simulate's.")
    rn.add_argument("--scenario", required=True, metavar="FILE",
                    help="scenario YAML or builtin:NAME (e.g. builtin:story)")
    rn.add_argument("--topology", metavar="SPEC",
                    help="build a lab from this topology for the run (zoo:NAME | "
                    "sndlib:NAME | FILE), overriding the scenario's; without it the run "
                    "uses the topology lab that is up")
    rn.add_argument("--segments", type=bounded_int(2, 250), metavar="K",
                    help="cut the topology into K segments (default: the scenario's)")
    rn.add_argument("--id", dest="run_id", metavar="RUN_ID",
                    help="with --topology: the new lab's run id; without: the lab to use "
                    "(default: the only topology lab that is up)")
    rn.add_argument("--max-link-mbps", type=finite_float(), default=40.0, metavar="MBPS",
                    help="with --topology: the rate the largest link is scaled to "
                    "(default 40: three iperf3 flows through wireguard-go on 2 cores)")
    rn.add_argument("--qos", action="store_true",
                    help="apply the scenario's QoS classes in the daemons, on tunnel ends "
                    "and lab links (their HTB replaces the lab's tbf); DSCP per class")
    rn.add_argument("--logs", metavar="DIR",
                    help="copy the Route Managers' and iperf3's logs and configs to DIR")
    add_json_flag(rn)
    rn.set_defaults(handler=_run)


def _need_root() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, wireguard-go)")


def _up_topology(args: argparse.Namespace) -> int:
    from vnstitch.cli.output import progress  # noqa: PLC0415
    from vnstitch.lab import topolab  # noqa: PLC0415
    from vnstitch.model import load_topology, partitioned  # noqa: PLC0415

    t0 = time.monotonic()
    sub = load_topology(args.topology)
    if args.segments > sub.graph.number_of_nodes():
        raise LabError(f"--segments {args.segments}: {sub.name} has only "
                       f"{sub.graph.number_of_nodes()} nodes")
    topo = topolab.plan(partitioned(sub, args.segments), args.run_id,
                        max_link_mbps=args.max_link_mbps, full=args.full)
    with progress(disable=args.json) as bar:
        task = bar.add_task("building", total=None)
        topolab.build(topo, on_step=lambda s: bar.update(task, description=s))
        try:
            bar.update(task, description="waiting for OSPF")
            converged = topolab.wait_converged(topo, args.timeout)
            if not args.no_route_managers:
                bar.update(task, description="starting Route Managers")
                topolab.start_route_managers(topo)
        except BaseException:
            topolab.destroy(topo.lab.run_id)
            raise
    adj = topolab.adjacencies(topo)
    result = {**topo.to_json(), "up_seconds": round(time.monotonic() - t0, 2),
              "ospf_converged_seconds": round(converged, 2),
              "adjacencies_full": sum(n["state"] == "Full" for v in adj.values() for n in v),
              "adjacencies_expected": sum(topolab.expected_adjacencies(topo).values()),
              "rtt_ms": topolab.measure_rtts(topo),
              "route_managers": topolab.route_manager_status(topo.lab.run_id)}
    if args.json:
        print_json(result)
        return 0
    out = console()
    out.print(f"lab [bold]{topo.lab.run_id}[/]: {topo.topology} in {len(topo.segments)} "
              f"segments ({len(topo.routers)} routers), up in {result['up_seconds']} s "
              f"(OSPF converged in "
              f"{result['ospf_converged_seconds']} s, {result['adjacencies_full']}/"
              f"{result['adjacencies_expected']} adjacencies Full); remove with: "
              f"vnstitch lab down {topo.lab.run_id}")
    out.print(table("segment routers", ["segment", "namespace", "loopback", "host"],
                    [(r.segment, r.ns, r.loopback,
                      next(h.address for h in topo.lab.hosts if h.segment == r.segment))
                     for r in topo.lab.routers.values()]))
    out.print(table("links", ["link", "substrate links", "Mbit/s real", "Mbit/s lab",
                              "OSPF cost", "RTT ms"],
                    [(f"{t.a}-{t.b}", t.substrate_links, t.capacity_mbps, t.rate_mbps,
                      t.ospf_cost, result["rtt_ms"].get(f"{t.a}-{t.b}"))
                     for t in topo.links]))
    for note in topo.notes:
        out.print(f"note: {note}")
    return 0


def _up(args: argparse.Namespace) -> int:
    _need_root()
    if args.topology:
        return _up_topology(args)
    lab = substrate.build(args.run_id)
    if args.json:
        print_json(lab.to_json())
        return 0
    out = console()
    out.print(f"lab [bold]{lab.run_id}[/] is up; remove with: vnstitch lab down {lab.run_id}")
    out.print(table("segment routers", ["segment", "namespace", "loopback"],
                    [(r.segment, r.ns, r.loopback) for r in lab.routers.values()]))
    out.print(table("hosts", ["host", "namespace", "segment", "VN", "address", "router port"],
                    [(h.name, h.ns, h.segment, h.vnid, h.address, h.router_port)
                     for h in lab.hosts]))
    return 0


def _down(args: argparse.Namespace) -> int:
    _need_root()
    ids = [args.run_id] if args.run_id else substrate.run_ids()
    removed = {rid: substrate.teardown(rid) for rid in ids}
    left = sum(len(v) for rid in ids for v in substrate.leftovers(rid).values())
    if args.json:
        print_json({"removed": removed, "leftovers": left})
    else:
        for rid, nss in removed.items():
            console().print(f"lab {rid}: removed {len(nss)} namespace(s)")
    return 0


def _status(args: argparse.Namespace) -> int:
    _need_root()
    ids = [args.run_id] if args.run_id else substrate.run_ids()
    labs = [substrate.status(rid) for rid in ids]
    for lab in labs:
        _topology_status(lab)
    if args.json:
        print_json({"labs": labs})
        return 0
    out = console()
    if not labs:
        out.print("no lab on this host")
    for lab in labs:
        out.print(table(f"lab {lab['run_id']}", ["namespace", "links", "routes to loopbacks"],
                        [(ns, " ".join(v["links"]), len(v["routes_to_loopbacks"]))
                         for ns, v in lab["routers"].items()]))
        out.print(f"  wireguard-go: {lab['wireguard'] or 'none'}; processes: "
                  f"{len(lab['processes'])}")
        if "ospf" in lab:
            out.print(table(f"lab {lab['run_id']}: OSPF adjacencies ({lab['topology']})",
                            ["segment", "neighbor", "interface", "state"],
                            [(seg, n["neighbor"], n["interface"], n["state"])
                             for seg, ns in lab["ospf"].items() for n in ns]))
            out.print(table(f"lab {lab['run_id']}: Route Managers", ["segment", "running"],
                            [(seg, v["running"]) for seg, v in lab["route_managers"].items()]))
    return 0


def _topology_status(lab: dict[str, Any]) -> None:
    """Add OSPF adjacencies (vtysh ... json) and Route Managers to a topology lab's
    status."""
    from vnstitch.lab import topolab  # noqa: PLC0415

    if not topolab.is_topology_lab(lab["run_id"]):
        return
    topo = topolab.load(lab["run_id"])
    lab["topology"] = topo.topology
    try:
        lab["ospf"] = topolab.adjacencies(topo)
    except LabError as exc:
        lab["ospf"] = {}
        lab["ospf_error"] = str(exc)
    lab["route_managers"] = topolab.route_manager_status(lab["run_id"])


def _baseline(args: argparse.Namespace) -> int:
    _need_root()
    temporary = args.run_id is None
    lab = substrate.build() if temporary else substrate.load(args.run_id)
    try:
        result = baseline.baseline(lab, seconds=args.seconds)
    finally:
        if temporary:
            substrate.teardown(lab.run_id)
    result["temporary_lab"] = temporary
    if args.json:
        print_json(result)
        return 0
    cap = result["capture"]
    console().print(table(
        f"hand-configured VXLAN over WireGuard, lab {lab.run_id}", ["metric", "value"],
        [("setup s", result["setup_seconds"]), ("first packet s", result["first_packet_seconds"]),
         ("ping", f"{result['ping_received']}/{result['ping_sent']}"),
         ("iperf3 Mbit/s", result["iperf_mbps"]),
         ("capture on A-T (T side)", f"{cap['frames']} frames, WireGuard {cap['wireguard']}, "
          f"inner ICMP {cap['inner_icmp']}, VXLAN in clear {cap['vxlan_in_clear']}"),
         ("encrypted on substrate", result["encrypted_on_substrate"])]))
    return 0


#: The keys ``lab demo --congestion --json`` prints (issue 16), in this order.
CONGESTION_KEYS = ("congestion_onset_s", "congestion_detected_s", "rerouted_s",
                   "reroute_seconds", "path_before", "path_after", "video_loss_during_reroute",
                   "video_delivered_fraction", "email_delivered_fraction",
                   "route_metric_stitched", "route_metric_substrate")


def _demo_congestion(args: argparse.Namespace) -> int:
    from vnstitch.cli.output import progress  # noqa: PLC0415
    from vnstitch.lab import congestion  # noqa: PLC0415

    out = console()
    with progress(disable=args.json) as bar:
        task = bar.add_task("lab demo --congestion", total=len(congestion.STEPS))

        def step(name: str, facts: dict[str, Any]) -> None:
            bar.update(task, advance=1, description=name)
            if not args.json:
                out.print(f"[bold]{name}[/]: " + ", ".join(f"{k}={v}" for k, v in facts.items()))

        result = congestion.run(on_step=step)
    if args.json:
        print_json({k: result.get(k) for k in CONGESTION_KEYS})
        return 0
    out.print(table(f"congestion reroute, lab {result['run_id']}", ["metric", "value"],
                    [(k, result.get(k)) for k in (*CONGESTION_KEYS, "old_path_quiet_s",
                                                   "make_before_break")]))
    return 0


def _demo(args: argparse.Namespace) -> int:
    _need_root()
    if args.pra:
        return run_pra(args)
    if args.congestion:
        return _demo_congestion(args)
    from vnstitch.cli.output import progress  # noqa: PLC0415
    from vnstitch.lab import demo  # noqa: PLC0415

    if args.bandwidth <= 0 or args.seconds <= 0 or args.pings < 1:
        raise LabError("lab demo: --bandwidth and --seconds must be > 0, --pings >= 1")
    if args.allocate is not None and not args.allocate > 0:
        raise LabError("lab demo: --allocate must be > 0 seconds")
    allocation = None if args.allocate is None else {"interval_s": args.allocate,
                                                     "hold_steps": 0}
    out = console()
    with progress(disable=args.json) as bar:
        task = bar.add_task("lab demo", total=len(demo.STEPS))

        def step(name: str, facts: dict[str, Any]) -> None:
            bar.update(task, advance=1, description=name)
            if not args.json:
                shown = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                                  for k, v in facts.items())
                out.print(f"[bold]{name}[/]: {shown}")

        result = demo.run_demo(bandwidth_mbps=args.bandwidth, iperf_seconds=args.seconds,
                               pings=args.pings, on_step=step, allocation=allocation)
    if args.json:
        print_json(result)
        return 0
    cap = result["capture"]
    out.print(table(f"live Route Managers, lab {result['run_id']}", ["metric", "value"], [
        ("stitch up", result["stitch_up"]), ("path", result["path"]),
        ("request -> first packet s", result["setup_seconds"]),
        ("request -> established s", result["stitch_established_seconds"]),
        ("ping", f"{result['ping_received']}/{result['ping_sent']}"),
        ("iperf3 Mbit/s (reserved)", f"{result['iperf_mbps']:.1f} "
         f"({result['reserved_mbps']:g}" + _grown(result) + ")"),
        ("capture on A-T (T side)", f"{cap['frames']} frames, WireGuard {cap['wireguard']}, "
         f"inner ICMP {cap['inner_icmp']}, VXLAN in clear {cap['vxlan_in_clear']}"),
        ("encrypted on substrate", result["encrypted_on_substrate"]),
        ("after cut A-T: path", result["rerouted_path"]),
        ("cut -> re-negotiated s", result["renegotiated_seconds"]),
        ("cut -> T released its reservation s", result["transit_t_released_seconds"]),
        ("cut -> traffic on the other path s", result["reroute_s"]),
        ("delivery outage s", result["outage_seconds"]),
        ("leftovers", sum(len(v) for v in result["leftovers"].values()))]))
    if "allocation" in result:
        cols = ["t_s", "measured_mbps", "forecast_mbps", "quantile", "available_mbps",
                "amount_mbps", "action"]
        decisions = result["allocation"]["decisions"]
        t0 = decisions[0]["now"] if decisions else 0.0
        rows = [[round(r["now"] - t0, 2), *(r.get(c, "-") for c in cols[1:])]
                for r in decisions]
        out.print(table("A's allocation decisions after iperf3 (latest)", cols, rows))
    return 0


def _grown(result: dict[str, Any]) -> str:
    """", grown in place to N" when the allocation loop resized the stitch during iperf3."""
    stitch = (result.get("allocation") or {}).get("stitch") or {}
    now = stitch.get("negotiated_mbps")
    if now is None or now == result["reserved_mbps"]:
        return ""
    return f", grown in place to {now:g}"


def _run(args: argparse.Namespace) -> int:
    _need_root()
    import dataclasses  # noqa: PLC0415

    from vnstitch.cli.output import progress  # noqa: PLC0415
    from vnstitch.lab import scenario_run, topolab  # noqa: PLC0415
    from vnstitch.sim.parity import parity_rows  # noqa: PLC0415
    from vnstitch.sim.scenario import check_scenario, load_scenario  # noqa: PLC0415

    sc = load_scenario(args.scenario)
    changes: dict[str, Any] = {}
    if args.topology:
        changes["topology"] = args.topology
    if args.segments is not None:
        changes["segments"] = args.segments
    sc = dataclasses.replace(sc, **changes)
    check_scenario(sc)
    run_id = args.run_id
    if not args.topology and run_id is None:
        labs = [rid for rid in substrate.run_ids() if topolab.is_topology_lab(rid)]
        if len(labs) != 1:
            raise LabError(f"lab run: {len(labs)} topology labs are up ({', '.join(labs)}"
                           "); name one with --id, or give --topology to build one")
        run_id = labs[0]
    with progress(disable=args.json) as bar:
        task = bar.add_task(f"{sc.name}: {sc.duration_s:g} s live", total=sc.duration_s)
        result = scenario_run.run_live(
            sc, run_id=run_id, build=bool(args.topology), max_link_mbps=args.max_link_mbps,
            logs=Path(args.logs) if args.logs else None, qos=args.qos,
            progress=lambda t, what: bar.update(task, completed=min(t, sc.duration_s),
                                                description=what))
    if args.json:
        print_json(result)
        return 0
    out = console()
    out.print(f"[bold]{result['scenario']}[/] live on {result['topology']} in "
              f"{result['segments']} segments (lab {result['run_id']}, scale "
              f"{result['scale']:.4g}), {result['wall_seconds']} s; leftovers "
              f"{result['leftovers']}")
    out.print(table("parity summary", ["measure", "value"], parity_rows(result["parity"])))
    out.print(table("flows (iperf3, UDP)", ["flow", "class", "DSCP", "offered Mbit",
                                           "delivered Mbit", "runs (failed)"],
                    [(f["flow"], f["class"], f["dscp"], f["offered_mbit"],
                      f["delivered_mbit"], f"{f['iperf3_runs']} ({f['iperf3_failed']})")
                     for f in result["flows"]]))
    out.print(table("faults", ["at s", "action", "target"],
                    [(f.get("at_s"), f.get("action", "request"),
                      f.get("target", f.get("error"))) for f in result["faults"]]))
    return 0

