"""``auto`` picks per series on the training window, preferring its nesting default."""

from __future__ import annotations

import numpy as np
import pytest

from vnstitch.forecast import make_forecaster
from vnstitch.forecast.base import ForecastError


def _series(seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(24 * 40)
    periodic = 100 + 40 * np.sin(2 * np.pi * t / 24) + rng.normal(0, 1, t.size)
    walk = 100 + np.cumsum(rng.normal(0, 2, t.size))
    return np.column_stack([periodic, walk])


def _fit(margin: float) -> tuple[list[str], np.ndarray]:
    model = make_forecaster("auto", 24, horizon=6, switch_margin=margin).fit(_series())
    names = model.candidates  # type: ignore[attr-defined]
    mae = model.candidate_mae  # type: ignore[attr-defined]
    return [names[k] for k in model.choice], mae  # type: ignore[attr-defined]


def test_rival_must_beat_the_default_by_the_margin() -> None:
    _, mae = _fit(1.0)
    # on the periodic series seasonal naive is better than lagreg, on the walk worse
    ratio = mae[0, 0] / mae[1, 0]
    assert ratio < 0.95
    assert mae[0, 1] > mae[1, 1]
    assert _fit(min(1.0, ratio + 0.05))[0] == ["seasonal_naive", "lagreg"]
    assert _fit(ratio - 0.05)[0] == ["lagreg", "lagreg"]


def test_margin_one_is_plain_argmin_and_bad_margin_raises() -> None:
    model = make_forecaster("auto", 24, horizon=6, switch_margin=1.0).fit(_series())
    mae = model.candidate_mae  # type: ignore[attr-defined]
    assert list(model.choice) == list(np.argmin(mae, axis=0))  # type: ignore[attr-defined]
    with pytest.raises(ForecastError, match="switch_margin"):
        make_forecaster("auto", 24, switch_margin=0.0)
