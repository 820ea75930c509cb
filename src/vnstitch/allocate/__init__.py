"""The Predictive Resource Allocator: quantile forecasts to bandwidth, compute and storage.

Theory of operation: :mod:`~vnstitch.allocate.policy` turns a quantile forecast into
whole units at the newsvendor quantile of each application class, with lead times and
churn control; :mod:`~vnstitch.allocate.allocator` builds the per-stitch / per-link /
per-segment plan, checks it against substrate capacity, asks a provider
(:mod:`~vnstitch.allocate.providers`) to scale or routing for another path, and logs
every decision; :mod:`~vnstitch.allocate.evaluate` replays real traces through this
policy and the baselines (:mod:`~vnstitch.allocate.baselines`), scored by
:mod:`~vnstitch.allocate.metrics`. All of it is pure: ``now`` is always an argument.
"""

from vnstitch.allocate.errors import AllocateError
from vnstitch.allocate.policy import (
    DEFAULT_CLASSES,
    DENSE_LEVELS,
    Action,
    ApplicationClass,
    ScalingController,
    ScalingRules,
    interpolate_quantile,
    newsvendor_quantile,
    units_for,
)

__all__ = [
    "DEFAULT_CLASSES",
    "DENSE_LEVELS",
    "Action",
    "AllocateError",
    "ApplicationClass",
    "ScalingController",
    "ScalingRules",
    "interpolate_quantile",
    "newsvendor_quantile",
    "units_for",
]
