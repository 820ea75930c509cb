"""Tunnel ends: their state, and the end-to-end health probes between them.

Theory of operation. Each end of a stitch owns a :class:`~vnstitch.protocol.tunnels.Tunnel`
(REQUESTED -> KEYS_EXCHANGED -> UP <-> DEGRADED -> DOWN). Once the stitch is established
the origin probes the target every ``probe_interval_s``: PROBE goes straight to the other
end of the tunnel (``SendDatagram.address`` carries the address that end gave in the key
exchange, ``tunnel_address`` its address inside the tunnel, so a driver can send the
probe through the tunnel itself) and PROBE_REPLY comes straight back -- no transit RM
relays, re-signs or even sees them, so probe traffic grows with the stitches an RM
terminates, not with those it carries. An unanswered probe is resent (same nonce) with
backoff within the interval, so one lost datagram is not a missed probe. The first reply
proves the keys work (UP); a missed interval makes UP DEGRADED, a reply with recent loss
<= ``degraded_loss`` UP again, ``probe_misses_down`` misses in a row re-negotiate. A
new end that never answered yet does not count misses for ``CoreConfig.tunnel_setup_s``
after it is established (a kernel dataplane is still creating its devices).
Transit reservations do not depend on probes: their leases are kept by the neighbours
(:mod:`~vnstitch.protocol.leases`).
"""

from __future__ import annotations

import dataclasses

from vnstitch.model.ids import VNID, RouteManagerId
from vnstitch.protocol.api import DataplaneChange, FailureReason, Output, TunnelStateChanged
from vnstitch.protocol.messages import MsgType, Probe
from vnstitch.protocol.negotiation import StitchRequest, StitchState
from vnstitch.protocol.stitchbase import StitchingBase
from vnstitch.protocol.timers import TimerKind
from vnstitch.protocol.tunnels import Tunnel, TunnelState


class ProbeMixin(StitchingBase):
    # -- tunnel ends ----------------------------------------------------------------------
    def _new_tunnel(self, token: str, sid: str, vnid: VNID, path: tuple[RouteManagerId, ...],
                    *, origin: bool, private: bytes, public: bytes, own_addr: str,
                    peer_addr: str, bw: float, remote: tuple[str, ...]) -> Tunnel:
        # Held ends keep their devices (heldpaths.py): a new end must not take their
        # WireGuard port or HTB class while both are in the kernel.
        live = [*self.tunnels.values(), *(h.tunnel for h in self.held.values())]
        ports = {t.listen_port for t in live}
        port = next(p for p in range(self.config.wg_port_base, 65536) if p not in ports)
        classes = {t.class_id for t in live}
        class_id = next(c for c in range(1, 0xfffe) if c not in classes)
        tun = Tunnel(token, sid, vnid, path[-1] if origin else path[0], origin, path,
                     private, public, f"{self.config.underlay_address}:{port}", own_addr,
                     peer_addr, bw, port, class_id, remote)
        self.tunnels[token] = tun
        return tun

    def _tunnel_move(self, tun: Tunnel, new: TunnelState, now: float,
                     out: list[Output]) -> None:
        old = tun.machine.move(new)
        out.append(TunnelStateChanged(tun.tunnel_id, tun.peer, old.value, new.value, now))

    def _tunnel_down(self, token: str, now: float, out: list[Output], *,
                     hold: bool = False) -> None:
        """The tunnel end is gone; its objects go too, unless ``hold`` and the origin may
        keep them while they carry traffic (:mod:`~vnstitch.protocol.heldpaths`)."""
        tun = self.tunnels.pop(token, None)
        if tun is None or tun.state is TunnelState.DOWN:
            return
        had_dataplane = tun.state is not TunnelState.REQUESTED
        held = hold and self._hold(tun, now)
        self._tunnel_move(tun, TunnelState.DOWN, now, out)
        if had_dataplane and not held:
            mine = {o.key for o in tun.dataplane_objects(self.config.route_metric)}
            out.append(DataplaneChange(remove=tuple(sorted(mine - self._objects_in_use()))))

    def probe_sources(self) -> frozenset[str]:
        """The far ends' control addresses ("host:port"): they probe this RM there
        directly until a tunnel's own socket is ready, so a driver that filters sources
        must let them in."""
        return frozenset(t.peer_probe_address for t in self.tunnels.values()
                         if t.peer_probe_address)

    # -- probes ---------------------------------------------------------------------------
    def _probe(self, tun: Tunnel, now: float, out: list[Output]) -> None:
        assert tun.outstanding is not None
        self.send(tun.peer, Probe(MsgType.PROBE, tun.token, tun.outstanding, now), now, out,
                  address=tun.peer_probe_address, tunnel_address=tun.peer_addr)

    def _send_probe(self, req: StitchRequest, tun: Tunnel, now: float,
                    out: list[Output]) -> None:
        tun.outstanding = self.rng.getrandbits(32)
        self._probe(tun, now, out)
        self.set_timer(TimerKind.PROBE, req.stitch_id, now + self.timers_cfg.probe_interval_s)
        req.rto = self._rto(tun.rtt_ms / 2 if tun.rtt_ms is not None else req.latency_ms)
        self.set_timer(TimerKind.PROBE_RETRANSMIT, req.stitch_id, now + req.rto)

    def _probe_retransmit(self, sid: str, now: float, out: list[Output]) -> None:
        """No reply yet: probe again (same nonce) within the interval, so one lost
        datagram is not a missed probe."""
        req = self.requests.get(sid)
        if req is None or req.state is not StitchState.ESTABLISHED:
            return
        tun = self.tunnels.get(req.token)
        if tun is None or tun.outstanding is None:
            return
        self._probe(tun, now, out)
        nxt = now + self._backoff(req)
        tick = self.timer_due(TimerKind.PROBE, sid)
        if tick is None or nxt < tick:
            self.set_timer(TimerKind.PROBE_RETRANSMIT, sid, nxt)

    def _probe_tick(self, sid: str, now: float, out: list[Output]) -> None:
        req = self.requests.get(sid)
        if req is None or req.state is not StitchState.ESTABLISHED:
            return
        tun = self.tunnels.get(req.token)
        if tun is None:
            return
        coming_up = tun.state is TunnelState.KEYS_EXCHANGED and now < tun.setup_until
        if tun.outstanding is not None and not coming_up:
            tun.misses += 1
            tun.record_probe(False)
            if tun.misses >= self.timers_cfg.probe_misses_down:
                self._renegotiate(req, now, out, FailureReason.TUNNEL_DOWN)
                return
            if tun.state is TunnelState.UP:
                self._tunnel_move(tun, TunnelState.DEGRADED, now, out)
        self._send_probe(req, tun, now, out)

    def _on_probe(self, sender: RouteManagerId, p: Probe, now: float,
                  out: list[Output]) -> None:
        tun = self.tunnels.get(p.token)
        if tun is None or tun.peer != sender:
            self.stat("probe_unknown_tunnel")
            return
        if p.kind is MsgType.PROBE:
            if tun.origin:
                self.stat("probe_unknown_tunnel")
                return
            # We are the target: answer, and count the tunnel as working.
            tun.last_probe_seen = now
            if tun.state in (TunnelState.KEYS_EXCHANGED, TunnelState.DEGRADED):
                self._tunnel_move(tun, TunnelState.UP, now, out)
            if self.held:  # the origin's new end works: an end held for it goes now
                self._release_held(tun.vnid, out, origin=tun.path[0])
            self.send(sender, dataclasses.replace(p, kind=MsgType.PROBE_REPLY), now, out,
                      address=tun.peer_probe_address, tunnel_address=tun.peer_addr)
            return
        if not tun.origin or p.nonce != tun.outstanding:
            self.stat("probe_stale_reply")
            return
        tun.outstanding = None
        tun.misses = 0
        tun.last_reply_at = now
        tun.record_probe(True)
        tun.rtt_ms = (now - p.sent_at) * 1000.0
        self.cancel_timer(TimerKind.PROBE_RETRANSMIT, tun.stitch_id)
        # The first answered probe proves the keys work: UP whatever the loss so far;
        # then UP <-> DEGRADED by the recent loss.
        if tun.state is TunnelState.KEYS_EXCHANGED or (
                tun.state is TunnelState.DEGRADED and
                tun.loss <= self.timers_cfg.degraded_loss):
            self._tunnel_move(tun, TunnelState.UP, now, out)
