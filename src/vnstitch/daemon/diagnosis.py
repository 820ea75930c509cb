"""Why a stitch is not up or not well: checks with a verdict and the evidence behind it.

Theory of operation: :func:`diagnose` is pure. It takes the views a running daemon serves
(``status``, ``peers``, ``stitches``, ``tunnels``, ``decisions`` and the fault counters
from ``/metrics``, as plain JSON-like data, through either door) and returns a list of
:class:`Check` -- each names what it looked at, a verdict (``ok``, ``warn``, ``fail``),
the evidence (the numbers it read) and, when not ok, the likely cause. Checks, in the
order a person would look:

- ``peer-trust``: datagrams from a neighbour dropped as ``unknown_sender`` or
  ``bad_signature`` -- its key is not in ``trust:`` (or it signs with another key);
- ``peer-reachable``: a neighbour never heard from, or not heard within ``stale_s``;
- ``stitch-state``: the stitch's status; for one not up, the first neighbour on its
  path that is unreachable (transit down) when there is one (an ended stitch -- failed
  or down -- is a warning unless it is the stitch asked about);
- ``tunnel-health``: the stitch's tunnel end here: state, probe loss and RTT; a tunnel
  whose probes go unanswered while the peer is heard on the control channel points at
  the data path (WireGuard / VXLAN, e.g. a killed wireguard-go);
- ``allocation``: recent shortfall decisions (the forecast exceeds the reservation);
- ``link-utilisation``: a neighbour link with more than 90 % of its capacity reserved.

Kernel-side checks (WireGuard handshake age, HTB drops, path MTU probes, route conflicts)
need the host's tools and are not implemented here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

TRUST_FAULTS = ("unknown_sender", "bad_signature")
VERDICTS = ("ok", "warn", "fail")


@dataclass(frozen=True, slots=True)
class Check:
    check: str
    subject: str
    verdict: str  # one of VERDICTS
    evidence: str
    cause: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def diagnose(views: Mapping[str, Any], stitch_id: str | None = None, *,
             stale_s: float = 5.0, faults: Mapping[str, float] | None = None) -> list[Check]:
    """Checks over ``views`` (see the module docstring); only ``stitch_id``'s when given."""
    peers: Sequence[dict[str, Any]] = views.get("peers", [])
    stitches: Sequence[dict[str, Any]] = views.get("stitches", [])
    if stitch_id is not None:
        stitches = [s for s in stitches if s["stitch_id"] == stitch_id]
        if not stitches:
            return [Check("stitch-state", stitch_id, "fail", "the daemon has no such stitch",
                          "a wrong id, or the stitch was released")]
    out = _peer_checks(peers, faults or {}, stale_s)
    unreachable = {c.subject for c in out if c.check == "peer-reachable" and c.verdict == "fail"}
    tunnels: Sequence[dict[str, Any]] = views.get("tunnels", [])
    for s in stitches:
        check = _stitch_check(s, unreachable)
        if stitch_id is None and s["status"] in ("failed", "down") and check.verdict == "fail":
            # the state database keeps ended stitches: history, not a current failure,
            # unless that stitch is the one asked about
            check = Check(check.check, check.subject, "warn", check.evidence, check.cause)
        out.append(check)
        out.extend(_tunnel_checks(s, [t for t in tunnels if t.get("stitch_id") ==
                                      s["stitch_id"]], unreachable))
    out.extend(_allocation_checks(views.get("decisions", []), {s["stitch_id"] for s in stitches}))
    usage: Mapping[str, Mapping[str, float]] = views.get("status", {}).get("link_usage", {})
    for peer, u in sorted(usage.items()):
        ratio = u["reserved_mbps"] / u["capacity_mbps"] if u["capacity_mbps"] > 0 else 0.0
        out.append(Check("link-utilisation", peer, "warn" if ratio > 0.9 else "ok",
                         f"{u['reserved_mbps']:g} of {u['capacity_mbps']:g} Mbit/s reserved "
                         f"({ratio:.0%})",
                         "the link is nearly fully reserved" if ratio > 0.9 else ""))
    return out


def _peer_checks(peers: Sequence[dict[str, Any]], faults: Mapping[str, float],
                 stale_s: float) -> list[Check]:
    out: list[Check] = []
    trust_faults = {r: int(n) for r, n in faults.items() if r in TRUST_FAULTS and n > 0}
    for p in peers:
        pid, faulted, received = str(p["id"]), int(p["faults"]), int(p["received"])
        if faulted and trust_faults:
            reasons = ", ".join(f"{r}={n}" for r, n in sorted(trust_faults.items()))
            out.append(Check("peer-trust", pid, "fail",
                             f"{faulted} of {received + faulted} datagrams from "
                             f"{p['address']} dropped; daemon-wide: {reasons}",
                             "peer key not trusted: add its public_key to trust: (or it "
                             "signs with a key other than the one trusted)"))
        else:
            out.append(Check("peer-trust", pid, "ok",
                             f"{faulted} datagrams from {p['address']} dropped as faults"))
        ago = p.get("last_heard_s_ago")
        if ago is None:
            out.append(Check("peer-reachable", pid, "fail",
                             f"never heard from {p['address']}",
                             "the peer is not running, not reachable on the substrate, or "
                             "every datagram from it is dropped (see peer-trust)"))
        elif float(ago) > stale_s:
            out.append(Check("peer-reachable", pid, "fail",
                             f"last heard {float(ago):.1f} s ago (> {stale_s:g} s)",
                             "the peer or the link to it went down (transit down)"))
        else:
            out.append(Check("peer-reachable", pid, "ok", f"last heard {float(ago):.1f} s ago"))
    return out


def _stitch_check(s: dict[str, Any], unreachable: set[str]) -> Check:
    sid, status = str(s["stitch_id"]), str(s["status"])
    path = [str(h) for h in s.get("path", [])]
    evidence = f"status {status}; path {' -> '.join(h[:8] for h in path) or '(none yet)'}"
    if status == "up":
        return Check("stitch-state", sid, "ok", evidence)
    down = [h for h in path if h in unreachable]
    cause = (f"transit down: {down[0][:8]} on the path is unreachable" if down else
             "renegotiating around a failure" if status == "renegotiating" else
             f"the stitch is {status}")
    return Check("stitch-state", sid, "warn" if status == "renegotiating" else "fail",
                 evidence, cause)


def _tunnel_checks(s: dict[str, Any], tunnels: Sequence[dict[str, Any]],
                   unreachable: set[str]) -> list[Check]:
    out: list[Check] = []
    for t in tunnels:
        tid, state = str(t["tunnel_id"]), str(t["state"])
        loss, rtt = t.get("loss"), t.get("rtt_ms")
        evidence = (f"state {state}; probe loss "
                    f"{'-' if loss is None else f'{float(loss):.0%}'}; RTT "
                    f"{'-' if rtt is None else f'{float(rtt):.1f} ms'}")
        if state == "up" and (loss is None or float(loss) < 0.05):
            out.append(Check("tunnel-health", tid, "ok", evidence))
            continue
        peer_heard = str(t["peer"]) not in unreachable
        cause = ("probes through the tunnel go unanswered while the peer answers on the "
                 "control channel: the data path is broken (WireGuard / VXLAN; e.g. "
                 "wireguard-go killed, or packets too big for the path MTU)"
                 if peer_heard else "the far end is unreachable")
        verdict = "warn" if state in ("degraded", "up", "keys_exchanged", "requested") \
            else "fail"
        out.append(Check("tunnel-health", tid, verdict, evidence, cause))
    return out


def _allocation_checks(decisions: Sequence[dict[str, Any]], stitch_ids: set[str]
                       ) -> list[Check]:
    out: list[Check] = []
    for sid in sorted(stitch_ids):
        rows = [d for d in decisions if d.get("stitch_id") == sid][-20:]
        if not rows:
            continue
        short = [d for d in rows if d.get("action") == "shortfall"]
        out.append(Check("allocation", sid, "warn" if short else "ok",
                         f"{len(short)} shortfalls in the last {len(rows)} decisions",
                         "demand is forecast above the negotiated bandwidth" if short else ""))
    return out


def parse_faults(metrics_text: str) -> dict[str, float]:
    """``vnstitch_peer_faults_total{...reason="R"}`` samples of an exposition, by reason."""
    out: dict[str, float] = {}
    for line in metrics_text.splitlines():
        if line.startswith("vnstitch_peer_faults_total{") and 'reason="' in line:
            reason = line.split('reason="', 1)[1].split('"', 1)[0]
            out[reason] = out.get(reason, 0.0) + float(line.rsplit(" ", 1)[1])
    return out
