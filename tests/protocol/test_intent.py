"""Stitch intents (pure): retries with capped backoff and jitter, deadlines, refusals."""

from __future__ import annotations

import random

import pytest

from vnstitch.protocol.api import FailureReason, StitchConstraints
from vnstitch.protocol.intent import (
    ATTEMPT_TIMEOUT_S,
    CAPACITY,
    TRANSIENT,
    AbandonAttempt,
    Intent,
    IntentError,
    IntentState,
    IntentTable,
    StartAttempt,
)

C = StitchConstraints(10.0)


def test_transient_failures_retry_forever_with_capped_jittered_backoff() -> None:
    table = IntentTable(random.Random(3))
    table.add("s1", 100, C, now=0.0)
    now, delays = 0.0, []
    for n in range(20):
        i = table.failed(table.intents["s1"].attempt_id, FailureReason.PEER_LOST, "", now)
        assert i is not None and i.state is IntentState.WAITING
        assert i.next_attempt_at is not None
        delays.append(i.next_attempt_at - now)
        assert table.poll(now) == []  # not yet due
        now = i.next_attempt_at
        assert table.poll(now) == [StartAttempt("s1", 100, C)]
        table.started("s1", f"a{n}", now)
    assert all(d <= TRANSIENT.cap_s for d in delays)
    assert delays[0] <= TRANSIENT.base_s and max(delays) > TRANSIENT.base_s
    assert len(set(delays)) > 10  # jittered, not lock step
    assert table.intents["s1"].attempts == 21


def test_same_seed_same_schedule() -> None:
    def schedule(seed: int) -> list[float]:
        t = IntentTable(random.Random(seed))
        t.add("s", 1, C, 0.0)
        out = []
        for n in range(5):
            i = t.failed(t.intents["s"].attempt_id, FailureReason.TIMEOUT, "", 0.0)
            assert i is not None and i.next_attempt_at is not None
            out.append(i.next_attempt_at)
            t.started("s", f"x{n}", 0.0)
        return out
    assert schedule(1) == schedule(1) and schedule(1) != schedule(2)


def test_capacity_refusals_retry_until_the_deadline_then_give_up() -> None:
    forever = IntentTable(random.Random(1))
    forever.add("f", 100, C, 0.0)  # no deadline: keep trying
    bounded = IntentTable(random.Random(1))
    bounded.add("b", 100, C, 0.0, deadline=20.0)
    now = 0.0
    for n in range(12):
        f = forever.failed(forever.intents["f"].attempt_id, FailureReason.BANDWIDTH, "", now)
        assert f is not None and f.state is IntentState.WAITING
        assert f.next_attempt_at is not None and f.next_attempt_at - now <= CAPACITY.cap_s
        b = bounded.failed(bounded.intents["b"].attempt_id, FailureReason.BANDWIDTH, "", now)
        assert b is not None
        if b.state is IntentState.GAVE_UP:
            break
        now = f.next_attempt_at
        forever.started("f", f"f{n}", now)
        bounded.started("b", f"b{n}", now)
    assert bounded.intents["b"].state is IntentState.GAVE_UP
    assert "deadline" in (bounded.intents["b"].last_failure or "")
    assert forever.intents["f"].live
    assert bounded.poll(1e9) == [] and bounded.next_timer() is None


def test_local_refusal_gives_up_and_release_ignores_later_events() -> None:
    table = IntentTable(random.Random(1))
    table.add("s", 100, C, 0.0)
    i = table.failed("s", FailureReason.LOCAL, "VNID not here", 0.0)
    assert i is not None and i.state is IntentState.GAVE_UP and table.poll(99.0) == []
    table.add("n", 300, C, 0.0)
    i = table.failed("n", FailureReason.NOT_AUTHORISED, "access policy", 0.0)
    assert i is not None and i.state is IntentState.GAVE_UP
    assert table.refusal(300) is None  # given up: a new request may try again
    table.add("t", 200, C, 0.0)
    assert table.release("t") == "t"
    assert table.failed("t", FailureReason.PEER_LOST, "", 1.0) is None  # released: ignored


def test_one_live_intent_per_vnid() -> None:
    table = IntentTable(random.Random(1))
    assert table.refusal(100) is None
    table.add("s", 100, C, 0.0)
    assert "already has stitch s" in (table.refusal(100) or "")
    assert table.refusal(200) is None
    table.release("s")
    assert table.refusal(100) is None  # released: a new one may start


def test_hung_attempt_is_abandoned_and_retried() -> None:
    table = IntentTable(random.Random(1))
    table.add("s", 100, C, 0.0)
    assert table.next_timer() == ATTEMPT_TIMEOUT_S
    assert table.poll(ATTEMPT_TIMEOUT_S) == [AbandonAttempt("s", "s")]
    table.abandoned("s", ATTEMPT_TIMEOUT_S)
    assert table.intents["s"].state is IntentState.WAITING


def test_renegotiation_and_reestablish() -> None:
    table = IntentTable(random.Random(1))
    table.add("s", 100, C, 0.0)
    table.established("s")
    assert table.renegotiating("s", 5.0) is not None
    assert table.intents["s"].state.value == "negotiating"
    table.established("s")
    assert table.intents["s"].state.value == "up" and table.intents["s"].failures == 0


def test_invalid_transition_raises_and_json_round_trips() -> None:
    table = IntentTable(random.Random(1))
    i = table.add("s", 100, C, 0.0, deadline=50.0)
    assert Intent.from_json(i.to_json()) == i
    table.release("s")
    with pytest.raises(IntentError):
        i.move(IntentState.UP)
    bad = {**i.to_json(), "bandwidth_mbps": float("inf")}
    with pytest.raises(IntentError, match="non-finite"):
        Intent.from_json(bad)
    with pytest.raises(IntentError):
        Intent.from_json({"intent_id": "x"})
