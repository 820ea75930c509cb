"""Which endpoint pairs ``vnstitch verify`` probes, and what their probe results mean.

Theory of operation: pure. An :class:`Endpoint` is a host inside a VN on one segment
(a namespace and an address: a lab host, or an operator's probe namespace).
:func:`plan_pairs` returns every unordered pair of endpoints of the same VN on different
segments, for the VNs that are stitched (one pair per matrix cell). The caller runs the
probes (ping, a DF ping as large as the source's interface MTU allows, a short iperf3)
and :func:`judge` turns one pair's :class:`PairResult` into a verdict and a one-line
reason: unreachable, MTU too small (with the largest DF size that passed), iperf3 failed,
or some loss (a warning).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Endpoint:
    name: str
    netns: str
    ip: str
    vnid: int
    segment: str


@dataclass(slots=True)
class PairResult:
    src: Endpoint
    dst: Endpoint
    sent: int = 0
    received: int = 0
    rtt_ms: float | None = None
    mtu: int | None = None  # the source interface's MTU (the DF probe's packet size)
    mtu_passes: bool | None = None
    mtu_largest: int | None = None
    iperf_mbps: float | None = None
    iperf_error: str = ""
    verdict: str = ""
    reason: str = ""

    @property
    def pair(self) -> str:
        return f"{self.src.name}->{self.dst.name}"

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["src"], d["dst"], d["pair"] = self.src.name, self.dst.name, self.pair
        d["vnid"] = self.src.vnid
        return d


def plan_pairs(endpoints: Sequence[Endpoint], vnids: Iterable[int] | None = None
               ) -> list[tuple[Endpoint, Endpoint]]:
    """Pairs of endpoints in one VN on different segments (only ``vnids`` when given)."""
    wanted = None if vnids is None else set(vnids)
    out = []
    for a, b in itertools.combinations(sorted(endpoints, key=lambda e: (e.vnid, e.name)), 2):
        if a.vnid == b.vnid and a.segment != b.segment and (wanted is None or
                                                            a.vnid in wanted):
            out.append((a, b))
    return out


def judge(r: PairResult) -> PairResult:
    """Set ``r.verdict`` (ok / warn / fail) and ``r.reason``."""
    if r.received == 0:
        r.verdict, r.reason = "fail", (f"unreachable: 0 of {r.sent} pings answered "
                                       f"(VN {r.src.vnid}, {r.src.segment} -> "
                                       f"{r.dst.segment})")
    elif r.mtu_passes is False:
        largest = "none" if r.mtu_largest is None else f"about {r.mtu_largest}"
        r.verdict, r.reason = "fail", (f"MTU too small: a {r.mtu}-byte DF packet is lost; "
                                       f"the largest that arrives: {largest}")
    elif r.iperf_error:
        r.verdict, r.reason = "fail", f"iperf3 failed: {r.iperf_error}"
    elif r.received < r.sent:
        r.verdict, r.reason = "warn", f"{r.sent - r.received} of {r.sent} pings lost"
    else:
        r.verdict, r.reason = "ok", ""
    return r
