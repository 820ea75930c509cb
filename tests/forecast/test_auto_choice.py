"""``auto`` picks one candidate for all series by pooled backtest, shrunk to its default."""

from __future__ import annotations

import numpy as np
import pytest

from vnstitch.forecast import make_forecaster
from vnstitch.forecast.base import ForecastError


def _series(seed: int = 3, walks: int = 1, periodic: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(24 * 40)
    cols = [100 + 40 * np.sin(2 * np.pi * t / 24) + rng.normal(0, 1, t.size)
            for _ in range(periodic)]
    cols += [100 + np.cumsum(rng.normal(0, 2, t.size)) for _ in range(walks)]
    return np.column_stack(cols)


def _fit(margin: float, values: np.ndarray) -> tuple[list[str], np.ndarray]:
    model = make_forecaster("auto", 24, horizon=6, switch_margin=margin).fit(values)
    names = model.candidates  # type: ignore[attr-defined]
    mae = model.candidate_mae  # type: ignore[attr-defined]
    return [names[k] for k in model.choice], mae  # type: ignore[attr-defined]


def test_one_choice_for_all_series_by_pooled_error() -> None:
    values = _series(periodic=3, walks=1)
    _, mae = _fit(1.0, values)
    pooled = mae.sum(axis=1)
    # seasonal naive wins the pooled score (three periodic series), loses on the walk
    assert pooled[0] < pooled[1] and mae[0, -1] > mae[1, -1]
    ratio = pooled[0] / pooled[1]
    assert _fit(min(1.0, ratio + 0.02), values)[0] == ["seasonal_naive"] * 4
    # control: a margin the rival does not clear keeps the default everywhere
    assert _fit(ratio - 0.02, values)[0] == ["lagreg"] * 4


def test_default_kept_when_it_wins_pooled_and_bad_margin_raises() -> None:
    names, mae = _fit(1.0, _series(periodic=1, walks=3))
    assert mae.sum(axis=1)[1] < mae.sum(axis=1)[0]
    assert names == ["lagreg"] * 4
    with pytest.raises(ForecastError, match="switch_margin"):
        make_forecaster("auto", 24, switch_margin=0.0)
