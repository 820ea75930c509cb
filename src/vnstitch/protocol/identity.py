"""Route Manager identity (Ed25519) and the trust store of accepted peer keys.

Theory of operation: an :class:`Identity` is an Ed25519 private key; the RM id is
``route_manager_id_from_public_key`` of its raw public key, so ids cannot be chosen
freely. The :class:`TrustStore` maps RM ids to already-parsed public key objects, so a
verification costs one lookup plus the signature check. Keys come from seeds supplied by
the caller (the simulator derives them from its seeded RNG; the daemon from its key
file), never from a hidden global RNG.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from vnstitch.model.errors import ModelError
from vnstitch.model.ids import RouteManagerId, route_manager_id_from_public_key
from vnstitch.protocol.errors import ProtocolError


class Identity:
    """An RM's signing key, its raw public key and its id."""

    __slots__ = ("_key", "public_bytes", "rm_id", "seed")

    def __init__(self, seed: bytes) -> None:
        if len(seed) != 32:
            raise ProtocolError(f"Ed25519 seed must be 32 bytes, got {len(seed)}")
        self.seed = seed
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        self.public_bytes = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.rm_id = route_manager_id_from_public_key(self.public_bytes)

    @classmethod
    def from_rng(cls, rng: random.Random) -> Identity:
        return cls(rng.randbytes(32))

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)


class TrustStore:
    """The set of Route Manager public keys this RM accepts messages from."""

    def __init__(self, public_keys: Iterable[bytes] = ()) -> None:
        self._keys: dict[RouteManagerId, Ed25519PublicKey] = {}
        self._raw: dict[RouteManagerId, bytes] = {}
        for pk in public_keys:
            self.add(pk)

    def add(self, public_key: bytes) -> RouteManagerId:
        """Accept ``public_key`` (32 raw bytes); returns the RM id it belongs to."""
        try:
            rm = route_manager_id_from_public_key(public_key)
            self._keys[rm] = Ed25519PublicKey.from_public_bytes(public_key)
        except (ModelError, ValueError) as exc:
            raise ProtocolError(f"trust store: bad public key: {exc}") from None
        self._raw[rm] = bytes(public_key)
        return rm

    def remove(self, rm: RouteManagerId) -> None:
        self._keys.pop(rm, None)
        self._raw.pop(rm, None)

    def __contains__(self, rm: object) -> bool:
        return rm in self._keys

    def __iter__(self) -> Iterator[RouteManagerId]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def public_bytes(self, rm: RouteManagerId) -> bytes | None:
        return self._raw.get(rm)

    def verify(self, rm: RouteManagerId, signature: bytes, data: bytes) -> bool:
        """True iff ``rm`` is trusted and ``signature`` is its signature over ``data``."""
        key = self._keys.get(rm)
        if key is None:
            return False
        try:
            key.verify(signature, data)
        except InvalidSignature:
            return False
        return True
