"""Local control socket: JSON lines over a Unix socket, server and client.

Theory of operation: the daemon listens on a Unix stream socket (mode 0600, so only its
user can drive it). A client writes one JSON object per line and reads one JSON object
per line back: ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "..."}``.
A bad line gets an error reply and the connection stays usable. Requests:

- ``{"cmd": "show", "what": "peers"|"vnids"|"stitches"|"tunnels"|"metrics"|"status"|
  "allocations"|"routes"|"qos"|"decisions"}`` -- ``allocations`` lists the allocation
  loop's kept decisions (oldest first; empty when the config has no ``allocation:``
  section); ``routes`` the learned remote routes and the stitched prefix routes with
  their priority band; ``qos`` the HTB classes in the desired dataplane state (both with
  what the kernel reports: :mod:`vnstitch.daemon.qoslive`); ``decisions`` every kept
  decision with its ``kind``
- ``{"cmd": "stitch", "vnid": 100, "bandwidth_mbps": 10, "max_latency_ms": ...,
  "max_cost": ..., "hop_limit": ..., "wait_s": 10, "retry_for_s": ...}`` -- a stitch
  *intent*: kept and retried until released (capacity refusals until ``retry_for_s``,
  default forever; :mod:`vnstitch.protocol.intent`); waits for the first attempt's
  established / failed. A second stitch for a VNID with a live one is refused.
- ``{"cmd": "release", "stitch_id": "..."}`` -- an unknown id is an error
- ``{"cmd": "resize", "stitch_id": "...", "bandwidth_mbps": 40, "wait_s": 10}`` -- an
  in-place resize of a stitch originated here; waits for its outcome
- ``{"cmd": "feed", "vnid": 100, "rows": [[unix_time, users], ...]}`` -- user behaviour
  for the live PRA (``pra:`` section): a regressor of that VN's forecasts, kept in the
  state database. ``show allocations`` then also lists, per PRA consumer, the sources
  its forecast used, the model, forecast, quantile and action
- ``{"cmd": "reload"}`` -- re-read the config file and apply it without a restart
  (trust, peers, allocation, congestion, pra, qos, log_level), or refuse it with every
  problem, or naming each section that needs a restart, and keep the current one
  (:mod:`vnstitch.daemon.reload`; ``SIGHUP`` does the same). ``show peers`` lists a peer
  removed by a reload with ``state: removed``

Views are built from the daemon's own tables (SQLite for stitches, reservations and
tunnels; in-memory for peers and routes) so they survive restarts where it matters.
``show metrics`` returns Prometheus text exposition (:mod:`vnstitch.daemon.metrics`).
:func:`dispatch` is the one implementation of these requests: the HTTP API
(:mod:`vnstitch.daemon.http`) calls it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vnstitch.daemon.errors import ControlError
from vnstitch.daemon.qoslive import LIVE_VIEWS, live_view, qos_rows, route_rows
from vnstitch.daemon.reload import peer_state
from vnstitch.errors import VnstitchError
from vnstitch.model.ids import vnid as parse_vnid
from vnstitch.protocol.api import StitchConstraints

if TYPE_CHECKING:
    from vnstitch.daemon.runtime import RouteManagerDaemon

log = logging.getLogger("vnstitch.daemon.control")

MAX_LINE = 64 * 1024
SHOW_WHAT = ("peers", "vnids", "stitches", "tunnels", "metrics", "status", "allocations",
             "routes", "qos", "decisions")


# -- views ------------------------------------------------------------------------------


def view(daemon: RouteManagerDaemon, what: str) -> Any:
    """The ``show WHAT`` result as plain JSON-able data."""
    now = daemon.now()
    if what == "peers":
        hold = daemon.config.timers.hold_time_s
        return [{"id": p.rm_id, "address": f"{p.address[0]}:{p.address[1]}",
                 "state": peer_state(p.membership, p.last_heard, now, hold).value,
                 "received": p.received, "sent": p.sent, "faults": p.faults,
                 "fault_reasons": dict(p.fault_reasons),
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
        rows = [{"stitch_id": s.stitch_id, "vnid": s.vnid, "status": s.status,
                 "path": list(s.path), "bandwidth_mbps": s.bandwidth_mbps,
                 "reserved_mbps": reserved.get(s.stitch_id, 0.0),
                 "latency_ms": s.latency_ms, "cost": s.cost, "role": "origin",
                 **daemon.intents.row_fields(s.stitch_id, now)}
                for s in daemon.store.stitches()]
        return rows + _terminated(daemon, {str(r["stitch_id"]) for r in rows})
    if what == "tunnels":
        live = {t.tunnel_id: t for t in daemon.core.tunnel_views()}
        return [{"tunnel_id": t, "peer": peer, "state": state,
                 "interface": live[t].wg_device if t in live else None,
                 "stitch_id": live[t].stitch_id if t in live else None,
                 "rtt_ms": live[t].rtt_ms if t in live else None,
                 "loss": live[t].loss if t in live else None}
                for t, peer, state, _ in daemon.store.tunnels()]
    if what == "metrics":
        return metrics_text(daemon)
    if what == "status":
        host, port = daemon.local_address
        return {"rm_id": daemon.rm_id, "segment": daemon.config.segment, "pid": os.getpid(),
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
                "congestion": None if daemon.congestion is None
                else daemon.congestion.status(),
                "endpoints": None if daemon.endpoints is None else daemon.endpoints.status(),
                "allocation": _allocation_status(daemon)}
    if what == "allocations":  # the bandwidth loop's decisions, then the PRA's consumers
        rows = [] if daemon.allocation is None else list(daemon.allocation.loop.decisions)
        return rows + ([] if daemon.pra is None else daemon.pra.allocations())
    if what == "routes":
        return route_rows(daemon)
    if what == "qos":
        return qos_rows(daemon)
    if what == "decisions":
        # Every decision maker's kept rows, each saying its kind, oldest first.
        loop = [] if daemon.allocation is None else list(daemon.allocation.loop.decisions)
        pra = [] if daemon.pra is None or daemon.pra.runtime is None else \
            list(daemon.pra.runtime.decisions)
        rows = [{"kind": "allocation", **d} for d in loop] + \
            [{**d, "kind": "pra", "stitch_id": d.get("consumer")} for d in pra]
        if daemon.congestion is not None:
            rows += [{"kind": "congestion", **d} for d in daemon.congestion.decisions]
        if daemon.endpoints is not None:
            rows += [{"kind": "endpoint", **d} for d in daemon.endpoints.decisions]
        return sorted(rows, key=lambda r: float(r.get("now", 0.0)))
    raise ControlError(f"show: unknown view {what!r} (one of {', '.join(SHOW_WHAT)})")


_TUNNEL_TO_STITCH = {"requested": "requested", "keys_exchanged": "requested", "up": "up",
                     "degraded": "up", "down": "down"}


def _terminated(daemon: RouteManagerDaemon, known: set[str]) -> list[dict[str, Any]]:
    """Stitches ending here that another RM originated, from the core's live tunnel ends
    (the state database records only the stitches this RM asked for)."""
    rows: dict[str, dict[str, Any]] = {}
    for t in daemon.core.tunnel_views():
        if t.origin or t.stitch_id in known or t.stitch_id in rows:
            continue
        state = t.state
        rows[t.stitch_id] = {"stitch_id": t.stitch_id, "vnid": int(t.vnid),
                             "status": _TUNNEL_TO_STITCH.get(state, "requested"),
                             "path": [str(p) for p in t.path],
                             "bandwidth_mbps": t.bandwidth_mbps, "reserved_mbps": 0.0,
                             "latency_ms": 0.0, "cost": 0.0, "role": "terminator"}
    return list(rows.values())


def _allocation_status(daemon: RouteManagerDaemon) -> dict[str, Any]:
    if daemon.allocation is None:
        return {"enabled": False}
    loop = daemon.allocation.loop
    return {"enabled": True, "interval_s": loop.config.interval_s,
            "forecaster": loop.config.forecaster, "steps": loop.steps,
            "stitches": loop.summary()}


def _remote_routes(daemon: RouteManagerDaemon) -> list[dict[str, Any]]:
    """Every learned remote route (one per VNID and origin): a VN present here *and*
    elsewhere then shows its remote origins too, with the components its announcements
    carried (only members get a VN's components)."""
    return [{"vnid": int(r.vnid), "where": "remote", "via": list(r.path),
             "components": list(r.components)}
            for r in daemon.core.route_views() if r.via is not None]


def _link_usage(daemon: RouteManagerDaemon) -> dict[str, dict[str, float]]:
    """Reserved vs capacity per neighbour link (transit reservations included)."""
    return {str(u.peer): {"reserved_mbps": u.reserved_mbps, "capacity_mbps": u.capacity_mbps}
            for u in daemon.core.link_usage_views()}


def metrics_text(daemon: RouteManagerDaemon) -> str:
    """Prometheus text exposition of the daemon's and the core's counters."""
    from vnstitch.daemon.metrics import exposition, new_registry  # noqa: PLC0415  (cycle)

    return exposition(new_registry(daemon))


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
            # NaN / Infinity parse as floats: the request's model refuses them by name.
            request = json.loads(line)
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
        return await dispatch(self._daemon, req)


# -- requests (shared by the control socket and the HTTP API) ---------------------------


async def dispatch(daemon: RouteManagerDaemon, req: dict[str, Any]) -> Any:
    """Carry out one control request; its result, or :class:`ControlError` saying why not."""
    cmd = req.get("cmd")
    if cmd == "show":
        if req.get("what") == "metrics":  # with the kernel's class counters, as /metrics
            from vnstitch.daemon.metrics import DaemonMetrics  # noqa: PLC0415  (cycle)

            return await DaemonMetrics(daemon).text()
        if req.get("what") in LIVE_VIEWS:  # read the kernel too (daemon/qoslive.py)
            return await live_view(daemon, str(req["what"]))
        return view(daemon, str(req.get("what")))
    if cmd == "stitch":
        return await _stitch(daemon, req)
    if cmd == "release":
        from vnstitch.daemon.api_models import StitchNamed, checked_request  # noqa: PLC0415

        sid = checked_request(StitchNamed, req, "release").stitch_id
        _known_stitch(daemon, sid, "release")
        daemon.release_stitch(sid)
        return {"stitch_id": sid, "released": True}
    if cmd == "resize":
        return await _resize(daemon, req)
    if cmd == "feed":  # user behaviour for the PRA (vnstitch.daemon.pra_daemon)
        if daemon.pra is None:
            raise ControlError("feed: this Route Manager has no 'pra:' config section")
        from vnstitch.daemon.pra_daemon import feed_rows  # noqa: PLC0415  (numpy)

        return await daemon.pra.feed(*feed_rows(req))
    if cmd == "reload":  # the config file again, applied without a restart (daemon/reload.py)
        return await daemon.reloader.reload()
    raise ControlError(f"unknown cmd {cmd!r} (show, stitch, release, resize, feed, reload)")


def _known_stitch(daemon: RouteManagerDaemon, stitch_id: str, cmd: str) -> None:
    if not daemon.intents.known(stitch_id) and \
            not any(s.stitch_id == stitch_id for s in daemon.store.stitches()):
        raise ControlError(f"{cmd}: no stitch {stitch_id[:80]!r} on this Route Manager "
                           "(see 'show stitches')")


async def _resize(daemon: RouteManagerDaemon, req: dict[str, Any]) -> dict[str, Any]:
    from vnstitch.daemon.api_models import ResizeRequest, checked_request  # noqa: PLC0415

    r = checked_request(ResizeRequest, req, "resize")
    _known_stitch(daemon, r.stitch_id, "resize")
    fut = daemon.resize_stitch(r.stitch_id, r.bandwidth_mbps)
    try:
        ev = await asyncio.wait_for(asyncio.shield(fut), r.wait_s)
    except TimeoutError:
        return {"stitch_id": r.stitch_id, "ok": False, "pending": True,
                "reason": "no answer from the path within wait_s"}
    return {"stitch_id": r.stitch_id, "ok": ev.ok, "pending": False, "reason": ev.reason,
            "old_mbps": ev.old_mbps, "new_mbps": ev.new_mbps, "detail": ev.detail}


async def _stitch(daemon: RouteManagerDaemon, req: dict[str, Any]) -> dict[str, Any]:
    # The HTTP API's body model checks the socket's request too (one validator; pydantic
    # loads with the first request, not when the daemon starts).
    from vnstitch.daemon.api_models import StitchCreate, checked_request  # noqa: PLC0415

    r = checked_request(StitchCreate, req, "stitch")
    c = StitchConstraints(**r.model_dump(  # absent limits: the constraints' defaults
        include={"bandwidth_mbps", "max_latency_ms", "max_cost", "hop_limit"},
        exclude_none=True))
    stitch_id, fut = daemon.request_stitch(parse_vnid(r.vnid), c, r.retry_for_s)
    try:
        outcome = await asyncio.wait_for(asyncio.shield(fut), r.wait_s)
    except TimeoutError:
        return {"stitch_id": stitch_id, "established": False, "pending": True,
                "detail": {"reason": "still negotiating after wait_s"}}
    return {"stitch_id": stitch_id, "established": outcome.established,
            "pending": False, "detail": outcome.detail}


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
