"""``vnstitch lab demo``: live Route Managers stitch VN 100 across the lab, with real traffic.

Theory of operation: build a lab, start one Route Manager daemon per segment router
(:class:`~vnstitch.lab.routemgrs.LabRouteManagers`, ``linux`` dataplane, keys and configs
in a temporary directory), ask A's daemon for a stitch to VN 100 (which lives on B),
and watch what really happens:

1. *setup*: a ``ping -D`` stream ha1 -> hb1 runs while the stitch is requested; the
   first reply's timestamp minus the request time is the time to first packet;
2. *traffic*: a counted ping while capturing on T's end of the A-T veth (the transit
   link) -- the capture must show WireGuard data and no inner ICMP, VXLAN or overlay
   address; then ``iperf3`` through the stitch (shaped to the reserved bandwidth);
3. *reroute*: with the ping stream running, the A-T veth is deleted. A's probes, relayed
   by T, stop coming back; A takes the tunnel down and re-negotiates (the only other
   path is A-U-B); T's lease on the reservation runs out and it releases. Reported: the
   time until A's stitch was up again via U, the delivery gap(s) seen by the ping
   stream, and when traffic flowed again through the new stitch;
4. everything is torn down, leftovers are checked.

With ``allocation`` (the daemons' ``allocation:`` config section) the Route Managers also
run the predictive allocation loop: after the iperf3 step the demo reports A's latest
allocation decisions for the stitch and the HTB rate the loop set on its VXLAN port
(iperf3's TCP pushes as much as the negotiated ceil allows, so the stitch runs at its
cap: the loop counts that as a shortfall and grows the stitch in place, up to
``grow_max_factor`` x what was requested).

Steps are reported through ``on_step(name, facts)`` so the CLI can show progress.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vnstitch.lab import baseline, substrate
from vnstitch.lab.netns import LabError
from vnstitch.lab.routemgrs import LabRouteManagers, PingStream, fast_arp, wait_for
from vnstitch.lab.substrate import Lab

STEPS = ("build lab", "start route managers", "discover VN 100", "stitch VN 100 A->B",
         "ping + capture on transit", "iperf3", "cut A-T and reroute", "tear down")
#: A delivery gap longer than this (ping every 20 ms) counts as an outage.
GAP_S = 0.1

StepHook = Callable[[str, dict[str, Any]], None]


def _noop(step: str, facts: dict[str, Any]) -> None:
    del step, facts


def stitch_and_measure(lab: Lab, rms: LabRouteManagers, bandwidth_mbps: float
                       ) -> dict[str, Any]:
    """Request the stitch A -> VN 100 with a ping stream running; time to first packet."""
    with PingStream(lab, "ha1", "hb1") as stream:
        requested = time.time()
        reply = rms.stitch("a", 100, bandwidth_mbps)
        if reply["established"]:
            baseline.wait_reachable(lab, "ha1", "hb1", timeout_s=10)
    first = stream.first_reply_after(requested)
    detail = reply["detail"]
    return {"stitch_up": bool(reply["established"]), "stitch_id": reply["stitch_id"],
            "path": rms.path_segments(detail["path"]) if reply["established"] else None,
            "setup_seconds": None if first is None else first - requested,
            "stitch_established_seconds": detail.get("setup_seconds"),
            "reserved_mbps": detail.get("bandwidth_mbps"), "detail": detail}


def reroute(lab: Lab, rms: LabRouteManagers, stitch_id: str, timeout_s: float = 15.0
            ) -> dict[str, Any]:
    """Cut A-T under a ping stream; what the protocol and the traffic do afterwards."""
    with PingStream(lab, "ha1", "hb1") as stream:
        time.sleep(0.5)
        cut_at = time.time()
        substrate.cut_link(lab, "a", "t")

        def via_u() -> str | None:
            row = rms.live_stitch("a", 100)
            if row and row["path"]:
                path = rms.path_segments(row["path"])
                return path if "U" in path else None
            return None

        try:
            path = wait_for(via_u, timeout_s, "A to re-negotiate the stitch via U")
            renegotiated = time.time() - cut_at
        except LabError:
            path, renegotiated = None, None
        try:
            wait_for(lambda: rms.reserved_mbps("t") == 0.0, 5.0, "T to release")
            t_released = time.time() - cut_at
        except LabError:
            t_released = None
        # The new tunnel may carry traffic a moment after the control plane calls it up
        # (wireguard-go handshake): give it a bounded time, confirmed by a separate ping,
        # then keep the stream running a little so "restored" is what the stream saw.
        with contextlib.suppress(LabError):
            baseline.wait_reachable(lab, "ha1", "hb1", timeout_s=5.0)
        time.sleep(1.0)
        stopped_at = time.time()
    gaps = stream.gaps_after(cut_at, GAP_S)
    last = stream.replies[-1] if stream.replies else cut_at
    restored = stopped_at - last < 0.5  # replies were still arriving at the end
    return {
        "rerouted_path": path,
        "renegotiated_seconds": renegotiated,
        "transit_t_released_seconds": t_released,
        "reserved_after_mbps": {seg: rms.reserved_mbps(seg) for seg in ("a", "t", "u", "b")},
        "traffic_restored": restored,
        # Traffic flows again at the end of the last gap (at once if there was none).
        "reroute_seconds": (gaps[-1][1] - cut_at if gaps else 0.0) if restored else None,
        # Link cut to traffic on the other path: the stitch is up via U and the stream
        # has no gap after that (the later of the two).
        "reroute_s": None if not restored or renegotiated is None else
        max(renegotiated, gaps[-1][1] - cut_at if gaps else 0.0),
        "outage_seconds": sum(b - a for a, b in gaps) if restored else None,
        "gaps": [(round(a - cut_at, 3), round(b - cut_at, 3)) for a, b in gaps],
    }


def allocation_report(rms: LabRouteManagers, stitch_id: str, last: int = 5
                      ) -> dict[str, Any]:
    """A's allocation state for ``stitch_id``: its summary and latest per-stitch decisions."""
    status = rms.show("a", "status")["allocation"]
    mine = [r for r in status.get("stitches", []) if r["stitch_id"] == stitch_id]
    rows = [r for r in rms.show("a", "allocations") if r["stitch_id"] == stitch_id
            and (r.get("subject") == stitch_id or r["action"] in ("shortfall", "keep"))]
    return {"stitch": mine[0] if mine else None, "decisions": rows[-last:]}


def run_demo(*, bandwidth_mbps: float = 100.0, iperf_seconds: float = 3.0, pings: int = 10,
             workdir: Path | None = None, on_step: StepHook = _noop,
             allocation: dict[str, Any] | None = None) -> dict[str, Any]:
    """The whole demo on a fresh lab; the lab is removed even if a step fails."""
    result: dict[str, Any] = {"bandwidth_requested_mbps": bandwidth_mbps}
    with tempfile.TemporaryDirectory(prefix="vnstitch-demo-") as tmp:
        lab = substrate.build()
        result["run_id"] = lab.run_id
        on_step("build lab", {"run_id": lab.run_id})
        rms: LabRouteManagers | None = None
        try:
            fast_arp(lab)
            rms = LabRouteManagers(lab, workdir or Path(tmp), allocation=allocation)
            rms.start_all()
            on_step("start route managers", {seg: rms.rm_id(seg)[:8] for seg in rms.rms})
            via = rms.wait_route("a", 100)
            on_step("discover VN 100", {"via": rms.path_segments(via)})
            result.update(stitch_and_measure(lab, rms, bandwidth_mbps))
            on_step("stitch VN 100 A->B", {k: result[k] for k in
                                           ("stitch_up", "path", "setup_seconds")})
            if not result["stitch_up"]:
                raise LabError(f"stitch failed: {result['detail']}")
            t_link = lab.link("a", "t")
            (sent, received), cap = baseline.capture(
                lab.routers["t"].ns, t_link.b_dev, [h.address for h in lab.hosts],
                lambda: baseline.ping(lab, "ha1", "hb1", count=pings))
            result.update(ping_sent=sent, ping_received=received,
                          encrypted_on_substrate=cap.encrypted, capture=cap.as_dict())
            on_step("ping + capture on transit", {
                "ping": f"{received}/{sent}", "encrypted": cap.encrypted,
                "wireguard": cap.wireguard, "inner_icmp": cap.inner_icmp})
            result["iperf_mbps"] = baseline.iperf(lab, "ha1", "hb1", iperf_seconds)
            facts: dict[str, Any] = {"mbps": result["iperf_mbps"]}
            if allocation is not None:
                result["allocation"] = allocation_report(rms, result["stitch_id"])
                stitch = result["allocation"]["stitch"] or {}
                facts["allocated_mbps"] = stitch.get("reserved_mbps")
            on_step("iperf3", facts)
            result.update(reroute(lab, rms, result["stitch_id"]))
            on_step("cut A-T and reroute", {k: result[k] for k in (
                "rerouted_path", "renegotiated_seconds", "reroute_s", "outage_seconds")})
        finally:
            if rms is not None:
                for seg in rms.rms:
                    rms.stop(seg)
            substrate.teardown(lab.run_id)
        result["leftovers"] = substrate.leftovers(lab.run_id)
        on_step("tear down", {"leftovers": sum(len(v) for v in result["leftovers"].values())})
    return result
