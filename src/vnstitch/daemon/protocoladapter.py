"""Thin adapter: the daemon's :class:`CoreSetup` -> the real Stitching Protocol core.

Theory of operation: maps the daemon config onto ``vnstitch.protocol``'s
:class:`CoreConfig` / :class:`Timers`, the key file onto an :class:`Identity`, the trust
section onto a :class:`TrustStore`, and the saved state (JSON of ``export_state()``)
back through the one :class:`~vnstitch.protocol.factory.CoreFactory` (the simulator's
too). Randomness (WireGuard keys, tokens, jitter)
comes from :class:`random.SystemRandom`, i.e. the OS CSPRNG: these are live secrets.

Sequence numbers: the core numbers messages per recipient. The daemon's persisted
high-water mark covers the highest number used toward *any* peer, so on start every
recipient's counter is raised to at least that mark (on top of the core's own restart
gap); ``last_sequence`` reports the highest number in use so the daemon can reserve the
next block before sending. The floor applies to every trusted RM, not only neighbours:
tunnel probes go end to end to the far end of each tunnel.

Tunnel probes: the core tells the far end of each tunnel where it takes probes
(``probe_address``): this daemon's control port, at the listen address (or, when that is
a wildcard, the WireGuard endpoint address). On a real dataplane the daemon sends probes
inside the tunnel to that port at the far end's tunnel address
(:mod:`vnstitch.daemon.tunnelprobe`), so a dead wireguard-go is a dead tunnel; with the
in-memory driver they go to the probe address itself.

Leases: a reservation lives ``max(hold_time_s, probe_interval_s x (probe_misses + 1))``
after its neighbours last confirmed it -- at least the hold time, and as long as the
probe bound, so a Route Manager restarted within it keeps its stitches.
"""

from __future__ import annotations

import ipaddress
import json
import random
from collections.abc import Callable

from vnstitch.daemon.coreadapter import CoreSetup
from vnstitch.daemon.errors import StateError
from vnstitch.daemon.membership import access_policies, load_grants
from vnstitch.protocol.api import PeerLink
from vnstitch.protocol.codec import Peek
from vnstitch.protocol.config import CoreConfig, Timers
from vnstitch.protocol.core import RouteManagerCore
from vnstitch.protocol.errors import ProtocolError
from vnstitch.protocol.factory import CoreFactory, last_sequence
from vnstitch.protocol.identity import Identity, TrustStore

#: How long a new kernel tunnel end may take to answer its first probe (seconds).
TUNNEL_SETUP_S = 5.0


class ProtocolCore(RouteManagerCore):
    """The real core plus the two things the daemon needs: bytes state, last sequence."""

    def snapshot(self) -> bytes:
        return json.dumps(self.export_state(), sort_keys=True).encode()

    def peek(self, datagram: bytes) -> Peek:
        """An unverified look at a datagram, for admission control (codec.peek)."""
        return self.codec.peek(datagram)

    # The two steps of :meth:`peek`, as the codec's own bound methods: they run for
    # every datagram of a flood, so without a delegating call in between.
    @property
    def peek_header(self) -> Callable[[bytes], Peek]:
        return self.codec.peek_header

    @property
    def peek_body(self) -> Callable[[bytes, Peek], Peek]:
        return self.codec.peek_body

    @property
    def last_sequence(self) -> int:
        return last_sequence(self)


def core_config(setup: CoreSetup) -> CoreConfig:
    cfg = setup.config
    t = cfg.timers
    lease_s = max(t.hold_time_s, t.probe_interval_s * (t.probe_misses + 1))
    timers = Timers(
        announce_interval_s=t.announce_interval_s,
        hold_intervals=max(1, round(t.hold_time_s / t.announce_interval_s)),
        lease_intervals=lease_s / t.announce_interval_s,
        query_timeout_s=t.query_timeout_s,
        hold_timeout_s=t.reservation_hold_s,
        probe_interval_s=t.probe_interval_s,
        probe_misses_down=t.probe_misses,
    )
    peers = tuple(PeerLink(p.rm_id, p.capacity_mbps, p.latency_ms, p.cost) for p in cfg.peers)
    host = cfg.listen_host
    if _unspecified(host):
        host = cfg.dataplane.wireguard.endpoint
    probe_host = f"[{host}]" if ":" in host else host
    return CoreConfig(
        segment=cfg.segment, peers=peers, local_vns=(),
        underlay_address=cfg.dataplane.wireguard.endpoint,
        wg_port_base=cfg.dataplane.wireguard.port, timers=timers,
        probe_address=f"{probe_host}:{cfg.listen_port}",
        access=access_policies(cfg), grants=load_grants(cfg), one_end_per_vnid=True,
        # Only a kernel dataplane has the counters that show a held path's traffic
        # (daemon/heldsampler.py); the in-memory one would hold blind.
        hold_datapath=cfg.dataplane.driver != "memory",
        # A kernel tunnel end needs seconds at load to come up (wireguard-go, handshake).
        tunnel_setup_s=TUNNEL_SETUP_S if cfg.dataplane.driver != "memory" else 0.0)


def _unspecified(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:  # a host name
        return False


def build(setup: CoreSetup) -> ProtocolCore:
    rms = {*setup.config.trust, *(p.rm_id for p in setup.config.peers)}
    try:
        return CoreFactory(ProtocolCore).build(
            core_config(setup), Identity(setup.key.private_key_raw),
            TrustStore(setup.config.trust.values()), random.SystemRandom(),
            state=setup.exported_state, sequence_floor=setup.sequence_floor, floor_for=rms)
    except ProtocolError as exc:  # unreadable saved state
        raise StateError(str(exc)) from None
