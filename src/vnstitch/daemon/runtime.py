"""The asyncio runtime of one Route Manager: sockets, timers, state, dataplane.

Theory of operation: :class:`RouteManagerDaemon` owns one sans-I/O core and drives it
from three sources -- UDP datagrams (an :class:`asyncio.DatagramProtocol`), the core's
own timer (``next_timer()`` scheduled with ``loop.call_at``) and local requests from the
control socket. Every call into the core returns outputs which :meth:`_execute` carries
out in a fixed order that makes a crash at any point safe:

1. record events (stitch/tunnel tables, counters: :mod:`vnstitch.daemon.eventtables`)
   and fold ``DataplaneChange`` actions into the desired dataplane state;
2. persist: the sequence-number high-water mark (reserved in blocks, so a restarted
   core never reuses a number that reached the wire), the desired state, and on any
   state-changing event the core's exported state;
3. reconcile the dataplane driver toward the desired state (observe + plan + apply;
   a no-op when converged -- that is how a restart adopts what the kernel already has,
   without flapping, and garbage-collects owned objects no longer wanted);
4. send the datagrams.

Blocking drivers and per-object backoff: step 3 goes through
:class:`~vnstitch.daemon.reconciler.Reconciler` (inline for the in-memory driver, in a
worker thread for the Linux one; datagrams of a batch that changed the dataplane wait
for the pass covering it, so a COMMIT_ACK never overtakes the WireGuard device it
announces; one failing kernel object backs off alone). The desired state is persisted
before, so a crash mid-apply is repaired by the reconcile at the next start.

Clock: the core's ``now`` is wall-clock seconds (peers compare message timestamps),
computed as ``loop.time() + offset`` with the offset fixed at start, so it is monotonic
while the daemon runs; a core timer at ``t`` is scheduled at loop time ``t - offset``.
The wall clock is injected (``clock``, default ``time.time``) and every timer runs on the
event loop's clock, so tests run daemons in virtual time on a loop whose clock jumps to
the next timer (``tests/daemon/virtualtime.py``) instead of sleeping.

Tunnel probes go inside the tunnel on a real dataplane (:mod:`vnstitch.daemon.tunnelprobe`);
with the in-memory driver, or before the tunnel's socket is ready, they go to the far
RM's control address directly.

With an ``allocation:`` config section, :class:`~vnstitch.daemon.allocation.
AllocationRunner` measures each tunnel's traffic, forecasts and sets the rate of its HTB
class as an override that :meth:`RouteManagerDaemon.desired_state` lays over the core's
objects -- the daemon's reconcile stays the only writer of the dataplane. Which such
runners exist, and their start and stop, is :mod:`vnstitch.daemon.runners`.

A peer's bytes never stop the daemon: the core reports bad datagrams as ``PeerFault``
events, which are counted; an exception escaping the core (a bug) is logged and counted
too, and the daemon keeps serving. Dataplane errors are counted and retried per object
(``show status`` lists the failing ones). Stitch requests are intents the origin keeps
converging to (:mod:`vnstitch.daemon.intents`), and datagrams pass cheap admission
checks before any signature is verified (:mod:`vnstitch.protocol.admission`).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vnstitch.daemon.config import DaemonConfig
from vnstitch.daemon.coreadapter import CoreFactory, CoreSetup, DaemonCore, local_objects
from vnstitch.daemon.errors import DaemonError
from vnstitch.daemon.eventtables import StitchOutcome, record_event
from vnstitch.daemon.heldsampler import HeldPathSampler
from vnstitch.daemon.identity import KeyInfo, load_key_file
from vnstitch.daemon.intents import IntentRunner
from vnstitch.daemon.membership import MembershipFiles
from vnstitch.daemon.qoslive import QosLive
from vnstitch.daemon.reconciler import Reconciler
from vnstitch.daemon.reload import ConfigReloader, Membership, apply_peers
from vnstitch.daemon.resizing import request_resize
from vnstitch.daemon.runners import attach_runners, start_runners, stop_runners
from vnstitch.daemon.state import StateStore
from vnstitch.daemon.transport import UdpEndpoint
from vnstitch.daemon.tunnelprobe import TunnelProbeSockets, host_port
from vnstitch.dataplane.base import DataplaneDriver
from vnstitch.dataplane.memory import MemoryDataplane
from vnstitch.dataplane.objects import DataplaneState, WireguardInterface
from vnstitch.dataplane.retry import ObjectRetry
from vnstitch.model.ids import VNID, RouteManagerId
from vnstitch.protocol.admission import Admission
from vnstitch.protocol.api import (
    DataplaneChange,
    Output,
    PeerFault,
    SendDatagram,
    StitchConstraints,
    StitchResized,
)
from vnstitch.protocol.codec import Peek
from vnstitch.protocol.intent import IntentTable

if TYPE_CHECKING:
    from vnstitch.daemon.allocation import AllocationRunner, OverrideView
    from vnstitch.daemon.congestion import CongestionRunner
    from vnstitch.daemon.endpointfollow import EndpointRunner
    from vnstitch.daemon.pra_daemon import DaemonPra

log = logging.getLogger("vnstitch.daemon")

#: Sequence numbers reserved per SQLite write (bounds the writes to one per block).
SEQUENCE_BLOCK = 1024


def tunnel_hosts(state: DataplaneState) -> frozenset[str]:
    """Far-end addresses inside our tunnels (their probes come from there)."""
    return frozenset(ip.split("/")[0] for obj in state if isinstance(obj, WireguardInterface)
                     for peer in obj.peers for ip in peer.allowed_ips)


@dataclass(slots=True)
class PeerView:
    rm_id: RouteManagerId
    address: tuple[str, int]
    received: int = 0
    faults: int = 0
    sent: int = 0
    last_heard: float | None = None  # core time of the last datagram that was not a fault
    fault_reasons: Counter[str] = field(default_factory=Counter)
    #: removed from the config by a reload (kept, so it does not look never connected)
    membership: Membership = Membership.CONFIGURED


class RouteManagerDaemon:
    """One Route Manager on an asyncio loop; build, ``await start()``, ``await stop()``."""

    def __init__(self, config: DaemonConfig, core_factory: CoreFactory,
                 driver: DataplaneDriver, *, key: KeyInfo | None = None,
                 init_state: bool = False, rng: random.Random | None = None,
                 clock: Callable[[], float] = time.time, source_filter: bool = True) -> None:
        self.config = config
        # The kernel drops datagrams from sources we do not talk to (daemon/transport.py);
        # off only for tests that feed the user-space checks from foreign addresses.
        self._source_filter = source_filter
        # Wall-clock seconds read once at start (``now`` = loop time + that offset); timers
        # follow the event loop's clock, so a test loop in virtual time drives both.
        self._wall_clock = clock
        # Jitter of retries; the OS generator unless a test injects a seeded one.
        self.rng = rng if rng is not None else random.SystemRandom()
        self.intents = IntentRunner(self, IntentTable(self.rng))
        # Cheap checks before signature verification (protocol/admission.py).
        self.admission = Admission({p.rm_id: p.address for p in config.peers})
        self._peek_header: Callable[[bytes], Peek] | None = None
        self._peek_body: Callable[[bytes, Peek], Peek] | None = None
        self._tunnel_hosts: frozenset[str] = frozenset()
        self._init_state = init_state  # initialise an empty / unusable state database
        self._core_factory = core_factory
        self.driver = driver
        self._key = key
        self.metrics: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.held_sampler = HeldPathSampler(self)  # daemon/heldsampler.py
        self._membership = MembershipFiles(config, config.timers.announce_interval_s)
        self.peers: dict[RouteManagerId, PeerView] = {
            p.rm_id: PeerView(p.rm_id, p.address) for p in config.peers}
        self._by_address = {p.address: p.rm_id for p in config.peers}
        self.routes: dict[int, tuple[str, ...] | None] = {}
        self.core_desired = DataplaneState()
        self.stopped = asyncio.Event()
        self._core: DaemonCore | None = None
        self._store: StateStore | None = None
        self._transport: UdpEndpoint | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._offset = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._persist_timer: asyncio.TimerHandle | None = None
        self._seq_high_water = 0
        self.waiters: dict[str, asyncio.Future[StitchOutcome]] = {}
        self.resize_waiters: dict[str, asyncio.Future[StitchResized]] = {}
        self._control: Any = None
        self.http: Any = None  # vnstitch.daemon.http.HttpServer when ``http:`` is configured
        self.started_at = 0.0
        # Only the in-memory driver is cheap enough to run on the loop's thread.
        self._offload = not isinstance(driver, MemoryDataplane)
        self.reconciler = Reconciler(driver, offload=self._offload, rng=self.rng,
                                     desired=self.desired_state, now=self.now,
                                     send=self._send, metrics=self.metrics)
        # Sockets on our tunnel addresses (inner /31 ends) for probes inside tunnels.
        self._probes = TunnelProbeSockets(
            config.listen_host, config.listen_port, self.on_datagram, self.metrics,
            enabled=self._offload)
        self.qos = QosLive(config.qos) if config.qos is not None else None  # qoslive.py
        # Optional runners, when configured (daemon/runners.py).
        self.allocation: AllocationRunner | None = None
        self.pra: DaemonPra | None = None
        self.rate_overrides: OverrideView | None = None  # allocation's and PRA's HTB rates
        self.congestion: CongestionRunner | None = None
        self.endpoints: EndpointRunner | None = None
        attach_runners(self)
        self.reloader = ConfigReloader(self)  # routemgr reload, SIGHUP (daemon/reload.py)

    # -- properties -----------------------------------------------------------------------

    @property
    def core(self) -> DaemonCore:
        if self._core is None:
            raise DaemonError("daemon not started")
        return self._core

    @property
    def store(self) -> StateStore:
        if self._store is None:
            raise DaemonError("daemon not started")
        return self._store

    @property
    def rm_id(self) -> RouteManagerId:
        return self.core.rm_id

    @property
    def local_address(self) -> tuple[str, int]:
        if self._transport is None:
            raise DaemonError("daemon not started")
        host, port = self._transport.get_extra_info("sockname")[:2]
        return (str(host), int(port))

    def now(self) -> float:
        assert self._loop is not None
        return self._loop.time() + self._offset

    def base_desired_state(self) -> DataplaneState:
        """What the core and the config want, before allocation overrides."""
        return self.core_desired.with_objects(add=local_objects(self.config))

    def desired_state(self) -> DataplaneState:
        base = self.base_desired_state()
        if self.congestion is not None:
            base = self.congestion.overlay(base)
        state = base if self.rate_overrides is None else self.rate_overrides.overlay(base)
        return state if self.qos is None else self.qos.overlay(state)

    @property
    def object_retry(self) -> ObjectRetry:
        return self.reconciler.retry

    @property
    def last_reconcile_ops(self) -> list[str]:
        return self.reconciler.last_ops

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        return self._loop

    @property
    def offloads_dataplane(self) -> bool:
        """True when driver calls must run in a worker thread (the Linux driver)."""
        return self._offload

    @property
    def store_open(self) -> bool:
        return self._store is not None

    def dataplane_changed(self) -> None:
        """Something outside the core changed the desired state: reconcile it."""
        if self._store is not None:
            self._reconcile()

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Restore state, adopt the dataplane, bind the UDP port, start the core."""
        self._loop = asyncio.get_running_loop()
        self._offset = self._wall_clock() - self._loop.time()
        key = self._key = self._key or load_key_file(self.config.key_file)
        store = StateStore.open(self.config.state_db, initialise=self._init_state)
        try:
            store.claim(key.rm_id)
            self._seq_high_water = store.sequence_high_water()
            now = self.now()
            self.started_at = now
            self._core = self._core_factory(CoreSetup(
                self.config, key, store.load_core_state(), self._seq_high_water, now))
            self._store = store
            self.intents.restore()
            self.core_desired = store.load_desired()
            self._tunnel_hosts = tunnel_hosts(self.core_desired)
            self._bind_peeks(self._core)
            if self.allocation is not None:  # before adopting: keep the last reservations
                self.allocation.restore()
            # Adopt what is there, remove what we own but no longer want.
            self.reconciler.open(self._loop)
            if self._offload:
                await self.reconciler.pass_off_loop()
            else:
                self.reconciler.request()
            self.metrics["adopted_ops"] = len(self.last_reconcile_ops)
            self._transport = UdpEndpoint.open(self._loop, self.config.listen_host,
                                               self.config.listen_port, self.on_datagram,
                                               self.metrics,
                                               filtered=self._source_filter)
            self._filter_sources()
        except BaseException:
            store.close()
            self._store = None
            raise
        self._probes.sync(self._loop, self.core_desired, self._transport)
        outputs = self.core.start(now)
        for vn in self.config.local_vns:
            outputs += self.core.add_local_vn(vn.virtual_network(self.config.segment), now)
        self._execute(outputs, persist=True)
        self._schedule_persist()
        self.intents.schedule()
        start_runners(self, self._loop)
        log.info("route manager %s listening on %s:%d", key.rm_id, *self.local_address)

    def reconfigure(self, config: DaemonConfig) -> None:
        """Apply a reloaded config's peers and trust (:mod:`vnstitch.daemon.reload` applies
        the other sections it may change): the core is rebuilt from its own snapshot with
        ``config`` -- a restart's path, with the socket, state database and dataplane kept
        open."""
        assert self._key is not None and self._loop is not None
        now = self.now()
        self._persist_core()
        core = self._core_factory(CoreSetup(config, self._key, self.core.snapshot(),
                                            self._seq_high_water, now))
        self.config = config
        self._core = core
        self._bind_peeks(core)
        apply_peers(self.peers, config, PeerView)
        self._by_address = {p.address: p.rm_id for p in config.peers}
        self.admission.set_neighbours({p.rm_id: p.address for p in config.peers})
        self._filter_sources()
        outputs = core.start(now)
        for vn in config.local_vns:
            outputs += core.add_local_vn(vn.virtual_network(config.segment), now)
        self._timer_at = None  # the new core's timers
        self._execute(outputs, persist=True)

    def _filter_sources(self) -> None:
        """Let the kernel pass only datagrams from neighbours (exact address), tunnel far
        ends (any port) and the far ends' control addresses (daemon/transport.py)."""
        if self._transport is None or not self._source_filter:
            return
        probe_sources: Callable[[], frozenset[str]] | None = getattr(
            self._core, "probe_sources", None)
        far = [a for a in (host_port(x) for x in (probe_sources() if probe_sources else ()))
               if a is not None]
        self._transport.allow_sources([p.address for p in self.config.peers] + far,
                                      self._tunnel_hosts)

    def udp_socket_drops(self) -> int:
        """Datagrams the kernel dropped at our UDP socket (filter or full buffer)."""
        return self._transport.socket_drops() if self._transport is not None else 0

    def _bind_peeks(self, core: DaemonCore) -> None:
        """The admission checks read headers through the current core's codec (a reload
        replaces the core, and with it the trusted keys). Cores without the two peeks
        (test doubles): no admission checks."""
        self._peek_header = getattr(core, "peek_header", None)
        self._peek_body = getattr(core, "peek_body", None)

    async def start_control(self) -> None:
        """Serve the control socket at ``config.control_socket``."""
        from vnstitch.daemon.control import ControlServer  # noqa: PLC0415  (cycle)

        self._control = ControlServer(self, self.config.control_socket)
        await self._control.start()
        if self.config.http is not None:  # HTTP API, /metrics, dashboard: daemon/http.py
            from vnstitch.daemon.http import HttpServer  # noqa: PLC0415  (cycle)

            self.http = HttpServer(self, self.config.http)
            await self.http.start()

    async def stop(self) -> None:
        """Persist the core state and close everything (dataplane objects stay)."""
        for handle in (self._timer, self._persist_timer):
            if handle is not None:
                handle.cancel()
        self.intents.stop()
        await stop_runners(self)
        if self.http is not None:
            await self.http.stop()
            self.http = None
        if self._control is not None:
            await self._control.stop()
            self._control = None
        await self.reconciler.stop()  # lets a running kernel apply finish
        self._probes.close()
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        if self._store is not None and self._core is not None:
            self._persist_core()
            self._store.close()
            self._store = None
        for fut in self.waiters.values():
            if not fut.done():
                fut.cancel()
        self.stopped.set()

    def request_stop(self) -> None:
        """Signal-safe: stop soon (used by SIGTERM/SIGINT handlers)."""
        if self._loop is not None:
            self._loop.create_task(self.stop())

    # -- inputs ---------------------------------------------------------------------------

    def on_datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        self.metrics["datagrams_received"] += 1
        self.metrics["bytes_received"] += len(data)
        peer = self.peers.get(self._by_address.get(addr, RouteManagerId("")))
        if peer is not None:
            peer.received += 1
        if self._peek_header is not None and self._peek_body is not None:
            # Header and source address first (no msgpack, no clock): a forged id from a
            # foreign address costs only this; then the body's tier and the budgets.
            head = self._peek_header(data)
            refused = self.admission.screen(head, addr, self._tunnel_hosts)
            if refused is None:
                now = self.now()
                refused = self.admission.admit(self._peek_body(data, head), addr, now,
                                               self._tunnel_hosts)
            if refused is not None:  # dropped before any signature was checked
                if peer is not None:
                    peer.faults += 1
                    peer.fault_reasons[refused] += 1
                self.faults[refused] += 1
                self.metrics["peer_faults"] += 1
                self.metrics["admission_dropped"] += 1
                return
        else:
            now = self.now()
        try:
            outputs = self.core.receive(data, addr, now)
        except Exception:  # a core bug must not take the daemon down with it
            log.exception("core raised on a datagram from %s:%d", *addr)
            self.metrics["core_exceptions"] += 1
            self.faults["core_exception"] += 1
            return
        faulted = any(isinstance(o, PeerFault) for o in outputs)
        if peer is not None:
            if faulted:
                peer.faults += 1
                peer.fault_reasons.update(o.reason for o in outputs if isinstance(o, PeerFault))
            else:
                peer.last_heard = now
        self._execute(outputs)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        try:
            now = self.now()
            outputs = self._membership.poll(self.core, now) + self.core.handle_timer(now)
        except Exception:
            log.exception("core raised in handle_timer")
            self.metrics["core_exceptions"] += 1
            outputs = []
        self._execute(outputs)

    def request_stitch(self, vnid: VNID, constraints: StitchConstraints,
                       retry_for_s: float | None = None
                       ) -> tuple[str, asyncio.Future[StitchOutcome]]:
        """Ask for a stitch: an intent kept until released (:mod:`vnstitch.daemon.intents`);
        the future resolves on the first attempt's outcome (established / failed)."""
        assert self._loop is not None
        stitch_id, outputs = self.intents.request(vnid, constraints, self.now(), retry_for_s)
        fut: asyncio.Future[StitchOutcome] = self._loop.create_future()
        self.waiters[stitch_id] = fut
        self._execute(outputs, persist=True)
        return stitch_id, fut

    def release_stitch(self, stitch_id: str) -> None:
        self._execute(self.intents.release(stitch_id), persist=True)

    def resize_stitch(self, stitch_id: str, mbps: float) -> asyncio.Future[StitchResized]:
        """Resize a stitch originated here in place (:mod:`vnstitch.daemon.resizing`)."""
        return request_resize(self, self.intents.attempt_of(stitch_id), mbps)

    def execute(self, outputs: list[Output]) -> None:
        self._execute(outputs, persist=True)

    # -- executing outputs ----------------------------------------------------------------

    def _execute(self, outputs: list[Output], *, persist: bool = False) -> None:
        sends: list[SendDatagram] = []
        dataplane_changed = False
        for out in outputs:
            if isinstance(out, SendDatagram):
                sends.append(out)
            elif isinstance(out, DataplaneChange):
                self.core_desired = self.core_desired.with_objects(add=out.add,
                                                                   remove=out.remove)
                dataplane_changed = True
            else:
                if self.congestion is not None:
                    self.congestion.on_event(out)
                persist = record_event(self, out) or persist
        persist = persist or dataplane_changed
        with self.store.transaction():  # one commit: desired state and core state agree
            if sends:
                self._reserve_sequence()
            if dataplane_changed:
                self.store.save_desired(self.core_desired)
            if persist:
                self._persist_core()
        if dataplane_changed:
            self._tunnel_hosts = tunnel_hosts(self.core_desired)
            self._filter_sources()
            self._reconcile()
            if self._loop is not None:
                self._probes.sync(self._loop, self.core_desired, self._transport)
        if not self.reconciler.defer(sends, dataplane_changed):  # else sent after its pass
            for send in sends:
                self._send(send)
        self._schedule_timer()

    def _reserve_sequence(self) -> None:
        used = self.core.last_sequence
        if used > self._seq_high_water:
            self._seq_high_water = self.store.reserve_sequence(used, SEQUENCE_BLOCK)
            self.metrics["sequence_reservations"] += 1

    def _persist_core(self) -> None:
        self.store.save_core_state(self.core.snapshot(), self.now())
        self.metrics["core_state_saves"] += 1

    def _reconcile(self) -> None:
        if self._store is not None:
            self.reconciler.request()

    def _send(self, send: SendDatagram) -> None:
        if self._transport is None:
            return
        if send.tunnel_address and self._probes.send(send):
            return
        peer = self.peers.get(send.destination)
        if peer is not None:
            address = peer.address
            peer.sent += 1
        elif (far := host_port(send.address)) is not None:
            address = far  # a tunnel probe to the far end of a tunnel (not a neighbour)
            self.metrics["probes_sent_far"] += 1
        else:
            self.metrics["send_unknown_peer"] += 1
            return
        self._transport.sendto(send.payload, address)
        self.metrics["datagrams_sent"] += 1
        self.metrics["bytes_sent"] += len(send.payload)

    # -- timers ---------------------------------------------------------------------------

    def _schedule_timer(self) -> None:
        if self._loop is None or self._store is None:
            return
        at = self.core.next_timer()
        if at == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = at
        if at is not None:
            self._timer = self._loop.call_at(at - self._offset, self._on_timer)

    def _schedule_persist(self) -> None:
        assert self._loop is not None

        def tick() -> None:
            if self._store is not None:
                self._persist_core()
                self._schedule_persist()

        self._persist_timer = self._loop.call_later(self.config.timers.persist_interval_s, tick)


async def run_daemon(daemon: RouteManagerDaemon) -> None:
    """Start ``daemon`` with its control socket and serve until SIGTERM/SIGINT."""
    import signal  # noqa: PLC0415

    loop = asyncio.get_running_loop()
    await daemon.start()
    try:
        await daemon.start_control()
    except BaseException:
        await daemon.stop()
        raise
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, daemon.request_stop)
    loop.add_signal_handler(signal.SIGHUP, daemon.reloader.on_signal)
    try:
        await daemon.stopped.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)

