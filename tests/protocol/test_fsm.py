"""Every state machine: each allowed transition works, every other one raises."""

from __future__ import annotations

import enum
from collections.abc import Mapping

import pytest

from vnstitch.protocol.errors import InvalidTransitionError
from vnstitch.protocol.fsm import Machine
from vnstitch.protocol.negotiation import STITCH_TRANSITIONS, StitchState
from vnstitch.protocol.reservation import RESERVATION_TRANSITIONS, ReservationState
from vnstitch.protocol.tunnels import TUNNEL_TRANSITIONS, TunnelState

TABLES: list[tuple[type[enum.Enum], Mapping[enum.Enum, frozenset[enum.Enum]]]] = [
    (StitchState, STITCH_TRANSITIONS),  # type: ignore[list-item]
    (ReservationState, RESERVATION_TRANSITIONS),  # type: ignore[list-item]
    (TunnelState, TUNNEL_TRANSITIONS),  # type: ignore[list-item]
]


@pytest.mark.parametrize(("states", "table"), TABLES)
def test_every_transition(states: type[enum.Enum],
                          table: Mapping[enum.Enum, frozenset[enum.Enum]]) -> None:
    assert set(table) == set(states)  # every state has a row
    for old in states:
        for new in states:
            m: Machine[enum.Enum] = Machine("t", table, old)
            if new in table[old]:
                assert m.move(new) is old and m.state is new
            else:
                with pytest.raises(InvalidTransitionError):
                    m.move(new)
                assert m.state is old
