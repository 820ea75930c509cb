"""The daemon's side of VN membership: policies from the config, grant and revocation files.

Theory of operation: each ``local_vns`` entry's ``allow`` / ``owner`` become the core's
:class:`~vnstitch.protocol.grants.AccessPolicy` (:func:`access_policies`). The grant this
RM presents (``grant:``) and the owner's revocation list (``revocations:``) are files the
operator manages with ``vnstitch vn``; they are read at start (:func:`load_grants`: an
unreadable grant is a config error) and re-read by :class:`MembershipFiles` at most once
per announce interval when their modification time or size changed -- so ``vnstitch vn
revoke`` reaches the core within one interval, and the core announces the list on. A
file that became unreadable is logged and the last good version kept. All the checking
(signatures, expiry) is the core's; this module only moves bytes.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol, runtime_checkable

from vnstitch.daemon.config import DaemonConfig
from vnstitch.daemon.errors import ConfigError
from vnstitch.model.ids import VNID
from vnstitch.protocol.api import Output
from vnstitch.protocol.errors import ProtocolError
from vnstitch.protocol.grants import AccessPolicy, Grant, RevocationList, load_json

log = logging.getLogger(__name__)


@runtime_checkable
class MembershipCore(Protocol):
    """What a core offers for membership (the real core does; test doubles need not)."""

    def set_grant(self, grant: Grant | None, vnid: VNID) -> None: ...

    def apply_revocations(self, rl: RevocationList, now: float) -> list[Output]: ...


def access_policies(config: DaemonConfig) -> dict[VNID, AccessPolicy]:
    """Every local VN's policy, written out (a VN without ``allow`` admits grants only)."""
    return {vn.vnid: AccessPolicy(vn.allow_any, frozenset(vn.allow), vn.owner)
            for vn in config.local_vns}


def read_grant(path: Path) -> Grant:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"{path}: cannot read grant: {exc}") from None
    return Grant.from_json(load_json(text, str(path)))


def read_revocations(path: Path) -> RevocationList:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"{path}: cannot read revocation list: {exc}") from None
    return RevocationList.from_json(load_json(text, str(path)))


def load_grants(config: DaemonConfig) -> tuple[Grant, ...]:
    """The grants named in the config, read now; ConfigError naming the file if bad."""
    grants = []
    for vn in config.local_vns:
        if vn.grant is None:
            continue
        try:
            g = read_grant(vn.grant)
        except ProtocolError as exc:
            raise ConfigError(f"{config.source}: local_vns vnid {vn.vnid}: {exc}") from None
        if g.vnid != vn.vnid:
            raise ConfigError(f"{config.source}: local_vns vnid {vn.vnid}: grant {vn.grant} "
                              f"is for VNID {g.vnid}")
        grants.append(g)
    return tuple(grants)


class MembershipFiles:
    """Re-reads changed grant and revocation files, at most once per ``interval_s``."""

    def __init__(self, config: DaemonConfig, interval_s: float) -> None:
        self.interval_s = interval_s
        self._files = [(vn.vnid, "grant", vn.grant) for vn in config.local_vns if vn.grant] + \
            [(vn.vnid, "revocations", vn.revocations) for vn in config.local_vns
             if vn.revocations]
        self._seen: dict[Path, tuple[int, int] | None] = {}
        self._next = float("-inf")

    def poll(self, core: object, now: float) -> list[Output]:
        if now < self._next or not isinstance(core, MembershipCore):
            return []
        self._next = now + self.interval_s
        out: list[Output] = []
        for vnid, kind, path in self._files:
            try:
                st = path.stat()
                stamp: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
            except OSError:
                stamp = None
            if stamp == self._seen.get(path, ()):
                continue
            self._seen[path] = stamp
            if stamp is None:
                log.warning("VNID %d: %s file %s is gone; keeping the last one", vnid, kind,
                            path)
                continue
            try:
                if kind == "grant":
                    core.set_grant(read_grant(path), vnid)
                    log.info("VNID %d: presenting grant %s", vnid, path)
                else:
                    out += core.apply_revocations(read_revocations(path), now)
                    log.info("VNID %d: revocation list %s read", vnid, path)
            except ProtocolError as exc:
                log.warning("VNID %d: %s", vnid, exc)
        return out
