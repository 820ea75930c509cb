"""A VN owner's directory: the owner key, the grants it issued, its revocation list.

Theory of operation: the owner of a VN (an operator, not a Route Manager) keeps one
directory per VN::

    owner.key          base64 of the 32-byte Ed25519 seed (mode 0600)
    vn.json            VNID, owner public key, next serial, every grant issued, revoked
    grants/*.grant     one signed grant per member (JSON; the member's daemon reads it)
    revocations.json   the signed revocation list (hosting daemons read and announce it)

:class:`OwnerDirectory` issues grants (serials count up and are never reused), revokes
them (by member or serial) and re-signs the revocation list with a higher version;
revoked grants whose expiry has passed are dropped from the list (an expired grant is
refused anyway), which keeps it within one datagram. Every file is replaced atomically
(written beside, then renamed), so a daemon polling it never reads half a file. Used by
``vnstitch vn`` and by the lab, which issues its members' grants the same way.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vnstitch.daemon.errors import ConfigError
from vnstitch.model.errors import ModelError
from vnstitch.model.ids import VNID, RouteManagerId, route_manager_id, vnid
from vnstitch.protocol.errors import ProtocolError
from vnstitch.protocol.grants import Grant, OwnerKey, RevocationList, load_json


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


@dataclass
class OwnerDirectory:
    """One VN's owner directory (see the module docstring)."""

    root: Path

    @property
    def state_path(self) -> Path:
        return self.root / "vn.json"

    @property
    def revocations_path(self) -> Path:
        return self.root / "revocations.json"

    # -- creating and reading -------------------------------------------------------------
    @classmethod
    def create(cls, root: Path, vn: int, seed: bytes | None = None) -> OwnerDirectory:
        d = cls(root)
        if d.state_path.exists():
            raise ConfigError(f"{root}: already holds VN {d.state()['vnid']}'s owner files")
        v = vnid(vn)
        root.mkdir(parents=True, exist_ok=True)
        (root / "grants").mkdir(exist_ok=True)
        seed = seed if seed is not None else secrets.token_bytes(32)
        key = OwnerKey(seed)
        _write(root / "owner.key", base64.b64encode(seed).decode() + "\n", 0o600)
        d._save({"vnid": int(v), "owner": base64.b64encode(key.public_bytes).decode(),
                 "next_serial": 1, "version": 0, "grants": [], "revoked": []})
        d._sign_revocations(d.state())
        return d

    def state(self) -> dict[str, Any]:
        try:
            data = load_json(self.state_path.read_text(encoding="utf-8"), str(self.state_path))
        except OSError as exc:
            raise ConfigError(f"{self.root}: not a VN owner directory ({exc.strerror}); "
                              f"create one with 'vnstitch vn init'") from None
        except ProtocolError as exc:
            raise ConfigError(str(exc)) from None
        if not isinstance(data, dict) or "vnid" not in data:
            raise ConfigError(f"{self.state_path}: not a VN owner state file")
        return data

    def _save(self, state: dict[str, Any]) -> None:
        _write(self.state_path, json.dumps(state, indent=1) + "\n")

    def key(self) -> OwnerKey:
        path = self.root / "owner.key"
        try:
            seed = base64.b64decode(path.read_text(encoding="utf-8").strip(), validate=True)
            return OwnerKey(seed)
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read owner key: {exc.strerror}") from None
        except (binascii.Error, ValueError, ProtocolError) as exc:
            raise ConfigError(f"{path}: not an owner key: {exc}") from None

    @property
    def owner_b64(self) -> str:
        return str(self.state()["owner"])

    # -- grants and revocations -----------------------------------------------------------
    def grant(self, member: str, expires: float, now: float,
              out: Path | None = None) -> tuple[Grant, Path]:
        """Issue a grant to ``member`` valid until ``expires``; returns it and its file."""
        try:
            rm = route_manager_id(member)
        except ModelError as exc:
            raise ConfigError(f"--member: {exc}") from None
        if expires <= now:
            raise ConfigError(f"expiry {expires:.0f} is not in the future (now {now:.0f})")
        st = self.state()
        serial = int(st["next_serial"])
        g = self.key().grant(VNID(int(st["vnid"])), RouteManagerId(rm), expires, serial)
        path = out if out is not None else self.root / "grants" / f"{rm[:12]}-{serial}.grant"
        path.parent.mkdir(parents=True, exist_ok=True)
        _write(path, json.dumps({**g.to_json(), "owner": st["owner"]}, indent=1) + "\n")
        st["next_serial"] = serial + 1
        st["grants"].append({"serial": serial, "member": rm, "expires": expires,
                             "issued": now, "file": str(path)})
        self._save(st)
        return g, path

    def revoke(self, now: float, member: str | None = None,
               serial: int | None = None) -> list[int]:
        """Revoke ``member``'s grants (or grant ``serial``); re-sign the list. Returns the
        serials newly revoked."""
        st = self.state()
        revoked = {int(s): float(e) for s, e in st["revoked"]}
        hit = [g for g in st["grants"] if (member is not None and g["member"] == member) or
               (serial is not None and g["serial"] == serial)]
        if not hit:
            what = f"member {member}" if member is not None else f"serial {serial}"
            raise ConfigError(f"VN {st['vnid']}: no grant was issued to {what}")
        new = [int(g["serial"]) for g in hit if int(g["serial"]) not in revoked]
        for g in hit:
            revoked[int(g["serial"])] = float(g["expires"])
        # an expired grant is refused anyway: its entry can go, the list stays short
        st["revoked"] = sorted([s, e] for s, e in revoked.items() if e > now)
        st["version"] = int(st["version"]) + 1
        self._save(st)
        self._sign_revocations(st)
        return new

    def _sign_revocations(self, st: dict[str, Any]) -> RevocationList:
        rl = self.key().revocations(VNID(int(st["vnid"])), int(st["version"]),
                                    [(int(s), float(e)) for s, e in st["revoked"]])
        _write(self.revocations_path, json.dumps(rl.to_json(), indent=1) + "\n")
        return rl

    def show(self, now: float) -> dict[str, Any]:
        st = self.state()
        revoked = {int(s) for s, _ in st["revoked"]}
        grants = []
        for g in st["grants"]:
            status = "revoked" if g["serial"] in revoked else \
                "expired" if g["expires"] <= now else "valid"
            grants.append({**g, "status": status})
        return {"vnid": st["vnid"], "owner": st["owner"], "directory": str(self.root),
                "revocations": {"file": str(self.revocations_path),
                                "version": st["version"], "serials": sorted(revoked)},
                "grants": grants}


def describe_grant_file(path: Path, now: float) -> dict[str, Any]:
    """A grant file's fields (``vn show --grant``), or ConfigError naming the problem."""
    try:
        data = load_json(path.read_text(encoding="utf-8"), str(path))
        g = Grant.from_json(data)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read grant: {exc.strerror}") from None
    except ProtocolError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    owner = data.get("owner")
    signed = None
    if isinstance(owner, str):
        try:
            signed = g.signed_by(base64.b64decode(owner, validate=True))
        except (binascii.Error, ValueError):
            signed = False
    return {"file": str(path), "vnid": int(g.vnid), "member": g.member, "serial": g.serial,
            "expires": g.expires, "expired": g.expires <= now, "owner": owner,
            "signature_ok": signed}
