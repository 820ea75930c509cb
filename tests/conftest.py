"""Shared fixtures: where the real data lives, and skipping when it is absent."""

from __future__ import annotations

from pathlib import Path

import pytest

from vnstitch.datapath import shared_data_dir


@pytest.fixture(scope="session")
def data_dir() -> Path:
    d = shared_data_dir(Path(__file__).parent)
    if d is None:
        pytest.skip("real data folder absent (set VNSTITCH_DATA or put shared/data beside repo)")
    return d
