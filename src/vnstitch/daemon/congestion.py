"""Live congestion reroute in the Route Manager: sample, detect, report, move, pin.

Theory of operation. With the Linux dataplane, every ``congestion.interval_s`` the
daemon

1. **samples** the substrate link toward each neighbour (:func:`~vnstitch.daemon.
   linksampler.sample_links`, in a worker thread): device, gateway, byte and drop
   counters. The larger of the tx and rx rates over the capacity configured for that
   neighbour is the link's utilisation;
2. **detects** with the pure link watch (:class:`~vnstitch.control.reroute.LinkWatch`:
   counters to utilisation, hysteresis); every interval a link stays congested, the core
   is told
   (:meth:`report_congestion`): it reports to the origin of every stitch crossing the
   link -- a signed CONGESTION relayed along the path, or an event when the origin is
   this RM (:mod:`vnstitch.protocol.congestion`) -- with the Mbit/s the link carries
   above ``low``, so each origin decides from its own stitch's rate (the allocation
   loop's measurement, when it runs) whether it is one to move;
3. **decides at the origin**: each :class:`~vnstitch.protocol.api.CongestionReported`
   (and each netlink link-down under a stitch originated here, seen at once through
   :class:`~vnstitch.daemon.linksampler.LinkEvents`) goes to the pure
   :class:`~vnstitch.control.reroute.StitchMover` (dampening, hold-down, return home);
   its :class:`~vnstitch.control.Renegotiate` actions -- and, every interval, its
   re-optimisation of a stitch originated here onto a cheaper route its discovery
   knows (:meth:`~vnstitch.control.reroute.StitchMover.cheaper`) -- become
   ``renegotiate_stitch``
   with ``keep_old``: a successor is queried, held and committed around the link while
   the old stitch carries the traffic. Then the move is made before the break in the
   kernel too, at both ends: the far end acks the commit only after the reconcile pass
   that put its end of the new tunnel in the kernel; this end builds its own while the
   commit is under way (keys exchanged: devices, FDB, classes, pin -- no WireGuard peer,
   no bridge port), and adds the peer once the stitch is established (its handshake
   starts at once). The new tunnel's VXLAN port stays out of the VN's bridge until the
   handshake has completed (checked every ``FOLLOW_S``); then the two bridge ports swap
   in one reconcile (the successor inherits the operator's intent), and ``DRAIN_S``
   after the kernel has shown the new port bridged (packets still on the old path
   arrive) the old stitch is released (its far end is told, its tunnel goes). Never are
   both tunnels in one bridge at once: two tunnels between the same two bridges would
   be a layer-2 loop. A successor still without a handshake ``REKEY_AFTER_S`` after its
   WireGuard device first answered has its WireGuard peer taken out of the desired state
   for one reconcile pass and put back: its first initiation was likely lost, and wireguard-go
   would retry only after 5 s, while a fresh peer initiates with its next packet. Only a
   handshake read after a reconcile pass that applied the peer as it now is moves the
   traffic (one read earlier may be the handshake of the peer about to be taken out). A
   successor that loses its tunnel before the swap is dropped and the old stitch stays;
4. **pins paths**: :meth:`overlay` adds a :class:`~vnstitch.dataplane.objects.PathPin`
   per tunnel end to the desired state, so a tunnel's outer packets leave through its
   negotiated first hop (not whatever the substrate routes prefer); a pin whose first
   hop has no link now is left out, so traffic falls back to the substrate's routes.

Every decision (monitor state changes, reports, moves, holds, returns) is kept for
``show decisions``. Nothing here raises into the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from vnstitch.control.demand import cheaper_routes
from vnstitch.control.model import DecisionRecord, LinkSample, Renegotiate
from vnstitch.control.reroute import LinkWatch, RerouteRules, StitchMover
from vnstitch.daemon.config import CongestionConfig
from vnstitch.daemon.linksampler import LinkEvents, LinkReading, bridged, sample_links
from vnstitch.daemon.periodic import PeriodicTask
from vnstitch.dataplane.base import DataplaneError
from vnstitch.dataplane.objects import (
    BridgePort,
    DataplaneObject,
    DataplaneState,
    PathPin,
    Route,
    WireguardInterface,
)
from vnstitch.dataplane.wireguard_go import last_handshake
from vnstitch.model.ids import RouteManagerId
from vnstitch.protocol.api import (
    CongestionReported,
    Output,
    StitchEstablished,
    StitchFailed,
    StitchTornDown,
    TunnelStateChanged,
)
from vnstitch.protocol.tunnels import bridge_name
from vnstitch.routing.monitor import MonitorConfig

if TYPE_CHECKING:
    from vnstitch.daemon.runtime import RouteManagerDaemon

log = logging.getLogger("vnstitch.daemon.congestion")

#: Longest wait for a successor's WireGuard handshake before traffic moves anyway: a
#: first initiation sent before the far end's device existed is retried only after
#: wireguard-go's REKEY_TIMEOUT (5 s).
LINGER_S = 6.0
#: A successor whose WireGuard device answers this long without a handshake gets a fresh
#: peer.
REKEY_AFTER_S = 0.6
#: While a move is under way its next step is checked this often (one WireGuard UAPI
#: read or one link lookup), not once per sampling interval: the handshake usually
#: completes during the pass that creates the tunnel, and each interval waited is time
#: on the congested path.
FOLLOW_S = 0.05
#: How long the old tunnel outlives the swap: its packets still queued (in the congested
#: link's queue, in a CPU-starved wireguard-go at either end) are delivered, not dropped
#: with its devices. Longer costs only the old reservation held a little longer.
DRAIN_S = 1.0


@dataclass(slots=True)
class _Move:
    """A successor established and its predecessor still up: which bridge ports to
    hold out of the VN's bridge, until when at most, and whether they swapped."""

    old: str
    new_ports: set[str]
    old_ports: set[str]
    until: float
    swapped: bool = False
    #: When the kernel first showed the new port bridged (traffic is on the new path).
    bridged_at: float | None = None
    #: The successor's WireGuard peer is left out of the desired state for one pass
    #: (then put back): wireguard-go starts the handshake afresh (module docstring).
    rekey: str = ""  # "" | "out" | "done"
    #: When the successor's WireGuard device was first seen answering.
    seen_at: float | None = None
    #: A handshake counts only once the reconciler finished more passes than this: one
    #: that applied the peer as it now is (a reading from before may be of a peer that
    #: is about to be removed, and traffic moved onto it would be lost until the end of
    #: the move).
    settle: int = 0


class CongestionRunner:
    """Drives sampling, reporting, reroute and path pins for one daemon."""

    def __init__(self, daemon: RouteManagerDaemon, config: CongestionConfig) -> None:
        self.daemon = daemon
        self.config = config
        self.watch = LinkWatch(MonitorConfig(config.high, config.low, config.raise_samples,
                                             config.clear_samples,
                                             latency_high_ms=config.probe_delay_high_ms),
                               loss_high=config.probe_loss_high)
        self.mover = StitchMover(RerouteRules(config.holddown_s, config.min_reports,
                                              config.report_window_s, config.return_after_s))
        self.decisions: deque[dict[str, Any]] = deque(maxlen=config.decisions_kept)
        self.links: dict[str, LinkReading] = {}
        self._successor_of: dict[str, str] = {}  # successor stitch id -> the one it replaces
        self._moves: dict[str, _Move] = {}  # successor stitch id -> its move in the kernel
        self._periodic = PeriodicTask("congestion", self.tick, config.interval_s,
                                      at_once=True, counters=daemon.metrics, logger=log)
        self._events: LinkEvents | None = None
        self._moving = asyncio.Lock()  # one _advance_moves at a time (tick or follower)
        self._follower: asyncio.Task[None] | None = None
        self.steps = 0

    # -- lifecycle --------------------------------------------------------------------
    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._periodic.start(loop)
        if self.daemon.config.dataplane.netns is None:  # events in our own namespace only
            self._events = LinkEvents(self._link_changed)
            try:
                self._events.start(loop)
            except OSError as exc:
                log.warning("netlink link events unavailable: %s", exc)
                self._events = None

    async def stop(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower
            self._follower = None
        if self._events is not None:
            self._events.close()
            self._events = None
        await self._periodic.stop()

    # -- one interval -----------------------------------------------------------------
    async def tick(self) -> None:
        d = self.daemon
        hosts = {str(p.rm_id): p.host for p in d.config.peers}
        links = await asyncio.to_thread(sample_links, hosts, d.config.dataplane.netns, d.now)
        if not d.store_open:
            return
        await self.react(d.now(), links)

    async def react(self, now: float, links: dict[str, LinkReading]) -> None:
        """One interval on the links just sampled: watch, report, move, pin."""
        d = self.daemon
        self.steps += 1
        pins_before = self._pin_links()
        self.links = links
        samples = []
        probes = self._probes()
        for n, r in links.items():
            peer = d.config.peer(RouteManagerId(n))
            if not r.error and peer is not None:  # unreadable: the next read is a baseline
                rtt, loss = probes.get(n, (None, None))
                samples.append(LinkSample(n, r.tx_bytes, r.tx_dropped + r.queue_drops,
                                          peer.capacity_mbps, rx_bytes=r.rx_bytes,
                                          device=r.device, at=r.at, rtt_ms=rtt, loss=loss))
        for rec in self.watch.observe(now, samples):
            self._keep(rec)
        outputs: list[Output] = []
        for n in self.watch.hot():
            # Our own link: no stitch comes back onto it while it is hot.
            self.mover.link_hot(now, (str(d.rm_id), n))
            u, peer = self.utilisation.get(n, 0.0), d.config.peer(RouteManagerId(n))
            # Above the level the link must fall under to clear (the monitor's low):
            # each origin decides from its own stitch's rate whether it is one to move.
            excess = max(0.0, u - self.config.low) * peer.capacity_mbps \
                if peer is not None else None
            outputs += d.core.report_congestion(RouteManagerId(n), u, now,
                                                excess_mbps=excess)
        if outputs:
            d.execute(outputs)
        async with self._moving:
            await self._advance_moves(now)
        acts, recs = self.mover.step(now, self._costs())
        busy = {*self._successor_of, *self._successor_of.values(), *self._moves,
                *(mv.old for mv in self._moves.values())}
        for sid, (cost, best) in cheaper_routes(d.core.stitch_views(),
                                                d.core.route_views()).items():
            if sid not in busy:  # re-optimisation (control.reroute)
                more, why = self.mover.cheaper(now, sid, cost, best)
                acts, recs = acts + more, recs + why
        for rec in recs:
            self._keep(rec)
        self._apply(acts, now)
        if self.config.pin_paths and self._pin_links() != pins_before:
            d.dataplane_changed()

    # -- events from the core and the kernel ------------------------------------------
    def on_event(self, ev: Output) -> None:
        """Called by the daemon for every core event (origin side of the reroute)."""
        now = self.daemon.now()
        if isinstance(ev, CongestionReported):
            if any(ev.stitch_id in (new, mv.old) for new, mv in self._moves.items()) \
                    or ev.stitch_id in self._successor_of.values():
                return  # already moving: the old one goes, the new one avoids the link
            acts, recs = self.mover.congested(now, ev.stitch_id, (str(ev.link[0]),
                                                                   str(ev.link[1])),
                                              ev.utilisation, str(ev.reporter),
                                              mbps=self._rate(ev.stitch_id),
                                              excess_mbps=ev.excess_mbps)
            for rec in recs:
                self._keep(rec)
            # Applied on the next turn of the loop: we are inside the daemon's _execute.
            if acts:
                asyncio.get_running_loop().call_soon(self._apply, acts, now)
        elif isinstance(ev, StitchEstablished) and ev.stitch_id in self._successor_of:
            old = self._successor_of.pop(ev.stitch_id)
            self._moves[ev.stitch_id] = _Move(old, self._ports(ev.stitch_id),
                                              self._ports(old), now + LINGER_S)
            self._keep(DecisionRecord(now, ev.stitch_id, "made", f"successor of {old} is "
                                      f"committed on {len(ev.path) - 1} hop(s), cost "
                                      f"{ev.cost:g}; the old stitch carries the traffic "
                                      "until the new tunnel's handshake", consumer=old))
            if self._follower is None or self._follower.done():
                self._follower = asyncio.get_running_loop().create_task(self._follow())
        elif isinstance(ev, StitchTornDown) and ev.stitch_id in self._moves \
                and not self._moves[ev.stitch_id].swapped:
            # The successor died before traffic moved to it: drop it, keep the old one.
            mv = self._moves.pop(ev.stitch_id)
            self.mover.failed(mv.old)
            asyncio.get_running_loop().call_soon(self._release, ev.stitch_id)
            self._keep(DecisionRecord(now, mv.old, "stay", f"successor {ev.stitch_id} lost "
                                      f"its tunnel ({ev.reason.value}) before traffic moved",
                                      consumer=mv.old))
        elif isinstance(ev, TunnelStateChanged) and ev.new == "keys_exchanged" \
                and self._successor_of:
            # A successor's keys are known: build its end now (see _prebuilt).
            asyncio.get_running_loop().call_soon(self.daemon.dataplane_changed)
        elif isinstance(ev, StitchFailed) and ev.stitch_id in self._successor_of:
            old = self._successor_of.pop(ev.stitch_id)
            self.mover.failed(old)
            self._keep(DecisionRecord(now, old, "stay", f"no path around the element: "
                                      f"{ev.detail}", consumer=old))

    def _rate(self, sid: str) -> float:
        """The stitch's last rate as this origin measured it (the allocation loop's
        tunnel counters), 0 when not measured here."""
        alloc = self.daemon.allocation
        hist = alloc.loop.controller.bank.history(sid) if alloc is not None else []
        return float(hist[-1]) if len(hist) else 0.0

    async def _follow(self) -> None:
        """Advance the moves every ``FOLLOW_S`` until none is left."""
        d = self.daemon
        while self._moves and d.store_open:
            await asyncio.sleep(FOLLOW_S)
            async with self._moving:
                try:
                    await self._advance_moves(d.now())
                except Exception:  # the tick goes on advancing them
                    log.exception("following the moves failed")
                    return

    def _release(self, sid: str) -> None:
        d = self.daemon
        if d.store_open:
            d.execute(d.core.release_stitch(sid, d.now()))

    def _ports(self, sid: str) -> set[str]:
        return {BridgePort(bridge_name(v.vnid), v.vxlan_device).key
                for v in self.daemon.core.tunnel_views() if v.stitch_id == sid}

    async def _advance_moves(self, now: float) -> None:
        """Each move, one step per call: once the successor's tunnel completed a
        WireGuard handshake (it carries traffic both ways; or after ``LINGER_S``), swap
        the bridge ports (old out, new in: one cheap pass); once the kernel has the new
        port bridged, and ``DRAIN_S`` later, release the old stitch (its tunnel goes, the
        far end is told)."""
        if not self._moves:
            return
        d = self.daemon
        wg = {v.stitch_id: v.wg_device for v in d.core.tunnel_views()}
        changed = False
        for new, mv in list(self._moves.items()):
            if mv.swapped:
                # Release the old stitch only once the kernel has the new port bridged:
                # a pass that did both would remove the old tunnel first.
                ports = [v.vxlan_device for v in d.core.tunnel_views() if v.stitch_id == new]
                # The old tunnel then stays DRAIN_S more, so packets already on the old
                # path (a congested queue, a busy wireguard-go's backlog) arrive first.
                if mv.bridged_at is None and await asyncio.to_thread(
                        bridged, ports, d.config.dataplane.netns):
                    mv.bridged_at = now
                drained = mv.bridged_at is not None \
                    and now >= mv.bridged_at + DRAIN_S
                if (drained or now >= mv.until + LINGER_S) \
                        and self._moves.pop(new, None) is mv:
                    self._release(mv.old)
                continue
            shaken, exists = 0.0, False
            if new in wg:
                with contextlib.suppress(DataplaneError):
                    shaken = await asyncio.to_thread(last_handshake, wg[new])
                    exists = True
            if self._moves.get(new) is not mv:
                continue  # the successor died meanwhile (on_event dropped it)
            if exists and mv.seen_at is None:
                mv.seen_at = now
            if mv.rekey == "out":
                # Back once a pass took the peer out of the kernel (a handshake seen
                # meanwhile is the removed peer's).
                if d.reconciler.passes > mv.settle:
                    mv.rekey, mv.settle = "done", d.reconciler.covering_pass()
                    changed = True
                continue
            if shaken <= 0 and now < mv.until and not mv.rekey and mv.seen_at is not None \
                    and now >= mv.seen_at + REKEY_AFTER_S:
                # No handshake yet: its first initiation was likely lost (sent before the
                # far end's device existed); a fresh peer initiates at once, not in 5 s.
                mv.rekey, mv.settle = "out", d.reconciler.covering_pass()
                changed = True
                continue
            if (shaken > 0 and d.reconciler.passes > mv.settle) or now >= mv.until:
                mv.swapped = changed = True
                cost = next((x.cost for x in d.store.stitches() if x.stitch_id == mv.old), 0.0)
                self.mover.moved(now, mv.old, new, cost)
                d.intents.succeeded(mv.old, new, now)
                why = ("the new tunnel completed its handshake" if shaken > 0 else
                       f"no handshake within {LINGER_S:g} s, switching anyway")
                self._keep(DecisionRecord(now, new, "moved", f"{why}: traffic moves from "
                                          f"{mv.old} (cost {cost:g}) to {new}; the old stitch "
                                          "is released next", consumer=new))
        if changed:
            d.dataplane_changed()

    def _link_changed(self, index: int, up: bool) -> None:
        if up:
            return
        gone = [n for n, r in self.links.items() if r.index == index and not r.error]
        if not gone:
            return
        d = self.daemon
        now = d.now()
        me = str(d.rm_id)
        acts: list[Renegotiate] = []
        for n in gone:
            self.links[n] = LinkReading(n, error="link down (netlink)")
            self._keep(DecisionRecord(now, n, "link-down", f"netlink: the link toward "
                                      f"{n[:8]} went down"))
            paths = {v.stitch_id: [str(x) for x in v.path]
                     for v in d.core.tunnel_views() if v.origin}
            a, r = self.mover.neighbour_down(now, me, n, paths)
            acts += a
            for rec in r:
                self._keep(rec)
        self._apply(acts, now)
        if self.config.pin_paths:
            d.dataplane_changed()

    def _apply(self, acts: list[Renegotiate], now: float) -> None:
        d = self.daemon
        for a in acts:
            avoid = frozenset({tuple(RouteManagerId(x) for x in a.around.split("-"))}) \
                if a.around else frozenset()
            try:
                new, outputs = d.core.renegotiate_stitch(a.stitch_id, avoid, d.now(),
                                                         keep_old=True)
            except Exception:
                log.exception("renegotiate %s failed", a.stitch_id)
                self.mover.failed(a.stitch_id)
                continue
            self._successor_of[new] = a.stitch_id
            d.metrics["congestion_reroutes"] += 1
            d.execute(outputs)

    # -- views and the dataplane overlay ----------------------------------------------
    @property
    def utilisation(self) -> dict[str, float]:
        """The last utilisation of each link toward a neighbour."""
        return self.watch.utilisation

    def _costs(self) -> dict[str, float]:
        return {s.stitch_id: s.cost for s in self.daemon.store.stitches() if s.status == "up"}

    def _prebuilt(self, state: DataplaneState) -> list[DataplaneObject]:
        """A successor's tunnel end while its commit is under way (keys exchanged): its
        devices, FDB entry and class, but no WireGuard peer and no bridge port. Built
        while the far end builds its own, so once the stitch is established only the peer
        goes in (its handshake starts at once: the far end listens before it acks)."""
        pending = set(self._successor_of)
        out: list[DataplaneObject] = []
        for v in self.daemon.core.tunnel_views():
            if v.stitch_id not in pending or v.state != "keys_exchanged":
                continue
            for o in self.daemon.core.tunnel_objects(v.tunnel_id):
                if isinstance(o, BridgePort | Route) or o.key in state:
                    continue
                out.append(replace(o, peers=()) if isinstance(o, WireguardInterface) else o)
        return out

    def _probes(self) -> dict[str, tuple[float | None, float | None]]:
        """Per neighbour: the worst probe round trip and loss of the tunnels (ends here)
        whose packets leave by the link toward it."""
        me = self.daemon.rm_id
        out: dict[str, tuple[float | None, float | None]] = {}
        for v in self.daemon.core.tunnel_views():
            hop = _first_hop(v.path, me) if me in v.path else None
            if hop is None or v.state not in ("up", "degraded"):
                continue
            rtt, loss = out.get(str(hop), (None, None))
            if v.rtt_ms is not None:
                rtt = v.rtt_ms if rtt is None else max(rtt, v.rtt_ms)
            out[str(hop)] = (rtt, v.loss if loss is None else max(loss, v.loss))
        return out

    def _pin_links(self) -> dict[str, tuple[str, str]]:
        return {n: (r.device, r.gateway) for n, r in self.links.items() if not r.error}

    def overlay(self, state: DataplaneState) -> DataplaneState:
        """``state`` with a PathPin for every tunnel end whose first hop has a link, and
        the tunnels of replaced stitches still lingering."""
        early = self._prebuilt(state)
        if early:
            state = state.with_objects(add=early)
        held = [k for mv in self._moves.values()
                for k in (mv.old_ports if mv.swapped else mv.new_ports) if k in state]
        if held:
            state = state.with_objects(remove=held)
        rekey = {v.wg_device for v in self.daemon.core.tunnel_views()
                 if (mv := self._moves.get(v.stitch_id)) is not None and mv.rekey == "out"}
        bare = [replace(o, peers=()) for o in state
                if isinstance(o, WireguardInterface) and o.name in rekey]
        if bare:
            state = state.with_objects(add=bare)
        if not self.config.pin_paths or not self.links:
            return state
        me = self.daemon.rm_id
        wg = {o.name: o for o in state if isinstance(o, WireguardInterface)}
        pins: list[PathPin] = []
        for v in self.daemon.core.tunnel_views():
            w = wg.get(v.wg_device)
            if w is None or me not in v.path:
                continue
            hop = _first_hop(v.path, me)
            r = self.links.get(str(hop)) if hop is not None else None
            if r is None or r.error:
                continue
            # Everything the tunnel's socket sends (the far end's address may be learned
            # from its handshake: a terminator's peer is passive) leaves by that hop.
            pins.append(PathPin(w.listen_port, "0.0.0.0/0", r.gateway, r.device, r.source))
        return state.with_objects(add=pins) if pins else state

    def _keep(self, rec: DecisionRecord) -> None:
        if rec.action in ("reroute", "return", "reoptimise", "made", "moved", "stay", "link-down"):
            log.info("congestion: %s %s: %s", rec.action, rec.subject, rec.reason)
        row = {k: v for k, v in asdict(rec).items() if v not in (None, "")}
        row["now"] = round(rec.now, 3)
        self.decisions.append(row)

    def status(self) -> dict[str, Any]:
        return {"interval_s": self.config.interval_s, "steps": self.steps,
                "moves": self.mover.moves,
                "links": {n: {"device": r.device, "error": r.error or None,
                              "utilisation": round(self.utilisation.get(n, 0.0), 3),
                              "state": self.watch.state(n).value}
                          for n, r in self.links.items()}}


def _first_hop(path: tuple[RouteManagerId, ...], me: RouteManagerId) -> RouteManagerId | None:
    """The neighbour a tunnel end ``me`` on ``path`` sends its outer packets to."""
    i = path.index(me)
    return path[i + 1] if i + 1 < len(path) else (path[i - 1] if i else None)
