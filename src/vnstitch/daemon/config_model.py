"""The config file's schema: pydantic models, the checks between fields, the conversion.

Theory of operation: :class:`ConfigFile` and its section models *are* the Route Manager's
config file format (``vnstitch schema config`` prints them as JSON Schema for editors).
:func:`read` validates a document read with positions (:mod:`vnstitch.yamlfile`) against
them -- every problem of type, range or spelling at once, unknown fields and non-finite
numbers refused -- then :func:`_relations` checks what relates one field to another (a
peer must be trusted, names in ``allow`` must exist, no duplicates, the ``qos:`` section's
classes: :func:`vnstitch.daemon.qos_model.qos_relations`; the ``pra:`` section's
schema is :mod:`vnstitch.daemon.pra_model`) and the valid file becomes the runtime
:class:`~vnstitch.daemon.config.DaemonConfig` (relative paths resolved against the
config file's folder, trust keys decoded). Kept apart from :mod:`vnstitch.daemon.config`
so that importing the daemon does not load pydantic before a config is read. Pure: no
network or kernel I/O (the key file is opened only for ``routemgr check``).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, Field, ValidationError

from vnstitch.daemon.config import (
    _IFNAME_RE,
    _NETNS_RE,
    AllocationConfig,
    CongestionConfig,
    DaemonConfig,
    DataplaneConfig,
    HttpConfig,
    LocalVnConfig,
    PeerConfig,
    TimerConfig,
    WireguardConfig,
)
from vnstitch.daemon.pra_model import PraSection, to_pra_config
from vnstitch.daemon.qos_model import DaemonQosSection, qos_relations, to_qos_config
from vnstitch.errors import VnstitchError
from vnstitch.model.ids import (
    RouteManagerId,
    route_manager_id,
    route_manager_id_from_public_key,
    segment_id,
    vnid,
)
from vnstitch.model.virtual import Component
from vnstitch.yamlfile import (
    FileModel,
    Problem,
    YamlDocument,
    after,
    checked,
    split_host_port,
    validate,
)

M = TypeVar("M", bound=BaseModel)

# -- the file's schema ------------------------------------------------------------------


def _ip(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ValueError(f"not an IP address: {text!r}") from None


def _port_in(low: int) -> Any:
    def check(port: int) -> int:
        if not low <= port <= 65535:
            raise ValueError(f"port must be in {low}..65535, got {port}")
        return port
    return after(check)


def _public_key(text: str) -> str:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not valid base64") from None
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 public key is 32 bytes, got {len(raw)}")
    return text


def _matching(pattern: re.Pattern[str], what: str) -> Any:
    def check(text: str) -> str:
        if not pattern.match(text):
            raise ValueError(f"not {what}: {text!r}")
        return text
    return after(check)


def _component(text: str) -> str:
    Component.parse(text)
    return text


def _app_class(name: str) -> str:
    # Imported here: the class table lives with the allocator (numpy), needed only here.
    from vnstitch.allocate.policy import DEFAULT_CLASSES  # noqa: PLC0415

    if name not in DEFAULT_CLASSES:
        raise ValueError(f"unknown application class {name!r} (one of "
                         f"{', '.join(DEFAULT_CLASSES)})")
    return name


def _vnid_key(key: object) -> int:  # mapping keys arrive as text
    if isinstance(key, str):
        if not key.isdigit():
            raise ValueError(f"VNID must be an integer, got {key!r}")
        key = int(key)
    return int(vnid(key))


def _allow(value: object) -> object:
    if value == "any":
        return ["any"]
    if isinstance(value, str):
        raise ValueError(f"must be 'any' or a list of RM ids / trust names, got {value!r}")
    return value


def _fraction(x: float) -> float:
    if x > 1:
        raise ValueError(f"must be a fraction in (0, 1], got {x!r}")
    return x


Text = Annotated[str, Field(min_length=1)]
IpText = Annotated[Text, after(_ip)]
Port = Annotated[int, _port_in(1)]
HostPort = Annotated[Text, after(lambda t: (split_host_port(t), t)[1]),
                     Field(description="IP:PORT or [IPv6]:PORT")]
PublicKey = Annotated[Text, after(_public_key), Field(description="base64, 32 bytes")]
RmIdText = Annotated[str, checked(route_manager_id), Field(description="32 hex digits")]
Positive = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]
AppClass = Annotated[Text, after(_app_class)]
Count = Annotated[int, Field(ge=0)]


class ListenSection(FileModel):
    """Where this RM's Stitching Protocol socket listens (UDP; port 0: any free)."""

    address: IpText
    port: Annotated[int, _port_in(0)]


class TrustEntry(FileModel):
    """A Route Manager whose signed messages this RM accepts."""

    public_key: PublicKey
    id: RmIdText | None = Field(default=None, description="checked against the key")
    name: Text | None = Field(default=None, description="stands for the id in `allow`")


class PeerEntry(FileModel):
    """A neighbouring Route Manager and the substrate link toward it."""

    id: RmIdText
    address: HostPort
    capacity_mbps: Positive
    latency_ms: NonNegative
    cost: NonNegative = 1.0


class LocalVnEntry(FileModel):
    """A VN present on this segment."""

    vnid: Annotated[int, checked(vnid)]
    components: list[Annotated[Text, after(_component)]] | None = None
    host_ports: list[Annotated[Text, _matching(
        _IFNAME_RE, "a Linux interface name (1-15 of [A-Za-z0-9_.-])")]] | None = None
    application: Text = "default"
    allow: Annotated[list[Text] | None, BeforeValidator(
        _allow, json_schema_input_type=Literal["any"] | list[str] | None)] = Field(
        default=None, description="'any' (every trusted RM) or RM ids / trust names; "
                                  "absent: only grant holders")
    owner: PublicKey | None = None
    grant: Text | None = None
    revocations: Text | None = None


class WireguardSection(FileModel):
    endpoint: IpText | None = Field(default=None, description="default: listen.address")
    port: Port = 51820
    follow_routes: bool = Field(default=True, description=(
        "reset a tunnel peer's endpoint when the route to it moves (linux driver)"))
    follow_check_s: Positive = Field(default=1.0, description=(
        "seconds between route checks besides the kernel's routing events"))


class DataplaneSection(FileModel):
    driver: Literal["memory", "linux"] = "memory"
    netns: Annotated[Text, _matching(_NETNS_RE, "a namespace name")] | None = None
    wireguard: WireguardSection | None = None


class TimersSection(FileModel):
    announce_interval_s: Positive = 1.0
    hold_time_s: Positive | None = Field(default=None,
                                         description="default: 3 x announce_interval_s")
    probe_interval_s: Positive = 0.5
    probe_misses: Annotated[int, Field(gt=0, le=1000)] = 3
    query_timeout_s: Positive = 2.0
    reservation_hold_s: Positive = 2.0
    persist_interval_s: Positive = 5.0


class AllocationSection(FileModel):
    """The predictive allocation loop (see :class:`AllocationConfig`)."""

    interval_s: Positive = 5.0
    forecaster: Literal["naive", "ets"] = "naive"
    default_class: AppClass = "web"
    vn_classes: dict[Annotated[int, checked(_vnid_key)], AppClass] | None = None
    min_mbps: Positive = 1.0
    unit_mbps: Positive = 1.0
    hold_steps: Count = 2
    history: Annotated[int, Field(ge=4)] = 288
    decisions_kept: Annotated[int, Field(ge=1)] = 500
    grow_after: Count = 2
    grow_headroom: NonNegative = 0.2
    grow_holddown_s: NonNegative = 60.0
    grow_max_factor: Annotated[float, Field(ge=1)] = 4.0
    shrink_after: Count = 0
    shrink_below: Annotated[float, Field(gt=0), after(_fraction)] = 0.5


class CongestionSection(FileModel):
    """Live congestion detection and reroute (see :class:`CongestionConfig`)."""

    enabled: bool = True
    interval_s: Positive = 0.2
    high: Positive = 0.8
    low: Annotated[float, Field(gt=0), after(_fraction)] = 0.6
    raise_samples: Annotated[int, Field(ge=1)] = 2
    clear_samples: Annotated[int, Field(ge=1)] = 3
    holddown_s: NonNegative = 10.0
    min_reports: Annotated[int, Field(ge=1)] = 1
    report_window_s: Positive = 1.0
    return_after_s: NonNegative = 15.0
    pin_paths: bool = True
    decisions_kept: Annotated[int, Field(ge=1)] = 500
    probe_delay_high_ms: Positive | None = None
    probe_loss_high: Annotated[float, Field(gt=0), after(_fraction)] | None = None


class HttpSection(FileModel):
    listen: HostPort = "127.0.0.1:9464"
    token_file: Text
    metrics_auth: bool = False


class ConfigFile(FileModel):
    """A Route Manager's config file."""

    segment: Annotated[str, checked(segment_id)]
    listen: ListenSection
    key_file: Text
    trust: list[TrustEntry] | None = None
    peers: list[PeerEntry] | None = None
    local_vns: list[LocalVnEntry] | None = None
    dataplane: DataplaneSection | None = None
    timers: TimersSection | None = None
    state_db: Text
    control_socket: Text
    allocation: AllocationSection | None = None
    http: HttpSection | None = None
    congestion: CongestionSection | None = None
    qos: DaemonQosSection | None = Field(
        default=None, description="QoS classes live and stitching priority: see "
        "vnstitch.daemon.qosconfig")
    pra: PraSection | None = Field(
        default=None, description="the live Predictive Resource Allocator: see "
        "vnstitch.daemon.pra_config")
    log_level: Literal["debug", "info", "warning", "error"] | None = Field(
        default=None, description="least severe level logged (routemgr run --log-level "
        "wins at start; a reload applies this)")


# -- relations between fields ----------------------------------------------------------


def _entries(model: type[M], raw: object) -> list[tuple[int, M]]:
    """The entries of list ``raw`` that are valid ``model``\\ s, with their index (the
    others' problems are reported by the schema already)."""
    out = []
    for i, item in enumerate(raw if isinstance(raw, list) else ()):
        try:
            out.append((i, model.model_validate(item)))
        except ValidationError:
            continue
    return out


def _relations(data: object, check_files: bool, base: Path, source: str) -> list[Problem]:
    """What relates one field to another, over every part of the file that is valid on
    its own -- so these problems come together with the schema's, not after them."""
    top = data if isinstance(data, dict) else {}
    out: list[Problem] = []
    out += qos_relations(top.get("qos"))
    for _, c in _entries(CongestionSection, [top.get("congestion")]):
        if not c.low < c.high:
            out.append(Problem(("congestion", "low"), f"need low < high, got low {c.low:g}, "
                               f"high {c.high:g}"))
    ids: dict[RouteManagerId, int] = {}
    names: dict[str, RouteManagerId] = {}
    for i, t in _entries(TrustEntry, top.get("trust")):
        rm = route_manager_id_from_public_key(base64.b64decode(t.public_key))
        if t.id is not None and t.id != rm:
            out.append(Problem(("trust", i, "id"),
                               f"does not match the public key (derived id {rm})"))
        elif rm in ids:
            out.append(Problem(("trust", i), f"duplicate trust entry for {rm}"))
        ids[rm] = i
        if t.name is not None:
            names[t.name] = rm
    seen_ids: set[str] = set()
    for i, p in _entries(PeerEntry, top.get("peers")):
        if p.id not in ids:
            out.append(Problem(("peers", i, "id"), f"peer {p.id} is not in the trust store"))
        elif p.id in seen_ids:
            out.append(Problem(("peers", i, "id"), f"duplicate peer {p.id}"))
        seen_ids.add(p.id)
    # Datagrams are matched to peers by source address: two peers at one address would
    # make each other's messages look forged. (Read from each entry's own address, valid
    # even when another of its fields is not.)
    seen_addr: dict[tuple[str, int], str] = {}
    raw_peers = top.get("peers")
    for i, entry in enumerate(raw_peers if isinstance(raw_peers, list) else ()):
        text = entry.get("address") if isinstance(entry, dict) else None
        try:
            addr = split_host_port(text) if isinstance(text, str) else None
        except ValueError:
            addr = None
        if addr is None:
            continue
        if addr in seen_addr:
            out.append(Problem(("peers", i, "address"),
                               f"same address as peer {seen_addr[addr]} ({text}); every "
                               f"peer needs its own"))
        seen_addr.setdefault(addr, f"peers[{i}]")
    vnids: set[int] = set()
    for i, vn in _entries(LocalVnEntry, top.get("local_vns")):
        if vn.vnid in vnids:
            out.append(Problem(("local_vns", i, "vnid"), f"duplicate VNID {vn.vnid}"))
        vnids.add(vn.vnid)
        for j, who in enumerate(vn.allow or ()):
            if who == "any" or who in names:
                continue
            try:
                route_manager_id(who)
            except VnstitchError:
                out.append(Problem(("local_vns", i, "allow", j),
                                   f"{who!r} is neither an RM id (32 hex digits) nor the "
                                   f"name of a trust entry ({', '.join(sorted(names)) or 'none'})"))
    tm = _entries(TimersSection, [top.get("timers") or {}])
    if tm and tm[0][1].hold_time_s is not None and \
            tm[0][1].hold_time_s < tm[0][1].announce_interval_s:
        out.append(Problem(("timers", "hold_time_s"), "must be at least announce_interval_s"))
    if check_files and isinstance(top.get("key_file"), str) and top["key_file"]:
        # A pre-flight check (routemgr check): the key file must exist, be private, parse.
        from vnstitch.daemon.identity import load_key_file  # noqa: PLC0415

        try:
            load_key_file(_resolve(top["key_file"], base))
        except VnstitchError as exc:
            out.append(Problem(("key_file",), str(exc)))
    return out


# -- the runtime config -----------------------------------------------------------------


def _resolve(text: str, base: Path) -> Path:
    p = Path(text).expanduser()
    return p if p.is_absolute() else base / p


def _runtime(m: ConfigFile, source: str, base: Path) -> DaemonConfig:
    trust = {route_manager_id_from_public_key(raw): raw
             for raw in (base64.b64decode(t.public_key) for t in m.trust or ())}
    names = {t.name: route_manager_id_from_public_key(base64.b64decode(t.public_key))
             for t in m.trust or () if t.name is not None}
    peers = tuple(PeerConfig(route_manager_id(p.id), *split_host_port(p.address),
                             capacity_mbps=p.capacity_mbps, latency_ms=p.latency_ms,
                             cost=p.cost) for p in m.peers or ())
    vns = tuple(LocalVnConfig(
        vnid(v.vnid), tuple(Component.parse(c) for c in v.components or ()),
        tuple(v.host_ports or ()), v.application, allow_any=v.allow == ["any"],
        allow=tuple(names.get(a) or route_manager_id(a)
                    for a in v.allow or () if v.allow != ["any"]),
        owner=base64.b64decode(v.owner) if v.owner is not None else None,
        grant=_resolve(v.grant, base) if v.grant is not None else None,
        revocations=_resolve(v.revocations, base) if v.revocations is not None else None)
        for v in m.local_vns or ())
    dp = m.dataplane or DataplaneSection()
    wg = dp.wireguard or WireguardSection()
    timers = (m.timers or TimersSection()).model_dump()
    if timers["hold_time_s"] is None:
        timers["hold_time_s"] = 3 * timers["announce_interval_s"]
    alloc = None
    if m.allocation is not None:
        fields = m.allocation.model_dump(exclude={"vn_classes"})
        alloc = AllocationConfig(**fields, vn_classes=tuple(sorted(
            (m.allocation.vn_classes or {}).items())))
    http = None
    if m.http is not None:
        http = HttpConfig(*split_host_port(m.http.listen),
                          token_file=_resolve(m.http.token_file, base),
                          metrics_auth=m.http.metrics_auth)
    return DaemonConfig(
        source=Path(source), segment=segment_id(m.segment), listen_host=m.listen.address,
        listen_port=m.listen.port, key_file=_resolve(m.key_file, base), trust=trust,
        peers=peers, local_vns=vns,
        dataplane=DataplaneConfig(dp.driver, dp.netns, WireguardConfig(
            wg.endpoint or m.listen.address, wg.port, wg.follow_routes, wg.follow_check_s)),
        timers=TimerConfig(**timers), state_db=_resolve(m.state_db, base),
        control_socket=_resolve(m.control_socket, base), allocation=alloc, http=http,
        congestion=CongestionConfig(**(m.congestion or CongestionSection()).model_dump()),
        qos=None if m.qos is None else to_qos_config(m.qos),
        pra=None if m.pra is None else to_pra_config(m.pra), log_level=m.log_level)


def read(doc: YamlDocument, base: Path, check_files: bool) -> tuple[DaemonConfig | None,
                                                                     list[str]]:
    """The runtime config in ``doc`` and no problems, or None and every problem."""
    model, problems = validate(ConfigFile, doc, lambda m: _relations(m, check_files, base,
                                                                      doc.source))
    if model is None:
        return None, problems
    return _runtime(model, doc.source, base), []
