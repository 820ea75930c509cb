"""The ``traffic:`` and ``qos:`` sections of a scenario, as the simulator uses them.

Theory of operation: plain frozen data (:class:`TrafficSpec`). The sections' schema --
types, ranges, unknown fields, classes that must exist, every problem at once named
``FILE:LINE:COL: traffic.flows[2].schedule[0].at: ...`` -- is
:mod:`vnstitch.sim.scenario_sections`, which turns a valid pair of sections into a
:class:`TrafficSpec`. The ``qos:`` section is a QoS policy in the format of
:mod:`vnstitch.routing.qos` (schema: :mod:`vnstitch.routing.qos_model`, shared with the
daemon's config) plus ``borrow``, how HTB lends spare capacity (see
:mod:`vnstitch.routing.htb`). Node names in flows are checked later, against the loaded
topology, by :func:`vnstitch.sim.traffic.resolve`.

A flow names its virtual network (``vn``, a VNID) and the substrate nodes its hosts sit
at (a flow without ``vn`` is substrate background traffic on shortest paths, like the
matrix's rows; every builtin scenario names a VN for each of its flows); the run places
that VN on the two segments of ``src`` and ``dst`` and the VN's
origin (the segment of its first flow's ``src``) requests the stitch itself -- on
demand, once the VN's traffic is offered and the origin's discovery knows a route to the
VNID (:mod:`vnstitch.control.demand`), or at ``stitch_at_s`` when given -- with the sum
of its flows' ``reserve_mbps`` as bandwidth (default: each
flow's first non-zero rate; traffic above it is HTB's to share) (a scenario never
names a path, and a flow never rides anything but its stitch). All flows of one VN must
join the same two segments, which must differ. Unknown fields are
errors, so a typo never falls back to a default silently::

    qos:
      link_mbps: 10000          # the policy's rates are for a link this big; scaled per link
      borrow: priority          # priority | quantum
      classes:
        - {name: video, priority: 0, guaranteed_mbps: 3000, max_mbps: 10000}
        - {name: email, priority: 4, guaranteed_mbps: 500, max_mbps: 10000}
    traffic:
      interval_s: 5             # monitoring interval: one utilisation sample per link
      stitched_classes: [video] # default: the classes of the policy's first priority
      monitor: {high: 0.8, low: 0.6, raise_samples: 2, clear_samples: 3}
      reroute: {k: 4, target: 0.75, hold_down_s: 60, install_s: 0.2, returns: true,
                return_below: 0.45, classes: null}    # null: any class may move
      stitch_at_s: 2           # optional: ask at this time (default: on demand)
      flows:                    # traffic of virtual networks: each rides its VN's stitch
        - {name: tv, vn: 7, class: video, reserve_mbps: 2500, src: New York,
           dst: Los Angeles, mbps: 2500}
        - {name: backup, vn: 8, class: bulk, src: New York, dst: Houston, mbps: 1000,
           schedule: [{at: 30, mbps: 5000}, {at: 90, mbps: 1000}]}
        - {name: story, vn: 9, class: video, src: "@ring-a", dst: "@ring-b",
           mbps: "20%"}   # picks and percent rates: see vnstitch.sim.picks
      matrix:                   # optional background from a traffic-matrix CSV
        file: data:abilene/abilene_tm_5min.csv.gz
        mix: {database: 0.3, bulk: 0.4, email: 0.3}   # class fractions of each OD pair
        scale: 4                # multiply every value
        start_row: 0            # first row used
        step_s: 5               # virtual seconds per row
        min_mbps: 0             # skip OD pairs whose scaled peak is below
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

from vnstitch.routing.htb import BorrowMode
from vnstitch.routing.monitor import MonitorConfig
from vnstitch.routing.qos import QosPolicy
from vnstitch.sim.allocation_spec import AllocationSpec


@dataclass(frozen=True, slots=True)
class FlowSpec:
    """A flow of one QoS class between two substrate nodes; ``schedule`` holds
    ``(from time s, offered Mbit/s)`` steps after the initial ``mbps``."""

    name: str
    qos_class: str
    src: str
    dst: str
    mbps: float
    schedule: tuple[tuple[float, float], ...] = ()
    field: str = ""  # where it came from, for errors found once the topology is known
    #: The virtual network this flow belongs to: it rides that VN's stitch between the
    #: segments of ``src`` and ``dst``. ``None``: substrate background (matrix) traffic.
    vn: int | None = None
    #: What this flow adds to its VN's stitch reservation (``None``: its first rate).
    reserve_mbps: float | None = None
    #: Rates are percent of the path's narrowest link until resolved against the
    #: topology (:func:`vnstitch.sim.picks.resolve_picks`).
    percent: bool = False

    def peak(self) -> float:
        return max([self.mbps, *(m for _, m in self.schedule)])

    def offered_at(self, t: float) -> float:
        k = bisect.bisect_right(self.schedule, (t, math.inf))
        return self.schedule[k - 1][1] if k else self.mbps


@dataclass(frozen=True, slots=True)
class MatrixSpec:
    """Background flows from a wide traffic-matrix CSV (``time,SRC->DST,...`` in Mbit/s,
    e.g. Abilene's): one flow per OD pair and class of ``mix``, one row per ``step_s``."""

    file: str
    mix: tuple[tuple[str, float], ...]
    scale: float = 1.0
    start_row: int = 0
    step_s: float = 5.0
    min_mbps: float = 0.0


@dataclass(frozen=True, slots=True)
class RerouteSpec:
    k: int = 4
    target: float = 0.75
    hold_down_s: float = 60.0
    install_s: float = 0.2
    returns: bool = True
    return_below: float = 0.45
    classes: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class TrafficSpec:
    policy: QosPolicy
    borrow: BorrowMode = "priority"
    interval_s: float = 5.0
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    reroute: RerouteSpec = field(default_factory=RerouteSpec)
    flows: tuple[FlowSpec, ...] = ()
    stitched_classes: tuple[str, ...] = ()
    matrix: MatrixSpec | None = None
    #: the top-level ``allocation:`` section (see :mod:`vnstitch.sim.allocation_spec`)
    allocation: AllocationSpec | None = None
    #: An explicit time (virtual seconds) each VN's origin asks for its stitch; None: on
    #: demand (traffic offered and a route known; :mod:`vnstitch.control.demand`).
    stitch_at_s: float | None = None
