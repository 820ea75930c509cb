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

The names below are loaded on first use (PEP 562), so a runtime that needs only a light
module (``vnstitch.control.demand``, which the daemon loads at start) does not pull in
the forecasting and allocation stack (numpy) with the package.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_HOME = {
    "Controller": "vnstitch.control.controller",
    "ControlResult": "vnstitch.control.controller",
    "RateSeries": "vnstitch.control.controller",
    "ReservationBook": "vnstitch.control.controller",
    "ControlError": "vnstitch.control.errors",
    "ForecastBank": "vnstitch.control.forecasting",
    "GrowPolicy": "vnstitch.control.growth",
    "needed_mbps": "vnstitch.control.growth",
    "CongestionRules": "vnstitch.control.model",
    "Consumer": "vnstitch.control.model",
    "ControlAction": "vnstitch.control.model",
    "ControlPolicy": "vnstitch.control.model",
    "DecisionRecord": "vnstitch.control.model",
    "ForecastPolicy": "vnstitch.control.model",
    "GrowRules": "vnstitch.control.model",
    "LinkSample": "vnstitch.control.model",
    "ProviderOrder": "vnstitch.control.model",
    "Renegotiate": "vnstitch.control.model",
    "Reserve": "vnstitch.control.model",
    "ResizeStitch": "vnstitch.control.model",
    "SetQosClasses": "vnstitch.control.model",
    "StitchSample": "vnstitch.control.model",
}

__all__ = [
    "CongestionRules", "Consumer", "ControlAction", "ControlError", "ControlPolicy",
    "ControlResult", "Controller", "DecisionRecord", "ForecastBank", "ForecastPolicy",
    "GrowPolicy", "GrowRules", "LinkSample", "ProviderOrder", "RateSeries", "Renegotiate",
    "ReservationBook", "Reserve", "ResizeStitch", "SetQosClasses", "StitchSample",
    "needed_mbps",
]


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
