"""Discovery's advertisement interval: which withdrawals wait with the announcements."""

from __future__ import annotations

from vnstitch.model.ids import VNID, RouteManagerId
from vnstitch.protocol.discovery import Discovery
from vnstitch.protocol.messages import Entry, Update

_ME, _P, _Q, _O = (RouteManagerId(f"{i:032x}") for i in range(1, 5))
_V = VNID(7)


def _table() -> Discovery:
    d = Discovery(_ME, {_P: (1.0, 1.0), _Q: (1.0, 1.0)}, lambda _p: 1000.0, lambda: 1000.0)
    d.on_update(_Q, Update((Entry(_V, (_Q, _O), 100.0, 1.0, 1.0, ()),), (), 0, 0, 0))
    ups, held = d.flush(_P)
    assert not held and [e.path for u in ups for e in u.entries] == [(_ME, _Q, _O)]
    return d


def test_withdrawal_of_a_route_that_moved_onto_the_peer_waits_for_the_interval() -> None:
    """A cheaper route now runs through P, so P must stop using ours -- but the route P
    has from us still exists here (no black hole, no phantom): the withdrawal goes out
    with the next batch of announcements."""
    d = _table()
    d.on_update(_P, Update((Entry(_V, (_P, _O), 100.0, 1.0, 0.5, ()),), (), 0, 0, 0))
    assert d.best[(_V, _O)].via == _P
    ups, held = d.flush(_P, announce=False)
    assert ups == [] and held
    ups, held = d.flush(_P, announce=True)
    assert not held and [w for u in ups for w in u.withdrawals] == [(_V, _O)]


def test_withdrawal_of_a_route_that_is_gone_here_is_not_held() -> None:
    """The route P has from us was lost (our best now runs through P): P must not keep
    a phantom, even though we still reach the VN."""
    d = _table()
    d.on_update(_P, Update((Entry(_V, (_P, _O), 100.0, 1.0, 1.0, ()),), (), 0, 0, 0))
    d.on_update(_Q, Update((), ((_V, _O),), 0, 0, 0))
    assert d.best[(_V, _O)].via == _P
    ups, held = d.flush(_P, announce=False)
    assert not held and [w for u in ups for w in u.withdrawals] == [(_V, _O)]


def test_withdrawal_of_a_lost_route_is_never_held() -> None:
    d = _table()
    d.on_update(_Q, Update((), ((_V, _O),), 0, 0, 0))
    ups, held = d.flush(_P, announce=False)
    assert not held and [w for u in ups for w in u.withdrawals] == [(_V, _O)]
