"""The demo scenario: RMs on a real topology discover a VN and stitch it across transit.

Theory of operation: :func:`run_demo` partitions a built-in topology into segments (one
in-memory Route Manager each), puts one VNID on the two segments farthest apart in the
segment graph (so a transit segment sits between them), lets discovery converge, asks
the origin for a stitch and runs the virtual clock until the tunnel is up. It returns
one plain dict (the CLI prints it as a story or JSON); the simulator can reuse it.
Segments are named after a PoP (:func:`segment_names`) by every part of the demo, and
the default cut (5 segments) is the one the simulator part uses, so one name means one
place throughout.
"""

from __future__ import annotations

from typing import Any

import networkx as nx

from vnstitch.model import Component, Substrate, VirtualNetwork, load_topology, partitioned
from vnstitch.model.ids import VNID, SegmentId
from vnstitch.protocol.api import StitchConstraints, StitchEstablished, StitchFailed
from vnstitch.protocol.testing import InMemoryNetwork


def segment_names(sub: Substrate) -> dict[SegmentId, str]:
    """A name for each segment people can place: its first PoP in alphabetical order
    (PoP names are unique, so segment names are too). The demo's parts all use these."""
    g = sub.graph
    return {seg: min(str(g.nodes[n].get("label", n)) for n in sub.nodes_in(seg))
            for seg in sub.segments()}


def run_demo(topology: str = "zoo:Abilene", segments: int = 5, vnid: int = 100,
             bandwidth_mbps: float = 1000.0, seed: int = 1) -> dict[str, Any]:
    sub = partitioned(load_topology(topology), segments)
    seg_graph = sub.segment_graph()
    lengths = dict(nx.all_pairs_shortest_path_length(seg_graph))
    origin, target = max(((a, b) for a in lengths for b in lengths[a] if a < b),
                         key=lambda ab: (lengths[ab[0]][ab[1]], ab))
    v = VNID(vnid)
    vns = {SegmentId(s): [VirtualNetwork(v, SegmentId(s),
                                         (Component.parse(f"10.{vnid % 256}.{i}.0/24"),))]
           for i, s in enumerate((origin, target), 1)}
    net = InMemoryNetwork(sub, vns, seed=seed)
    net.check = lambda n: n.check_no_overcommit()
    net.start()
    converged = net.converge()
    converged_at = net.now
    core = net.core(SegmentId(origin))
    sid, out = core.request_stitch(v, StitchConstraints(bandwidth_mbps), net.now)
    requested = net.now
    net.process(core.rm_id, out)
    net.run_until(net.now + 2.0)
    name = net.segment_of
    g = sub.graph
    result: dict[str, Any] = {
        "topology": sub.name,
        "segment_names": {str(k): v for k, v in segment_names(sub).items()},
        "pops": {s: sorted(str(g.nodes[n].get("label", n)) for n in sub.nodes_in(s))
                 for s in net.segments},
        "rms": [{"segment": s, "rm_id": net.rm_of[s], "nodes": sorted(sub.nodes_in(s)),
                 "neighbours": [name[p.peer] for p in net.core(s).config.peers]}
                for s in net.segments],
        "vnid": vnid, "origin": origin, "target": target,
        "converged_after_messages": converged, "converged_after_seconds": converged_at,
        "messages_total": net.sent,
    }
    ev = next((e for _, _, e in net.events
               if isinstance(e, StitchEstablished | StitchFailed) and e.stitch_id == sid), None)
    if isinstance(ev, StitchEstablished):
        path = [name[r] for r in ev.path]
        rtt = 2 * sum(net.latency[(ev.path[i], ev.path[i + 1])] for i in range(len(path) - 1))
        result["stitch"] = {"id": sid, "path": path, "setup_seconds": ev.now - requested,
                            "path_rtt_seconds": rtt, "round_trips": (ev.now - requested) / rtt,
                            "bandwidth_mbps": ev.bandwidth_mbps, "latency_ms": ev.latency_ms,
                            "cost": ev.cost}
    else:
        result["stitch"] = {"id": sid, "failed": ev.reason.value if ev else "no outcome",
                            "detail": ev.detail if ev else ""}
    result["tunnels"] = [
        {"segment": name[rm], "tunnel": t.token, "state": t.state.value,
         "peer": name.get(t.peer, t.peer), "wireguard_interface": t.wg_name,
         "endpoint": t.endpoint, "address": t.own_addr, "vni": int(t.vnid),
         "rtt_ms": t.rtt_ms, "dataplane_objects": len(net.dataplane[rm])}
        for rm, c in net.cores.items() for t in c.active_tunnels()]
    result["reservations"] = {
        name[rm]: {name[p]: used for p, (used, _) in c.link_usage().items() if used}
        for rm, c in net.cores.items()}
    result["dropped"] = {name[rm]: c.counters.dropped for rm, c in net.cores.items()
                         if c.counters.dropped}
    return result
