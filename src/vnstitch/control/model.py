"""What the Route Manager controller takes in and gives out: measurements, policy, actions.

Theory of operation: the controller (:mod:`vnstitch.control.controller`) is a pure
function of its inputs and its own history, in Faucet's valve shape. Each interval a
runtime (the simulator, the daemon) *measures* -- per consumer (a stitch end, a simulated
flow): bytes sent or a rate, probe RTT and loss; per substrate link the RM owns: bytes,
drops, capacity -- and hands those, the consumers the protocol core's typed views give
it (:class:`Consumer`), the :class:`ControlPolicy` and ``now`` to ``step``. It gets back
:data:`ControlAction` values to apply and :class:`DecisionRecord` values that say what
was seen, forecast, done and why. Nothing here reads a clock or draws a random number.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from vnstitch.allocate.policy import ApplicationClass, ScalingRules
from vnstitch.control.errors import ControlError
from vnstitch.routing.monitor import MonitorConfig
from vnstitch.routing.qos import QosPolicy

# -- measurements ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StitchSample:
    """One consumer's measurement this interval. ``tx_bytes`` is a byte counter (the
    controller turns differences into rates); ``mbps`` a rate measured over the interval
    (a fluid model knows it directly); ``error`` says why neither could be read."""

    tx_bytes: float | None = None
    mbps: float | None = None
    error: str = ""
    device: str = ""  # a counter read on another device is a new baseline
    rtt_ms: float | None = None
    loss: float | None = None


@dataclass(frozen=True, slots=True)
class LinkSample:
    """One substrate link this RM owns: cumulative bytes and drops, and its capacity.
    ``inside``: both ends are in this RM's segment, so a stitch that begins or ends here
    cannot be moved off it by renegotiation (only the segment's IGP could).
    ``rx_bytes``: the received bytes too, when the link is counted both ways (the busier
    direction counts); ``device``: a read on another device is a new baseline.
    ``drops``: cumulative packets the link's queues dropped (growth while it is busy
    makes it congested at once); ``at``: when the counters were read (default: the
    ``now`` of the call); ``rtt_ms`` / ``loss``: the worst end-to-end probe round trip
    and loss of the stitches leaving by this link, when the owner measures them."""

    link: str
    tx_bytes: float
    drops: int
    capacity_mbps: float
    inside: bool = False
    rx_bytes: float | None = None
    device: str = ""
    at: float | None = None
    rtt_ms: float | None = None
    loss: float | None = None


@dataclass(frozen=True, slots=True)
class Consumer:
    """Something the controller reserves bandwidth for: a stitch end or a flow.

    ``links``: the link ids it crosses (one per reservation point); ``capacity``: what it
    may reserve on each without ordering more (per link); ``reserved_mbps``: what is in
    force now (the runtime's dataplane); ``stitch_id`` and ``originated``: the protocol's
    stitch it rides and whether this RM may resize it; ``negotiated_mbps``: the
    bandwidth the protocol committed for it."""

    id: str
    app_class: str
    links: tuple[str, ...]
    capacity: Mapping[str, float] = field(default_factory=dict)
    reserved_mbps: float | None = None
    stitch_id: str = ""
    originated: bool = False
    negotiated_mbps: float = math.inf


# -- policy ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ForecastPolicy:
    """How demand is forecast: ``model`` (a :mod:`vnstitch.forecast` point model) refitted
    every ``refit_every`` steps on at most ``history`` samples and filtered forward in
    between; the spread is the empirical distribution of the last ``error_window`` of its
    own one-step errors. With fewer than ``min_fit`` samples the last one is the centre."""

    model: str = "naive"
    season: int = 1
    refit_every: int = 1
    error_window: int = 60
    history: int | None = None
    min_fit: int = 1

    def __post_init__(self) -> None:
        if self.refit_every < 1 or self.error_window < 1 or self.min_fit < 1 or \
                (self.history is not None and self.history < 1):
            raise ControlError("forecast policy: refit_every, error_window, min_fit and "
                               "history must be >= 1")


@dataclass(frozen=True, slots=True)
class GrowRules:
    """When a persistent shortfall on a stitch originated here asks for an in-place
    resize (:mod:`vnstitch.control.growth`)."""

    unit_mbps: float = 1.0
    grow_after: int = 2
    grow_headroom: float = 0.2
    grow_holddown_s: float = 60.0
    grow_max_factor: float = 4.0
    shrink_after: int = 0
    shrink_below: float = 0.5


@dataclass(frozen=True, slots=True)
class RerouteRules:
    """How an origin moves its stitches (:mod:`vnstitch.control.reroute`)."""

    holddown_s: float = 10.0
    min_reports: int = 2
    report_window_s: float = 1.0
    return_after_s: float = 15.0
    #: With the left link's load known: return only if it stays under this with the
    #: stitch back (None: no such check).
    return_below: float | None = None

    def __post_init__(self) -> None:
        if self.holddown_s < 0 or self.min_reports < 1 or self.report_window_s <= 0 \
                or self.return_after_s < 0 or (self.return_below is not None
                                               and not 0 < self.return_below <= 1):
            raise ControlError("reroute rules: holddown_s, return_after_s >= 0, "
                               "min_reports >= 1, report_window_s > 0, return_below in "
                               "(0, 1]")


@dataclass(frozen=True, slots=True)
class CongestionRules:
    """Renegotiate stitches off an owned link the hysteresis monitor calls congested;
    one stitch is not asked again within ``holddown_s``.

    ``target``: move stitches, busiest first, until the link's predicted load (its
    measured load less the moved stitches' rates) is at most ``target`` x capacity;
    ``None``: one stitch per link per interval. ``returns``: once no owned link is
    congested and the hold-down has passed, ask a stitch moved off a link back onto
    the best path (renegotiation avoiding nothing) when that link would stay under
    ``return_below`` with it. ``min_reports``, ``report_window_s`` and
    ``return_after_s``: the origin's dampening and quiet time
    (:class:`~vnstitch.control.reroute.RerouteRules`; the defaults: none)."""

    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    holddown_s: float = 30.0
    target: float | None = None
    returns: bool = False
    return_below: float = 0.6
    min_reports: int = 1
    report_window_s: float = 1.0
    return_after_s: float = 0.0

    def __post_init__(self) -> None:
        if self.holddown_s < 0 or (self.target is not None and not 0 < self.target <= 1) \
                or not 0 < self.return_below <= 1 or self.min_reports < 1 \
                or self.report_window_s <= 0 or self.return_after_s < 0:
            raise ControlError("congestion rules: holddown_s, return_after_s >= 0, target "
                               "and return_below in (0, 1], min_reports >= 1, "
                               "report_window_s > 0")

    def reroute_rules(self) -> RerouteRules:
        return RerouteRules(self.holddown_s, self.min_reports, self.report_window_s,
                            self.return_after_s, self.return_below)


@dataclass(frozen=True, slots=True)
class ControlPolicy:
    """Everything the controller decides by (one per Route Manager)."""

    apps: Mapping[str, ApplicationClass]
    rules: ScalingRules
    forecast: ForecastPolicy = field(default_factory=ForecastPolicy)
    grow: GrowRules | None = None
    congestion: CongestionRules | None = None
    #: One allocator over all consumers (they share links: the simulator's flows), or
    #: one per consumer (each stitch end has its own HTB class: the daemon).
    joint: bool = False
    #: Measure this many samples of every consumer before the first allocation.
    warmup: int = 0
    #: QoS classes for the owned links (rates for a ``link_mbps`` link, scaled to each).
    qos: QosPolicy | None = None


# -- actions -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reserve:
    """Guarantee ``mbps`` to ``consumer`` (an HTB rate) from now on."""

    consumer: str
    links: tuple[str, ...]
    mbps: float


@dataclass(frozen=True, slots=True)
class ResizeStitch:
    """Ask the protocol to resize ``stitch_id`` in place to ``mbps``."""

    stitch_id: str
    mbps: float
    reason: str


@dataclass(frozen=True, slots=True)
class Renegotiate:
    """Ask the protocol to renegotiate ``stitch_id`` on a path avoiding ``around`` (an
    owned link; the runtime names the element behind it: this RM's segment for a link
    inside it, the adjacency for a link to a neighbour), make before break. ``around``
    empty: a return -- the best path now, avoiding nothing."""

    stitch_id: str
    around: str
    reason: str


@dataclass(frozen=True, slots=True)
class SetQosClasses:
    """Install these (class, rate, ceil) HTB leaves on ``device`` (an owned link)."""

    device: str
    classes: tuple[tuple[str, float, float], ...]


@dataclass(frozen=True, slots=True)
class ProviderOrder:
    """The controller ordered ``mbps`` on ``link`` from the provider (status: its answer)."""

    link: str
    mbps: float
    status: str
    reason: str


ControlAction = Reserve | ResizeStitch | Renegotiate | SetQosClasses | ProviderOrder


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """One line of the decision trail: what was seen, forecast, done, and why."""

    now: float
    subject: str
    action: str
    reason: str
    measured_mbps: float | None = None
    forecast_mbps: float | None = None
    quantile: float | None = None
    available_mbps: float | None = None
    amount_mbps: float | None = None
    consumer: str = ""  # the consumer it concerns ("" for a link)
