"""Helpers for root tests: skip when not root, fresh uniquely named namespaces, WG keys."""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from vnstitch.lab import netns as labns


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, wireguard-go)")


def run_id() -> str:
    return uuid.uuid4().hex[:6]


@contextmanager
def fresh_netns(tag: str) -> Iterator[str]:
    """A new namespace ``vst<tag><id>``; removed (with its processes) even on failure."""
    name = f"vst{tag}{run_id()}"
    labns.create(name)
    try:
        yield name
    finally:
        labns.destroy(name)


def wg_keypair() -> tuple[str, str]:
    priv = X25519PrivateKey.generate()
    raw = priv.private_bytes_raw()
    pub = priv.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(raw).decode(), base64.b64encode(pub).decode()
