"""Shared fixtures: where the real data lives, and skipping when it is absent; the
Hypothesis profiles (``default``; ``ci-long``: full example counts, see tests/examples.py),
chosen with ``HYPOTHESIS_PROFILE``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

from tests.examples import LONG_PROFILE
from vnstitch.datapath import shared_data_dir

settings.register_profile(LONG_PROFILE, max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    d = shared_data_dir(Path(__file__).parent)
    if d is None:
        pytest.skip("real data folder absent (set VNSTITCH_DATA or put shared/data beside repo)")
    return d
