"""How wide the live PRA's levels are: the history's own spread before the first fit
comes back, and a fitted model's calibration set before live errors accrue (fake time)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from vnstitch.allocate.policy import ApplicationClass, ScalingRules
from vnstitch.allocate.providers.base import ResourceKind
from vnstitch.allocate.providers.sim import SimProvider, SimResource
from vnstitch.control.pra import PraConsumer, PraController, PraPolicy, run_fit
from vnstitch.forecast.profiles import load_profiles

T0 = 1_700_000_000.0 - (1_700_000_000 % 86400) + 10 * 3600
PROFILE = load_profiles()["video_conferencing"]  # burstiness well above a calm series'


def controller(lead_s: float = 120.0, calibrated: bool = True) -> PraController:
    prov = SimProvider({ResourceKind.COMPUTE: SimResource(delay_seconds=lead_s)})
    return PraController(PraPolicy(interval_s=60.0, min_fit=8, refit_every=50,
                                   blend_steps=8, error_window=60,
                                   calibrated_levels=calibrated), prov)


def consumer() -> PraConsumer:
    return PraConsumer("c", ResourceKind.COMPUTE, 100, "vn", ApplicationClass("web", 5.0),
                       PROFILE, ScalingRules(0.1, hold_steps=0), model="naive",
                       prior_level=10.0)


@pytest.mark.parametrize(("samples", "calibrated"), [(4, True), (40, True), (40, False)])
def test_before_the_first_fit_history_sets_the_spread(samples: int, calibrated: bool) -> None:
    ctl = controller(calibrated=calibrated)
    ctl.add(consumer())
    for k in range(samples):  # a calm series: 10 +- 0.1
        ctl.observe("c", T0 + 60 * k, 10.0 + 0.1 * (k % 2))
    out = ctl.step(T0 + 60 * samples)  # the fit it asks for is not back yet
    assert bool(out.jobs) == (samples >= 8)
    r = out.rows[0]
    if samples < 8:  # less than min_fit: the profile's burstiness is all there is
        assert r["amount"] > 12.0  # about 10 x (1 + z(0.83) x 0.35)
    elif not calibrated:  # the default: the profile's burstiness until the first fit
        assert r["amount"] > 12.0
    else:  # the series' own window rises (0.1) set the level
        assert r["amount"] <= 10.3
    assert "profile" in r["sources"] and "history" in r["sources"]


def test_a_fit_brings_its_window_errors() -> None:
    ctl = controller()
    ctl.add(consumer())
    rng = np.random.default_rng(1)
    values = 10.0 + rng.normal(0, 1.0, 200)
    for k, v in enumerate(values):
        ctl.observe("c", T0 + 60 * k, float(v))
    job = ctl.step(T0 + 60 * 200).jobs[0]
    fitted = run_fit(job)
    h = job.horizon
    assert h == 3  # lead 120 s at 60 s: horizons 1..3
    # naive: the forecast is the last value; the window error is the next h's highest
    # minus it, over the last `calibration` origins whose window is known
    origins = range(200 - h - job.calibration + 1, 200 - h + 1)
    want = [max(values[o:o + h]) - values[o - 1] for o in origins]
    np.testing.assert_allclose(fitted.window_errors, want)
    assert len(fitted.window_errors) == job.calibration == 60


def test_few_live_errors_do_not_set_the_level_alone() -> None:
    levels = {}
    for calibrated in (True, False):
        ctl = controller()
        ctl.add(consumer())
        rng = np.random.default_rng(2)
        for k, v in enumerate(10.0 + rng.normal(0, 0.5, 100)):
            ctl.observe("c", T0 + 60 * k, float(v))
        out = ctl.step(T0 + 6000)
        fitted = run_fit(out.jobs[0])
        if not calibrated:  # control: no calibration set, as before a fit brought one
            fitted = type(fitted)(fitted.model, ())
        ctl.fit_done(out.jobs[0], fitted, T0 + 6000, 0.0)
        t = T0 + 6060
        for k, v in enumerate([10.0, 10.0, 10.0, 25.0, 10.0, 10.0, 10.0]):  # one outlier
            ctl.observe("c", t + 60 * k, v)
            last = ctl.step(t + 60 * k)
        levels[calibrated] = float(last.rows[0]["amount"])
    # two or three live window errors, one of them the outlier: uncalibrated, the
    # highest error is the level; with the tail's 60 errors it is the 0.83 quantile
    assert levels[False] >= 24.0
    assert levels[True] < 13.0


def _replay_after_fit(policy: PraPolicy, tail: list[float], model: str = "naive"
                      ) -> list[float]:
    """A model fitted on 100 calm values, then ``tail``: the amount at each step."""
    ctl = PraController(policy, SimProvider({ResourceKind.COMPUTE:
                                             SimResource(delay_seconds=120.0)}))
    ctl.add(dataclasses.replace(consumer(), model=model))
    rng = np.random.default_rng(2)
    for k, v in enumerate(10.0 + rng.normal(0, 0.5, 100)):
        ctl.observe("c", T0 + 60 * k, float(v))
    out = ctl.step(T0 + 6000)
    ctl.fit_done(out.jobs[0], run_fit(out.jobs[0]), T0 + 6000, 0.0)
    amounts = []
    for k, v in enumerate(tail):
        ctl.observe("c", T0 + 6060 + 60 * k, v)
        amounts.append(float(ctl.step(T0 + 6060 + 60 * k).rows[0]["amount"]))
    return amounts


def _policy(**kw: object) -> PraPolicy:
    return PraPolicy(interval_s=60.0, min_fit=8, refit_every=500, blend_steps=8,
                     error_window=60, **kw)  # type: ignore[arg-type]


def test_guarded_levels_use_the_fit_errors_only_after_enough_live_ones() -> None:
    tail = [10.0, 10.0, 10.0, 25.0] + [10.0] * 30  # one outlier, then calm
    guarded = _replay_after_fit(_policy(guard_errors=20, guard_floor=False), tail)
    default = _replay_after_fit(_policy(), tail)
    calibrated = _replay_after_fit(_policy(calibrated_levels=True), tail)
    # a few live errors, the outlier among them: as the default, the largest sets the
    # level (control: calibrated_levels pools the fit's errors at once)
    assert guarded[6] == default[6] >= 24.0
    assert calibrated[6] < 13.0
    # 20 live errors on: the fit's errors join the set, the level comes down
    assert guarded[-1] < 13.0


def test_guarded_floor_holds_the_prior_on_a_rise() -> None:
    tail = [10.0] * 25 + [14.0]  # a rise once 20 live errors are in
    # ETS smooths the jump away; the prior (recent level x the profile's burstiness)
    floor = _replay_after_fit(_policy(guard_errors=20, guard_floor=True), tail, "ets")
    plain = _replay_after_fit(_policy(guard_errors=20, guard_floor=False), tail, "ets")
    assert floor[:-1] == plain[:-1]  # no rise: the floor does nothing
    assert floor[-1] > plain[-1]  # the rise: the prior's level holds
