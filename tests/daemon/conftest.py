"""Daemon test fixtures: every daemon-level scenario runs on the test double and the real core."""

from __future__ import annotations

import pytest

from tests.daemon.fakecore import fake_core_factory
from vnstitch.daemon.coreadapter import CoreFactory, protocol_core_factory


@pytest.fixture(params=["fake", "protocol"])
def core_factory(request: pytest.FixtureRequest) -> CoreFactory:
    if request.param == "fake":
        return fake_core_factory
    return protocol_core_factory
