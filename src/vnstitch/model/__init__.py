"""Domain model: ids, substrate graph with segments, virtual networks, stitches, loaders.

Theory of operation: plain, validated values and one graph wrapper; no I/O except in
:mod:`vnstitch.model.loaders`, which reads topology files named by the caller.
"""

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
from vnstitch.model.loaders import load_graphml, load_sndlib, load_topohub, load_topology
from vnstitch.model.partition import partition, partitioned
from vnstitch.model.substrate import Link, SegmentAdjacency, Substrate, great_circle_km
from vnstitch.model.virtual import Component, ComponentKind, Stitch, VirtualNetwork

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
