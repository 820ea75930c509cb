"""What happens in a simulation: VN placement, stitch requests and faults, resolved.

Theory of operation: a scenario describes the workload statistically (how many VNs, on
how many segments each, how many requests, how they arrive); the functions here turn it
into concrete, time-stamped values with a seeded ``random.Random`` so the engine only
replays lists. Poisson arrivals of a given count over a window are drawn as sorted
uniform times (a Poisson process conditioned on its count has exactly that law), so a
scenario asking for R requests gets R. A request starts at a segment where its VN lives
and asks for connectivity to the same VNID elsewhere.
"""

from __future__ import annotations

import csv
import enum
import ipaddress
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from vnstitch.model.ids import VNID, SegmentId
from vnstitch.model.virtual import Component, ComponentKind, VirtualNetwork
from vnstitch.protocol.api import StitchConstraints
from vnstitch.sim.errors import ScenarioError

#: A fault target resolved when the fault fires: the segment carrying most live stitches
#: as transit (the interesting one to crash).
BUSIEST_TRANSIT = "busiest-transit"
FIRST_VNID = 100


@dataclass(frozen=True, slots=True)
class StitchRequest:
    at: float
    origin: SegmentId
    vnid: VNID
    constraints: StitchConstraints
    #: Release the stitch this long after it is established (``None``: keep it).
    hold_s: float | None = None


class FaultKind(enum.StrEnum):
    CRASH = "crash"
    RESTART = "restart"
    CUT_LINK = "cut_link"
    REPAIR_LINK = "repair_link"
    PARTITION = "partition"
    HEAL = "heal"


@dataclass(frozen=True, slots=True)
class Fault:
    at: float
    kind: FaultKind
    segment: str | None = None  # crash/restart: a segment id or BUSIEST_TRANSIT
    link: tuple[str, str] | None = None  # cut/repair: substrate node ids
    segments: tuple[SegmentId, ...] = ()  # partition: the group cut off from the rest
    name: str = "partition"  # partition/heal: which partition
    #: cut/repair: a link alias resolved when the fault fires (``busiest-adjacency``:
    #: every substrate link between two segments, see :mod:`vnstitch.sim.picks`)
    link_pick: str | None = None


def place_vns(
    segments: Sequence[SegmentId], count: int, segments_per_vn: int, rng: random.Random
) -> list[VirtualNetwork]:
    """``count`` VNs, each on ``segments_per_vn`` distinct random segments, one /24 each."""
    per = min(segments_per_vn, len(segments))
    placements: list[VirtualNetwork] = []
    block = 0
    for k in range(count):
        vid = VNID(FIRST_VNID + k)
        for seg in sorted(rng.sample(list(segments), per)):
            net = ipaddress.ip_network((0x0A000000 + (block << 8), 24))
            block += 1
            placements.append(VirtualNetwork(
                vid, seg, (Component(ComponentKind.PREFIX, str(net)),), application=f"vn{vid}"))
    return placements


def poisson_requests(
    placements: Sequence[VirtualNetwork],
    count: int,
    *,
    start_s: float,
    end_s: float,
    bandwidth_mbps: tuple[float, float],
    rng: random.Random,
    max_latency_ms: float = math.inf,
    hop_limit: int = 16,
    hold_s: float | None = None,
) -> list[StitchRequest]:
    """``count`` requests arriving as a Poisson process in ``[start_s, end_s)``."""
    hosts: dict[VNID, list[SegmentId]] = {}
    for vn in placements:
        hosts.setdefault(vn.vnid, []).append(vn.segment)
    stitchable = sorted(v for v, segs in hosts.items() if len(segs) >= 2)
    if count and not stitchable:
        raise ScenarioError("workload", "vns.segments_per_vn",
                            "no VN lives on two segments, so nothing can be stitched")
    times = sorted(rng.uniform(start_s, end_s) for _ in range(count))
    out = []
    lo, hi = bandwidth_mbps
    for at in times:
        v = rng.choice(stitchable)
        origin = rng.choice(hosts[v])
        cons = StitchConstraints(bandwidth_mbps=round(rng.uniform(lo, hi), 3),
                                 max_latency_ms=max_latency_ms, hop_limit=hop_limit)
        held = None if hold_s is None else rng.expovariate(1.0 / hold_s)
        out.append(StitchRequest(round(at, 6), origin, v, cons, held))
    return out


def requests_from_file(path: Path, segments: Sequence[SegmentId]) -> list[StitchRequest]:
    """Read requests from CSV with columns ``at,origin,vnid,bandwidth_mbps`` (and optional
    ``max_latency_ms``, ``hop_limit``, ``hold_s``); errors name file, line and column."""
    source = str(path)
    known = set(segments)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(source, "", f"cannot read: {exc.strerror or exc}") from None
    reader = csv.DictReader(text.splitlines())
    need = {"at", "origin", "vnid", "bandwidth_mbps"}
    missing = need - set(reader.fieldnames or ())
    if missing:
        raise ScenarioError(source, "line 1", f"missing column(s) {sorted(missing)}")
    out = []
    for lineno, row in enumerate(reader, start=2):
        def num(col: str, default: float | None = None, *, line: int = lineno,
                r: dict[str, str] = row) -> float:
            raw = (r.get(col) or "").strip()
            if not raw:
                if default is None:
                    raise ScenarioError(source, f"line {line}, column {col}", "is empty")
                return default
            try:
                value = float(raw)
            except ValueError:
                raise ScenarioError(source, f"line {line}, column {col}",
                                    f"not a number: {raw!r}") from None
            if math.isnan(value) or value < 0:
                raise ScenarioError(source, f"line {line}, column {col}",
                                    f"must be >= 0, got {raw!r}")
            return value
        origin = (row.get("origin") or "").strip()
        if origin not in known:
            raise ScenarioError(source, f"line {lineno}, column origin",
                                f"unknown segment {origin!r}")
        vid = num("vnid")
        if vid != int(vid) or not 1 <= vid < 1 << 24:
            raise ScenarioError(source, f"line {lineno}, column vnid", f"bad VNID {vid}")
        bw = num("bandwidth_mbps")
        if bw <= 0:
            raise ScenarioError(source, f"line {lineno}, column bandwidth_mbps", "must be > 0")
        hold = (row.get("hold_s") or "").strip()
        out.append(StitchRequest(
            num("at"), SegmentId(origin), VNID(int(vid)),
            StitchConstraints(bw, num("max_latency_ms", math.inf), int(num("hop_limit", 16))),
            num("hold_s") if hold else None))
    out.sort(key=lambda r: r.at)
    return out
