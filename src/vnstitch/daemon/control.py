"""Local control socket: JSON lines over a Unix socket, server and client.

Theory of operation: the daemon listens on a Unix stream socket (mode 0600, so only its
user can drive it). A client writes one JSON object per line and reads one JSON object
per line back: ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "..."}``.
A bad line gets an error reply and the connection stays usable. Requests:

- ``{"cmd": "show", "what": "peers"|"vnids"|"stitches"|"tunnels"|"metrics"|"status"|
  "allocations"}`` -- ``allocations`` lists the allocation loop's kept decisions (oldest
  first; empty when the config has no ``allocation:`` section)
- ``{"cmd": "stitch", "vnid": 100, "bandwidth_mbps": 10, "max_latency_ms": ...,
  "max_cost": ..., "hop_limit": ..., "wait_s": 10, "retry_for_s": ...}`` -- a stitch
  *intent*: kept and retried until released (capacity refusals until ``retry_for_s``,
  default forever; :mod:`vnstitch.protocol.intent`); waits for the first attempt's
  established / failed. A second stitch for a VNID with a live one is refused.
- ``{"cmd": "release", "stitch_id": "..."}`` -- an unknown id is an error
- ``{"cmd": "resize", "stitch_id": "...", "bandwidth_mbps": 40, "wait_s": 10}`` -- an
  in-place resize of a stitch originated here; waits for its outcome

Views are built from the daemon's own tables (SQLite for stitches, reservations and
tunnels; in-memory for peers and routes) so they survive restarts where it matters.
``show metrics`` returns Prometheus text exposition.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vnstitch.daemon.errors import ControlError
from vnstitch.daemon.limits import (
    MAX_BANDWIDTH_MBPS,
    MAX_HOP_LIMIT,
    MAX_RETRY_FOR_S,
    MAX_WAIT_S,
)
from vnstitch.errors import VnstitchError
from vnstitch.model.ids import VNID
from vnstitch.model.ids import vnid as parse_vnid
from vnstitch.protocol.api import StitchConstraints

if TYPE_CHECKING:
    from vnstitch.daemon.runtime import RouteManagerDaemon

log = logging.getLogger("vnstitch.daemon.control")

MAX_LINE = 64 * 1024
SHOW_WHAT = ("peers", "vnids", "stitches", "tunnels", "metrics", "status", "allocations")


# -- views ------------------------------------------------------------------------------


def view(daemon: RouteManagerDaemon, what: str) -> Any:
    """The ``show WHAT`` result as plain JSON-able data."""
    now = daemon.now()
    if what == "peers":
        return [{"id": p.rm_id, "address": f"{p.address[0]}:{p.address[1]}",
                 "received": p.received, "sent": p.sent, "faults": p.faults,
                 "last_heard_s_ago": None if p.last_heard is None else
                 round(now - p.last_heard, 3)} for p in daemon.peers.values()]
    if what == "vnids":
        local = [{"vnid": int(vn.vnid), "where": "local",
                  "components": [str(c) for c in vn.components],
                  "host_ports": list(vn.host_ports)} for vn in daemon.config.local_vns]
        return local + _remote_routes(daemon)
    if what == "stitches":
        # Desired state (the intent) next to the actual state of its current attempt.
        reserved = {r.stitch_id: r.bandwidth_mbps for r in daemon.store.reservations()}
        return [{"stitch_id": s.stitch_id, "vnid": s.vnid, "status": s.status,
                 "path": list(s.path), "bandwidth_mbps": s.bandwidth_mbps,
                 "reserved_mbps": reserved.get(s.stitch_id, 0.0),
                 "latency_ms": s.latency_ms, "cost": s.cost,
                 **daemon.intents.row_fields(s.stitch_id, now)}
                for s in daemon.store.stitches()]
    if what == "tunnels":
        # Interface names come from the core's live tunnels, when the core exposes them.
        live = getattr(daemon.core, "tunnels", {})
        return [{"tunnel_id": t, "peer": peer, "state": state,
                 "interface": getattr(live.get(t), "wg_name", None)}
                for t, peer, state, _ in daemon.store.tunnels()]
    if what == "metrics":
        return metrics_text(daemon)
    if what == "status":
        host, port = daemon.local_address
        return {"rm_id": daemon.rm_id, "segment": daemon.config.segment,
                "listen": f"{host}:{port}", "driver": daemon.config.dataplane.driver,
                "uptime_s": round(now - daemon.started_at, 3),
                "dataplane_objects": len(daemon.desired_state()),
                "adopted_ops": daemon.metrics["adopted_ops"],
                "reconciles": daemon.metrics["reconciles"],
                "dataplane_errors": daemon.metrics["dataplane_errors"],
                "dataplane_failing": daemon.object_retry.summary(now),
                "admission": {"admitted_by_tier": list(daemon.admission.admitted),
                              "dropped": daemon.metrics["admission_dropped"],
                              "sources_tracked": daemon.admission.sources_tracked},
                "link_usage": _link_usage(daemon),
                "allocation": _allocation_status(daemon)}
    if what == "allocations":
        return [] if daemon.allocation is None else list(daemon.allocation.loop.decisions)
    raise ControlError(f"show: unknown view {what!r} (one of {', '.join(SHOW_WHAT)})")


def _allocation_status(daemon: RouteManagerDaemon) -> dict[str, Any]:
    if daemon.allocation is None:
        return {"enabled": False}
    loop = daemon.allocation.loop
    return {"enabled": True, "interval_s": loop.config.interval_s,
            "forecaster": loop.config.forecaster, "steps": loop.steps,
            "stitches": loop.summary()}


def _remote_routes(daemon: RouteManagerDaemon) -> list[dict[str, Any]]:
    """Every learned route (one per VNID and origin) when the core exposes its discovery
    table -- a VN present here *and* elsewhere then shows its remote origins too; else
    the best route per VNID from the core's RouteChanged events."""
    discovery = getattr(daemon.core, "discovery", None)
    if discovery is None:
        return [{"vnid": v, "where": "remote", "via": list(via)}
                for v, via in sorted(daemon.routes.items()) if via is not None]
    vnids = sorted({int(v) for v, _ in discovery.best})
    return [{"vnid": v, "where": "remote", "via": list(r.entry.path)}
            for v in vnids for r in discovery.routes_to(VNID(v)) if r.via is not None]


def _link_usage(daemon: RouteManagerDaemon) -> dict[str, dict[str, float]]:
    """Reserved vs capacity per neighbour link (transit reservations included)."""
    usage = getattr(daemon.core, "link_usage", None)
    if usage is None:
        return {}
    return {str(peer): {"reserved_mbps": used, "capacity_mbps": cap}
            for peer, (used, cap) in usage().items()}


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def metrics_text(daemon: RouteManagerDaemon) -> str:
    """Prometheus text exposition of the daemon's and the core's counters."""
    rm = _label(daemon.rm_id)
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str,
               samples: list[tuple[dict[str, str], float]]) -> None:
        lines.append(f"# HELP vnstitch_{name} {help_text}")
        lines.append(f"# TYPE vnstitch_{name} {kind}")
        for labels, value in samples:
            lab = ",".join(f'{k}="{_label(v)}"' for k, v in {"rm": rm, **labels}.items())
            lines.append(f"vnstitch_{name}{{{lab}}} {value:g}")

    m = daemon.metrics
    counters = daemon.core.counters
    metric("datagrams_received_total", "counter", "UDP datagrams received",
           [({}, m["datagrams_received"])])
    metric("datagrams_sent_total", "counter", "UDP datagrams sent", [({}, m["datagrams_sent"])])
    metric("probes_sent_in_tunnel_total", "counter",
           "tunnel probes (and replies) sent through their tunnel",
           [({}, m["probes_sent_in_tunnel"])])
    metric("peer_faults_total", "counter", "datagrams dropped by the core, by reason",
           [({"reason": r}, n) for r, n in sorted(daemon.faults.items())])
    metric("core_dropped_total", "counter", "the core's own drop counters, by reason",
           [({"reason": r}, n) for r, n in sorted(counters.dropped.items())])
    metric("stitches_established_total", "counter", "stitches established",
           [({}, m["stitches_established"])])
    metric("stitches_failed_total", "counter", "stitch requests failed",
           [({}, m["stitches_failed"])])
    metric("stitches_torn_down_total", "counter", "stitches torn down",
           [({}, m["stitches_torn_down"])])
    metric("dataplane_ops_total", "counter", "dataplane ops applied", [({}, m["dataplane_ops"])])
    metric("dataplane_errors_total", "counter", "failed reconciles",
           [({}, m["dataplane_errors"])])
    metric("core_exceptions_total", "counter", "exceptions escaping the core (bugs)",
           [({}, m["core_exceptions"])])
    metric("stitches_resized_total", "counter", "in-place resizes granted",
           [({}, m["stitches_resized"])])
    metric("resizes_failed_total", "counter", "in-place resizes refused or timed out",
           [({}, m["resizes_failed"])])
    metric("allocation_errors_total", "counter",
           "allocation intervals that failed and kept the last reservation",
           [({}, m["allocation_errors"])])
    status: dict[str, int] = {}
    for s in daemon.store.stitches():
        status[s.status] = status.get(s.status, 0) + 1
    metric("stitches", "gauge", "stitches by status",
           [({"status": k}, v) for k, v in sorted(status.items())])
    metric("reserved_mbps", "gauge", "bandwidth reserved by this RM's stitches",
           [({}, sum(r.bandwidth_mbps for r in daemon.store.reservations()))])
    return "\n".join(lines) + "\n"


# -- server -----------------------------------------------------------------------------


class ControlServer:
    def __init__(self, daemon: RouteManagerDaemon, path: Path) -> None:
        self._daemon = daemon
        self.path = path
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        if self.path.exists() or self.path.is_symlink():
            if _socket_alive(self.path):
                raise ControlError(f"{self.path}: another daemon is serving this control socket")
            self.path.unlink()  # stale socket left by a crash
        old = os.umask(0o177)  # the socket is born 0600: no window for others to connect
        try:
            self._server = await asyncio.start_unix_server(self._client, path=str(self.path),
                                                           limit=MAX_LINE)
        except OSError as exc:
            raise ControlError(f"{self.path}: cannot listen: {exc.strerror}") from None
        finally:
            os.umask(old)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    line = await reader.readline()
                except (ValueError, asyncio.LimitOverrunError):
                    writer.write(_reply_error(f"request longer than {MAX_LINE} bytes"))
                    break
                if not line:
                    break
                writer.write(await self._handle_line(line))
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _handle_line(self, line: bytes) -> bytes:
        try:
            request = json.loads(line, parse_constant=_refuse_constant)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            return _reply_error(f"not JSON: {exc}")
        if not isinstance(request, dict):
            return _reply_error("request must be a JSON object")
        try:
            result = await self._dispatch(request)
            return (json.dumps({"ok": True, "result": result}, allow_nan=False)
                    + "\n").encode()
        except VnstitchError as exc:
            return _reply_error(str(exc))
        except Exception:  # a bug must cost one request, never the control socket
            log.exception("control request %.200r failed", request)
            self._daemon.metrics["control_exceptions"] += 1
            return _reply_error("internal error (logged by the daemon)")

    async def _dispatch(self, req: dict[str, Any]) -> Any:
        cmd = req.get("cmd")
        if cmd == "show":
            return view(self._daemon, str(req.get("what")))
        if cmd == "stitch":
            return await self._stitch(req)
        if cmd == "release":
            sid = req.get("stitch_id")
            if not isinstance(sid, str):
                raise ControlError("release: stitch_id must be a string")
            self._known_stitch(sid, "release")
            self._daemon.release_stitch(sid)
            return {"stitch_id": sid, "released": True}
        if cmd == "resize":
            return await self._resize(req)
        raise ControlError(f"unknown cmd {cmd!r} (show, stitch, release, resize)")

    def _known_stitch(self, stitch_id: str, cmd: str) -> None:
        if not self._daemon.intents.known(stitch_id) and \
                not any(s.stitch_id == stitch_id for s in self._daemon.store.stitches()):
            raise ControlError(f"{cmd}: no stitch {stitch_id[:80]!r} on this Route Manager "
                               "(see 'show stitches')")

    async def _resize(self, req: dict[str, Any]) -> dict[str, Any]:
        sid = req.get("stitch_id")
        if not isinstance(sid, str):
            raise ControlError("resize: stitch_id must be a string")
        mbps = _positive(req, "bandwidth_mbps", None, "resize", maximum=MAX_BANDWIDTH_MBPS)
        wait_s = _positive(req, "wait_s", 10.0, "resize", maximum=MAX_WAIT_S)
        self._known_stitch(sid, "resize")
        fut = self._daemon.resize_stitch(sid, mbps)
        try:
            ev = await asyncio.wait_for(asyncio.shield(fut), wait_s)
        except TimeoutError:
            return {"stitch_id": sid, "ok": False, "pending": True,
                    "reason": "no answer from the path within wait_s"}
        return {"stitch_id": sid, "ok": ev.ok, "pending": False, "reason": ev.reason,
                "old_mbps": ev.old_mbps, "new_mbps": ev.new_mbps, "detail": ev.detail}

    async def _stitch(self, req: dict[str, Any]) -> dict[str, Any]:
        try:
            vn = parse_vnid(req.get("vnid"))
        except VnstitchError as exc:
            raise ControlError(f"stitch: vnid: {exc}") from None
        c = StitchConstraints(
            bandwidth_mbps=_positive(req, "bandwidth_mbps", None,
                                     maximum=MAX_BANDWIDTH_MBPS),
            max_latency_ms=_positive(req, "max_latency_ms", math.inf),
            max_cost=_positive(req, "max_cost", math.inf),
            hop_limit=_hop_limit(req),
        )
        wait_s = _positive(req, "wait_s", 10.0, maximum=MAX_WAIT_S)
        retry_for = (None if req.get("retry_for_s") is None else
                     _positive(req, "retry_for_s", None, maximum=MAX_RETRY_FOR_S))
        stitch_id, fut = self._daemon.request_stitch(vn, c, retry_for)
        try:
            outcome = await asyncio.wait_for(asyncio.shield(fut), wait_s)
        except TimeoutError:
            return {"stitch_id": stitch_id, "established": False, "pending": True,
                    "detail": {"reason": "still negotiating after wait_s"}}
        return {"stitch_id": stitch_id, "established": outcome.established,
                "pending": False, "detail": outcome.detail}


def _positive(req: dict[str, Any], name: str, default: float | None,
              cmd: str = "stitch", *, maximum: float = math.inf) -> float:
    """A finite number in (0, maximum]; ``default`` when absent (inf allowed only there)."""
    if name not in req or req[name] is None:
        if default is None:
            raise ControlError(f"{cmd}: {name} is required")
        return default
    value = req[name]
    if isinstance(value, _NonFinite):
        raise ControlError(f"{cmd}: {name} must be a finite number, got {value}")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ControlError(f"{cmd}: {name} must be a number, got {_kind(value)}")
    if isinstance(value, int) and abs(value) > 2 ** 53:
        raise ControlError(f"{cmd}: {name} is out of range (at most {maximum:g})")
    if not math.isfinite(value):
        raise ControlError(f"{cmd}: {name} must be a finite number, got {value!r}")
    if not value > 0:
        raise ControlError(f"{cmd}: {name} must be a number > 0, got {value!r}")
    if value > maximum:
        raise ControlError(f"{cmd}: {name} must be at most {maximum:g}, got {value!r}")
    return float(value)


def _hop_limit(req: dict[str, Any]) -> int:
    value = req.get("hop_limit")
    if value is None:
        return 16
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ControlError(f"stitch: hop_limit must be an integer, got {str(value)[:40]}")
    if not 1 <= value <= MAX_HOP_LIMIT:
        raise ControlError(f"stitch: hop_limit must be in 1..{MAX_HOP_LIMIT}, got "
                           f"{value if abs(value) < 10 ** 12 else 'a huge number'}")
    return value


def _kind(value: Any) -> str:
    return {str: "a string", list: "a list", dict: "an object", bool: "a boolean",
            type(None): "null"}.get(type(value), type(value).__name__)


class _NonFinite(str):
    """What ``NaN`` / ``Infinity`` / ``-Infinity`` parse to: not a number at all, so every
    number check refuses it and names the field (JSON has no such numbers)."""


def _refuse_constant(name: str) -> Any:
    return _NonFinite(name)


def _reply_error(message: str) -> bytes:
    return (json.dumps({"ok": False, "error": message}) + "\n").encode()


def _socket_alive(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True


# -- client -----------------------------------------------------------------------------


def request(path: Path, req: dict[str, Any], timeout_s: float = 30.0) -> Any:
    """Send one request to the daemon at ``path``; return its result or raise ControlError."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout_s)
        try:
            s.connect(str(path))
            s.sendall((json.dumps(req) + "\n").encode())
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
        except FileNotFoundError:
            raise ControlError(f"{path}: no control socket (is the daemon running?)") from None
        except OSError as exc:
            raise ControlError(f"{path}: {exc.strerror or exc}") from None
    try:
        reply = json.loads(buf)
    except json.JSONDecodeError:
        raise ControlError(f"{path}: daemon sent a bad reply: {buf[:200]!r}") from None
    if not isinstance(reply, dict) or not reply.get("ok"):
        err = reply.get("error") if isinstance(reply, dict) else reply
        raise ControlError(f"daemon refused: {err}")
    return reply.get("result")
