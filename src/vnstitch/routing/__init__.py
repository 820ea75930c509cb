"""Adaptive substrate routing: stitching-priority routing table, paths, TE, reroute, QoS.

Theory of operation: plain functions and small immutable values over the substrate
graph of :mod:`vnstitch.model`; no I/O and no clock anywhere except the file loaders in
:mod:`vnstitch.routing.demands` and :mod:`vnstitch.routing.qos` (which read files the
caller names). Modules: ``paths`` (constrained / k-shortest / disjoint paths), ``te``
and ``fast`` (min-MLU traffic engineering), ``table`` (routing table with stitching
priority), ``monitor`` (congestion detection and reroute), ``qos`` (the one home of QoS
classes: policy, HTB classes, class precedence in TE), ``htb`` (HTB serving model),
``evaluate`` (time-stepped flow-level evaluation), ``demands`` (traffic matrices).
"""

from vnstitch.routing.errors import DemandFileError, NoPathError, PolicyError, RoutingError

__all__ = ["DemandFileError", "NoPathError", "PolicyError", "RoutingError"]
