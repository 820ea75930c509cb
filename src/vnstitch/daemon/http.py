"""The daemon's HTTP listener: JSON API, Prometheus ``/metrics``, health, the dashboard.

Theory of operation: an aiohttp application served on the daemon's own event loop (so a
handler sees the daemon's tables between two core steps, never in the middle of one).
Every ``/api/v1`` handler turns the HTTP request into the control socket's request dict
and calls :func:`vnstitch.daemon.control.dispatch`: the Unix socket and HTTP are two
doors to one implementation. Bodies are validated first by the pydantic models of
:mod:`vnstitch.daemon.api_models` (422 with every field and problem); a request the
daemon refuses is a 400 with its reason; an unknown stitch a 404. No exception becomes a
500 on purpose: one that does is a bug, logged with its traceback.

Authentication: ``/api`` needs ``Authorization: Bearer <token>`` where the token is the
content of ``http.token_file``; the file must be a regular file readable by its owner only
(mode 0600 or stricter) or the server refuses to start. ``/metrics`` needs it only with
``http.metrics_auth: true``; ``/healthz``, ``/readyz``, ``/openapi.json`` and the
dashboard's static files never do (the dashboard asks the user for the token and sends it
on its own API calls). The listener defaults to 127.0.0.1.

:func:`http_request` is the client side: it takes the control socket's request dict and
sends it as the matching HTTP call, so the CLI can use either door.
"""

from __future__ import annotations

import hmac
import json
import logging
import stat
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from aiohttp import web
from pydantic import BaseModel, ValidationError

from vnstitch import __version__
from vnstitch.daemon.api_models import (
    API_PREFIX,
    StitchCreate,
    StitchResize,
    openapi_document,
)
from vnstitch.daemon.control import dispatch, view
from vnstitch.daemon.errors import ControlError, DaemonError
from vnstitch.daemon.metrics import CONTENT_TYPE, DaemonMetrics
from vnstitch.errors import VnstitchError
from vnstitch.yamlfile import dotted, error_problems

if TYPE_CHECKING:
    from vnstitch.daemon.config import HttpConfig
    from vnstitch.daemon.runtime import RouteManagerDaemon

log = logging.getLogger("vnstitch.daemon.http")
MAX_BODY = 64 * 1024
LISTS = ("peers", "vnids", "tunnels", "routes", "qos", "allocations", "decisions")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class HttpError(DaemonError):
    """The HTTP listener cannot start (bad token file, address in use)."""


def read_token(path: Path) -> str:
    """The bearer token in ``path``; refuses a file others can read or write, or empty."""
    try:
        st = path.stat()
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise HttpError(f"{path}: cannot read the HTTP token file: "
                        f"{exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise HttpError(f"{path}: the HTTP token file is not UTF-8 text") from None
    if not stat.S_ISREG(st.st_mode):
        raise HttpError(f"{path}: the HTTP token file is not a regular file")
    if st.st_mode & 0o077:
        raise HttpError(f"{path}: the HTTP token file has mode "
                        f"{stat.S_IMODE(st.st_mode):04o}; it must be readable by its owner "
                        f"only (chmod 600 {path})")
    if len(text) < 16 or any(c.isspace() for c in text):
        raise HttpError(f"{path}: the HTTP token must be one word of at least 16 characters")
    return text


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status,
                             dumps=lambda d: json.dumps(d, allow_nan=False))


def _error(status: int, message: str, problems: list[dict[str, str]] | None = None
           ) -> web.Response:
    return _json({"error": message, "problems": problems or []}, status)


def _problems(model: type[BaseModel], exc: ValidationError) -> list[dict[str, str]]:
    """Every problem, worded as the config files' and the control socket's are."""
    return [{"field": dotted(p.loc) or "<body>", "problem": p.problem}
            for p in error_problems(model, exc)]


async def _body(request: web.Request, model: type[BaseModel]) -> BaseModel | web.Response:
    raw = await request.read()
    try:
        return model.model_validate_json(raw or b"null")
    except ValidationError as exc:
        problems = _problems(model, exc)
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            return _error(400, "the body is not JSON", problems)
        return _error(422, "the body failed validation", problems)


class HttpServer:
    """Serves the HTTP listener for one daemon; ``await start()``, ``await stop()``."""

    def __init__(self, daemon: RouteManagerDaemon, config: HttpConfig) -> None:
        self._daemon = daemon
        self.config = config
        self._token = ""
        self._metrics_of = DaemonMetrics(daemon)
        self._runner: web.AppRunner | None = None
        self.port = config.port  # http.listen's port is never 0 (the config refuses it)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY,
                              middlewares=[self._guard])
        r = app.router
        r.add_get("/healthz", self._healthz)
        r.add_get("/readyz", self._readyz)
        r.add_get("/openapi.json", self._openapi)
        r.add_get("/metrics", self._metrics)
        r.add_get(f"{API_PREFIX}/status", self._show("status"))
        r.add_get(f"{API_PREFIX}/stitches", self._stitches)
        r.add_post(f"{API_PREFIX}/stitches", self._create)
        r.add_get(f"{API_PREFIX}/stitches/{{stitch_id}}", self._stitch)
        r.add_patch(f"{API_PREFIX}/stitches/{{stitch_id}}", self._resize)
        r.add_delete(f"{API_PREFIX}/stitches/{{stitch_id}}", self._release)
        r.add_post(f"{API_PREFIX}/reload", self._reload)
        for name in LISTS:
            r.add_get(f"{API_PREFIX}/{name}", self._show(name))
        r.add_get("/", self._index)
        r.add_static("/static/", _dashboard_dir(), show_index=False, follow_symlinks=False)
        return app

    async def start(self) -> None:
        self._token = read_token(self.config.token_file)
        runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.config.host, self.config.port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise HttpError(f"http.listen {self.config.host}:{self.config.port}: cannot "
                            f"listen: {exc.strerror or exc}") from None
        self._runner = runner
        log.info("HTTP API on http://%s:%d/", self.config.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- middleware -----------------------------------------------------------------------

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        needs = path.startswith("/api/") or (path == "/metrics" and self.config.metrics_auth)
        if needs and not self._authorised(request):
            resp = _error(401, "missing or wrong bearer token")
            resp.headers["WWW-Authenticate"] = 'Bearer realm="vnstitch"'
            return resp
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except VnstitchError as exc:
            return _error(400, str(exc))
        except Exception:  # a bug: answer 500, log it, keep serving
            log.exception("HTTP %s %s failed", request.method, path)
            return _error(500, "internal error (logged by the daemon)")

    def _authorised(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        return (scheme.lower() == "bearer" and bool(self._token) and
                hmac.compare_digest(token.strip().encode(), self._token.encode()))

    # -- handlers -------------------------------------------------------------------------

    async def _healthz(self, _: web.Request) -> web.Response:
        return _json({"status": "ok"})

    async def _readyz(self, _: web.Request) -> web.Response:
        d = self._daemon
        checks = {"state_open": d.store_open, "udp_bound": _bound(d)}
        ready = all(checks.values())
        return _json({"ready": ready, "checks": checks}, 200 if ready else 503)

    async def _openapi(self, _: web.Request) -> web.Response:
        return _json(openapi_document(__version__))

    async def _metrics(self, _: web.Request) -> web.Response:
        return web.Response(body=(await self._metrics_of.text()).encode(),
                            headers={"Content-Type": CONTENT_TYPE})

    async def _index(self, _: web.Request) -> web.FileResponse:
        return web.FileResponse(_dashboard_dir() / "index.html")

    def _show(self, name: str) -> Handler:
        async def handler(_: web.Request) -> web.Response:
            return _json(await dispatch(self._daemon, {"cmd": "show", "what": name}))
        return handler

    async def _stitches(self, _: web.Request) -> web.Response:
        return _json(await dispatch(self._daemon, {"cmd": "show", "what": "stitches"}))

    def _find(self, stitch_id: str) -> dict[str, Any] | None:
        for s in view(self._daemon, "stitches"):
            if s["stitch_id"] == stitch_id:
                return dict(s)
        return None

    async def _stitch(self, request: web.Request) -> web.Response:
        found = self._find(request.match_info["stitch_id"])
        return _json(found) if found is not None else _error(404, "no such stitch")

    async def _create(self, request: web.Request) -> web.Response:
        body = await _body(request, StitchCreate)
        if isinstance(body, web.Response):
            return body
        req = {"cmd": "stitch", **body.model_dump(exclude_none=True)}
        return _json(await dispatch(self._daemon, req))

    async def _resize(self, request: web.Request) -> web.Response:
        sid = request.match_info["stitch_id"]
        body = await _body(request, StitchResize)
        if isinstance(body, web.Response):
            return body
        if self._find(sid) is None:
            return _error(404, "no such stitch")
        return _json(await dispatch(self._daemon, {"cmd": "resize", "stitch_id": sid,
                                                   **body.model_dump()}))

    async def _release(self, request: web.Request) -> web.Response:
        sid = request.match_info["stitch_id"]
        if self._find(sid) is None:
            return _error(404, "no such stitch")
        return _json(await dispatch(self._daemon, {"cmd": "release", "stitch_id": sid}))


    async def _reload(self, _: web.Request) -> web.Response:
        return _json(await dispatch(self._daemon, {"cmd": "reload"}))


def _bound(daemon: RouteManagerDaemon) -> bool:
    try:
        daemon.local_address  # noqa: B018  (raises when the UDP socket is not open)
    except DaemonError:
        return False
    return True


def _dashboard_dir() -> Path:
    return Path(str(resources.files("vnstitch.daemon") / "dashboard"))


# -- client (the CLI's other door) --------------------------------------------------------


def http_request(base_url: str, token: str, req: dict[str, Any],
                 timeout_s: float = 30.0) -> Any:
    """Carry out control request ``req`` (the socket's dict) through the HTTP API at
    ``base_url``; its result, or :class:`ControlError` with the daemon's reason."""
    import urllib.error  # noqa: PLC0415
    import urllib.request  # noqa: PLC0415

    method, path, body = _http_route(req)
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base_url.rstrip("/") + path, data=data, method=method,
                                     headers={"Authorization": f"Bearer {token}",
                                              "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as resp:
            text = resp.read().decode("utf-8")
            if path == "/metrics":
                return text
            return json.loads(text)
    except urllib.error.HTTPError as exc:
        try:
            err = json.loads(exc.read())
            problems = "; ".join(f"{p['field']}: {p['problem']}" for p in err["problems"])
            reason = err["error"] + (f" ({problems})" if problems else "")
        except (ValueError, KeyError, TypeError):
            reason = f"HTTP {exc.code}"
        raise ControlError(f"daemon refused: {reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise ControlError(f"{base_url}: {getattr(exc, 'reason', exc)}") from None


def _http_route(req: dict[str, Any]) -> tuple[str, str, dict[str, Any] | None]:
    cmd = req.get("cmd")
    if cmd == "show":
        what = str(req.get("what"))
        return "GET", "/metrics" if what == "metrics" else f"{API_PREFIX}/{what}", None
    fields = {k: v for k, v in req.items() if k not in ("cmd", "stitch_id")}
    if cmd == "reload":
        return "POST", f"{API_PREFIX}/reload", None
    if cmd == "stitch":
        return "POST", f"{API_PREFIX}/stitches", fields
    sid = quote(str(req.get("stitch_id")), safe="")
    if cmd == "release":
        return "DELETE", f"{API_PREFIX}/stitches/{sid}", None
    if cmd == "resize":
        return "PATCH", f"{API_PREFIX}/stitches/{sid}", fields
    raise ControlError(f"unknown cmd {cmd!r} (show, stitch, release, resize, reload)")
