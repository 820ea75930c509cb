"""User-space WireGuard (``wireguard-go``): start it in a namespace, talk UAPI to it.

Theory of operation: this kernel has no WireGuard module, so each
:class:`~vnstitch.dataplane.objects.WireguardInterface` is a TUN device owned by one
``wireguard-go`` process. The process is started *inside* the target network namespace
(a ``preexec`` hook calls ``setns(2)`` on the namespace file before ``exec``), so the TUN
device and the UDP listening socket both live there. ``wireguard-go`` daemonises itself;
the launcher returns once the TUN device and the control socket exist, and the daemon
is no child of ours, so it outlives a crashed Route Manager (established tunnels keep
carrying traffic) and exits by itself when its TUN device is deleted.

The control socket ``/var/run/wireguard/<ifname>.sock`` lives in the file system, which
all network namespaces share: an interface name must therefore be unique per *host*.
Configuration goes over that socket in the cross-platform UAPI text protocol
(``set=1`` / ``get=1``, keys in hex, a blank line ends a message, ``errno=N`` answers).
"""

from __future__ import annotations

import base64
import binascii
import ctypes
import os
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vnstitch.dataplane.base import DataplaneError
from vnstitch.dataplane.objects import WireguardPeer

#: Where wireguard-go puts its control sockets (one per interface, shared by all netns).
UAPI_DIR = Path("/var/run/wireguard")
_CLONE_NEWNET = 0x40000000
_IFNAMSIZ = 15


def uapi_socket_path(ifname: str) -> Path:
    return UAPI_DIR / f"{ifname}.sock"


def key_to_hex(key_b64: str, what: str) -> str:
    """A base64 WireGuard key as the 64 hex digits UAPI wants; bad keys name ``what``."""
    try:
        raw = base64.b64decode(key_b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise DataplaneError(f"{what}: not base64 ({exc})") from exc
    if len(raw) != 32:
        raise DataplaneError(f"{what}: a WireGuard key is 32 bytes, got {len(raw)}")
    return raw.hex()


def hex_to_key(key_hex: str) -> str:
    return base64.b64encode(bytes.fromhex(key_hex)).decode()


@dataclass(frozen=True, slots=True)
class UapiConfig:
    """What ``get=1`` reports (endpoints as the device knows them, which may be learned)."""

    private_key: str | None
    listen_port: int
    peers: tuple[WireguardPeer, ...]


def _exchange(ifname: str, request: str, timeout_s: float = 5.0) -> list[tuple[str, str]]:
    path = uapi_socket_path(ifname)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout_s)
            sock.connect(str(path))
            sock.sendall(request.encode())
            buf = b""
            while not buf.endswith(b"\n\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                buf += chunk
    except OSError as exc:
        raise DataplaneError(f"wireguard-go {ifname}: control socket {path}: {exc}") from exc
    pairs: list[tuple[str, str]] = []
    for line in buf.decode().splitlines():
        if line:
            k, _, v = line.partition("=")
            pairs.append((k, v))
    errno = next((v for k, v in pairs if k == "errno"), None)
    if errno != "0":
        raise DataplaneError(f"wireguard-go {ifname}: UAPI answered errno={errno}")
    return pairs


@dataclass(slots=True)
class _PeerBuilder:
    public_key: str
    endpoint: str | None = None
    keepalive_s: int = 0
    allowed_ips: list[str] = field(default_factory=list)

    def build(self) -> WireguardPeer:
        return WireguardPeer(self.public_key, self.endpoint, tuple(self.allowed_ips),
                             self.keepalive_s)


def uapi_get(ifname: str) -> UapiConfig:
    private_key: str | None = None
    listen_port = 0
    peers: list[_PeerBuilder] = []
    for k, v in _exchange(ifname, "get=1\n\n"):
        if k == "private_key":
            private_key = hex_to_key(v)
        elif k == "listen_port":
            listen_port = int(v)
        elif k == "public_key":
            peers.append(_PeerBuilder(hex_to_key(v)))
        elif peers and k == "endpoint":
            peers[-1].endpoint = v
        elif peers and k == "allowed_ip":
            peers[-1].allowed_ips.append(v)
        elif peers and k == "persistent_keepalive_interval":
            peers[-1].keepalive_s = int(v)
    return UapiConfig(private_key, listen_port, tuple(p.build() for p in peers))


def clamped(key_b64: str) -> str:
    """A base64 X25519 private key as WireGuard holds (and reports) it: clamped. Any
    32 bytes are a valid key; ``uapi_get`` returns the clamped form of what was set."""
    try:
        raw = bytearray(base64.b64decode(key_b64, validate=True))
    except (binascii.Error, ValueError):
        return key_b64
    if len(raw) != 32:
        return key_b64
    raw[0] &= 248
    raw[31] = (raw[31] & 127) | 64
    return base64.b64encode(bytes(raw)).decode()


def uapi_set(ifname: str, private_key: str | None, listen_port: int | None,
             peers: Sequence[WireguardPeer], remove_peers: Sequence[str] = ()) -> None:
    """Configure without disturbing peers that stay: learned endpoints survive.
    ``None`` leaves the private key or listen port as it is: wireguard-go re-binds its
    socket on every ``listen_port`` it is given, even the same one, dropping what
    arrives meanwhile."""
    lines = ["set=1"]
    if private_key is not None:
        lines.append(f"private_key={key_to_hex(private_key, f'wg {ifname}: private key')}")
    if listen_port is not None:
        lines.append(f"listen_port={listen_port}")
    for pub in remove_peers:
        lines += [f"public_key={key_to_hex(pub, f'wg {ifname}: peer key')}", "remove=true"]
    for peer in peers:
        lines.append(f"public_key={key_to_hex(peer.public_key, f'wg {ifname}: peer key')}")
        if peer.endpoint is not None:
            lines.append(f"endpoint={peer.endpoint}")
        lines.append(f"persistent_keepalive_interval={peer.keepalive_s}")
        lines.append("replace_allowed_ips=true")
        lines += [f"allowed_ip={ip}" for ip in peer.allowed_ips]
    _exchange(ifname, "\n".join(lines) + "\n\n")


def uapi_set_endpoint(ifname: str, public_key: str, endpoint: str) -> None:
    """Write one peer's endpoint again (and nothing else): wireguard-go replaces the
    endpoint object, dropping the source address and interface it had stuck to, so the
    next packet is routed by the kernel afresh. ``update_only``: never adds a peer."""
    _exchange(ifname, "\n".join([
        "set=1", f"public_key={key_to_hex(public_key, f'wg {ifname}: peer key')}",
        "update_only=true", f"endpoint={endpoint}"]) + "\n\n", timeout_s=1.0)


def last_handshake(ifname: str) -> float:
    """Unix time of the latest completed handshake with any peer of ``ifname`` (0: none
    yet, so the tunnel has not been shown to carry anything)."""
    latest, sec = 0.0, 0
    for k, v in _exchange(ifname, "get=1\n\n", timeout_s=1.0):
        if k == "last_handshake_time_sec":
            sec = int(v)
        elif k == "last_handshake_time_nsec":
            latest = max(latest, sec + int(v) / 1e9)
    return latest


def socket_is_live(ifname: str) -> bool:
    try:
        _exchange(ifname, "get=1\n\n", timeout_s=1.0)
    except DataplaneError:
        return False
    return True


def start(ifname: str, netns: str | None, timeout_s: float = 5.0) -> None:
    """Start ``wireguard-go ifname`` inside ``netns`` and wait for its control socket."""
    if not 0 < len(ifname) <= _IFNAMSIZ:
        raise DataplaneError(f"wireguard-go {ifname!r}: interface name must be 1..15 chars")
    if socket_is_live(ifname):
        raise DataplaneError(f"wireguard-go {ifname}: name already in use on this host "
                             f"({uapi_socket_path(ifname)} answers; names are host-global)")
    ns_fd = -1
    if netns is not None:
        try:
            ns_fd = os.open(f"/var/run/netns/{netns}", os.O_RDONLY)
        except OSError as exc:
            raise DataplaneError(f"wireguard-go {ifname}: netns {netns}: {exc}") from exc
    libc = ctypes.CDLL(None, use_errno=True)  # loaded before fork: the hook must not dlopen

    def enter_netns() -> None:
        if ns_fd >= 0 and libc.setns(ns_fd, _CLONE_NEWNET) != 0:
            os._exit(97)

    # No LOG_LEVEL: the daemonised child then gets /dev/null, not our pipes, so run() returns.
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")}
    try:
        proc = subprocess.run(
            ["wireguard-go", ifname], preexec_fn=enter_netns, pass_fds=(ns_fd,) if ns_fd >= 0
            else (), env=env, capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DataplaneError(f"wireguard-go {ifname}: could not start: {exc}") from exc
    finally:
        if ns_fd >= 0:
            os.close(ns_fd)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise DataplaneError(f"wireguard-go {ifname}: exit {proc.returncode}: {tail[0]}")
    deadline = time.monotonic() + timeout_s
    while not socket_is_live(ifname):
        if time.monotonic() > deadline:
            raise DataplaneError(f"wireguard-go {ifname}: control socket never answered")
        time.sleep(0.02)


def wait_gone(ifname: str, timeout_s: float = 5.0) -> None:
    """After the TUN device is deleted, wait for the daemon to drop its socket."""
    deadline = time.monotonic() + timeout_s
    while socket_is_live(ifname):
        if time.monotonic() > deadline:
            raise DataplaneError(f"wireguard-go {ifname}: still answering after removal")
        time.sleep(0.02)
