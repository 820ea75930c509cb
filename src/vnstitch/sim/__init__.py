"""Discrete-event simulator of Route Managers on a real substrate.

Theory of operation: :mod:`~vnstitch.sim.engine` drives one sans-I/O Route Manager core
per segment on a virtual clock; :mod:`~vnstitch.sim.network` models the control network
(substrate path latency, loss, duplication, reordering, jitter, cuts, partitions);
:mod:`~vnstitch.sim.workload` and :mod:`~vnstitch.sim.scenario` describe what happens;
:mod:`~vnstitch.sim.metrics` and :mod:`~vnstitch.sim.summary` measure it and check the
invariants; :mod:`~vnstitch.sim.runner` ties a scenario to a run. Nothing here reads a
clock except the runner's wall-time figure, which stays out of the summary.
"""

from vnstitch.sim.cores import CoreFactory, LinkUsage
from vnstitch.sim.engine import Simulation
from vnstitch.sim.errors import ScenarioError, SimError
from vnstitch.sim.network import Impairments, NetworkModel
from vnstitch.sim.scenario import Scenario, load_scenario, parse_scenario

__all__ = [
    "CoreFactory",
    "Impairments",
    "LinkUsage",
    "NetworkModel",
    "Scenario",
    "ScenarioError",
    "SimError",
    "Simulation",
    "load_scenario",
    "parse_scenario",
]
