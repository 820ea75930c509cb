"""QoS classes live: video and e-mail through one stitch, with and without the classes.

Builds the namespace lab with four live Route Managers (root) whose config has a
``qos:`` section, stitches VN 100 A->B at ``--stitch-mbps``, and sends at once, from
ha1 to hb1 for ``--seconds``: a DSCP-34 video flow (UDP, ``--video-mbps``) and an e-mail
flow (UDP, ``--email-mbps``, more than the stitch carries). Per configuration, the
fraction of each flow delivered (iperf3's own packet counts) and the kernel's drops per
HTB class on A's tunnel end (``routemgr show qos``), median of ``--runs``:

* ``classes``: the policy's classes (video priority 0, 60% guaranteed; e-mail priority 3,
  5%) on each tunnel end, DSCP 34 -> video -- what the ``qos:`` section deploys;
* ``one_class``: the same section with one class for everything (the control);
* ``no_qos``: no ``qos:`` section -- the stitch's single HTB class (the baseline before).

Usage: ``python benchmarks/qos_live.py [--runs N] [--seconds S] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from vnstitch.lab import baseline, netns, substrate
from vnstitch.lab.routemgrs import LabRouteManagers, fast_arp, wait_for
from vnstitch.output import console, progress, table

CLASSES: dict[str, Any] = {
    "link_mbps": 100,
    "classes": [{"name": "video", "priority": 0, "guaranteed_mbps": 60, "max_mbps": 100},
                {"name": "email", "priority": 3, "guaranteed_mbps": 5, "max_mbps": 100}],
    "applications": [{"name": "tv", "class": "video", "dscp": [34]}],
}
ONE_CLASS: dict[str, Any] = {
    "link_mbps": 100,
    "classes": [{"name": "all", "priority": 0, "guaranteed_mbps": 100, "max_mbps": 100}],
}
CONFIGS: dict[str, dict[str, Any] | None] = {"classes": CLASSES, "one_class": ONE_CLASS,
                                             "no_qos": None}


def _flows(lab: substrate.Lab, video: float, email: float, seconds: float
           ) -> tuple[float, float]:
    """Delivered fraction of the video and the e-mail flow, sent at once."""
    dst = lab.host("hb1").ip
    servers = [netns.popen_in(lab.host("hb1").ns, ["iperf3", "-s", "-1", "-p", str(p)])
               for p in (5301, 5302)]
    try:
        time.sleep(0.3)  # the servers' listen
        clients = [netns.popen_in(lab.host("ha1").ns, [
            "iperf3", "-c", dst, "-p", str(port), "-u", "-b", f"{mbps:g}M", "-l", "1000",
            "-t", f"{seconds:g}", "-J", *extra]) for port, mbps, extra in
            ((5301, video, ["-S", str(34 << 2)]), (5302, email, []))]
        fractions = []
        for c in clients:
            out, _ = c.communicate(timeout=seconds + 30)
            s = json.loads(out)["end"]["sum"]
            fractions.append(1.0 - int(s["lost_packets"]) / max(1, int(s["packets"])))
    finally:
        for srv in servers:
            srv.kill()
            srv.communicate()
    return fractions[0], fractions[1]


def one_run(qos: dict[str, Any] | None, args: argparse.Namespace) -> dict[str, Any]:
    lab = substrate.build()
    rms: LabRouteManagers | None = None
    try:
        fast_arp(lab)
        with tempfile.TemporaryDirectory(prefix="qoslive-") as tmp:
            rms = LabRouteManagers(lab, Path(tmp), qos=qos)
            rms.start_all(timeout_s=60.0)  # a loaded 2-core machine starts slowly
            rms.wait_route("a", 100)
            reply = rms.stitch("a", 100, args.stitch_mbps)
            if not reply["established"]:
                raise RuntimeError(f"stitch not established: {reply}")
            baseline.wait_reachable(lab, "ha1", "hb1", timeout_s=10)
            wait_for(lambda: [r for r in rms.show("a", "qos") if r["bytes"] is not None]
                     or None, 10.0, "A's HTB classes in the kernel")
            video, email = _flows(lab, args.video_mbps, args.email_mbps, args.seconds)
            drops = {str(r["class"] or f"1:{r['class_id']:x}"): int(r["drops"])
                     for r in rms.show("a", "qos")
                     if str(r["device"]).startswith("vx") and r["drops"] is not None}
            for seg in list(rms.rms):
                rms.stop(seg)
    finally:
        substrate.teardown(lab.run_id)
    return {"video_delivered_fraction": video, "email_delivered_fraction": email,
            "tunnel_class_drops": drops}


def measure(args: argparse.Namespace) -> dict[str, Any]:
    samples: dict[str, list[dict[str, Any]]] = {k: [] for k in CONFIGS}
    with progress() as bar:
        task = bar.add_task("lab runs", total=len(CONFIGS) * args.runs)
        for _ in range(args.runs):
            for name, qos in CONFIGS.items():
                samples[name].append(one_run(qos, args))
                bar.advance(task)
    median = {name: {k: statistics.median(r[k] for r in rows)
                     for k in ("video_delivered_fraction", "email_delivered_fraction")}
              for name, rows in samples.items()}
    return with_figures({"runs": args.runs, "seconds": args.seconds,
                         "stitch_mbps": args.stitch_mbps, "video_mbps": args.video_mbps,
                         "email_mbps": args.email_mbps, "cpus": os.cpu_count(),
                         "load_average": os.getloadavg()[0], "median": median,
                         "samples": samples})


def with_figures(res: dict[str, Any]) -> dict[str, Any]:
    """``res`` with each median as a top-level figure (``classes_video_delivered``...)
    and the tunnel end's total video-class drops under the classes."""
    for name, med in res["median"].items():
        for k, v in med.items():
            res[f"{name}_{k.replace('_fraction', '')}"] = v
    res["classes_video_class_drops"] = sum(
        r["tunnel_class_drops"].get("video", 0) for r in res["samples"]["classes"])
    return res


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per configuration")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of the flows")
    parser.add_argument("--stitch-mbps", type=float, default=20.0,
                        help="bandwidth the stitch is negotiated at")
    parser.add_argument("--video-mbps", type=float, default=4.0, help="video flow rate")
    parser.add_argument("--email-mbps", type=float, default=30.0, help="e-mail flow rate")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("qos_live: needs root (network namespaces)", file=sys.stderr)
        return 2
    res = measure(args)
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    console().print(table(
        f"video {args.video_mbps:g} + e-mail {args.email_mbps:g} Mbit/s into a "
        f"{args.stitch_mbps:g} Mbit/s stitch, median of {args.runs}",
        ["configuration", "video delivered", "e-mail delivered"],
        [(k, v["video_delivered_fraction"], v["email_delivered_fraction"])
         for k, v in res["median"].items()]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
