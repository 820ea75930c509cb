"""Domain model: ids, substrate graph with segments, virtual networks, stitches, loaders.

Theory of operation: plain, validated values and one graph wrapper; no I/O except in
:mod:`vnstitch.model.loaders`, which reads topology files named by the caller.

Only the ids and errors are imported with the package: the graph, partitioner and loaders
pull in networkx, numpy and scipy (about half a second), which a Route Manager daemon,
importing :mod:`vnstitch.model.ids` at start, never needs. The other names load on first
use (PEP 562 ``__getattr__``); type checkers see ordinary imports.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

from vnstitch.model.errors import ModelError, TopologyLoadError
from vnstitch.model.ids import (
    VNID,
    RouteManagerId,
    SegmentId,
    route_manager_id,
    route_manager_id_from_public_key,
    segment_id,
    vnid,
)

if TYPE_CHECKING:
    from vnstitch.model.loaders import load_graphml, load_sndlib, load_topohub, load_topology
    from vnstitch.model.partition import partition, partitioned
    from vnstitch.model.substrate import Link, SegmentAdjacency, Substrate, great_circle_km
    from vnstitch.model.virtual import Component, ComponentKind, Stitch, VirtualNetwork

#: Names loaded on first use -> the submodule defining them.
_LAZY = {
    **dict.fromkeys(("load_graphml", "load_sndlib", "load_topohub", "load_topology"),
                    "loaders"),
    **dict.fromkeys(("partition", "partitioned"), "partition"),
    **dict.fromkeys(("Link", "SegmentAdjacency", "Substrate", "great_circle_km"), "substrate"),
    **dict.fromkeys(("Component", "ComponentKind", "Stitch", "VirtualNetwork"), "virtual"),
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'vnstitch.model' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"vnstitch.model.{module}"), name)
    globals()[name] = value  # later lookups skip this hook
    return value


class _Package(types.ModuleType):
    """Keeps ``vnstitch.model.partition`` the function, as the eager package had it:
    importing the submodule of the same name would otherwise rebind it to the module."""

    def __setattr__(self, name: str, value: object) -> None:
        if name == "partition" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


__all__ = [
    "VNID",
    "Component",
    "ComponentKind",
    "Link",
    "ModelError",
    "RouteManagerId",
    "SegmentAdjacency",
    "SegmentId",
    "Stitch",
    "Substrate",
    "TopologyLoadError",
    "VirtualNetwork",
    "great_circle_km",
    "load_graphml",
    "load_sndlib",
    "load_topohub",
    "load_topology",
    "partition",
    "partitioned",
    "route_manager_id",
    "route_manager_id_from_public_key",
    "segment_id",
    "vnid",
]
