"""Daemon benchmark: stitch setup time over real UDP vs the same cores called directly.

Three Route Managers A - T - B (real Stitching Protocol core, memory dataplane) run as
asyncio daemons on 127.0.0.1; A requests a stitch of VN 100 to B through T, N times.
Baseline ``core_direct``: the same three cores built from the same configs, datagrams
handed from core to core in-process with no sockets, SQLite or event loop -- the gap is
the daemon's overhead (UDP, persistence before send, reconcile). Also measured: how many
hostile datagrams per second the daemon drops and counts.

Usage: ``python benchmarks/daemon_stitch.py [--runs N] [--json]``
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from tests.daemon.helpers import start_daemon, until, write_cluster  # noqa: E402

from vnstitch.daemon.config import load_config  # noqa: E402
from vnstitch.daemon.coreadapter import CoreSetup, protocol_core_factory  # noqa: E402
from vnstitch.daemon.identity import load_key_file  # noqa: E402
from vnstitch.model.ids import VNID  # noqa: E402
from vnstitch.output import console, print_json, table  # noqa: E402
from vnstitch.protocol.api import (  # noqa: E402
    Output,
    SendDatagram,
    StitchConstraints,
    StitchEstablished,
)

VN = [{"vnid": 100, "components": ["10.100.1.0/24"]}]
VN_B = [{"vnid": 100, "components": ["10.100.2.0/24"]}]


async def daemon_run(tmp: Path, runs: int, garbage: int) -> dict[str, Any]:
    nodes = write_cluster(tmp, ["A", "T", "B"], [("A", "T"), ("T", "B")],
                          {"A": VN, "B": VN_B})
    ds = [await start_daemon(nodes[n].config_path, protocol_core_factory, control=False)
          for n in ("A", "T", "B")]
    a = ds[0]
    try:
        await until(lambda: a.routes.get(100) is not None, 10)
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            sid, fut = a.request_stitch(VNID(100), StitchConstraints(10))
            outcome = await asyncio.wait_for(fut, 10)
            times.append(time.perf_counter() - t0)
            assert outcome.established, outcome.detail
            a.release_stitch(sid)
        before = a.metrics["peer_faults"]
        t0 = time.perf_counter()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for burst in range(0, garbage, 100):  # bursts below the socket buffer size
                for i in range(burst, burst + 100):
                    s.sendto(i.to_bytes(4, "big") * 50, a.local_address)
                target = before + burst + 100

                def counted(t: int = target) -> bool:
                    return a.metrics["peer_faults"] >= t

                await until(counted, 10, 0.0005)
        rate = (a.metrics["peer_faults"] - before) / (time.perf_counter() - t0)
    finally:
        for d in ds:
            await d.stop()
    return {"setup_ms": [t * 1000 for t in times], "faults_per_s": rate}


def direct_run(tmp: Path, runs: int) -> list[float]:
    nodes = write_cluster(tmp, ["A", "T", "B"], [("A", "T"), ("T", "B")],
                          {"A": VN, "B": VN_B})
    cores = {}
    for n in ("A", "T", "B"):
        cfg = load_config(nodes[n].config_path)
        cores[n] = protocol_core_factory(CoreSetup(cfg, load_key_file(cfg.key_file), None, 0,
                                                   0.0))
    by_id = {c.rm_id: c for c in cores.values()}
    now = time.time()
    queue: list[tuple[Any, SendDatagram]] = []

    def pump(outputs: list[Output]) -> list[Output]:
        events: list[Output] = []
        queue.extend((None, o) for o in outputs if isinstance(o, SendDatagram))
        events += [o for o in outputs if not isinstance(o, SendDatagram)]
        while queue:
            _, send = queue.pop(0)
            out = by_id[send.destination].receive(send.payload, None, now)
            queue.extend((None, o) for o in out if isinstance(o, SendDatagram))
            events += [o for o in out if not isinstance(o, SendDatagram)]
        return events

    for n, c in cores.items():
        pump(c.start(now))
        for vn in load_config(nodes[n].config_path).local_vns:
            pump(c.add_local_vn(vn.virtual_network(load_config(nodes[n].config_path).segment),
                                now))
    for _ in range(5):  # let flush timers run so discovery converges
        now += 0.2
        for c in cores.values():
            pump(c.handle_timer(now))
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sid, out = cores["A"].request_stitch(VNID(100), StitchConstraints(10), now)
        events = pump(out)
        while not any(isinstance(e, StitchEstablished) for e in events):
            nxt = cores["A"].next_timer()
            now = max(now, nxt or now)
            events += pump(cores["A"].handle_timer(now))
        times.append(time.perf_counter() - t0)
        pump(cores["A"].release_stitch(sid, now))
    return [t * 1000 for t in times]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--garbage", type=int, default=5000)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as d1, tempfile.TemporaryDirectory() as d2:
        live = asyncio.run(daemon_run(Path(d1), args.runs, args.garbage))
        direct = direct_run(Path(d2), args.runs)
    result = {
        "runs": args.runs,
        "daemon_udp_setup_ms_median": statistics.median(live["setup_ms"]),
        "core_direct_setup_ms_median": statistics.median(direct),
        "daemon_overhead_ratio": statistics.median(live["setup_ms"]) / statistics.median(direct),
        "hostile_datagrams_dropped_per_s": live["faults_per_s"],
    }
    if args.json:
        print_json(result)
    else:
        console().print(table("stitch setup A -> T -> B (median of runs)", ["variant", "ms"], [
            ("daemon over UDP (3 daemons on one loop)",
             result["daemon_udp_setup_ms_median"]),
            ("baseline core_direct (no I/O)", result["core_direct_setup_ms_median"])]))
        console().print(f"hostile datagrams dropped and counted: "
                        f"{result['hostile_datagrams_dropped_per_s']:.0f}/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
