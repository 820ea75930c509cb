"""Config reload without a restart, and what a peer's state is.

Theory of operation. ``routemgr reload`` (the control request ``{"cmd": "reload"}``, the
HTTP ``POST /api/v1/reload``) and ``SIGHUP`` re-read the daemon's config file
(:meth:`ConfigReloader.reload`, one at a time). A file with problems is refused with every
problem (``FILE:LINE:COL: field: problem``), and so is a change to a section outside
:data:`RELOADABLE` (the listen address, the key, the dataplane, timers, local VNs, the
HTTP listener need a restart) -- the refusal names each such section -- and either way
the daemon keeps running on the config it has. A good file is applied section by
section, each the way :data:`RELOADABLE` says:

- ``trust`` and ``peers``: :meth:`RouteManagerDaemon.reconfigure` rebuilds the core from
  its own snapshot with the new config -- the path a restart takes, without closing the
  socket, the state database or the dataplane -- so stitches, reservations, tunnels and
  sequence numbers are kept; the peer table keeps the counters of every peer still
  configured;
- ``allocation``, ``congestion`` and ``pra``: that runner is stopped and built again from
  the new section (:func:`vnstitch.daemon.runners.restart_runner`); the allocation loop
  restores its samples and overrides from the state database as at start. A ``pra:``
  with ``providers`` is not reloaded: rebuilding it would stop its compute instances and
  remove its volumes, which only a restart should do;
- ``qos``: the overlay of classes and stitching priorities is replaced and the dataplane
  reconciled, as long as the shaped interfaces stay the same (the driver is opened with
  them);
- ``log_level``: the root logger's level.

A peer dropped from the config is not forgotten: it stays in ``show peers`` and on
``/metrics`` as ``removed`` (cilium#40049: a removed peer must not look like one that
never connected). :func:`peer_state` is the one place that says what state a peer is in:
``removed`` (membership), else ``never_connected`` (nothing good heard yet), ``up``
(heard within the hold time) or ``down`` (heard before, silent since). Membership moves
only along :data:`MEMBERSHIP` (configured -> removed -> configured); anything else raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vnstitch.daemon.config import ConfigProblemsError, DaemonConfig, load_config
from vnstitch.daemon.errors import ConfigError, ControlError, DaemonError
from vnstitch.daemon.qoslive import QosLive
from vnstitch.errors import VnstitchError
from vnstitch.model.ids import RouteManagerId

if TYPE_CHECKING:
    from vnstitch.daemon.qosconfig import QosConfig
    from vnstitch.daemon.runtime import PeerView, RouteManagerDaemon

log = logging.getLogger("vnstitch.daemon.reload")

#: Config fields a reload applies, and how; a change to any other one needs a restart.
RELOADABLE = {"trust": "core", "peers": "core", "allocation": "runner",
              "congestion": "runner", "pra": "runner", "qos": "overlay",
              "log_level": "logging"}
#: Not compared: the file a config came from.
_IGNORED = ("source",)


class PeerState(Enum):
    UP = "up"
    DOWN = "down"
    NEVER_CONNECTED = "never_connected"
    REMOVED = "removed"


class Membership(Enum):
    CONFIGURED = "configured"
    REMOVED = "removed"


#: The membership transitions a reload may make.
MEMBERSHIP = {(Membership.CONFIGURED, Membership.REMOVED),
              (Membership.REMOVED, Membership.CONFIGURED)}


def move(current: Membership, new: Membership) -> Membership:
    if (current, new) not in MEMBERSHIP:
        raise DaemonError(f"peer membership cannot go from {current.value} to {new.value}")
    return new


def peer_state(membership: Membership, last_heard: float | None, now: float,
               hold_s: float) -> PeerState:
    """The one definition of a peer's state (``show peers``, ``/metrics``, diagnose)."""
    if membership is Membership.REMOVED:
        return PeerState.REMOVED
    if last_heard is None:
        return PeerState.NEVER_CONNECTED
    return PeerState.UP if now - last_heard <= hold_s else PeerState.DOWN


@dataclass(frozen=True, slots=True)
class PeerChanges:
    added: tuple[RouteManagerId, ...]
    removed: tuple[RouteManagerId, ...]
    readdressed: tuple[RouteManagerId, ...]


def peer_changes(old: DaemonConfig, new: DaemonConfig) -> PeerChanges:
    before = {p.rm_id: p for p in old.peers}
    after = {p.rm_id: p for p in new.peers}
    return PeerChanges(
        tuple(sorted(set(after) - set(before))), tuple(sorted(set(before) - set(after))),
        tuple(sorted(r for r in set(before) & set(after)
                     if before[r].address != after[r].address)))


def needs_restart(old: DaemonConfig, new: DaemonConfig) -> list[str]:
    """``FILE: field: problem`` for each changed field a reload cannot apply."""
    out = []
    for f in dataclasses.fields(DaemonConfig):
        if f.name in RELOADABLE or f.name in _IGNORED:
            continue
        if getattr(old, f.name) != getattr(new, f.name):
            out.append(f"{new.source}: {f.name}: changed; a reload applies only "
                       f"{', '.join(RELOADABLE)}: restart the daemon for this")
    before = old.qos.devices if old.qos is not None else ()
    after = new.qos.devices if new.qos is not None else ()
    if sorted(before) != sorted(after):
        out.append(f"{new.source}: qos.interfaces: changed; the dataplane shapes the "
                   "interfaces it was started with: restart the daemon for this")
    if old.pra != new.pra and any(c is not None and c.providers is not None
                                  for c in (old.pra, new.pra)):
        out.append(f"{new.source}: pra: changed while pra.providers is set; rebuilding "
                   "the PRA would stop its compute instances and remove its volumes: "
                   "restart the daemon for this")
    return out


def changed_sections(old: DaemonConfig, new: DaemonConfig) -> list[str]:
    """The reloadable sections whose value differs, in :data:`RELOADABLE` order."""
    return [name for name in RELOADABLE if getattr(old, name) != getattr(new, name)]


def apply_peers(views: dict[RouteManagerId, PeerView], new: DaemonConfig,
                view_class: type[PeerView]) -> None:
    """The peer table after a reload: kept peers keep their counters (and take a new
    address), removed ones are marked, added ones (or re-added) are configured."""
    wanted = {p.rm_id: p for p in new.peers}
    for rm, old in views.items():
        if rm not in wanted and old.membership is Membership.CONFIGURED:
            old.membership = move(old.membership, Membership.REMOVED)
    for rm, p in wanted.items():
        view = views.get(rm)
        if view is None:
            views[rm] = view_class(rm, p.address)
            continue
        if view.membership is Membership.REMOVED:
            view.membership = move(view.membership, Membership.CONFIGURED)
        view.address = p.address


class ConfigReloader:
    """Reloads one daemon's config file, one reload at a time (module docstring)."""

    def __init__(self, daemon: RouteManagerDaemon) -> None:
        self._daemon = daemon
        self._lock = asyncio.Lock()
        self._signalled: asyncio.Task[Any] | None = None

    def on_signal(self) -> None:
        """SIGHUP: reload in a task; a refused file is logged, the daemon runs on."""
        async def reload_logged() -> None:
            with contextlib.suppress(VnstitchError):  # reload() logged every problem
                await self.reload()

        self._signalled = asyncio.get_running_loop().create_task(reload_logged())

    async def reload(self, path: Path | None = None) -> dict[str, Any]:
        """Re-read the config file and apply it, or refuse it (:class:`ControlError`
        with every problem) and keep running on the current config."""
        async with self._lock:
            return await self._reload(path)

    async def _reload(self, path: Path | None) -> dict[str, Any]:
        daemon = self._daemon
        src = Path(path) if path is not None else daemon.config.source
        try:
            new = load_config(src)
        except ConfigProblemsError as exc:
            _refused(daemon, exc.problems)
        except ConfigError as exc:
            _refused(daemon, [str(exc)])
        old = daemon.config
        problems = needs_restart(old, new)
        if problems:
            _refused(daemon, problems)
        sections = changed_sections(old, new)
        changes = peer_changes(old, new)
        if any(RELOADABLE[s] == "core" for s in sections):
            daemon.reconfigure(new)
        else:
            daemon.config = new  # what the runners and views read from now on
        if "qos" in sections:
            daemon.qos = _qos_replaced(daemon.qos, new.qos)
        if "log_level" in sections and new.log_level is not None:
            logging.getLogger().setLevel(new.log_level.upper())
        from vnstitch.daemon.runners import restart_runner  # noqa: PLC0415  (cycle)

        for name in sections:
            if RELOADABLE[name] == "runner":
                await restart_runner(daemon, name)
        daemon.dataplane_changed()
        daemon.metrics["config_reloads"] += 1
        log.info("config %s reloaded (%s): %d peers added, %d removed", src,
                 ", ".join(sections) or "no change", len(changes.added),
                 len(changes.removed))
        return {"config": str(src), "reloaded": True, "sections": sections,
                "peers": len(new.peers), "added": list(changes.added),
                "removed": list(changes.removed), "readdressed": list(changes.readdressed)}


def _qos_replaced(old: QosLive | None, config: QosConfig | None) -> QosLive | None:
    """The QoS overlay for ``config``, keeping the classes the allocation loop set on the
    interfaces (the same ones: :func:`needs_restart`) for the classes still defined."""
    if config is None:
        return None
    live = QosLive(config)
    if old is not None:
        known = {c.name for c in config.policy.classes}
        live.link_classes = {dev: tuple(c for c in classes if c[0] in known)
                             for dev, classes in old.link_classes.items()
                             if dev in config.devices}
    return live


def _refused(daemon: RouteManagerDaemon, problems: list[str]) -> Any:
    daemon.metrics["config_reloads_refused"] += 1
    for line in problems:
        log.error("config reload refused: %s", line)
    raise ControlError("config reload refused; still running on the previous config:\n"
                       + "\n".join(problems))
