"""Adapter: the real Stitching Protocol core as a :class:`~vnstitch.sim.cores.CoreFactory`.

Theory of operation: identities are Ed25519 keys drawn from a generator seeded by the
scenario seed, one per segment in the order the engine asks (segment order), so a seed
always gives the same RM ids. Every core trusts every other core's key (one shared
trust store: the simulated operator enrolled all of them). The core's timers come from
:class:`~vnstitch.protocol.config.Timers` with the scenario's ``protocol:`` overrides;
an unknown or mistyped override is a scenario error naming ``protocol.<field>``. A crash
keeps exactly what ``RouteManagerCore.export_state()`` returns -- as the bytes the daemon
stores (:func:`~vnstitch.protocol.core.encode_state`, one format for both runtimes) --
and a restart rebuilds the core from them; both builds go through the one
:class:`~vnstitch.protocol.factory.CoreFactory` the daemon uses too.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from vnstitch.model.ids import VNID, RouteManagerId, SegmentId
from vnstitch.protocol.api import PeerLink, RouteManagerCoreAPI
from vnstitch.protocol.config import CoreConfig, Timers
from vnstitch.protocol.core import RouteManagerCore, encode_state
from vnstitch.protocol.factory import CoreFactory
from vnstitch.protocol.grants import AccessPolicy
from vnstitch.protocol.identity import Identity, TrustStore
from vnstitch.sim.cores import LinkUsage
from vnstitch.sim.errors import ScenarioError


def timers_with(overrides: Mapping[str, float], source: str = "scenario") -> Timers:
    """:class:`Timers` defaults with ``overrides`` applied (a scenario's ``protocol:``
    section, checked by its schema: :data:`vnstitch.sim.scenario_model.ProtocolSection`)."""
    changes: dict[str, Any] = dict(overrides)  # int timers come as ints from the schema
    try:
        return dataclasses.replace(Timers(), **changes)
    except TypeError as exc:  # a mapping that did not come through the schema
        raise ScenarioError(source, "protocol", str(exc)) from None


class ProtocolCoreFactory:
    """Builds :class:`RouteManagerCore` instances for one simulation."""

    def __init__(self, seed: int, overrides: Mapping[str, float] | None = None, *,
                 source: str = "scenario") -> None:
        self.timers = timers_with(overrides or {}, source)
        self._key_rng = random.Random(f"vnstitch-sim-identities:{seed}")
        self._identities: dict[SegmentId, Identity] = {}
        self._order: dict[SegmentId, int] = {}
        self._trust: TrustStore | None = None
        #: Per segment, the access policy of each VN it hosts (none: open); asked when a
        #: core is built, after every identity exists.
        self.access: Callable[[SegmentId], Mapping[VNID, AccessPolicy]] = lambda _s: {}

    @property
    def announce_interval_s(self) -> float:
        return self.timers.announce_interval_s

    @property
    def hold_time_s(self) -> float:
        return self.timers.hold_time_s

    @property
    def repair_bound_s(self) -> float:
        """How long a stitch takes to be re-negotiated after its path breaks: a dead
        tunnel is noticed after ``probe_misses_down`` missed probes (within
        ``probe_misses_down + 1`` probe intervals); a dead or cut-off transit RM when the
        reservation's lease (``lease_s`` since the last confirmation, which precedes the
        failure) and its last call (``2 x retransmit_max_s``) run out at its neighbours
        on the path, which tell the origin at once; then one query (at most
        ``query_timeout_s``) and a hold/commit round (at most ``hold_timeout_s``)."""
        t = self.timers
        detect = max(t.probe_interval_s * (t.probe_misses_down + 1),
                     t.lease_s + 2 * t.retransmit_max_s)
        return detect + t.query_timeout_s + t.hold_timeout_s

    def identity(self, segment: SegmentId) -> RouteManagerId:
        if segment not in self._identities:
            self._order[segment] = len(self._order)
            self._identities[segment] = Identity.from_rng(self._key_rng)
            self._trust = None
        return self._identities[segment].rm_id

    def _trust_store(self) -> TrustStore:
        if self._trust is None:
            self._trust = TrustStore(i.public_bytes for i in self._identities.values())
        return self._trust

    def _config(self, segment: SegmentId, peers: Sequence[PeerLink]) -> CoreConfig:
        k = self._order[segment]
        return CoreConfig(segment, tuple(peers), (),
                          underlay_address=f"100.{64 + (k >> 16)}.{(k >> 8) & 255}.{k & 255}",
                          timers=self.timers, access=self.access(segment))

    def build(self, segment: SegmentId, peers: Sequence[PeerLink],
              seed: int) -> RouteManagerCoreAPI:
        self.identity(segment)
        return CoreFactory(RouteManagerCore).build(
            self._config(segment, peers), self._identities[segment], self._trust_store(),
            random.Random(seed))

    def export_state(self, core: RouteManagerCoreAPI) -> object:
        assert isinstance(core, RouteManagerCore)
        return encode_state(core.export_state())

    def restore(self, segment: SegmentId, peers: Sequence[PeerLink], state: object,
                seed: int) -> RouteManagerCoreAPI:
        assert isinstance(state, bytes)
        return CoreFactory(RouteManagerCore).build(
            self._config(segment, peers), self._identities[segment], self._trust_store(),
            random.Random(seed), state=state)

    def link_usage(self, core: RouteManagerCoreAPI) -> Sequence[LinkUsage]:
        assert isinstance(core, RouteManagerCore)
        return [LinkUsage(u.peer, u.reserved_mbps, u.capacity_mbps)
                for u in core.link_usage_views()]

    def tunnel_states(self, core: RouteManagerCoreAPI) -> Mapping[str, str]:
        assert isinstance(core, RouteManagerCore)
        return {t.stitch_id: t.state for t in core.tunnel_views() if t.origin}
