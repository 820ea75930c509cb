"""Ed25519 key files of a Route Manager: create (mode 0600), load, describe.

Theory of operation: a key file is the private key as unencrypted PKCS#8 PEM (what
``cryptography`` and OpenSSL read). :func:`write_key_file` creates it with
``os.open(..., O_CREAT | O_EXCL, 0o600)`` so it is never readable by others, not even
for an instant, and refuses to overwrite an existing file. :func:`load_key_file` refuses
a key readable by group or others (like ssh does) and a file that is not an Ed25519 key.
The RM id is derived from the raw public key (see
:func:`~vnstitch.model.ids.route_manager_id_from_public_key`).
"""

from __future__ import annotations

import base64
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from vnstitch.daemon.errors import KeyFileError
from vnstitch.model.ids import RouteManagerId, route_manager_id_from_public_key


@dataclass(frozen=True, slots=True)
class KeyInfo:
    private_key: Ed25519PrivateKey
    public_key_raw: bytes
    rm_id: RouteManagerId

    @property
    def public_key_b64(self) -> str:
        return base64.b64encode(self.public_key_raw).decode()

    @property
    def private_key_raw(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
            serialization.NoEncryption())


def describe(private_key: Ed25519PrivateKey) -> KeyInfo:
    raw = private_key.public_key().public_bytes(serialization.Encoding.Raw,
                                                serialization.PublicFormat.Raw)
    return KeyInfo(private_key, raw, route_manager_id_from_public_key(raw))


def write_key_file(path: Path, private_key: Ed25519PrivateKey | None = None) -> KeyInfo:
    """Create ``path`` (mode 0600, must not exist) holding a new or the given key."""
    key = private_key if private_key is not None else Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{path}: already exists; refusing to overwrite a key") from None
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot create key file: {exc.strerror}") from None
    try:
        os.write(fd, pem)
    finally:
        os.close(fd)
    return describe(key)


def load_key_file(path: Path) -> KeyInfo:
    """Read an Ed25519 private key; refuse a file group/others can read."""
    try:
        st = os.stat(path)
        data = Path(path).read_bytes()
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read key file: {exc.strerror}") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(
            f"{path}: permissions {stat.S_IMODE(st.st_mode):04o} are too open; "
            "a key file must be 0600 (chmod 600)")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{path}: not a PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path}: not an Ed25519 key ({type(key).__name__})")
    return describe(key)
