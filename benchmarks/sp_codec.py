"""Stitching Protocol per-message cost and discovery convergence.

Measures the median microseconds per received datagram for decode + verify + handle in a
real core (HELLO and UPDATE messages between two neighbouring RMs on Abilene), against
two baselines in the same run: msgpack encode/decode of the same messages without any
crypto, and JSON instead of msgpack. Also counts the signed messages discovery needs to
converge among 5 Route Managers (one VNID on every segment). ``--json`` prints one object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import msgpack

from vnstitch.model import Component, SegmentId, VirtualNetwork, load_topology, partitioned
from vnstitch.model.ids import VNID
from vnstitch.output import console, print_json, table
from vnstitch.protocol.messages import Entry, Hello, Message, Update, message_from_wire
from vnstitch.protocol.testing import InMemoryNetwork


def _median_us(fn: Any, items: list[Any]) -> float:
    times = []
    for item in items:
        t0 = time.perf_counter_ns()
        fn(item)
        times.append(time.perf_counter_ns() - t0)
    return statistics.median(times) / 1000.0


def _jsonable(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    return v


def run(n: int) -> dict[str, Any]:
    sub = partitioned(load_topology("zoo:Abilene"), 5)
    segs = sub.segments()
    vns = {s: [VirtualNetwork(VNID(100 + i), s, (Component.parse(f"10.{i}.0.0/24"),))]
           for i, s in enumerate(segs)}
    net = InMemoryNetwork(sub, vns, seed=1)
    net.start()
    converge_msgs = net.converge()
    converge_s = net.now
    a = net.cores[net.rm_of[SegmentId(segs[0])]]
    b = net.cores[a.config.peers[0].peer]
    entry = next(iter(a.discovery.best.values())).entry
    msgs: list[Message] = [Hello(b.discovery.rib_in[a.rm_id].digest,
                                 len(b.discovery.rib_in[a.rm_id].entries)),
                           Update((Entry(entry.vnid, (a.rm_id, *entry.path[1:]),
                                         entry.bandwidth_mbps, entry.latency_ms, entry.cost,
                                         entry.components),), ())]
    now = net.now
    wires = [a.codec.encode(b.rm_id, msgs[i % 2], now) for i in range(n)]
    full = _median_us(lambda w: b.receive(w, a.rm_id, now), wires)
    assert not b.counters.dropped, b.counters.dropped
    bodies = [msgpack.packb([i, now, int(msgs[i % 2].TYPE), msgs[i % 2].to_wire()])
              for i in range(n)]
    plain_dec = _median_us(lambda p: message_from_wire(*msgpack.unpackb(p)[2:]), bodies)
    plain_enc = _median_us(lambda m: msgpack.packb([1, now, int(m.TYPE), m.to_wire()]),
                           [msgs[i % 2] for i in range(n)])
    jbodies = [json.dumps([i, now, int(msgs[i % 2].TYPE), _jsonable(msgs[i % 2].to_wire())])
               for i in range(n)]
    json_dec = _median_us(json.loads, jbodies)
    unpack_only = _median_us(msgpack.unpackb, bodies)
    verify_only = _median_us(lambda w: b.trust.verify(a.rm_id, w[-64:], w[:-64]), wires)
    sizes = {"msgpack_signed_bytes": statistics.mean(len(w) for w in wires),
             "json_unsigned_bytes": statistics.mean(len(j) for j in jbodies)}
    return {
        "messages": n,
        "decode_verify_handle_us": full,
        "baseline_msgpack_decode_no_crypto_us": plain_dec,
        "baseline_msgpack_encode_no_crypto_us": plain_enc,
        "baseline_msgpack_unpack_only_us": unpack_only,
        "baseline_json_loads_only_us": json_dec,
        "ed25519_verify_only_us": verify_only,
        "target_us": 100.0,
        **sizes,
        "discovery_rms": len(segs),
        "discovery_converged_after_messages": converge_msgs,
        "discovery_converged_after_seconds": converge_s,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=4000)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    r = run(args.messages)
    if args.json:
        print_json(r)
        return 0
    console().print(table(f"SP per-message cost (median of {r['messages']})",
                          ["measure", "value"], [(k, v) for k, v in r.items()]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
