"""Network-namespace plumbing for the lab and the root tests (no ``ip`` subprocesses).

Theory of operation: namespaces are made and removed with ``pyroute2.netns``. Programs
(ping, iperf3, sysctl writes) run inside a namespace through :func:`popen_in` /
:func:`run_in`, which ``setns(2)`` in a ``preexec`` hook before ``exec``. Destroying a
namespace must not leave anything behind: a process still inside it would keep it (and
its links) alive, and a ``wireguard-go`` daemon would keep its control socket. So
:func:`destroy` first deletes the TUN devices (their ``wireguard-go`` exits), then
terminates every remaining process whose ``/proc/PID/ns/net`` is that namespace -- all
of them were started there by us -- and only then unmounts the namespace.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute, netns

from vnstitch.errors import VnstitchError

NETNS_DIR = Path("/var/run/netns")
_CLONE_NEWNET = 0x40000000


class LabError(VnstitchError):
    """Root of the lab's errors (namespaces, processes, measurements)."""


def exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def listing(prefix: str = "") -> list[str]:
    return sorted(n for n in netns.listnetns() if n.startswith(prefix))


def create(name: str) -> None:
    if exists(name):
        raise LabError(f"netns {name} already exists")
    netns.create(name)


def _ns_inode(name: str) -> int | None:
    try:
        return os.stat(NETNS_DIR / name).st_ino
    except OSError:
        return None


def pids_in(name: str) -> list[int]:
    """Processes whose network namespace is ``name``."""
    ino = _ns_inode(name)
    if ino is None:
        return []
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if os.stat(entry / "ns" / "net").st_ino == ino:
                out.append(int(entry.name))
        except OSError:
            continue
    return out


def _tun_links(ipr: Any) -> list[int]:
    out = []
    for m in ipr.get_links():
        info = m.get_attr("IFLA_LINKINFO")
        if info is not None and info.get_attr("IFLA_INFO_KIND") == "tun":
            out.append(int(m["index"]))
    return out


def destroy(name: str, timeout_s: float = 5.0) -> None:
    """Remove namespace ``name`` and everything running in it; quiet if already gone."""
    if not exists(name):
        return
    try:
        with IPRoute(netns=name) as ipr:
            for idx in _tun_links(ipr):
                ipr.link("del", index=idx)
    except Exception:  # best effort: the kill loop below catches whatever remains
        pass
    deadline = time.monotonic() + timeout_s
    sig = signal.SIGTERM
    while pids := pids_in(name):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        if time.monotonic() > deadline:
            if sig == signal.SIGKILL:
                raise LabError(f"netns {name}: processes {pids} will not exit")
            sig, deadline = signal.SIGKILL, time.monotonic() + timeout_s
        time.sleep(0.05)
    netns.remove(name)


def _preexec(name: str | None) -> tuple[Any, int]:
    fd = os.open(NETNS_DIR / name, os.O_RDONLY) if name else -1
    libc = ctypes.CDLL(None, use_errno=True)

    def enter() -> None:
        if fd >= 0 and libc.setns(fd, _CLONE_NEWNET) != 0:
            os._exit(97)
        os.setsid()  # own process group: a stray signal to ours does not hit it

    return enter, fd


def popen_in(name: str | None, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[str]:
    """Start ``argv`` inside namespace ``name`` (text mode, pipes unless overridden)."""
    enter, fd = _preexec(name)
    kwargs.setdefault("stdout", subprocess.PIPE)
    kwargs.setdefault("stderr", subprocess.PIPE)
    try:
        # setns(2) must happen between fork and exec; Python 3.11 has no other hook.
        return subprocess.Popen(list(argv), preexec_fn=enter,  # noqa: PLW1509
                                pass_fds=(fd,) if fd >= 0 else (), text=True, **kwargs)
    except OSError as exc:
        raise LabError(f"netns {name}: cannot run {argv[0]}: {exc}") from exc
    finally:
        if fd >= 0:
            os.close(fd)


def run_in(name: str | None, argv: Sequence[str], timeout_s: float = 30.0,
           check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = popen_in(name, argv)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        proc.kill()
        proc.communicate()
        raise LabError(f"netns {name}: {' '.join(argv)} timed out after {timeout_s}s") from exc
    done = subprocess.CompletedProcess(list(argv), proc.returncode, out, err)
    if check and proc.returncode != 0:
        tail = (err or out).strip().splitlines()[-1:] or ["no output"]
        raise LabError(f"netns {name}: {' '.join(argv)} exited {proc.returncode}: {tail[0]}")
    return done


def sysctl(name: str, key: str, value: str) -> None:
    """Write ``/proc/sys/<key>`` as seen from namespace ``name`` (a per-netns setting)."""
    path = "/proc/sys/" + key.replace(".", "/")
    netns.pushns(name)
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError as exc:
        raise LabError(f"netns {name}: sysctl {key}={value}: {exc}") from exc
    finally:
        netns.popns()
