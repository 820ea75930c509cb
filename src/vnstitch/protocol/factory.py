"""The one place a Route Manager core is built: fresh, or from its saved state.

Theory of operation: both runtimes build the Stitching Protocol core here -- the
simulator (:class:`~vnstitch.sim.protocol_cores.ProtocolCoreFactory`, for each simulated
RM and again after a crash) and the daemon (``vnstitch.daemon.protocoladapter``, at
start and restart). A core is its config, identity, trust store and randomness; a
restart adds the saved state in the one on-disk form (:func:`~vnstitch.protocol.core.
encode_state` bytes, refused with :class:`~vnstitch.protocol.errors.ProtocolError` when
unreadable) and a sequence floor: every number the restarted core puts in a message to
``floor_for`` must be above both the floor and the highest one it had saved, or its
peers drop the message as a replay. Pure: no I/O, no clock; the caller passes ``rng``.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Generic, TypeVar

from vnstitch.model.ids import RouteManagerId
from vnstitch.protocol.config import CoreConfig
from vnstitch.protocol.core import RouteManagerCore, decode_state
from vnstitch.protocol.identity import Identity, TrustStore

CoreT = TypeVar("CoreT", bound=RouteManagerCore)


def last_sequence(core: RouteManagerCore) -> int:
    """The highest sequence number ``core`` has put in a message so far."""
    send_seq: dict[str, int] = core.codec.export_state().get("send_seq", {})
    return max(send_seq.values(), default=0)


class CoreFactory(Generic[CoreT]):
    """Builds cores of ``core_class`` (the real core, or a runtime's subclass of it)."""

    def __init__(self, core_class: type[CoreT]) -> None:
        self.core_class = core_class

    def build(self, config: CoreConfig, identity: Identity, trust: TrustStore,
              rng: random.Random, *, state: bytes | None = None, sequence_floor: int = 0,
              floor_for: Iterable[RouteManagerId] = ()) -> CoreT:
        """A fresh core (``state`` None) or one restored from ``state`` (module doc)."""
        if state is None:
            core = self.core_class(config, identity, trust, rng)
        else:
            core = self.core_class.from_state(config, identity, trust, rng,
                                              decode_state(state))
        floor = max(sequence_floor, last_sequence(core))
        if floor > 0:
            core.codec.restore_state({"send_seq": dict.fromkeys(floor_for, floor)})
        return core
