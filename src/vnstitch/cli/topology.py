"""``vnstitch topology show``: load a substrate, split it into segments, describe it."""

from __future__ import annotations

import argparse
from typing import Any

from vnstitch.cli.output import add_json_flag, console, print_json, table
from vnstitch.model import load_topology, partitioned


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "topology", help="load and describe a substrate topology",
        description="Load a topology (zoo:NAME and sndlib:NAME are built in through "
        "topohub; or a Topology Zoo .graphml / SNDlib .xml path), split it into K "
        "connected segments and describe it.",
    )
    tsub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    show = tsub.add_parser("show", help="describe a topology and its segments")
    show.add_argument("topology", help="zoo:NAME | sndlib:NAME | PATH")
    show.add_argument("--segments", type=int, default=1, metavar="K",
                      help="split into K connected segments (default 1)")
    add_json_flag(show)
    show.set_defaults(handler=_show)


def _show(args: argparse.Namespace) -> int:
    sub = partitioned(load_topology(args.topology), args.segments)
    segs = sub.segments()
    adj = sub.segment_adjacencies()
    result: dict[str, Any] = {
        "name": sub.name,
        "nodes": sub.graph.number_of_nodes(),
        "links": sub.graph.number_of_edges(),
        "segments": {s: sorted(sub.nodes_in(s)) for s in segs},
        "segment_links": [
            {"a": a.a, "b": a.b, "links": len(a.links), "capacity_mbps": a.capacity_mbps,
             "latency_ms": a.latency_ms} for a in adj
        ],
        "notes": sub.notes,
    }
    if args.json:
        print_json(result)
        return 0
    out = console()
    out.print(f"[bold]{sub.name}[/]: {result['nodes']} nodes, {result['links']} links, "
              f"{len(segs)} segment(s)")
    for note in sub.notes:
        out.print(f"  note: {note}")
    out.print(table("segments", ["segment", "nodes"],
                    [(s, len(sub.nodes_in(s))) for s in segs]))
    if adj:
        out.print(table("segment adjacencies", ["pair", "links", "capacity Mbit/s", "latency ms"],
                        [(f"{a.a}-{a.b}", len(a.links), a.capacity_mbps, a.latency_ms)
                         for a in adj]))
    return 0
