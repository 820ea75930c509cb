"""The four data sources through the live PRA core, with fake time (no clock, no I/O)."""

from __future__ import annotations

import numpy as np
import pytest

from vnstitch.allocate.policy import ApplicationClass, ScalingRules
from vnstitch.allocate.providers.base import ResourceKind
from vnstitch.allocate.providers.sim import SimProvider, SimResource
from vnstitch.control.errors import ControlError
from vnstitch.control.pra import (
    PraConsumer,
    PraController,
    PraPolicy,
    PraStep,
    StitchEventKind,
    run_fit,
)
from vnstitch.forecast.profiles import load_profiles

T0 = 1_700_000_000.0 - (1_700_000_000 % 86400)  # midnight UTC
PROFILES = load_profiles()
APP = ApplicationClass("web", c_under=5.0)


def consumer(cid: str = "c", *, kind: ResourceKind = ResourceKind.COMPUTE, vnid: int = 100,
             model: str = "naive", prior: float = 10.0) -> PraConsumer:
    return PraConsumer(cid, kind, vnid, f"vn{vnid}", APP,
                       PROFILES["video_conferencing"], ScalingRules(1.0, hold_steps=0),
                       model=model, prior_level=prior)


def controller(delay: float = 0.0, **kw: object) -> PraController:
    prov = SimProvider({ResourceKind.COMPUTE: SimResource(delay_seconds=delay),
                        ResourceKind.BANDWIDTH: SimResource()})
    pol = PraPolicy(interval_s=60.0, min_fit=4, refit_every=5, blend_steps=4, **kw)  # type: ignore[arg-type]
    return PraController(pol, prov)


def run(ctl: PraController, now: float) -> PraStep:
    """One step, with every fit it asks for done at once (as a worker would)."""
    out = ctl.step(now)
    for job in out.jobs:
        ctl.fit_done(job, run_fit(job), now, 0.0)
    return out


def row(ctl: PraController, cid: str = "c") -> dict[str, object]:
    return next(r for r in ctl.rows() if r["consumer"] == cid)


def test_history_alone_after_blend() -> None:
    ctl = controller()
    ctl.add(consumer())
    for k in range(12):
        ctl.observe("c", T0 + 9 * 3600 + 60 * k, 7.0)
        run(ctl, T0 + 9 * 3600 + 60 * k)
    r = row(ctl)
    assert r["sources"] == ["history"]
    assert r["own_weight"] == 1.0
    assert r["forecast"] == pytest.approx(7.0)


def test_profile_cold_start_follows_the_diurnal_shape() -> None:
    night, day = controller(), controller()
    night.add(consumer())
    day.add(consumer())
    run(night, T0 + 3 * 3600)
    run(day, T0 + 10 * 3600)
    rn, rd = row(night), row(day)
    assert rn["sources"] == rd["sources"] == ["profile"]
    shape = PROFILES["video_conferencing"].diurnal
    assert float(rd["forecast"]) / float(rn["forecast"]) == pytest.approx(  # type: ignore[arg-type]
        shape[10] / shape[3], rel=0.05)
    assert rd["cold_start"] == "no history yet"


def _users(k: int) -> float:
    return 10.0 if k < 30 else 30.0


@pytest.mark.parametrize("with_feed", [True, False])
def test_user_feed_is_a_regressor(with_feed: bool) -> None:
    """Demand is 2 x users; the feed carries a plan (users jump to 30 at step 30): with
    it the forecast made at step 29 anticipates the jump; without it (control) not."""
    ctl = controller()
    ctl.add(consumer(model="ets", prior=20.0))
    t = [T0 + 9 * 3600 + 60 * k for k in range(40)]
    if with_feed:
        assert ctl.feed(100, [(t[k], _users(k)) for k in range(40)]) == 40
    rng = np.random.default_rng(1)
    for k in range(30):
        ctl.observe("c", t[k], 2 * _users(k) + rng.normal(0, 0.5))
        run(ctl, t[k])
    r = row(ctl)
    assert ("users" in r["sources"]) is with_feed  # type: ignore[operator]
    if with_feed:
        assert float(r["forecast"]) > 50  # type: ignore[arg-type]
    else:
        assert float(r["forecast"]) < 30  # type: ignore[arg-type]


def test_stitch_events_restart_and_become_regressors() -> None:
    ctl = controller()
    ctl.add(consumer("s1", kind=ResourceKind.BANDWIDTH))
    ctl.add(consumer("cpu"))
    for k in range(6):
        ctl.observe("s1", T0 + 60 * k, 5.0)
        ctl.observe("cpu", T0 + 60 * k, 3.0)
        run(ctl, T0 + 60 * k)
    assert row(ctl, "s1")["samples"] == 6
    rec = ctl.stitch_event(T0 + 400, 100, "stitch-1", StitchEventKind.RENEGOTIATED, "s1")
    assert rec is not None and rec.action == "cold-start"
    assert ctl.stitch_event(T0 + 401, 100, "stitch-2", StitchEventKind.NEW) is None
    out = ctl.step(T0 + 420)
    jobs = {j.consumer: j for j in out.jobs}
    # the restarted stitch forecasts from the profile; the VN's compute refits at once
    # with the stitch count and path changes as columns
    assert row(ctl, "s1")["sources"] == ["profile"]
    assert row(ctl, "s1")["samples"] == 0
    assert "s1" not in jobs
    assert jobs["cpu"].columns == ("stitches", "path_changes")
    assert jobs["cpu"].exog is not None and jobs["cpu"].exog[-1] == (0.0, 1.0)
    ctl.fit_done(jobs["cpu"], run_fit(jobs["cpu"]), T0 + 420, 0.1)
    ctl.observe("cpu", T0 + 480, 3.0)
    run(ctl, T0 + 480)
    assert "stitch_events" in row(ctl, "cpu")["sources"]  # type: ignore[operator]


def test_slow_and_failed_fits_keep_the_previous_forecast() -> None:
    ctl = controller(fit_timeout_s=100.0)
    ctl.add(consumer(model="ets"))
    t = [T0 + 60 * k for k in range(20)]
    for k in range(4):  # min_fit samples, the first fit done at once
        ctl.observe("c", t[k], 4.0)
        run(ctl, t[k])
    held = []
    slow = []
    for k in range(4, 12):  # the refit (due at k=8) never comes back
        ctl.observe("c", t[k], 4.0)
        out = ctl.step(t[k])
        held += out.jobs
        slow += [r for r in out.records if r.action == "fit-slow"]
        assert row(ctl)["sources"] == ["history"]  # the previous model still forecasts
    assert len(held) == 1  # one fit out at a time per consumer
    assert len(slow) == 1  # said once, at the first step past the timeout
    assert "previous forecast kept" in slow[0].reason
    rec = ctl.fit_failed(held[0], "worker died", t[12])
    assert rec is not None and rec.action == "fit-failed"
    assert row(ctl)["sources"] == ["history"]
    # a result for an older generation (the consumer restarted since) is dropped
    ctl.add(consumer(model="ets"))
    assert ctl.fit_done(held[0], run_fit(held[0]), t[13], 1.0) is None


def test_lead_time_sets_the_window() -> None:
    ctl = controller(delay=150.0)  # 2.5 intervals: orders now are usable in 3 steps
    ctl.add(consumer())
    run(ctl, T0 + 9 * 3600)
    assert row(ctl)["lead_steps"] == 4


def test_bad_feed_is_refused() -> None:
    ctl = controller()
    with pytest.raises(ControlError, match="not a finite time"):
        ctl.feed(100, [(T0, -1.0)])


def test_stitch_watch_turns_the_table_into_events() -> None:
    from vnstitch.control.pra_bandwidth import StitchWatch  # noqa: PLC0415

    w = StitchWatch()
    assert w.diff({"s1": (100, ("A", "T", "B"))}) == [(100, "s1", StitchEventKind.NEW)]
    assert w.diff({"s1": (100, ("A", "T", "B"))}) == []
    assert w.diff({"s1": (100, ("A", "U", "B"))}) == [
        (100, "s1", StitchEventKind.RENEGOTIATED)]
    assert w.diff({}) == [(100, "s1", StitchEventKind.RELEASED)]
