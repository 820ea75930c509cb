"""Chaos against live Route Managers in the namespace lab (needs root): floods, kill -9, fuzz.

One lab (A - T - B, and A - U - B), four daemons, one stitch VN 100 A -> B. Three parts,
each measured against its stated acceptance bound in the same run:

* ``flood``: forged datagrams (T's RM id, B as recipient, random sequence number and
  signature) at ``--flood-rate`` per second for ``--flood-seconds`` at the target B --
  once from an address T is not configured at (T's loopback, another port) and once from
  T's own RM address (raw socket, spoofed source port). Meanwhile ``ping`` ha1 -> hb1
  through the stitch. Reported per source: the rate actually sent, whether the stitch
  stayed up without a re-attempt, ping loss (bound 1%) next to the loss of the same
  ping just before without the flood (the loaded host's share), B's RSS growth (bound
  20 MiB).
* ``kill9``: ``kill -9`` of the origin A, the transit T and the target B, ``--kills``
  times each, restarted after delays spread over 0.5 .. ``--max-delay`` s; per kill:
  restored (stitch up at A, traffic flowing, no reservation leaked or counted twice on
  any RM), the traffic gap (bound: restart delay + 3 s) and how long the restarted
  process took to answer (Python start-up; seconds on a loaded host, and inside the gap).
* ``fuzz``: ``--fuzz`` datagrams of eight kinds at B (random bytes, truncated, oversized,
  bad magic/version, trusted ids with random bodies), half from T's own RM address and
  port (spoofed: they pass B's kernel source filter and reach its parser,
  ``reached_daemon``) and half from another port (dropped by that filter,
  ``dropped_by_kernel_filter``); unhandled = exceptions that escaped B's core or control
  handler, or B dying (bound 0).

Usage: ``python benchmarks/chaos.py [--flood-rate N] [--flood-seconds S] [--kills N]
[--max-delay S] [--fuzz N] [--skip flood,kill9,fuzz] [--json]``. The defaults are the
acceptance sizes (50,000/s for 60 s, 10 kills per role over 0.5-30 s, 1,000,000
datagrams); the JSON records the sizes actually run.

The flood is sent by ``benchmarks/flood.c``, compiled with gcc into the run's directory
when gcc is there (``--flood-sender c|python|auto``), in ``--flood-processes`` processes
(default 2) sharing the rate; without gcc, by the Python ``sendmmsg`` loop. The JSON
says which (``sender``) and the rate actually sent. ``receive_buffer_drops`` is the
target socket's kernel drop counter: datagrams its source filter refused plus those its
full buffer dropped; ``rcvbuf_errors`` (the namespace's UDP RcvbufErrors) only the latter.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import itertools
import json
import os
import random
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
from pyroute2 import netns as pr_netns

from vnstitch.lab import baseline, substrate
from vnstitch.lab.routemgrs import RM_PORT, LabRouteManagers, PingStream, fast_arp, wait_for
from vnstitch.lab.substrate import Lab
from vnstitch.output import console, progress, table

BANDWIDTH = 20.0
PING_INTERVAL = 0.05
GAP_S = 0.3


# -- lab ---------------------------------------------------------------------------------


def _live(tmp: Path) -> tuple[Lab, LabRouteManagers, str]:
    lab = substrate.build()
    try:
        fast_arp(lab)
        rms = LabRouteManagers(lab, tmp / lab.run_id)
        rms.start_all()
        rms.wait_route("a", 100)
        reply = rms.stitch("a", 100, BANDWIDTH)
        if not reply["established"]:
            raise RuntimeError(f"no stitch: {reply}")
        baseline.wait_reachable(lab, "ha1", "hb1", timeout_s=15)
    except BaseException:
        substrate.teardown(lab.run_id)
        raise
    return lab, rms, str(reply["stitch_id"])


def _close(lab: Lab, rms: LabRouteManagers) -> None:
    try:
        for seg in rms.rms:
            rms.stop(seg)
    finally:
        substrate.teardown(lab.run_id)


def _row(rms: LabRouteManagers, sid: str) -> dict[str, Any]:
    rows = [r for r in rms.show("a", "stitches") if r["stitch_id"] == sid]
    return rows[0] if rows else {}


def _rss_mib(rms: LabRouteManagers, seg: str) -> float:
    proc = rms.rms[seg].proc
    if proc is None:
        return float("nan")
    text = Path(f"/proc/{proc.pid}/status").read_text()
    m = re.search(r"^VmRSS:\s+(\d+) kB", text, re.M)
    return int(m.group(1)) / 1024 if m else float("nan")


def _cpu_s(rms: LabRouteManagers, seg: str) -> float:
    """CPU seconds (user + system) the daemon of ``seg`` has used."""
    proc = rms.rms[seg].proc
    if proc is None:
        return float("nan")
    fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _backlog_drops() -> int:
    """Packets the kernel dropped host-wide because a CPU's input backlog was full
    (``/proc/net/softnet_stat``, second column): veth traffic of every namespace."""
    return sum(int(line.split()[1], 16)
               for line in Path("/proc/net/softnet_stat").read_text().splitlines())


def _udp_socket_drops(ns: str, port: int) -> int:
    """Datagrams dropped at the receive buffer of the UDP socket bound to ``port`` in
    namespace ``ns`` (``/proc/net/udp``'s last column)."""
    text = subprocess.run(["ip", "netns", "exec", ns, "cat", "/proc/net/udp"],
                          capture_output=True, text=True, check=True).stdout
    return sum(int(f[-1]) for line in text.splitlines()[1:]
               if len(f := line.split()) > 12 and int(f[1].split(":")[1], 16) == port)


def _rcvbuf_errors(ns: str) -> int:
    """UDP datagrams namespace ``ns`` dropped because a socket's receive buffer was full
    (``/proc/net/snmp`` Udp RcvbufErrors; a socket filter's drops are not in it)."""
    text = subprocess.run(["ip", "netns", "exec", ns, "cat", "/proc/net/snmp"],
                          capture_output=True, text=True, check=True).stdout
    rows = [line.split()[1:] for line in text.splitlines() if line.startswith("Udp:")]
    return int(dict(zip(rows[0], rows[1], strict=True))["RcvbufErrors"])


def _metric(rms: LabRouteManagers, seg: str, name: str) -> float:
    text = rms.show(seg, "metrics")
    return sum(float(m.group(1)) for m in
               re.finditer(rf"^vnstitch_{name}\{{[^}}]*\}} (\S+)$", text, re.M))


def _reservations_consistent(rms: LabRouteManagers, sid: str) -> bool:
    """Every link of the stitch's path holds its bandwidth once at both of its ends, and
    no other link holds anything: nothing leaked, nothing counted twice."""
    path = [rms.segment_of(rm) for rm in _row(rms, sid).get("path", [])]
    links = {seg: sum(1 for a, b in itertools.pairwise(path) if seg in (a, b))
             for seg in rms.rms}
    return len(path) >= 2 and all(
        abs(rms.reserved_mbps(seg) - BANDWIDTH * links[seg]) < 1e-6 for seg in rms.rms)


# -- forged datagrams ------------------------------------------------------------------


def _forged(rng: random.Random, sender: str, recipient: str, kind: int = 1) -> bytes:
    body: bytes = msgpack.packb([rng.randrange(1, 1 << 40), time.time(), kind,
                                 [rng.randrange(1 << 30), 1, 0, 0]], use_bin_type=True)
    return (b"VS\x01" + bytes.fromhex(sender) + bytes.fromhex(recipient) + body
            + rng.randbytes(64))


def _fuzz_datagrams(rng: random.Random, ids: list[str], recipient: str, n: int
                    ) -> list[bytes]:
    """``n`` datagrams of eight kinds (cycled)."""
    out: list[bytes] = []
    for i in range(n):
        kind = i % 8
        sender = rng.choice(ids)
        good = _forged(rng, sender, recipient, rng.randrange(1, 19))
        if kind == 0:
            out.append(rng.randbytes(rng.randrange(0, 1400)))
        elif kind == 1:
            out.append(good[:rng.randrange(0, len(good))])
        elif kind == 2:
            out.append(good + rng.randbytes(rng.randrange(1400, 1500)))
        elif kind == 3:
            out.append(b"XS" + good[2:])
        elif kind == 4:
            out.append(good[:2] + bytes([rng.randrange(2, 256)]) + good[3:])
        elif kind == 5:
            out.append(good[:35] + rng.randbytes(rng.randrange(1, 1200)) + rng.randbytes(64))
        elif kind == 6:
            flip = bytearray(good)
            for _ in range(rng.randrange(1, 8)):
                flip[rng.randrange(len(flip))] ^= 1 << rng.randrange(8)
            out.append(bytes(flip))
        else:
            out.append(good[:3] + bytes(16) + good[19:])  # an id nobody has
    return out


def _udp_packet(src: tuple[str, int], dst: tuple[str, int], payload: bytes) -> bytes:
    """IPv4 + UDP header for a raw socket (IP_HDRINCL): the kernel fills id/checksum."""
    udp = struct.pack("!HHHH", src[1], dst[1], 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, socket.IPPROTO_UDP,
                     0, socket.inet_aton(src[0]), socket.inet_aton(dst[0]))
    return ip + udp


class _Iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _Msghdr(ctypes.Structure):
    _fields_ = [("msg_name", ctypes.c_void_p), ("msg_namelen", ctypes.c_uint32),
                ("msg_iov", ctypes.POINTER(_Iovec)), ("msg_iovlen", ctypes.c_size_t),
                ("msg_control", ctypes.c_void_p), ("msg_controllen", ctypes.c_size_t),
                ("msg_flags", ctypes.c_int)]


class _Mmsghdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _Msghdr), ("msg_len", ctypes.c_uint)]


_LIBC = ctypes.CDLL(None, use_errno=True)
#: Datagrams per sendmmsg(2) call at most.
BATCH = 512


class Sender:
    """Sends datagrams from inside a namespace, paced to a rate, in batches of up to
    :data:`BATCH` per ``sendmmsg(2)`` call: one system call per batch instead of one per
    datagram, so a Python sender reaches 50,000/s while leaving CPU to the daemons."""

    def __init__(self, ns: str, source: tuple[str, int], dest: tuple[str, int],
                 spoof: bool) -> None:
        self.dest, self.source, self.spoof = dest, source, spoof
        if spoof:
            self.sock = pr_netns.create_socket(ns, socket.AF_INET, socket.SOCK_RAW,
                                               socket.IPPROTO_RAW)
        else:
            self.sock = pr_netns.create_socket(ns, socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.bind(source)
        self.sock.setblocking(False)
        self.sent = 0  # accepted by the kernel
        self.refused = 0  # send buffer full (EAGAIN/ENOBUFS): not sent

    def _vector(self, frames: list[bytes]) -> tuple[Any, list[Any]]:
        """An mmsghdr array over ``frames`` twice in a row, so any window of up to
        ``len(frames)`` datagrams starting anywhere in the cycle is contiguous."""
        addr = struct.pack("=H", socket.AF_INET) + struct.pack("!H", self.dest[1]) + \
            socket.inet_aton(self.dest[0]) + bytes(8)
        keep: list[Any] = [ctypes.create_string_buffer(addr, len(addr))]
        iovs = (_Iovec * len(frames))()
        for i, f in enumerate(frames):
            buf = ctypes.create_string_buffer(f, len(f))
            keep.append(buf)
            iovs[i].iov_base, iovs[i].iov_len = ctypes.addressof(buf), len(f)
        keep.append(iovs)
        vec = (_Mmsghdr * (2 * len(frames)))()
        for i in range(2 * len(frames)):
            h = vec[i].msg_hdr
            h.msg_name, h.msg_namelen = ctypes.addressof(keep[0]), len(addr)
            h.msg_iov = ctypes.pointer(iovs[i % len(frames)])
            h.msg_iovlen = 1
        return vec, keep

    def _send(self, vec: Any, start: int, count: int) -> int:
        """sendmmsg ``count`` datagrams from index ``start``; how many the kernel took."""
        ptr = ctypes.c_void_p(ctypes.addressof(vec) + start * ctypes.sizeof(_Mmsghdr))
        done = int(_LIBC.sendmmsg(self.sock.fileno(), ptr, count, 0))
        return max(done, 0)

    def run(self, payloads: list[bytes], rate: float, seconds: float,
            total: int | None = None) -> float:
        """Send ``payloads`` (cycled) at ``rate``/s for ``seconds`` or until ``total`` are
        sent; the rate achieved (datagrams the kernel accepted per second)."""
        frames = [_udp_packet(self.source, self.dest, p) for p in payloads] if self.spoof \
            else payloads
        vec, _keep = self._vector(frames)
        start = time.monotonic()
        n = tried = 0
        limit = total if total is not None else 1 << 62
        while (elapsed := time.monotonic() - start) < seconds and tried < limit:
            due = min(int(elapsed * rate), limit) - tried
            if due <= 0:
                time.sleep(0.0005)
                continue
            count = min(due, BATCH, len(frames))
            done = self._send(vec, tried % len(frames), count)
            # A full send buffer drops the rest of the batch, as a flood would lose it.
            self.refused += count - done
            n += done
            tried += count
        self.sent += n
        return n / max(time.monotonic() - start, 1e-9)

    def close(self) -> None:
        self.sock.close()


class CSender:
    """The same flood from ``benchmarks/flood.c`` (compiled at run time with gcc), run in
    the namespace as its own process: a Python sender on a loaded 2-core host reached
    only 15-44k/s, a C one the full rate. Same pacing, batching and counting."""

    def __init__(self, binary: Path, ns: str, source: tuple[str, int],
                 dest: tuple[str, int], spoof: bool, *, workdir: Path,
                 processes: int = 1) -> None:
        self.binary, self.ns, self.source, self.dest, self.spoof = \
            binary, ns, source, dest, spoof
        self.workdir, self.processes = workdir, processes
        self.sent = 0
        self.refused = 0

    def run(self, payloads: list[bytes], rate: float, seconds: float) -> float:
        """``processes`` senders at once, each at ``rate / processes`` (on a shared host
        one process does not get the CPU for the whole rate)."""
        frames = [_udp_packet(self.source, self.dest, p) for p in payloads] if self.spoof \
            else payloads
        path = self.workdir / "flood.frames"
        path.write_bytes(b"".join(struct.pack("<I", len(f)) + f for f in frames))
        procs = [subprocess.Popen(
            ["ip", "netns", "exec", self.ns, str(self.binary),
             "raw" if self.spoof else "dgram", self.source[0], str(self.source[1]),
             self.dest[0], str(self.dest[1]), str(rate / self.processes), str(seconds),
             str(path)], stdout=subprocess.PIPE, text=True)
            for _ in range(self.processes)]
        achieved = 0.0
        for proc in procs:
            out = proc.communicate()[0].split()
            if proc.returncode != 0 or len(out) != 3:
                raise RuntimeError(f"flood sender failed ({proc.returncode})")
            sent, refused, took = int(out[0]), int(out[1]), float(out[2])
            self.sent += sent
            self.refused += refused
            achieved += sent / max(took, 1e-9)
        return achieved

    def close(self) -> None:
        pass


def c_sender_binary(workdir: Path) -> Path | None:
    """``benchmarks/flood.c`` compiled into ``workdir``; None without gcc (or if it does
    not compile): the Python sender is used then."""
    gcc = shutil.which("gcc")
    if gcc is None:
        return None
    binary = workdir / "flood"
    done = subprocess.run([gcc, "-O2", "-o", str(binary),
                           str(Path(__file__).with_name("flood.c"))],
                          capture_output=True, text=True, check=False)
    return binary if done.returncode == 0 else None


# -- parts ---------------------------------------------------------------------------------


def _ping_into(out: dict[str, tuple[int, int]], lab: Lab, count: int, seconds: float) -> None:
    out["r"] = baseline.ping(lab, "ha1", "hb1", count=count, interval_s=PING_INTERVAL,
                             deadline_s=seconds + 5)


def flood(tmp: Path, rate: float, seconds: float, tick: Callable[[], None], *,
          sender_kind: str = "auto", processes: int = 2) -> list[dict[str, Any]]:
    results = []
    binary = c_sender_binary(tmp) if sender_kind in ("auto", "c") else None
    if sender_kind == "c" and binary is None:
        raise RuntimeError("--flood-sender c: gcc is missing or benchmarks/flood.c "
                           "does not compile")
    for source_kind in ("non_peer_address", "peer_address"):
        lab, rms, sid = _live(tmp)
        try:
            t_addr = lab.routers["t"].loopback
            dest = (lab.routers["b"].loopback, RM_PORT)
            spoof = source_kind == "peer_address"
            # Spoofed: T's own RM address and port (T's daemon holds that port, so raw).
            source = (t_addr, RM_PORT if spoof else 0)
            sender: Sender | CSender = Sender(lab.routers["t"].ns, source, dest, spoof) \
                if binary is None else CSender(binary, lab.routers["t"].ns, source, dest,
                                               spoof, workdir=tmp, processes=processes)
            rng = random.Random(1)
            payloads = [_forged(rng, rms.rm_id("t"), rms.rm_id("b"), k)
                        for k in (1, 12, 13, 15) for _ in range(256)]
            rss_before = _rss_mib(rms, "b")
            cpu_before, backlog_before = _cpu_s(rms, "b"), _backlog_drops()
            b_ns = lab.routers["b"].ns
            sock_drops_before = _udp_socket_drops(b_ns, RM_PORT)
            rcvbuf_before = _rcvbuf_errors(b_ns)
            attempts_before = _row(rms, sid).get("attempts")
            count = int(seconds / PING_INTERVAL)
            # Control, same lab, same length, just before: the loss the loaded host
            # causes without any flood, so the flood's own share can be told apart.
            quiet: dict[str, tuple[int, int]] = {}
            _ping_into(quiet, lab, count, seconds)
            q_sent, q_got = quiet.get("r", (count, 0))
            ping: dict[str, tuple[int, int]] = {}
            pinger = threading.Thread(target=_ping_into, args=(ping, lab, count, seconds))
            pinger.start()
            achieved = sender.run(payloads, rate, seconds)
            flood_cpu = _cpu_s(rms, "b") - cpu_before
            pinger.join()
            sender.close()
            time.sleep(1.0)
            row = _row(rms, sid)
            sent, got = ping.get("r", (count, 0))
            results.append({
                "source": source_kind, "rate": round(achieved), "target_rate": rate,
                "sender": "python" if binary is None else f"c x{processes}",
                "seconds": seconds, "datagrams": sender.sent,
                "refused_by_send_buffer": sender.refused,
                "daemon_cpu_share": round(flood_cpu / seconds, 3),
                "receive_buffer_drops": _udp_socket_drops(b_ns, RM_PORT) - sock_drops_before,
                "rcvbuf_errors": _rcvbuf_errors(b_ns) - rcvbuf_before,
                "host_backlog_drops": _backlog_drops() - backlog_before,
                "stitch_survived": row.get("status") == "up"
                and row.get("attempts") == attempts_before,
                "ping_sent": sent, "ping_received": got,
                "ping_loss": round(1 - got / sent, 4) if sent else 1.0,
                "ping_loss_without_flood": round(1 - q_got / q_sent, 4) if q_sent else 1.0,
                "rss_growth_mib": round(_rss_mib(rms, "b") - rss_before, 2),
                "dropped_before_verify": _metric(rms, "b", "peer_faults_total"),
                "core_exceptions": _metric(rms, "b", "core_exceptions_total"),
                # lease checks B passed on the tunnel's probes (the control datagrams
                # that would have confirmed the lease were lost to the flood)
                "lease_kept_by_datapath": _metric(rms, "b",
                                                  "lease_kept_by_datapath_total")})
        finally:
            _close(lab, rms)
        tick()
    return results


ROLES = {"origin": "a", "transit": "t", "target": "b"}


def kill9(tmp: Path, kills: int, max_delay: float, tick: Callable[[], None],
          roles: list[str] | None = None) -> list[dict[str, Any]]:
    lab, rms, sid = _live(tmp)
    out = []
    delays = [round(0.5 + (max_delay - 0.5) * i / max(kills - 1, 1), 2) for i in range(kills)]
    try:
        for role, seg in ((r, ROLES[r]) for r in roles or list(ROLES)):
            for delay in random.Random(len(role)).sample(delays, len(delays)):
                with PingStream(lab, "ha1", "hb1", interval_s=PING_INTERVAL) as stream:
                    time.sleep(0.5)
                    killed = time.time()
                    rms.kill(seg)
                    time.sleep(delay)
                    spawned = time.time()
                    rms.start(seg, timeout_s=60)
                    start_s = time.time() - spawned  # process start: load-dependent
                    try:
                        wait_for(lambda: baseline.ping(lab, "ha1", "hb1", count=1,
                                                       deadline_s=1)[1] == 1 or None,
                                 delay + 60, "traffic to flow again")
                        wait_for(lambda: _row(rms, sid).get("status") == "up" or None,
                                 30, "the stitch to be up")
                        restored = True
                    except Exception:
                        restored = False
                    time.sleep(1.0)
                gaps = stream.gaps_after(killed - 0.2, GAP_S)
                gap = max((b - a for a, b in gaps), default=0.0)
                consistent = restored and _wait_consistent(rms, sid)
                out.append({"role": role, "restart_delay_s": delay,
                            "restored": restored and consistent,
                            "gap_s": round(gap, 2), "daemon_start_s": round(start_s, 2),
                            "within_bound": restored and gap <= delay + 3.0,
                            "reservations_consistent": consistent})
                tick()
    finally:
        _close(lab, rms)
    return out


def _wait_consistent(rms: LabRouteManagers, sid: str) -> bool:
    try:
        wait_for(lambda: _reservations_consistent(rms, sid) or None, 15,
                 "reservations to settle")
    except Exception:
        return False
    return True


def fuzz(tmp: Path, n: int, tick: Callable[[], None]) -> dict[str, Any]:
    lab, rms, sid = _live(tmp)
    try:
        t_addr = lab.routers["t"].loopback
        dest = (lab.routers["b"].loopback, RM_PORT)
        ids = [rms.rm_id(s) for s in rms.rms]
        rng = random.Random(7)
        batch = 50_000
        sent = 0
        received_before = _metric(rms, "b", "datagrams_received_total")
        filtered_before = _udp_socket_drops(lab.routers["b"].ns, RM_PORT)
        # From another port of T's address: B's kernel filter drops these (counted); from
        # T's own RM address and port (spoofed, raw: unfragmented, so the oversized kind
        # is refused at sending): these reach B's parser.
        senders = [Sender(lab.routers["t"].ns, (t_addr, 0), dest, False),
                   Sender(lab.routers["t"].ns, (t_addr, RM_PORT), dest, True)]
        while sent < n:
            k = min(batch, n - sent)
            data = _fuzz_datagrams(rng, ids, rms.rm_id("b"), k)
            for j, s in enumerate(senders):
                half = data[j::2]
                s.run(half, 20_000, len(half) / 20_000 + 5.0, total=len(half))
            sent += k
            tick()
        for s in senders:
            s.close()
        time.sleep(1.0)
        alive = rms.running("b")
        unhandled = (_metric(rms, "b", "core_exceptions_total") if alive else 1.0) + \
            (0.0 if alive else 1.0)
        row = _row(rms, sid)
        reached = _metric(rms, "b", "datagrams_received_total") - received_before \
            if alive else float("nan")
        return {"datagrams": sum(s.sent for s in senders), "unhandled": int(unhandled),
                "reached_daemon": int(reached) if alive else None,
                "dropped_by_kernel_filter": _udp_socket_drops(lab.routers["b"].ns, RM_PORT)
                - filtered_before,
                "daemon_alive": alive, "stitch_up": row.get("status") == "up"}
    finally:
        _close(lab, rms)


# -- main ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--flood-rate", type=float, default=50_000, help="datagrams per second")
    ap.add_argument("--flood-seconds", type=float, default=60.0, help="flood duration")
    ap.add_argument("--flood-sender", choices=("auto", "c", "python"), default="auto",
                    help="flood sender: benchmarks/flood.c compiled with gcc (auto: when "
                    "gcc is there), or the Python sendmmsg loop")
    ap.add_argument("--flood-processes", type=int, default=2,
                    help="C flood sender processes sharing the rate")
    ap.add_argument("--kills", type=int, default=10, help="kill -9 per role")
    ap.add_argument("--max-delay", type=float, default=30.0, help="longest restart delay, s")
    ap.add_argument("--fuzz", type=int, default=1_000_000, help="fuzzed datagrams")
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: "
                    "flood,kill9,fuzz")
    ap.add_argument("--roles", default="origin,transit,target",
                    help="comma-separated roles to kill -9 (one lab each run: split a "
                    "long run into shorter ones)")
    ap.add_argument("--json", action="store_true", help="print JSON instead of tables")
    ap.add_argument("--keep-logs", type=Path, default=None, metavar="DIR",
                    help="work in DIR and keep the daemons' logs there (default: a "
                    "temporary directory, removed)")
    args = ap.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    roles = [r for r in args.roles.split(",") if r]
    if not roles or any(r not in ROLES for r in roles):
        ap.error(f"--roles: choose from {', '.join(ROLES)}")
    result: dict[str, Any] = {"sizes": {"flood_rate": args.flood_rate,
                                        "flood_seconds": args.flood_seconds,
                                        "kills_per_role": args.kills,
                                        "roles": roles,
                                        "max_delay_s": args.max_delay, "fuzz": args.fuzz}}
    steps = (0 if "flood" in skip else 2) + (0 if "kill9" in skip else len(roles) * args.kills) + \
        (0 if "fuzz" in skip else -(-args.fuzz // 50_000))
    keep = args.keep_logs
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
    with (contextlib.nullcontext(str(keep)) if keep is not None
          else tempfile.TemporaryDirectory(prefix="vnstitch-chaos-")) as tmpdir, \
            progress(disable=args.json) as bar:
        task = bar.add_task("chaos", total=steps)

        def tick() -> None:
            bar.advance(task)

        tmp = Path(tmpdir)
        if "flood" not in skip:
            result["flood"] = flood(tmp, args.flood_rate, args.flood_seconds, tick,
                                    sender_kind=args.flood_sender,
                                    processes=args.flood_processes)
        if "kill9" not in skip:
            result["kill9"] = kill9(tmp, args.kills, args.max_delay, tick, roles)
        if "fuzz" not in skip:
            result["fuzz"] = fuzz(tmp, args.fuzz, tick)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    out = console()
    for f in result.get("flood", []):
        out.print(table(f"flood from {f['source']} (bounds: loss <= 1%, RSS <= 20 MiB)",
                        ["rate/s", "s", "survived", "ping loss", "no flood",
                         "RSS +MiB"],
                        [[f["rate"], f["seconds"], f["stitch_survived"],
                          f"{f['ping_loss']:.2%}", f"{f['ping_loss_without_flood']:.2%}",
                          f["rss_growth_mib"]]]))
    if "kill9" in result:
        out.print(table("kill -9 (bound: gap <= delay + 3 s)",
                        ["role", "delay s", "start s", "restored", "gap s", "in bound"],
                        [[k["role"], k["restart_delay_s"], k["daemon_start_s"],
                          k["restored"], k["gap_s"], k["within_bound"]]
                         for k in result["kill9"]]))
    if "fuzz" in result:
        fz = result["fuzz"]
        out.print(table("fuzz (bound: 0 unhandled)", ["datagrams", "unhandled", "alive"],
                        [[fz["datagrams"], fz["unhandled"], fz["daemon_alive"]]]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
