"""The one per-Route-Manager control loop, pure, in Faucet's shape.

Theory of operation: :class:`~vnstitch.control.controller.Controller` takes
measurements, the consumers the protocol core's typed views give it, a
:class:`~vnstitch.control.model.ControlPolicy` and ``now``, and returns actions (reserve,
resize a stitch, renegotiate around an element, QoS classes, provider orders) and
decision records. Forecast history, refit cadence, quantiles from the model's own
errors, newsvendor levels, congestion hysteresis and hold-downs live here and nowhere
else; the simulator (:mod:`vnstitch.sim.allocation`) and the daemon
(:mod:`vnstitch.daemon.allocation`) only measure and apply. This package does no I/O,
reads no clock and imports neither runtime (``tests/control/test_imports.py``).
"""

from vnstitch.control.controller import Controller, ControlResult, RateSeries, ReservationBook
from vnstitch.control.errors import ControlError
from vnstitch.control.forecasting import ForecastBank
from vnstitch.control.growth import GrowPolicy, needed_mbps
from vnstitch.control.model import (
    CongestionRules,
    Consumer,
    ControlAction,
    ControlPolicy,
    DecisionRecord,
    ForecastPolicy,
    GrowRules,
    LinkSample,
    ProviderOrder,
    Renegotiate,
    Reserve,
    ResizeStitch,
    SetQosClasses,
    StitchSample,
)

__all__ = [
    "CongestionRules", "Consumer", "ControlAction", "ControlError", "ControlPolicy",
    "ControlResult", "Controller", "DecisionRecord", "ForecastBank", "ForecastPolicy",
    "GrowPolicy", "GrowRules", "LinkSample", "ProviderOrder", "RateSeries", "Renegotiate",
    "ReservationBook", "Reserve", "ResizeStitch", "SetQosClasses", "StitchSample",
    "needed_mbps",
]
