"""Fixtures of the simulator tests: a small partitioned topology and the double factory."""

from __future__ import annotations

import pytest

from tests.sim.doublecore import DoubleFactory
from vnstitch.model import Substrate, load_topology, partitioned
from vnstitch.sim.cores import CoreFactory
from vnstitch.sim.scenario import Scenario


def double_factory(scenario: Scenario, substrate: Substrate) -> CoreFactory:
    return DoubleFactory()


@pytest.fixture
def abilene4() -> Substrate:
    return partitioned(load_topology("zoo:Abilene"), 4)
