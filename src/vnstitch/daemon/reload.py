"""Config reload without a restart, and what a peer's state is.

Theory of operation. ``routemgr reload`` (the control request ``{"cmd": "reload"}``, the
HTTP ``POST /api/v1/reload``) and ``SIGHUP`` re-read the daemon's config file
(:func:`reload_config`). A file with problems is refused with every problem
(``FILE:LINE:COL: field: problem``), and so is a change to anything but the sections
in :data:`RELOADABLE` (the listen address, the key, the dataplane... need a restart);
either way the daemon keeps running on the config it has. A good file's new peer list
and trust store are applied by :meth:`RouteManagerDaemon.reconfigure`: the core is
rebuilt from its own snapshot with the new config -- the path a restart takes, without
closing the socket, the state database or the dataplane -- so stitches, reservations,
tunnels and sequence numbers are kept; the peer table keeps the counters of every
peer still configured.

A peer dropped from the config is not forgotten: it stays in ``show peers`` and on
``/metrics`` as ``removed`` (cilium#40049: a removed peer must not look like one that
never connected). :func:`peer_state` is the one place that says what state a peer is in:
``removed`` (membership), else ``never_connected`` (nothing good heard yet), ``up``
(heard within the hold time) or ``down`` (heard before, silent since). Membership moves
only along :data:`MEMBERSHIP` (configured -> removed -> configured); anything else raises.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vnstitch.daemon.config import ConfigProblemsError, DaemonConfig, load_config
from vnstitch.daemon.errors import ConfigError, ControlError, DaemonError
from vnstitch.model.ids import RouteManagerId

if TYPE_CHECKING:
    from vnstitch.daemon.runtime import PeerView, RouteManagerDaemon

log = logging.getLogger("vnstitch.daemon.reload")

#: Config fields a reload applies; a change to any other one needs a restart.
RELOADABLE = ("trust", "peers")
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
            out.append(f"{new.source}: {f.name}: changed; only {', '.join(RELOADABLE)} "
                       "are applied by a reload (restart the daemon for this)")
    return out


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


def reload_config(daemon: RouteManagerDaemon, path: Path | None = None) -> dict[str, Any]:
    """Re-read the config file and apply it, or refuse it (:class:`ControlError` with
    every problem) and keep running on the current config."""
    src = Path(path) if path is not None else daemon.config.source
    try:
        new = load_config(src)
    except ConfigProblemsError as exc:
        _refused(daemon, exc.problems)
    except ConfigError as exc:
        _refused(daemon, [str(exc)])
    problems = needs_restart(daemon.config, new)
    if problems:
        _refused(daemon, problems)
    changes = peer_changes(daemon.config, new)
    daemon.reconfigure(new)
    daemon.metrics["config_reloads"] += 1
    log.info("config %s reloaded: %d peers added, %d removed", src, len(changes.added),
             len(changes.removed))
    return {"config": str(src), "reloaded": True, "peers": len(new.peers),
            "added": list(changes.added), "removed": list(changes.removed),
            "readdressed": list(changes.readdressed)}


def _refused(daemon: RouteManagerDaemon, problems: list[str]) -> Any:
    daemon.metrics["config_reloads_refused"] += 1
    for line in problems:
        log.error("config reload refused: %s", line)
    raise ControlError("config reload refused; still running on the previous config:\n"
                       + "\n".join(problems))
