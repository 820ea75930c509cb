"""The driver side of data traffic: read a traffic-matrix file, build the traffic run.

Theory of operation: :mod:`vnstitch.sim.traffic` is pure, so the file a scenario's
``traffic.matrix`` names is read here. :func:`matrix_flows` loads the wide CSV with
:func:`vnstitch.routing.demands.load_tm_csv` and turns every OD pair into one flow per
class of the ``mix`` (its fraction of the pair's rate), whose offered rate steps through
the rows from ``start_row``, one row per ``step_s`` virtual seconds, times ``scale``.
:func:`build_traffic` is what the runner and the demo call: scenario + substrate ->
a ready :class:`~vnstitch.sim.traffic.TrafficSim` (or ``None`` without traffic).
Problems (no data folder, unreadable file, too few rows) raise
:class:`~vnstitch.sim.errors.ScenarioError` naming ``traffic.matrix.<field>``.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from vnstitch.datapath import shared_data_dir
from vnstitch.model import Substrate
from vnstitch.routing.demands import load_tm_csv
from vnstitch.routing.errors import DemandFileError
from vnstitch.sim.errors import ScenarioError
from vnstitch.sim.picks import resolve_picks
from vnstitch.sim.scenario import Scenario
from vnstitch.sim.traffic import TrafficSim
from vnstitch.sim.traffic_spec import FlowSpec, MatrixSpec

DATA_PREFIX = "data:"


def matrix_path(spec: MatrixSpec, source: str, base_dir: str | None) -> Path:
    if spec.file.startswith(DATA_PREFIX):
        root = shared_data_dir()
        if root is None:
            raise ScenarioError(source, "traffic.matrix.file", f"{spec.file!r} needs the "
                                "shared data folder: set VNSTITCH_DATA")
        return root / spec.file.removeprefix(DATA_PREFIX)
    path = Path(spec.file)
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    return path


def matrix_flows(spec: MatrixSpec, duration_s: float, *, source: str,
                 base_dir: str | None = None) -> tuple[FlowSpec, ...]:
    """One flow per OD pair and class of the mix (module docstring)."""
    path = matrix_path(spec, source, base_dir)
    try:
        tm = load_tm_csv(path)
    except DemandFileError as exc:
        raise ScenarioError(source, "traffic.matrix.file", str(exc)) from None
    rows = len(tm.times)
    if spec.start_row >= rows:
        raise ScenarioError(source, "traffic.matrix.start_row",
                            f"{spec.start_row} but {path.name} has {rows} rows")
    want = max(1, math.ceil(duration_s / spec.step_s))
    block = tm.mbps[spec.start_row:spec.start_row + want] * spec.scale
    flows: list[FlowSpec] = []
    for j, (src, dst) in enumerate(tm.pairs):
        for cls, frac in spec.mix:
            values = [float(v) * frac for v in block[:, j]]
            if max(values) < spec.min_mbps:
                continue
            steps = tuple((k * spec.step_s, v) for k, v in enumerate(values)
                          if k and v != values[k - 1])
            flows.append(FlowSpec(f"{src}->{dst}:{cls}", cls, src, dst, values[0], steps,
                                  f"traffic.matrix.file[{src}->{dst}]"))
    return tuple(flows)


def build_traffic(scenario: Scenario, substrate: Substrate) -> TrafficSim | None:
    """The traffic run of ``scenario`` on ``substrate`` (``None`` if it has none)."""
    spec = scenario.traffic
    if spec is None:
        return None
    spec = resolve_picks(spec, substrate, scenario.source)
    if spec.matrix is not None:
        extra = matrix_flows(spec.matrix, scenario.duration_s, source=scenario.source,
                             base_dir=scenario.base_dir)
        names = {f.name for f in spec.flows}
        clash = next((f.name for f in extra if f.name in names), None)
        if clash is not None:
            raise ScenarioError(scenario.source, "traffic.flows",
                                f"flow name {clash!r} is also a matrix flow")
        spec = dataclasses.replace(spec, flows=spec.flows + extra)
    return TrafficSim(spec, substrate, source=scenario.source)
