"""The daemon's YAML config: parsed, validated, every bad field named with its line.

Theory of operation: the file is composed with PyYAML into a node tree so every value
keeps its line and column; :class:`_Reader` walks that tree with a dotted field path
(``peers[1].address``) and each check that fails raises :class:`ConfigError` as
``FILE:LINE:COL: path.to.field: problem``. Unknown fields are errors too (a typo must
not silently fall back to a default). Relative paths are resolved against the config
file's folder. The result is a frozen :class:`DaemonConfig`; nothing here does network
or kernel I/O.

Example::

    segment: A
    listen: {address: 127.0.0.1, port: 7701}
    key_file: a.key
    trust: [{public_key: "base64 of 32 bytes"}]
    peers: [{id: "<32 hex>", address: "127.0.0.1:7702", capacity_mbps: 1000,
             latency_ms: 2, cost: 1}]
    local_vns: [{vnid: 100, components: [10.100.1.0/24], host_ports: [veth-h1],
                 allow: [B, "<32 hex>"], owner: "base64 of 32 bytes",
                 grant: vn100-a.grant, revocations: vn100.revocations}]
    dataplane: {driver: memory, netns: null,
                wireguard: {endpoint: 10.0.1.1, port: 51820}}
    timers: {announce_interval_s: 1.0, probe_interval_s: 0.5, probe_misses: 3}
    allocation: {interval_s: 5, forecaster: naive, default_class: web,
                 vn_classes: {100: video_conferencing}, min_mbps: 1, unit_mbps: 1,
                 grow_after: 2, grow_headroom: 0.2, grow_holddown_s: 60}
    state_db: a.db
    control_socket: a.sock
    http: {listen: "127.0.0.1:9464", token_file: api.token, metrics_auth: false}
    qos: {link_mbps: 100, classes: [...], applications: [...]}  # daemon/qosconfig.py
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import ipaddress
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import yaml

from vnstitch.daemon.errors import ConfigError
from vnstitch.daemon.pra_config import PraConfig, parse_pra
from vnstitch.daemon.qosconfig import QosConfig, parse_qos
from vnstitch.errors import VnstitchError
from vnstitch.model.ids import (
    VNID,
    RouteManagerId,
    SegmentId,
    route_manager_id,
    route_manager_id_from_public_key,
    segment_id,
    vnid,
)
from vnstitch.model.virtual import Component, VirtualNetwork

T = TypeVar("T")

DRIVERS = ("memory", "linux")
_IFNAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")  # Linux IFNAMSIZ - 1
_NETNS_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True, slots=True)
class PeerConfig:
    """A neighbouring Route Manager, where to reach it, and the link toward it."""

    rm_id: RouteManagerId
    host: str
    port: int
    capacity_mbps: float
    latency_ms: float
    cost: float = 1.0

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)


@dataclass(frozen=True, slots=True)
class LocalVnConfig:
    """A VN present on this segment: its components and the host ports joining it."""

    vnid: VNID
    components: tuple[Component, ...]
    host_ports: tuple[str, ...] = ()
    application: str = "default"
    #: Who may stitch into it here without a grant: ``allow: any`` (everyone trusted), or
    #: RM ids (a trust entry's ``name`` stands for its id); absent: only grant holders.
    allow_any: bool = False
    allow: tuple[RouteManagerId, ...] = ()
    #: The VN owner's Ed25519 public key: grants it signs admit their member.
    owner: bytes | None = None
    #: The grant this RM presents when it asks for a stitch into the VN (re-read on change).
    grant: Path | None = None
    #: The owner's revocation list, re-read on change and announced to the neighbours.
    revocations: Path | None = None

    def virtual_network(self, segment: SegmentId) -> VirtualNetwork:
        return VirtualNetwork(self.vnid, segment, self.components, self.application)


@dataclass(frozen=True, slots=True)
class WireguardConfig:
    """This RM's tunnel endpoint (underlay address peers dial) and first listen port."""

    endpoint: str
    port: int = 51820


@dataclass(frozen=True, slots=True)
class DataplaneConfig:
    driver: str = "memory"
    netns: str | None = None
    wireguard: WireguardConfig = WireguardConfig("127.0.0.1")


@dataclass(frozen=True, slots=True)
class TimerConfig:
    """Protocol timers (seconds) handed to the core, and the daemon's own ones."""

    announce_interval_s: float = 1.0
    hold_time_s: float = 3.0
    probe_interval_s: float = 0.5
    probe_misses: int = 3
    query_timeout_s: float = 2.0
    reservation_hold_s: float = 2.0
    persist_interval_s: float = 5.0


_TIMER_FIELDS: dict[str, type] = {
    "announce_interval_s": float, "hold_time_s": float, "probe_interval_s": float,
    "probe_misses": int, "query_timeout_s": float, "reservation_hold_s": float,
    "persist_interval_s": float,
}


#: Forecasters the allocation loop may use (cheap, refitted every interval).
ALLOCATION_FORECASTERS = ("naive", "ets")


@dataclass(frozen=True, slots=True)
class CongestionConfig:
    """Live congestion detection and reroute (:mod:`vnstitch.daemon.congestion`): every
    ``interval_s`` the substrate links to the neighbours are sampled; a link above
    ``high`` of its capacity for ``raise_samples`` samples is congested until below
    ``low`` for ``clear_samples``; the origin moves a stitch after ``min_reports`` within
    ``report_window_s``, at most once per ``holddown_s``, and brings it back when the link
    was quiet ``return_after_s``. ``pin_paths``: route each tunnel's outer packets to its
    path's first hop. ``enabled: false`` turns it all off."""

    enabled: bool = True
    interval_s: float = 0.2
    high: float = 0.8
    low: float = 0.6
    raise_samples: int = 2
    clear_samples: int = 3
    holddown_s: float = 10.0
    min_reports: int = 2
    report_window_s: float = 1.0
    return_after_s: float = 15.0
    pin_paths: bool = True
    decisions_kept: int = 500


@dataclass(frozen=True, slots=True)
class AllocationConfig:
    """The predictive bandwidth allocation loop (:mod:`vnstitch.daemon.allocation`).

    Every ``interval_s`` the daemon measures each stitch's traffic, forecasts the next
    interval with ``forecaster`` and reserves (HTB rate) at the newsvendor quantile of the
    stitch's application class (``vn_classes`` per VNID, else ``default_class``), in
    steps of ``unit_mbps``, never below ``min_mbps``, never above the negotiated bandwidth.
    When the forecast exceeds the negotiated bandwidth for ``grow_after`` intervals in a
    row (0: never) on a stitch originated here, it asks the protocol to grow the stitch in
    place (``grow_headroom`` above the forecast's reservation); after a refusal it waits
    ``grow_holddown_s`` before asking again; it never grows a stitch beyond
    ``grow_max_factor`` x the bandwidth it had when the loop first saw it (elastic
    traffic such as TCP fills any ceiling, so without a bound it would grow until the path
    refuses -- the HPA's ``maxReplicas``). With ``shrink_after`` > 0 it gives grown
    bandwidth back when the reservation stays below ``shrink_below`` x the negotiated
    bandwidth for that many intervals (:mod:`vnstitch.daemon.resizing`).
    """

    interval_s: float = 5.0
    forecaster: str = "naive"
    default_class: str = "web"
    vn_classes: tuple[tuple[int, str], ...] = ()
    min_mbps: float = 1.0
    unit_mbps: float = 1.0
    hold_steps: int = 2
    history: int = 288  # rate samples kept per stitch (and persisted)
    decisions_kept: int = 500
    grow_after: int = 2
    grow_headroom: float = 0.2
    grow_holddown_s: float = 60.0
    grow_max_factor: float = 4.0
    shrink_after: int = 0
    shrink_below: float = 0.5

    def class_for(self, vnid: int) -> str:
        return dict(self.vn_classes).get(vnid, self.default_class)


@dataclass(frozen=True, slots=True)
class HttpConfig:
    """The HTTP listener (API, ``/metrics``, dashboard); ``/api`` needs the token in
    ``token_file`` (mode 0600, checked when the server starts), ``/metrics`` only when
    ``metrics_auth``."""

    host: str
    port: int
    token_file: Path
    metrics_auth: bool = False


@dataclass(frozen=True, slots=True)
class DaemonConfig:
    source: Path
    segment: SegmentId
    listen_host: str
    listen_port: int
    key_file: Path
    trust: dict[RouteManagerId, bytes]  # RM id -> raw 32-byte Ed25519 public key
    peers: tuple[PeerConfig, ...]
    local_vns: tuple[LocalVnConfig, ...]
    dataplane: DataplaneConfig
    timers: TimerConfig
    state_db: Path
    control_socket: Path
    allocation: AllocationConfig | None = None
    http: HttpConfig | None = None
    qos: QosConfig | None = None  # QoS classes live, stitching priority (daemon/qosconfig.py)
    pra: PraConfig | None = None  # the live PRA (vnstitch.daemon.pra_config)
    congestion: CongestionConfig = CongestionConfig()

    def peer(self, rm_id: RouteManagerId) -> PeerConfig | None:
        for p in self.peers:
            if p.rm_id == rm_id:
                return p
        return None


# -- reading YAML with positions --------------------------------------------------------


class ConfigProblemsError(ConfigError):
    """Every problem found in one config file (``problems``: one line each)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class _AbandonedError(ConfigError):
    """A part of the config cannot be read further; its problems are already noted."""


class _Reader:
    """Turns a composed YAML node tree into values, remembering each field's position,
    and collects problems so that a check reports all of them, not only the first."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.marks: dict[str, tuple[int, int]] = {}
        self.problems: list[str] = []

    def note(self, error: ConfigError) -> None:
        if not isinstance(error, _AbandonedError) and str(error) not in self.problems:
            self.problems.append(str(error))

    def guard(self, fn: Callable[[], T], default: T) -> T:
        """``fn()``; on a config problem note it and go on with ``default``."""
        try:
            return fn()
        except ConfigError as exc:
            self.note(exc)
            return default

    def fail(self, path: str, problem: str) -> ConfigError:
        where = self.source
        mark = self.marks.get(path)
        if mark is None:  # a missing field: point at its parent mapping
            parent = path.rsplit(".", 1)[0] if "." in path else ""
            mark = self.marks.get(parent)
        if mark is not None:
            where += f":{mark[0]}:{mark[1]}"
        return ConfigError(f"{where}: {path or '<top>'}: {problem}")

    def to_python(self, node: yaml.Node, path: str) -> Any:
        self.marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = key_node.value
                if not isinstance(key_node, yaml.ScalarNode):
                    raise self.fail(path, "mapping keys must be plain strings")
                sub = f"{path}.{key}" if path else str(key)
                if key in out:
                    self.marks[sub] = (key_node.start_mark.line + 1,
                                       key_node.start_mark.column + 1)
                    self.note(self.fail(sub, "duplicate field"))
                    continue
                out[str(key)] = self.to_python(value_node, sub)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.to_python(v, f"{path}[{i}]") for i, v in enumerate(node.value)]
        # A scalar: let PyYAML's safe constructor resolve its type (int, float, null, ...).
        return yaml.SafeLoader("").construct_object(node, deep=True)


def _fields(r: _Reader, data: Any, path: str, allowed: set[str], required: set[str]
            ) -> dict[str, Any]:
    """``data`` as a mapping; unknown fields are noted (and ignored), missing required
    fields are noted and abandon the mapping."""
    if not isinstance(data, dict):
        raise r.fail(path, f"must be a mapping, got {_kind(data)}")
    for name in sorted(set(data) - allowed):
        sub = f"{path}.{name}" if path else name
        r.note(r.fail(sub, f"unknown field (expected one of: {', '.join(sorted(allowed))})"))
    missing = sorted(n for n in required if n not in data)
    for name in missing:
        r.note(r.fail(f"{path}.{name}" if path else name, "missing required field"))
    if missing:
        raise _AbandonedError("")
    return {k: v for k, v in data.items() if k in allowed}


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _check(r: _Reader, path: str, fn: Callable[[Any], T], value: Any) -> T:
    try:
        return fn(value)
    except (VnstitchError, ValueError, TypeError) as exc:
        raise r.fail(path, str(exc)) from None


def _number(r: _Reader, path: str, value: Any, *, minimum: float = 0.0,
            strict: bool = False, integer: bool = False) -> float:
    ok_type = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok_type:
        want = "an integer" if integer else "a number"
        raise r.fail(path, f"must be {want}, got {_kind(value)} {value!r}")
    if isinstance(value, int) and abs(value) > 2 ** 53:
        raise r.fail(path, f"out of range, got an integer of {len(str(abs(value)))} digits")
    if not math.isfinite(value):
        raise r.fail(path, f"must be finite, got {value!r}")
    if (strict and value <= minimum) or value < minimum:
        raise r.fail(path, f"must be {'>' if strict else '>='} {minimum:g}, got {value!r}")
    return float(value)


def _string(r: _Reader, path: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise r.fail(path, f"must be a non-empty string, got {_kind(value)} {value!r}")
    return value


def _ip(r: _Reader, path: str, value: Any) -> str:
    text = _string(r, path, value)
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise r.fail(path, f"not an IP address: {text!r}") from None


def _port(r: _Reader, path: str, value: Any, *, allow_zero: bool = False) -> int:
    port = int(_number(r, path, value, integer=True))
    if not (0 if allow_zero else 1) <= port <= 65535:
        raise r.fail(path, f"port must be in {0 if allow_zero else 1}..65535, got {port}")
    return port


def _host_port(r: _Reader, path: str, value: Any) -> tuple[str, int]:
    text = _string(r, path, value)
    m = re.match(r"^\[([^\]]+)\]:(\d+)$", text) or re.match(r"^([^:]+):(\d+)$", text)
    if m is None:
        raise r.fail(path, f"must be 'IP:PORT' (or '[IPv6]:PORT'), got {text!r}")
    host = m.group(1)
    try:
        host = str(ipaddress.ip_address(host))
    except ValueError:
        raise r.fail(path, f"not an IP address: {host!r}") from None
    port = int(m.group(2))
    if not 1 <= port <= 65535:
        raise r.fail(path, f"port must be in 1..65535, got {port}")
    return host, port


def _list(r: _Reader, path: str, value: Any) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise r.fail(path, f"must be a list, got {_kind(value)}")
    return value


def _public_key(r: _Reader, path: str, value: Any) -> bytes:
    text = _string(r, path, value)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise r.fail(path, "not valid base64") from None
    if len(raw) != 32:
        raise r.fail(path, f"an Ed25519 public key is 32 bytes, got {len(raw)}")
    return raw


# -- sections ---------------------------------------------------------------------------


def _trust(r: _Reader, data: Any) -> dict[RouteManagerId, bytes]:
    trust: dict[RouteManagerId, bytes] = {}

    def entry(i: int, item: Any) -> None:
        path = f"trust[{i}]"
        e = _fields(r, item, path, {"public_key", "id", "name"}, {"public_key"})
        key = _public_key(r, f"{path}.public_key", e["public_key"])
        rm = route_manager_id_from_public_key(key)
        if "id" in e:
            claimed = _check(r, f"{path}.id", route_manager_id, e["id"])
            if claimed != rm:
                raise r.fail(f"{path}.id", f"does not match the public key (derived id {rm})")
        if rm in trust:
            raise r.fail(path, f"duplicate trust entry for {rm}")
        trust[rm] = key

    for i, item in enumerate(_list(r, "trust", data)):
        r.guard(partial(entry, i, item), None)
    return trust


def _peers(r: _Reader, data: Any, trust: dict[RouteManagerId, bytes]) -> tuple[PeerConfig, ...]:
    """Every peer entry; each field's problem is noted on its own (all are reported)."""
    peers: list[PeerConfig] = []
    seen: dict[tuple[str, int], str] = {}  # address -> the entry that has it
    for i, entry in enumerate(_list(r, "peers", data)):
        path = f"peers[{i}]"
        e = r.guard(partial(_fields, r, entry, path,
                            {"id", "address", "capacity_mbps", "latency_ms", "cost"},
                            {"id", "address", "capacity_mbps", "latency_ms"}), None)
        if e is None:
            continue
        rm = r.guard(partial(_peer_id, r, path, e["id"], trust, peers), None)
        addr = r.guard(partial(_peer_address, r, path, e["address"], seen), None)
        cap = r.guard(partial(_number, r, f"{path}.capacity_mbps", e["capacity_mbps"],
                              strict=True), None)
        lat = r.guard(partial(_number, r, f"{path}.latency_ms", e["latency_ms"]), None)
        cost = r.guard(partial(_number, r, f"{path}.cost", e.get("cost", 1.0)), None)
        if rm is None or addr is None or cap is None or lat is None or cost is None:
            continue
        peers.append(PeerConfig(rm_id=rm, host=addr[0], port=addr[1], capacity_mbps=cap,
                                latency_ms=lat, cost=cost))
    return tuple(peers)


def _peer_id(r: _Reader, path: str, value: Any, trust: dict[RouteManagerId, bytes],
             peers: list[PeerConfig]) -> RouteManagerId:
    rm = _check(r, f"{path}.id", route_manager_id, value)
    if rm not in trust:
        raise r.fail(f"{path}.id", f"peer {rm} is not in the trust store")
    if any(p.rm_id == rm for p in peers):
        raise r.fail(f"{path}.id", f"duplicate peer {rm}")
    return rm


def _peer_address(r: _Reader, path: str, value: Any, seen: dict[tuple[str, int], str]
                  ) -> tuple[str, int]:
    # Datagrams are matched to peers by source address: two peers at one address would
    # make each other's messages look forged.
    host, port = _host_port(r, f"{path}.address", value)
    if (host, port) in seen:
        raise r.fail(f"{path}.address", f"same address as peer {seen[(host, port)]} "
                                         f"({host}:{port}); every peer needs its own")
    seen[(host, port)] = path
    return host, port


def _trust_names(r: _Reader, data: Any) -> dict[str, RouteManagerId]:
    """The ``name`` of each trust entry (already validated by :func:`_trust`) -> its id."""
    names: dict[str, RouteManagerId] = {}
    for i, entry in enumerate(_list(r, "trust", data)):
        if isinstance(entry, dict) and "name" in entry:
            name = _string(r, f"trust[{i}].name", entry["name"])
            key = _public_key(r, f"trust[{i}].public_key", entry["public_key"])
            names[name] = route_manager_id_from_public_key(key)
    return names


def _allow(r: _Reader, path: str, value: Any, names: dict[str, RouteManagerId]
           ) -> tuple[bool, tuple[RouteManagerId, ...]]:
    if value == "any":
        return True, ()
    if isinstance(value, str):
        raise r.fail(path, f"must be 'any' or a list of RM ids / trust names, got {value!r}")
    allowed: list[RouteManagerId] = []
    for j, item in enumerate(_list(r, path, value)):
        text = _string(r, f"{path}[{j}]", item)
        if text in names:
            allowed.append(names[text])
            continue
        try:
            allowed.append(route_manager_id(text))
        except VnstitchError:
            raise r.fail(f"{path}[{j}]", f"{text!r} is neither an RM id (32 hex digits) nor "
                         f"the name of a trust entry ({', '.join(sorted(names)) or 'none'})"
                         ) from None
    return False, tuple(allowed)


def _local_vns(r: _Reader, data: Any, names: dict[str, RouteManagerId] | None = None,
               base: Path | None = None) -> tuple[LocalVnConfig, ...]:
    vns: list[LocalVnConfig] = []
    names = names or {}

    def file(path: str, value: Any) -> Path | None:
        if value is None:
            return None
        p = Path(_string(r, path, value)).expanduser()
        return p if p.is_absolute() or base is None else base / p

    for i, entry in enumerate(_list(r, "local_vns", data)):
        vn = r.guard(partial(_local_vn, r, f"local_vns[{i}]", entry, vns, names=names,
                             file=file), None)
        if vn is not None:
            vns.append(vn)
    return tuple(vns)


def _local_vn(r: _Reader, path: str, entry: Any, vns: list[LocalVnConfig], *,
              names: dict[str, RouteManagerId],
              file: Callable[[str, Any], Path | None]) -> LocalVnConfig:
    e = _fields(r, entry, path, {"vnid", "components", "host_ports", "application",
                                 "allow", "owner", "grant", "revocations"}, {"vnid"})
    v = _check(r, f"{path}.vnid", vnid, e["vnid"])
    if any(x.vnid == v for x in vns):
        raise r.fail(f"{path}.vnid", f"duplicate VNID {v}")
    comps = tuple(
        _check(r, f"{path}.components[{j}]", Component.parse, _string(
            r, f"{path}.components[{j}]", c))
        for j, c in enumerate(_list(r, f"{path}.components", e.get("components")))
    )
    ports: list[str] = []
    for j, p in enumerate(_list(r, f"{path}.host_ports", e.get("host_ports"))):
        name = _string(r, f"{path}.host_ports[{j}]", p)
        if not _IFNAME_RE.match(name):
            raise r.fail(f"{path}.host_ports[{j}]",
                         f"not a Linux interface name (1-15 of [A-Za-z0-9_.-]): {name!r}")
        ports.append(name)
    app = _string(r, f"{path}.application", e.get("application", "default"))
    allow_any, allow = _allow(r, f"{path}.allow", e.get("allow"), names)
    owner = _public_key(r, f"{path}.owner", e["owner"]) if "owner" in e else None
    return LocalVnConfig(v, comps, tuple(ports), app, allow_any, allow, owner,
                         file(f"{path}.grant", e.get("grant")),
                         file(f"{path}.revocations", e.get("revocations")))


def _dataplane(r: _Reader, data: Any, listen_host: str) -> DataplaneConfig:
    if data is None:
        return DataplaneConfig(wireguard=WireguardConfig(listen_host))
    e = _fields(r, data, "dataplane", {"driver", "netns", "wireguard"}, set())
    driver = _string(r, "dataplane.driver", e.get("driver", "memory"))
    if driver not in DRIVERS:
        raise r.fail("dataplane.driver", f"must be one of {', '.join(DRIVERS)}, got {driver!r}")
    netns = e.get("netns")
    if netns is not None:
        netns = _string(r, "dataplane.netns", netns)
        if not _NETNS_RE.match(netns):
            raise r.fail("dataplane.netns", f"not a namespace name: {netns!r}")
    wg = WireguardConfig(listen_host)
    if e.get("wireguard") is not None:
        w = _fields(r, e["wireguard"], "dataplane.wireguard", {"endpoint", "port"}, set())
        wg = WireguardConfig(
            endpoint=_ip(r, "dataplane.wireguard.endpoint", w.get("endpoint", listen_host)),
            port=_port(r, "dataplane.wireguard.port", w.get("port", 51820)),
        )
    return DataplaneConfig(driver=driver, netns=netns, wireguard=wg)


def _timers(r: _Reader, data: Any) -> TimerConfig:
    if data is None:
        return TimerConfig()
    e = _fields(r, data, "timers", set(_TIMER_FIELDS), set())
    values: dict[str, Any] = {}
    for name, kind in _TIMER_FIELDS.items():
        if name in e:
            v = r.guard(partial(_number, r, f"timers.{name}", e[name], strict=True,
                                integer=kind is int), None)
            if v is not None:
                values[name] = int(v) if kind is int else v
    if "hold_time_s" not in values and "announce_interval_s" in values:
        values["hold_time_s"] = 3 * values["announce_interval_s"]
    timers = TimerConfig(**values)
    if timers.hold_time_s < timers.announce_interval_s:
        raise r.fail("timers.hold_time_s", "must be at least announce_interval_s")
    return timers


def _allocation(r: _Reader, data: Any) -> AllocationConfig | None:
    if data is None:
        return None
    # Imported here: the class names live with the allocator (numpy), loaded only when
    # the section is present.
    from vnstitch.allocate.policy import DEFAULT_CLASSES  # noqa: PLC0415

    p = "allocation"
    e = _fields(r, data, p, {"interval_s", "forecaster", "default_class", "vn_classes",
                             "min_mbps", "unit_mbps", "hold_steps", "history",
                             "decisions_kept", "grow_after", "grow_headroom",
                             "grow_holddown_s", "grow_max_factor", "shrink_after",
                             "shrink_below"}, set())
    d = AllocationConfig()

    def cls(path: str, value: Any) -> str:
        name = _string(r, path, value)
        if name not in DEFAULT_CLASSES:
            raise r.fail(path, f"unknown application class {name!r} (one of "
                               f"{', '.join(DEFAULT_CLASSES)})")
        return name

    forecaster = _string(r, f"{p}.forecaster", e.get("forecaster", d.forecaster))
    if forecaster not in ALLOCATION_FORECASTERS:
        raise r.fail(f"{p}.forecaster", f"must be one of {', '.join(ALLOCATION_FORECASTERS)}"
                                        f", got {forecaster!r}")
    raw_classes = e.get("vn_classes") or {}
    if not isinstance(raw_classes, dict):
        raise r.fail(f"{p}.vn_classes", f"must be a mapping VNID -> class, got "
                                        f"{_kind(raw_classes)}")

    def vn_key(key: str) -> int:  # mapping keys arrive as text
        path = f"{p}.vn_classes.{key}"
        if not key.isdigit():
            raise r.fail(path, f"VNID must be an integer, got {key!r}")
        return int(_check(r, path, vnid, int(key)))

    vn_classes = tuple(sorted((vn_key(k), cls(f"{p}.vn_classes.{k}", v))
                              for k, v in raw_classes.items()))

    def count(name: str, default: int, minimum: int) -> int:
        return int(_number(r, f"{p}.{name}", e.get(name, default), minimum=minimum,
                           integer=True))

    return AllocationConfig(
        interval_s=_number(r, f"{p}.interval_s", e.get("interval_s", d.interval_s),
                           strict=True),
        forecaster=forecaster,
        default_class=cls(f"{p}.default_class", e.get("default_class", d.default_class)),
        vn_classes=vn_classes,
        min_mbps=_number(r, f"{p}.min_mbps", e.get("min_mbps", d.min_mbps), strict=True),
        unit_mbps=_number(r, f"{p}.unit_mbps", e.get("unit_mbps", d.unit_mbps), strict=True),
        hold_steps=count("hold_steps", d.hold_steps, 0),
        history=count("history", d.history, 4),
        decisions_kept=count("decisions_kept", d.decisions_kept, 1),
        grow_after=count("grow_after", d.grow_after, 0),
        grow_headroom=_number(r, f"{p}.grow_headroom", e.get("grow_headroom",
                                                             d.grow_headroom)),
        grow_holddown_s=_number(r, f"{p}.grow_holddown_s",
                                e.get("grow_holddown_s", d.grow_holddown_s)),
        grow_max_factor=_number(r, f"{p}.grow_max_factor",
                                e.get("grow_max_factor", d.grow_max_factor), minimum=1),
        shrink_after=count("shrink_after", d.shrink_after, 0),
        shrink_below=_fraction(r, f"{p}.shrink_below", e.get("shrink_below", d.shrink_below)),
    )


def _fraction(r: _Reader, path: str, value: Any) -> float:
    x = _number(r, path, value, strict=True)
    if x > 1:
        raise r.fail(path, f"must be a fraction in (0, 1], got {value!r}")
    return x


def _http(r: _Reader, data: Any, base: Path) -> HttpConfig | None:
    if data is None:
        return None
    d = _fields(r, data, "http", {"listen", "token_file", "metrics_auth"}, {"token_file"})
    host, port = _host_port(r, "http.listen", d.get("listen", "127.0.0.1:9464"))
    token = Path(_string(r, "http.token_file", d["token_file"])).expanduser()
    auth = d.get("metrics_auth", False)
    if not isinstance(auth, bool):
        raise r.fail("http.metrics_auth", f"must be true or false, got {_kind(auth)}")
    return HttpConfig(host, port, token if token.is_absolute() else base / token, auth)


_TOP = {"segment", "listen", "key_file", "trust", "peers", "local_vns", "dataplane",
        "timers", "state_db", "control_socket", "allocation", "http", "congestion", "qos", "pra"}


def _congestion(r: _Reader, data: Any) -> CongestionConfig:
    d = CongestionConfig()
    if data is None:
        return d
    p = "congestion"
    e = _fields(r, data, p, {f.name for f in dataclasses.fields(CongestionConfig)}, set())

    def flag(name: str) -> bool:
        v = e.get(name, getattr(d, name))
        if not isinstance(v, bool):
            raise r.fail(f"{p}.{name}", f"must be true or false, got {_kind(v)}")
        return v

    def num(name: str, minimum: float = 0.0, *, strict: bool = False,
            integer: bool = False) -> Any:
        v = _number(r, f"{p}.{name}", e.get(name, getattr(d, name)), minimum=minimum,
                    strict=strict, integer=integer)
        return int(v) if integer else v

    low, high = _fraction(r, f"{p}.low", e.get("low", d.low)), \
        num("high", strict=True)
    if not 0 < low < high:
        raise r.fail(f"{p}.low", f"need 0 < low < high, got low {low:g}, high {high:g}")
    return CongestionConfig(
        flag("enabled"), num("interval_s", strict=True), high, low,
        num("raise_samples", 1, integer=True), num("clear_samples", 1, integer=True),
        num("holddown_s"), num("min_reports", 1, integer=True),
        num("report_window_s", strict=True), num("return_after_s"), flag("pin_paths"),
        num("decisions_kept", 1, integer=True))


def parse_config(text: str, source: str = "<config>", base_dir: Path | None = None, *,
                 check_files: bool = False) -> DaemonConfig:
    """Validate config ``text``; ``source`` names it in errors, paths resolve in ``base_dir``.

    Every problem found is reported (:class:`ConfigProblemsError`, one line each), not only the
    first. ``check_files`` also opens the key file (``routemgr check``)."""
    r = _Reader(source)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: not valid YAML: {problem}") from None
    if node is None:
        raise ConfigError(f"{source}: empty config")
    try:
        data = r.to_python(node, "")
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    try:
        config = _config(r, data, source, base_dir if base_dir is not None else Path.cwd(),
                         check_files)
    except ConfigError as exc:
        r.note(exc)
        config = None
    if r.problems or config is None:
        raise ConfigProblemsError(r.problems or [f"{source}: invalid config"])
    return config


def _config(r: _Reader, data: Any, source: str, base: Path, check_files: bool
            ) -> DaemonConfig:
    top = _fields(r, data, "", _TOP, {"segment", "listen", "key_file", "state_db",
                                       "control_socket"})

    def path_field(name: str) -> Path:
        p = Path(_string(r, name, top[name])).expanduser()
        return p if p.is_absolute() else (base / p)

    def listen() -> tuple[str, int]:
        e = _fields(r, top["listen"], "listen", {"address", "port"}, {"address", "port"})
        host = r.guard(lambda: _ip(r, "listen.address", e["address"]), "0.0.0.0")
        return host, _port(r, "listen.port", e["port"], allow_zero=True)

    host, port = r.guard(listen, ("0.0.0.0", 0))
    no_trust: dict[RouteManagerId, bytes] = {}
    no_peers: tuple[PeerConfig, ...] = ()
    no_vns: tuple[LocalVnConfig, ...] = ()
    trust = r.guard(lambda: _trust(r, top.get("trust")), no_trust)
    parts = {
        "segment": r.guard(lambda: _check(r, "segment", segment_id, top["segment"]), None),
        "key_file": r.guard(lambda: _key_file(r, path_field("key_file"), check_files), None),
        "peers": r.guard(lambda: _peers(r, top.get("peers"), trust), no_peers),
        "local_vns": r.guard(lambda: _local_vns(r, top.get("local_vns"),
                                                _trust_names(r, top.get("trust")), base),
                             no_vns),
        "dataplane": r.guard(lambda: _dataplane(r, top.get("dataplane"), host), None),
        "timers": r.guard(lambda: _timers(r, top.get("timers")), None),
        "state_db": r.guard(lambda: path_field("state_db"), None),
        "control_socket": r.guard(lambda: path_field("control_socket"), None),
        "allocation": r.guard(lambda: _allocation(r, top.get("allocation")), None),
        "http": r.guard(lambda: _http(r, top.get("http"), base), None),
        "qos": r.guard(lambda: parse_qos(top.get("qos"), r.fail, source), None),
        "pra": r.guard(lambda: parse_pra(top.get("pra"), r.fail), None),
        "congestion": r.guard(lambda: _congestion(r, top.get("congestion")),
                              CongestionConfig()),
    }
    if r.problems:
        raise _AbandonedError("")
    return DaemonConfig(source=Path(source), listen_host=host, listen_port=port,
                        trust=trust, **parts)  # type: ignore[arg-type]


def _key_file(r: _Reader, path: Path, check: bool) -> Path:
    """``path``; with ``check`` (a pre-flight check) the key file must exist, be private
    and hold a valid key."""
    if check:
        from vnstitch.daemon.identity import load_key_file  # noqa: PLC0415

        try:
            load_key_file(path)
        except VnstitchError as exc:
            raise r.fail("key_file", str(exc)) from None
    return path


def load_config(path: Path | str, *, check_files: bool = False) -> DaemonConfig:
    """Read and validate the config file at ``path`` (see :func:`parse_config`)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read config: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not UTF-8 text: {exc}") from None
    return parse_config(text, str(p), p.parent.resolve(), check_files=check_files)
