"""Helpers for root tests: skip when not root, fresh uniquely named namespaces, WG keys,
and the slot a root test holds while it runs beside other root tests.

Root tests run on several pytest-xdist workers at once (``scripts/test.sh``): each builds
its own uniquely named objects, and most only wait on protocol timers and kernel state
with generous deadlines. A test that claims a latency (a probe bound, a lease, a restart
without a gap) is marked ``alone``: it takes the slot exclusively, so no other root test
(lab builds, daemon start-ups, iperf3, wireguard-go) competes with it for the CPU, as in
a serial run. The slot is a reader-writer lock on a file shared by the run's workers
(``flock``), with a gate taken first so that a waiting ``alone`` test is not starved by
a stream of shared holders."""

from __future__ import annotations

import base64
import fcntl
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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


@contextmanager
def root_slot(lock_dir: Path, alone: bool) -> Iterator[None]:
    """Hold the run's root-test slot: shared, or exclusive when ``alone``.

    Every worker of one run passes the same ``lock_dir``; ``flock`` locks belong to the
    open file, so each call opens its own and the kernel drops them if a worker dies.
    """
    with open(lock_dir / "root-gate.lock", "a") as gate, \
            open(lock_dir / "root-slot.lock", "a") as slot:
        fcntl.flock(gate, fcntl.LOCK_EX)
        try:
            fcntl.flock(slot, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        finally:
            fcntl.flock(gate, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(slot, fcntl.LOCK_UN)
