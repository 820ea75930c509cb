"""``lab demo --pra``'s bandwidth part: a traffic ramp through a real stitch.

Theory of operation: the namespace lab (:mod:`vnstitch.lab.substrate`) with one Route
Manager daemon per segment (``linux`` dataplane, the daemons' ``allocation:`` loop on)
stitches VN 100 from A to B (VXLAN over WireGuard, shaped by tc HTB at the stitch's
reserved rate). A CloudWatch ``NetworkIn`` trace, replayed like the CPU trace (one row
per ``row_seconds``) and scaled so the replayed rows average ``mean_mbps``, is the
VN's offered load: each row one ``iperf3`` UDP client ha1 -> hb1 at the row's rate for
the row's length. Offered is what the client sent, delivered what the server received
(iperf3's own counts); ``unserved_fraction`` is the total shortfall over the total
offered. The stitch is requested at the replayed rows' mean: what is above it gets
through only if the allocation grows the stitch in time.

The daemons run the PRA (``pra:`` with ``bandwidth`` for VN 100, one step per
``interval_s``) beside their ``allocation:`` loop; the PRA owns VN 100's stitch ends, so
its decisions size the stitch: its booking is the HTB class's rate and a shortfall (or
an end measured at its cap) grows the stitch in place under the controller's grow rules
(:mod:`vnstitch.control.pra_bandwidth`). The result names the sizer and carries the
PRA's last row and its resize decisions for A's end. The lab is torn down and its
leftovers listed.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from vnstitch.lab import baseline, netns, substrate
from vnstitch.lab.netns import LabError
from vnstitch.lab.routemgrs import LabRouteManagers, fast_arp

StepHook = Callable[[str, dict[str, Any]], None]
PORT = 5211


def scaled_rates(raw: Sequence[float], mean_mbps: float) -> list[float]:
    """``raw`` scaled so its mean is ``mean_mbps`` (a flat trace stays flat)."""
    m = sum(raw) / len(raw) if raw else 0.0
    return [mean_mbps * (x / m) if m > 0 else mean_mbps for x in raw]


def _udp_row(lab: substrate.Lab, rate_mbps: float, seconds: float) -> tuple[float, float]:
    """One iperf3 UDP run ha1 -> hb1: (offered, delivered) in Mbit."""
    srv = netns.popen_in(lab.host("hb1").ns, ["iperf3", "-s", "-1", "-p", str(PORT)])
    try:
        time.sleep(0.2)  # the server binds before the client connects
        done = netns.run_in(lab.host("ha1").ns,
                            ["iperf3", "-c", lab.host("hb1").ip, "-p", str(PORT), "-u",
                             "-b", f"{rate_mbps:.3f}M", "-t", f"{seconds:g}", "-J"],
                            timeout_s=seconds + 20, check=False)
    finally:
        srv.kill()
        srv.communicate()
    try:
        return udp_result(done.stdout)
    except (ValueError, KeyError, TypeError) as exc:
        err = done.stderr.strip() or done.stdout[-200:]
        raise LabError(f"iperf3 -u ha1->hb1: no result ({err})") from exc


def udp_result(stdout: str) -> tuple[float, float]:
    """(offered, delivered) Mbit from an iperf3 UDP client's ``-J`` output: what the
    client sent, what the server reported received (older iperf3: sent x (1 - loss))."""
    end = json.loads(stdout)["end"]
    sent = end.get("sum_sent") or end["sum"]
    got = end.get("sum_received")
    offered = float(sent["bytes"]) * 8 / 1e6
    if got is not None:
        delivered = float(got["bytes"]) * 8 / 1e6
    else:
        delivered = offered * (1 - float(end["sum"]["lost_percent"]) / 100)
    return offered, min(delivered, offered)


def pra_section(interval_s: float) -> dict[str, Any]:
    """The daemons' ``pra:`` section: VN 100's bandwidth, ETS (cheap to refit)."""
    return {"interval_s": interval_s, "refit_every": 30, "fit_timeout_s": 60,
            "vns": {100: {"class": "web", "profile": "database_access",
                          "bandwidth": {"model": "ets"}}}}


def pra_report(rms: LabRouteManagers, stitch_id: str) -> dict[str, Any]:
    """A's PRA for the stitch: its latest row, its resize decisions, the tunnel's
    bandwidth now."""
    cid = f"{stitch_id}/bandwidth"
    rows = [r for r in rms.show("a", "allocations") if r.get("consumer") == cid]
    resizes = [r for r in rms.show("a", "decisions")
               if r.get("action") in ("resize-requested", "resized", "resize-refused")
               and stitch_id in (r.get("stitch_id"), r.get("consumer", "").split("/")[0])]
    keep = ("now", "action", "new_mbps", "amount_mbps", "ok", "reason")
    return {"row": rows[0] if rows else None,
            "resizes": [{k: r[k] for k in keep if k in r} for r in resizes],
            "negotiated_mbps": next((s.get("bandwidth_mbps") for s in rms.show("a", "stitches")
                                     if s.get("stitch_id") == stitch_id), None)}


def run_bandwidth(rates: Sequence[float], row_seconds: float, on_step: StepHook,
                  interval_s: float = 1.0) -> dict[str, Any]:
    """Stitch VN 100 A->B at the rates' mean, offer ``rates``; the JSON-ready result."""
    mean = sum(rates) / len(rates)
    result: dict[str, Any] = {"requested_mbps": round(mean, 3), "rows": len(rates),
                              "sizing": "pra"}
    with tempfile.TemporaryDirectory(prefix="vnstitch-prabw-") as tmp:
        lab = substrate.build()
        rms: LabRouteManagers | None = None
        try:
            fast_arp(lab)
            rms = LabRouteManagers(lab, Path(tmp), allocation={"interval_s": interval_s,
                                                               "hold_steps": 0},
                                   pra=pra_section(interval_s))
            rms.start_all()
            rms.wait_route("a", 100)
            reply = rms.stitch("a", 100, mean)
            if not reply["established"]:
                raise LabError(f"bandwidth: stitch A->VN 100 failed: {reply['detail']}")
            baseline.wait_reachable(lab, "ha1", "hb1", timeout_s=10)
            result["path"] = rms.path_segments(reply["detail"]["path"])
            on_step("bandwidth ramp", {"row": 0, "rows": len(rates)})
            rows = []
            for k, r in enumerate(rates):
                offered, delivered = _udp_row(lab, r, row_seconds)
                rows.append((round(r, 3), round(offered, 3), round(delivered, 3)))
                on_step("bandwidth ramp", {"row": k + 1, "rows": len(rates)})
            result["pra"] = pra_report(rms, reply["stitch_id"])
            result["allocation_loop_sized_it"] = any(
                s["stitch_id"] == reply["stitch_id"]
                for s in rms.show("a", "status")["allocation"]["stitches"])
        finally:
            if rms is not None:
                for seg in rms.rms:
                    rms.stop(seg)
            substrate.teardown(lab.run_id)
        left = substrate.leftovers(lab.run_id)
    offered = sum(o for _, o, _ in rows)
    short = sum(o - d for _, o, d in rows)
    result.update(offered_mbit=round(offered, 3), delivered_mbit=round(offered - short, 3),
                  unserved_fraction=short / offered if offered > 0 else None,
                  per_row=[{"rate_mbps": r, "offered_mbit": o, "delivered_mbit": d}
                           for r, o, d in rows],
                  left_behind=[f"{kind}: {x}" for kind, xs in left.items() for x in xs])
    return result
