"""Shared fixtures: where the real data lives, and skipping when it is absent; the
Hypothesis profiles (``default``; ``ci-long``: full example counts, see tests/examples.py),
chosen with ``HYPOTHESIS_PROFILE``; the slot every root test holds on xdist workers
(tests/rootutil.py: ``alone`` tests run with no other root test beside them)."""

from __future__ import annotations

import os
from collections.abc import Iterator
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


@pytest.fixture(autouse=True)
def _root_test_slot(request: pytest.FixtureRequest,
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """On xdist workers, a root test holds the run's slot through setup and teardown
    (autouse: set up before, torn down after, the test's own fixtures such as its lab)."""
    node = request.node
    if node.get_closest_marker("root") is None or \
            "PYTEST_XDIST_WORKER" not in os.environ:
        yield
        return
    # The workers' base temp folders share one parent, unique to this run.
    lock_dir = tmp_path_factory.getbasetemp().parent
    with root_slot(lock_dir, alone=node.get_closest_marker("alone") is not None):
        yield
