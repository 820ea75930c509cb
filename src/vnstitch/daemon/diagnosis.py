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

:func:`kernel_checks` judges evidence read from the daemon's namespace
(:mod:`vnstitch.daemon.kernelevidence`), also purely:

- ``wireguard``: each tunnel interface is there and answers (a killed wireguard-go takes
  its interface with it), and its peer's latest handshake is recent (WireGuard
  re-handshakes every 2 minutes while traffic flows; none, or older than 3 minutes, means
  the far end or the path does not answer);
- ``path-mtu``: a DF packet as large as WireGuard sends for a full inner packet reaches
  the peer's endpoint; if not, the largest that does (the substrate's MTU is too small);
- ``htb-drops``: packets dropped by the stitch's HTB class (traffic above its ceiling);
- ``route-conflict``: a route to a VN component that does not go through the VN's bridge
  and that the kernel prefers (lower or equal metric), e.g. a substrate route to an
  overlapping prefix.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from vnstitch.model.ids import VNID
from vnstitch.protocol.tunnels import bridge_name

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
        mine = p.get("fault_reasons")  # per peer when the daemon reports it
        if isinstance(mine, dict):
            trust_faults = {r: int(n) for r, n in mine.items() if r in TRUST_FAULTS and n}
        if faulted and trust_faults:
            reasons = ", ".join(f"{r}={n}" for r, n in sorted(trust_faults.items()))
            scope = "" if isinstance(mine, dict) else "daemon-wide: "
            out.append(Check("peer-trust", pid, "fail",
                             f"{faulted} of {received} datagrams from "
                             f"{p['address']} dropped; {scope}{reasons}",
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
    if not path and unreachable:  # the path is gone: name the neighbours that went silent
        down = sorted(unreachable)
    cause = (f"transit down: {', '.join(h[:8] for h in down)} unreachable "
             f"({'on the path' if path else 'no path left'})" if down else
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


#: WireGuard's REJECT_AFTER_TIME: a session older than this is dead.
HANDSHAKE_STALE_S = 180.0


def kernel_checks(evidence: Mapping[str, Any], views: Mapping[str, Any]) -> list[Check]:
    """Checks over kernel ``evidence`` (see :mod:`vnstitch.daemon.kernelevidence`)."""
    out = [Check("kernel", "evidence", "warn", e, "a kernel read failed")
           for e in evidence.get("errors", [])]
    for ifname, wg in sorted(evidence.get("wireguard", {}).items()):
        out.append(_wireguard_check(ifname, wg))
    for p in evidence.get("path_mtu", []):
        subject = f"{p['interface']}->{p['endpoint']}"
        if p["passes"]:
            out.append(Check("path-mtu", subject, "ok",
                             f"a {p['needed']}-byte DF packet reaches {p['endpoint']}"))
        elif p["largest"] is None:
            out.append(Check("path-mtu", subject, "fail",
                             f"not even a small DF packet reaches {p['endpoint']}",
                             "the peer's tunnel endpoint is unreachable on the substrate"))
        else:
            out.append(Check("path-mtu", subject, "fail",
                             f"WireGuard sends {p['needed']}-byte packets to "
                             f"{p['endpoint']}; the largest DF packet that arrives is about "
                             f"{p['largest']} bytes",
                             "MTU too small on the substrate path: raise the links' MTU to "
                             f"{p['needed']} or lower the VN's MTU by "
                             f"{p['needed'] - p['largest']} bytes"))
    for c in evidence.get("htb", []):
        drops = int(c.get("drops") or 0)
        out.append(Check("htb-drops", f"{c['device']} {c['handle']}",
                         "warn" if drops else "ok",
                         f"{drops} packets dropped, {c.get('bytes')} bytes sent",
                         "traffic above the stitch's ceiling (see allocation)" if drops
                         else ""))
    out.extend(_route_checks(evidence.get("routes", []), views))
    return out


def _wireguard_check(ifname: str, wg: Mapping[str, Any]) -> Check:
    if not wg.get("present", False):
        return Check("wireguard", ifname, "fail", f"interface {ifname} is missing",
                     "WireGuard killed: wireguard-go for this tunnel is not running (the "
                     "daemon recreates it on its next reconcile)")
    if wg.get("error"):
        return Check("wireguard", ifname, "fail", f"wg show: {wg['error']}",
                     "WireGuard killed: the interface exists but its wireguard-go does not "
                     "answer")
    peers = wg.get("peers", [])
    if not peers:
        return Check("wireguard", ifname, "fail", "no peer configured",
                     "the tunnel's keys were not exchanged")
    p = peers[0]
    age = p.get("handshake_age_s")
    evidence = (f"peer {p.get('endpoint')}: "
                f"{'no handshake yet' if age is None else f'handshake {age:.0f} s ago'}; "
                f"rx {p.get('rx_bytes')} B, tx {p.get('tx_bytes')} B")
    if age is None or float(age) > HANDSHAKE_STALE_S:
        return Check("wireguard", ifname, "fail", evidence,
                     "no WireGuard session: the far end's wireguard-go is down, or the "
                     "path drops its UDP (see path-mtu)")
    return Check("wireguard", ifname, "ok", evidence)


def _route_checks(routes: Sequence[Mapping[str, Any]], views: Mapping[str, Any]
                  ) -> list[Check]:
    import ipaddress  # noqa: PLC0415

    out: list[Check] = []
    seen: set[tuple[int, str]] = set()
    for vn in views.get("vnids", []):
        bridge = bridge_name(VNID(int(vn["vnid"])))
        for comp in vn.get("components", []):
            net = ipaddress.ip_network(str(comp), strict=False)
            if (int(vn["vnid"]), str(net)) in seen:
                continue
            seen.add((int(vn["vnid"]), str(net)))
            ours = [r for r in routes if r.get("dev") == bridge and r.get("dst") == str(net)]
            mine = min((int(r.get("metric") or 0) for r in ours), default=None)
            clash = []
            for r in routes:
                dst = r.get("dst")
                if not dst or dst == "default" or r.get("dev") == bridge or \
                        r.get("table") not in (None, "main"):
                    continue
                try:
                    other = ipaddress.ip_network(str(dst), strict=False)
                except ValueError:
                    continue
                if other.version == net.version and other.overlaps(net):
                    clash.append(r)
            if not clash:
                continue
            # Only where the stitch installed a route can another one take its traffic.
            wins = [r for r in clash if mine is not None and (
                    ipaddress.ip_network(str(r["dst"]), strict=False).prefixlen >
                    net.prefixlen or int(r.get("metric") or 0) <= mine)]
            shown = "; ".join(f"{r['dst']} dev {r.get('dev')}"
                              f"{' via ' + str(r['gateway']) if r.get('gateway') else ''} "
                              f"metric {r.get('metric') or 0} proto {r.get('protocol')}"
                              for r in clash[:3])
            out.append(Check("route-conflict", f"VN {vn['vnid']} {net}",
                             "fail" if wins else "warn",
                             f"{shown}; the stitch's route: "
                             f"{'none' if mine is None else f'metric {mine}'}",
                             "a substrate route to an overlapping prefix takes the VN's "
                             "traffic" if wins else "an overlapping substrate route exists"))
    return out
