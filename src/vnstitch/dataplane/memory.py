"""In-memory dataplane driver for tests and the simulator.

Theory of operation: it keeps the object map it has been told to build and enforces the
same preconditions the kernel does (a VXLAN port's underlay and a bridge port's bridge
and port must exist; you cannot create what exists or remove what does not), so a plan
that would fail on Linux fails here too. Byte counters are whatever a test sets with
:meth:`MemoryDataplane.set_counters` (0 for a device nobody set), for any device the
driver knows; so are HTB class counters (:meth:`MemoryDataplane.set_class_stats`, 0 for
a class nobody set).
"""

from __future__ import annotations

from collections.abc import Sequence

from vnstitch.dataplane.base import DataplaneApplyError, DataplaneError, DeviceCounters
from vnstitch.dataplane.objects import (
    Bridge,
    BridgePort,
    DataplaneObject,
    DataplaneState,
    FdbEntry,
    Op,
    OpKind,
    RateLimit,
    Route,
    U32Filter,
    VxlanPort,
    WireguardInterface,
)
from vnstitch.dataplane.qos import ClassStats


class MemoryDataplane:
    """A dataplane that lives in a dict; ``external_ports`` are host ports it did not make."""

    def __init__(self, external_ports: Sequence[str] = ()) -> None:
        self._state = DataplaneState()
        self.external_ports = set(external_ports)
        self.applied: list[Op] = []
        self._counters: dict[str, tuple[int, int]] = {}
        self._class_counters: dict[tuple[str, int], tuple[int, int, int]] = {}

    def observe(self) -> DataplaneState:
        return self._state

    def set_counters(self, device: str, rx_bytes: int, tx_bytes: int) -> None:
        """What :meth:`counters` reports for ``device`` from now on (a test's traffic)."""
        self._counters[device] = (int(rx_bytes), int(tx_bytes))

    def set_class_stats(self, device: str, class_id: int, nbytes: int, packets: int,
                        drops: int) -> None:
        """What :meth:`class_stats` reports for HTB class ``class_id`` on ``device``."""
        self._class_counters[(device, class_id)] = (int(nbytes), int(packets), int(drops))

    def class_stats(self, device: str) -> list[ClassStats]:
        if device not in self._devices():
            raise DataplaneError(f"class stats {device}: missing device(s) [{device!r}]")
        return [ClassStats(device, o.class_id,
                           *self._class_counters.get((device, o.class_id), (0, 0, 0)))
                for o in sorted((o for o in self._state
                                 if isinstance(o, RateLimit) and o.device == device),
                                key=lambda o: o.class_id)]

    def counters(self, device: str) -> DeviceCounters:
        if device not in self._devices():
            raise DataplaneError(f"counters {device}: missing device(s) [{device!r}]")
        rx, tx = self._counters.get(device, (0, 0))
        return DeviceCounters(device, rx, tx)

    def _devices(self) -> set[str]:
        names = set(self.external_ports)
        for obj in self._state:
            if isinstance(obj, WireguardInterface | VxlanPort | Bridge):
                names.add(obj.name)
        return names

    def _check_vni(self, obj: DataplaneObject) -> None:
        # Like the kernel: one VXLAN device per (VNI, UDP port) in a namespace ("File
        # exists" from rtnetlink).
        if isinstance(obj, VxlanPort) and any(
                isinstance(o, VxlanPort) and (o.vni, o.dstport) == (obj.vni, obj.dstport)
                for o in self._state):
            raise DataplaneError(f"create {obj.key}: VNI {obj.vni} on port {obj.dstport} "
                                 "is used by another VXLAN device (File exists)")

    def _check_create(self, obj: DataplaneObject) -> None:
        devices = self._devices()
        need: list[str] = []
        if isinstance(obj, VxlanPort):
            need = [obj.underlay]
        elif isinstance(obj, BridgePort):
            need = [obj.bridge, obj.port]
        elif isinstance(obj, RateLimit):
            need = [obj.device]
            if problem := obj.problem():
                raise DataplaneError(f"create {obj.key}: {problem}")
        elif isinstance(obj, FdbEntry | Route):
            need = [obj.device]
        elif isinstance(obj, U32Filter):
            need = [obj.device]
            # Like the kernel: a filter hangs off the device's HTB qdisc (a RateLimit).
            if not any(isinstance(o, RateLimit) and o.device == obj.device
                       for o in self._state):
                raise DataplaneError(f"create {obj.key}: device {obj.device!r} has no "
                                     "RateLimit (HTB qdisc)")
        missing = [d for d in need if d not in devices]
        if missing:
            raise DataplaneError(f"create {obj.key}: missing device(s) {missing}")

    def apply(self, ops: Sequence[Op]) -> None:
        """Every op is tried; failures are collected (:class:`DataplaneApplyError`)."""
        failures: dict[str, str] = {}
        applied: list[Op] = []
        for op in ops:
            try:
                self._apply_one(op)
            except DataplaneError as exc:
                failures[op.obj.key] = str(exc)
                continue
            applied.append(op)
        if failures:
            raise DataplaneApplyError(failures, applied)

    def _apply_one(self, op: Op) -> None:
        present = op.obj.key in self._state
        if op.kind is OpKind.CREATE:
            if present:
                raise DataplaneError(f"create {op.obj.key}: already exists")
            self._check_create(op.obj)
            self._check_vni(op.obj)
            self._state = self._state.with_objects(add=[op.obj])
        elif op.kind is OpKind.REMOVE:
            if not present:
                raise DataplaneError(f"remove {op.obj.key}: does not exist")
            self._state = self._state.with_objects(remove=[op.obj.key])
        else:
            if not present:
                raise DataplaneError(f"replace {op.obj.key}: does not exist")
            if isinstance(op.obj, RateLimit) and (problem := op.obj.problem()):
                raise DataplaneError(f"replace {op.obj.key}: {problem}")
            self._state = self._state.with_objects(add=[op.obj])
        self.applied.append(op)
