"""Held paths: a tunnel end whose path was given up stays in the kernel while it still
carries the far end's traffic, so a dead Route Manager does not cut a working tunnel.

Theory of operation. A path is given up when a Route Manager on it stops answering: the
origin misses its probes, a hop's lease with it runs out (PATH_DOWN toward the origin,
ABORT toward the target), or a restarted RM learns from its neighbour that the lease is
gone. The tunnel itself may well still work -- a ``kill -9`` of either end's daemon
leaves both ends' WireGuard and VXLAN devices and both wireguard-go processes in place --
and removing an end would cut traffic for the whole outage and the restart. So, with
``CoreConfig.hold_datapath`` (the daemon sets it for a kernel dataplane; the simulator
has no kernel), a tunnel end that was UP or DEGRADED is *held* instead of removed: the
reservation is released and the path told exactly as before, the origin re-negotiates
as before, only the dataplane objects stay. The driver reports the tunnel interface's
received bytes (:meth:`HeldPathMixin.datapath_rx`); a rise is traffic from the far end.
A held end is removed

* when the same origin's stitch of the VN has its new end here: at the origin in the
  same step that adds the replacement's objects (when it is established); at the target
  when the new end carries the origin's first probe -- not at its commit, since the
  origin may still abandon that attempt (a lost COMMIT_ACK, a timeout on a loaded
  host), and the held end is then all that carries the VN,
* when the operator releases the stitch (:meth:`HeldPathMixin.release_held_paths`),
* when the driver's reports show no traffic from the far end for ``probe_interval_s x
  probe_misses_down`` (the probes' own detection bound: a dead far wireguard-go, a cut
  underlay, or a far end that removed its side) -- judged on the reports' own times, so
  a late sampler on a loaded host does not count as silence -- or, with no report at
  all, after :data:`NO_REPORT_BOUNDS` such bounds, or
* after ``datapath_hold_s`` whatever the traffic.

The origin swaps its held end for the new one in a single step, so it never bridges two
tunnels of one stitch at once; the target may, between the commit and the first probe,
but a broadcast loop needs two tunnels bridged at *both* ends, so none can form. (A new
end never takes a held end's WireGuard port or HTB class.)
Held ends are part of the exported state, so a restarted RM still removes them.
Timer kind ``held`` [token]: re-check one held end.

Liveness from the data plane. The other way a working stitch is lost is at one of its
*ends*: its lease with the neighbour on the path runs out (:mod:`~vnstitch.protocol.
leases`) because that neighbour's HELLOs and LEASES did not arrive -- a flood of forged
datagrams that fills this RM's receive buffer drops them in the kernel, and nothing in
user space can win them back. Then the tunnel is still the best evidence there is: the
end-to-end probes go *inside* it (a kernel dataplane; they are WireGuard-authenticated and
signed by the far end, so a forger without the keys cannot make them), so a target that
got the origin's PROBE, or an origin that got the target's PROBE_REPLY, within the probes'
detection bound knows that the whole path carries the stitch.
:meth:`HeldPathMixin._lease_kept_by_datapath` then keeps the lease (re-checked every
probe interval, and the silent neighbour asked again with LEASES(QUERY), whose answer
confirms it as usual) for at most ``datapath_hold_s`` past its end; when the probes stop
too, or the neighbour says GONE, the path is given up exactly as before. Only with
``hold_datapath`` (a kernel dataplane): with the in-memory driver the probes travel
outside any tunnel and prove nothing about the path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vnstitch.model.ids import VNID, RouteManagerId
from vnstitch.protocol.api import DataplaneChange, Output
from vnstitch.protocol.messages import LeaseOp, Leases
from vnstitch.protocol.reservation import Reservation
from vnstitch.protocol.stitchbase import StitchingBase
from vnstitch.protocol.timers import TimerKind
from vnstitch.protocol.tunnels import Tunnel, TunnelState

#: A held end the driver never reports on goes after this many detection bounds (a
#: restarted daemon's first report can take seconds on a loaded host).
NO_REPORT_BOUNDS = 10


@dataclass(slots=True)
class HeldPath:
    """A released path's tunnel end whose dataplane objects are still in place."""

    tunnel: Tunnel
    since: float
    #: When traffic from the far end was last seen (a rise of ``rx_bytes``).
    traffic_at: float
    rx_bytes: int | None = None
    #: When the driver last reported the counter (None: not yet).
    sampled_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"tunnel": self.tunnel.to_dict(), "since": self.since,
                "rx_bytes": self.rx_bytes}


class HeldPathMixin(StitchingBase):
    held: dict[str, HeldPath]
    _restored_held: list[dict[str, Any]]

    def _stale_s(self) -> float:
        t = self.timers_cfg
        return t.probe_interval_s * t.probe_misses_down

    def _hold(self, tun: Tunnel, now: float) -> bool:
        """Hold ``tun``'s objects (instead of removing them); False if it may not be."""
        if not (self.config.hold_datapath and
                tun.state in (TunnelState.UP, TunnelState.DEGRADED)):
            return False
        self.held[tun.token] = HeldPath(tun, now, now)
        self.stat("datapath_held")
        self.set_timer(TimerKind.HELD, tun.token, now + self._stale_s())
        return True

    def _tunnel_proven(self, tun: Tunnel, now: float) -> bool:
        """The far end's authenticated probes crossed this tunnel end recently."""
        if tun.state not in (TunnelState.UP, TunnelState.DEGRADED):
            return False
        seen = tun.last_reply_at if tun.origin else tun.last_probe_seen
        return seen > 0.0 and now - seen <= self._stale_s()

    def _lease_kept_by_datapath(self, res: Reservation, due: float, now: float,
                                out: list[Output]) -> bool:
        """``res``'s lease ran out at ``due``; True if it is kept because this RM is an
        end of its path whose tunnel demonstrably works (see the module docstring)."""
        if not self.config.hold_datapath or res.index not in (0, len(res.path) - 1):
            return False
        tun = self.tunnels.get(res.token)
        if (tun is None or now >= due + self.timers_cfg.datapath_hold_s
                or not self._tunnel_proven(tun, now)):
            return False
        self.stat("lease_kept_by_datapath")
        lease = self._lease()
        for p in res.links:  # the answer, LEASES(LIVE), confirms as usual
            if res.confirmed.get(p, res.committed_at) + lease <= now:
                self.send(p, Leases(LeaseOp.QUERY, ()), now, out)
        res.last_call = False
        self.set_timer(TimerKind.RESERVATION, res.token,
                       now + self.timers_cfg.probe_interval_s)
        return True

    def datapath_rx(self, token: str, rx_bytes: int, now: float) -> list[Output]:
        """The driver read ``rx_bytes`` received on held tunnel ``token``'s interface."""
        h = self.held.get(token)
        if h is not None:
            # The first report is only a baseline (no earlier count to compare): silence
            # is counted from it, so a first report that comes late -- a daemon that just
            # restarted, a sampler starved on a loaded host -- is not taken as silence.
            if h.rx_bytes is None or rx_bytes > h.rx_bytes:
                h.traffic_at = max(h.traffic_at, now)
            h.rx_bytes, h.sampled_at = rx_bytes, now
        return []

    def held_interfaces(self) -> dict[str, str]:
        """Held token -> the tunnel interface whose received bytes to report."""
        return {t: h.tunnel.wg_name for t, h in self.held.items()}

    def _held_timer(self, token: str, now: float, out: list[Output]) -> None:
        h = self.held.get(token)
        if h is None:
            return
        stale = self._stale_s()
        # Silence is judged on the reports, not on the clock: a sampler that is late on
        # a loaded host must not make a working tunnel look dead. With no report at all
        # (no counters, the device gone) the end goes after a few detection bounds.
        if h.sampled_at is None:  # counted from the hold, or from a restart's restore
            silent = now >= h.traffic_at + NO_REPORT_BOUNDS * stale
        else:
            silent = h.sampled_at - h.traffic_at >= stale
        if silent or now >= h.since + self.timers_cfg.datapath_hold_s:
            self.stat("datapath_hold_ended")
            self._drop_held([token], out)
        else:
            self.set_timer(TimerKind.HELD, token, now + stale / 2)

    def release_held_paths(self, vnid: VNID, now: float) -> list[Output]:
        """The operator released the VNID's stitch: its held ends go now (an attempt
        abandoned for a retry keeps them)."""
        out: list[Output] = []
        self._release_held(vnid, out)
        return out

    def _release_held(self, vnid: VNID, out: list[Output],
                      origin: RouteManagerId | None = None) -> None:
        """The VNID's stitch (of ``origin``, if given) is back, or released: its held
        ends go."""
        tokens = [t for t, h in self.held.items() if h.tunnel.vnid == vnid and
                  (origin is None or h.tunnel.path[0] == origin)]
        if tokens:
            self.stat("datapath_hold_replaced", len(tokens))
            self._drop_held(tokens, out)

    def _drop_held(self, tokens: list[str], out: list[Output]) -> None:
        mine: set[str] = set()
        for token in tokens:
            h = self.held.pop(token)
            self.cancel_timer(TimerKind.HELD, token)
            mine |= {o.key for o in h.tunnel.dataplane_objects(self.config.route_metric)}
        out.append(DataplaneChange(remove=tuple(sorted(mine - self._objects_in_use()))))

    def _objects_in_use(self) -> set[str]:
        """Keys of the objects live tunnels and the remaining held ends want."""
        ends = [t for t in self.tunnels.values() if t.state is not TunnelState.REQUESTED]
        ends += [h.tunnel for h in self.held.values()]
        return {o.key for t in ends for o in t.dataplane_objects(self.config.route_metric)}

    def export_held(self) -> list[dict[str, Any]]:
        return [h.to_dict() for h in self.held.values()]

    def restore_held(self, state: list[dict[str, Any]], now: float) -> None:
        """After a restart: each held end gets one more detection bound to show traffic."""
        for d in state:
            tun = Tunnel.from_dict(d["tunnel"])
            self.held[tun.token] = HeldPath(tun, float(d["since"]), now)
            self.set_timer(TimerKind.HELD, tun.token, now + self._stale_s())
