"""Shared fixtures: where the real data lives, and skipping when it is absent; the
Hypothesis profiles (``default``; ``ci-long``: full example counts, see tests/examples.py),
chosen with ``HYPOTHESIS_PROFILE``; the slot every root test holds on xdist workers
(tests/rootutil.py: ``alone`` tests run with no other root test beside them)."""

from __future__ import annotations

import os
from collections.abc import Generator
from pathlib import Path

import pytest
from hypothesis import settings

from tests.examples import LONG_PROFILE
from tests.rootutil import root_slot
from vnstitch.datapath import shared_data_dir

settings.register_profile(LONG_PROFILE, max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    d = shared_data_dir(Path(__file__).parent)
    if d is None:
        pytest.skip("real data folder absent (set VNSTITCH_DATA or put shared/data beside repo)")
    return d


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None
                            ) -> Generator[None, object, object]:
    """On xdist workers, a root test holds the run's slot through setup, call and
    teardown. This wrapper is the outermost, so the wait for the slot is not counted by
    pytest-timeout nor in ``--durations``."""
    basetemp = item.config.option.basetemp
    if item.get_closest_marker("root") is None or "PYTEST_XDIST_WORKER" not in os.environ \
            or not basetemp:
        return (yield)
    # xdist gives each worker the base temp <run's base temp>/popen-gwN: the parent is
    # shared by this run's workers only.
    with root_slot(Path(basetemp).parent, alone=item.get_closest_marker("alone") is not None):
        return (yield)
