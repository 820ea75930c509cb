"""The daemon's YAML config: the runtime settings, read through one pydantic schema.

Theory of operation: :func:`parse_config` reads the YAML keeping each value's line and
column (:mod:`vnstitch.yamlfile`) and hands it to :mod:`vnstitch.daemon.config_model`,
whose pydantic models *are* the file's schema (``vnstitch schema config``): every problem
of type, range or spelling at once, unknown fields and non-finite numbers refused, then
what relates one field to another (a peer must be trusted, names in ``allow`` must
exist, no duplicates), all reported together as ``FILE:LINE:COL: path.to.field:
problem`` (:class:`ConfigProblemsError`). The valid file becomes the frozen
:class:`DaemonConfig` below; nothing here does network or kernel I/O. A new section is
a model field on :class:`~vnstitch.daemon.config_model.ConfigFile`, a field here and one
line in its ``_runtime``.

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
    pra: {...}                                                   # daemon/pra_config.py
    log_level: info        # debug|info|warning|error; routemgr reload / SIGHUP applies it
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vnstitch.daemon.errors import ConfigError
from vnstitch.model.ids import VNID, RouteManagerId, SegmentId
from vnstitch.model.virtual import Component, VirtualNetwork

if TYPE_CHECKING:
    from vnstitch.daemon.pra_config import PraConfig
    from vnstitch.daemon.qosconfig import QosConfig

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
    """This RM's tunnel endpoint (underlay address peers dial) and first listen port;
    ``follow_routes``: reset a peer's endpoint when the substrate route to it moves (the
    tunnel follows the IGP, :mod:`vnstitch.daemon.endpointfollow`), checked on every
    routing change the kernel announces and every ``follow_check_s``."""

    endpoint: str
    port: int = 51820
    follow_routes: bool = True
    follow_check_s: float = 1.0


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


#: Forecasters the allocation loop may use (cheap, refitted every interval).
ALLOCATION_FORECASTERS = ("naive", "ets")


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
class CongestionConfig:
    """Live congestion detection and reroute (:mod:`vnstitch.daemon.congestion`): every
    ``interval_s`` the substrate links to the neighbours are sampled; a link above
    ``high`` of its capacity for ``raise_samples`` samples is congested until below
    ``low`` for ``clear_samples``; the origin moves a stitch after ``min_reports`` within
    ``report_window_s``, at most once per ``holddown_s``, and brings it back when the link
    was quiet ``return_after_s``. A sample above ``high`` in which the link's queues
    dropped packets makes it congested at once. ``probe_delay_high_ms`` /
    ``probe_loss_high`` (off when unset): the stitches' probes leaving by a link make its
    sample hot when their round trip exceeds the least seen by more than that, or their
    loss reaches that. ``pin_paths``: route each tunnel's outer packets to its path's
    first hop. ``enabled: false`` turns it all off."""

    enabled: bool = True
    interval_s: float = 0.2
    high: float = 0.8
    low: float = 0.6
    raise_samples: int = 2
    clear_samples: int = 3
    holddown_s: float = 10.0
    min_reports: int = 1
    report_window_s: float = 1.0
    return_after_s: float = 15.0
    pin_paths: bool = True
    decisions_kept: int = 500
    probe_delay_high_ms: float | None = None
    probe_loss_high: float | None = None


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
    congestion: CongestionConfig = CongestionConfig()
    qos: QosConfig | None = None  # QoS classes live, stitching priority (daemon/qosconfig.py)
    pra: PraConfig | None = None  # the live PRA (vnstitch.daemon.pra_config)
    log_level: str | None = None  # the root logger's level; None: the command line's

    def peer(self, rm_id: RouteManagerId) -> PeerConfig | None:
        for p in self.peers:
            if p.rm_id == rm_id:
                return p
        return None




class ConfigProblemsError(ConfigError):
    """Every problem found in one config file (``problems``: one line each)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def parse_config(text: str, source: str = "<config>", base_dir: Path | None = None, *,
                 check_files: bool = False) -> DaemonConfig:
    """Validate config ``text``; ``source`` names it in errors, paths resolve in ``base_dir``.

    Every problem found is reported (:class:`ConfigProblemsError`, one line each), not only
    the first. ``check_files`` also opens the key file (``routemgr check``)."""
    # Imported here: pydantic is loaded when a config is read, not when the daemon is.
    from vnstitch.daemon import config_model  # noqa: PLC0415
    from vnstitch.yamlfile import YamlSyntaxError, load_yaml  # noqa: PLC0415

    base = base_dir if base_dir is not None else Path.cwd()
    try:
        doc = load_yaml(text, source, what="config")
    except YamlSyntaxError as exc:
        raise ConfigError(str(exc)) from None
    config, problems = config_model.read(doc, base, check_files)
    if config is None:
        raise ConfigProblemsError(problems)
    return config


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
