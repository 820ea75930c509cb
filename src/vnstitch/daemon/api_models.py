"""Request and response bodies of the daemon's HTTP API, as pydantic v2 models.

Theory of operation: a request body is validated by its model before anything else
happens (unknown fields, wrong types, non-finite or out-of-range numbers are refused
together, each with its field and problem); the valid body becomes the same request dict
the control socket takes, so both surfaces run one implementation
(:func:`vnstitch.daemon.control.dispatch`). Responses are validated by their models too,
so what the API sends is what :func:`openapi_document` publishes. The OpenAPI document
(3.1, whose schema dialect is the JSON Schema pydantic emits) is generated from these
models and the route table in :data:`ROUTES`; nothing here does I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic.json_schema import models_json_schema

from vnstitch.daemon.errors import ControlError
from vnstitch.daemon.limits import MAX_BANDWIDTH_MBPS, MAX_HOP_LIMIT, MAX_RETRY_FOR_S, MAX_WAIT_S
from vnstitch.model.ids import VNID_MAX
from vnstitch.yamlfile import dotted, problems_of

API_PREFIX = "/api/v1"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)


_B = TypeVar("_B", bound="_Body")


def _whole(value: object) -> object:
    """A JSON number written ``4.0`` is the integer 4 (clients that write every number
    as a float); ``4.5`` stays a float and is refused."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


class _Out(BaseModel):
    model_config = ConfigDict(extra="allow")


# -- requests ---------------------------------------------------------------------------


class StitchCreate(_Body):
    """Ask for a stitch to a VNID (the fields of ``vnstitch routemgr stitch``)."""

    vnid: int = Field(ge=1, le=VNID_MAX, description="the virtual network to reach")
    bandwidth_mbps: float = Field(gt=0, le=MAX_BANDWIDTH_MBPS,
                                  description="bandwidth to reserve, Mbit/s")
    max_latency_ms: float | None = Field(default=None, gt=0, le=1e9,
                                         description="refuse paths slower than this")
    max_cost: float | None = Field(default=None, gt=0, le=1e12,
                                   description="refuse paths dearer than this")
    hop_limit: Annotated[int | None, BeforeValidator(_whole)] = Field(
        default=None, ge=1, le=MAX_HOP_LIMIT,
        description="refuse paths with more RMs than this (default 16)")
    wait_s: float = Field(default=10.0, gt=0, le=MAX_WAIT_S,
                          description="seconds to wait for established / failed; "
                                      "after that the answer says pending")
    retry_for_s: float | None = Field(default=None, gt=0, le=MAX_RETRY_FOR_S,
                                      description="retry capacity refusals this long "
                                                  "(default: until released)")


class StitchResize(_Body):
    """Resize an established stitch originated here, in place."""

    bandwidth_mbps: float = Field(gt=0, le=MAX_BANDWIDTH_MBPS,
                                  description="the new bandwidth, Mbit/s")
    wait_s: float = Field(default=10.0, gt=0, le=MAX_WAIT_S,
                          description="seconds to wait for the path's answer")


class StitchNamed(_Body):
    """The control socket's release and resize name their stitch in the body."""

    stitch_id: str = Field(min_length=1, max_length=200)


class ResizeRequest(StitchResize, StitchNamed):
    """The control socket's ``resize``: :class:`StitchResize` plus the stitch."""


def checked_request(model: type[_B], req: dict[str, Any], cmd: str) -> _B:
    """A control request's fields (besides ``cmd``) as ``model``, or :class:`ControlError`
    naming every problem (``stitch: bandwidth_mbps: must be > 0, got 0; ...``): the
    control socket's requests are validated by the HTTP API's models."""
    body = {k: v for k, v in req.items() if k != "cmd"}
    try:
        return model.model_validate(body)
    except ValidationError:
        problems = problems_of(model, body)
        raise ControlError(f"{cmd}: " + "; ".join(
            f"{dotted(p.loc) or '<request>'}: {p.problem}" for p in problems)) from None


# -- responses --------------------------------------------------------------------------


class StitchStatus(enum.StrEnum):
    REQUESTED = "requested"
    UP = "up"
    RENEGOTIATING = "renegotiating"
    DOWN = "down"
    FAILED = "failed"


class Stitch(_Out):
    """A stitch this RM originated, terminates or carries (from its state database)."""

    stitch_id: str
    vnid: int
    status: StitchStatus
    path: list[str] = Field(description="RM ids from origin to far end")
    bandwidth_mbps: float
    reserved_mbps: float
    latency_ms: float
    cost: float
    role: str = Field(description="origin (asked for here) or terminator (ends here; "
                                  "reservation, latency and cost are known at the origin)")


class StitchCreated(_Out):
    stitch_id: str
    established: bool
    pending: bool = Field(description="still negotiating when wait_s ran out")
    detail: dict[str, Any]


class StitchResized(_Out):
    stitch_id: str
    ok: bool
    pending: bool
    reason: str
    old_mbps: float | None = None
    new_mbps: float | None = None
    detail: Any = None


class StitchReleased(_Out):
    stitch_id: str
    released: bool


class Peer(_Out):
    id: str
    address: str
    state: Literal["up", "down", "never_connected", "removed"] = Field(
        description="removed: dropped from the config by a reload")
    received: int
    sent: int
    faults: int
    fault_reasons: dict[str, int] = Field(default_factory=dict,
                                          description="dropped datagrams by reason")
    last_heard_s_ago: float | None = Field(description="null: never heard from")


class Reloaded(_Out):
    config: str = Field(description="the file read")
    reloaded: bool
    sections: list[str] = Field(description="the sections that changed and were applied")
    peers: int = Field(description="peers configured now")
    added: list[str]
    removed: list[str] = Field(description="kept in the peer list as state removed")
    readdressed: list[str]


class Vnid(_Out):
    vnid: int
    where: str = Field(description="local (on this segment) or remote (learned)")
    components: list[str] | None = None
    host_ports: list[str] | None = None
    via: list[str] | None = None


class Tunnel(_Out):
    tunnel_id: str
    peer: str
    state: str
    interface: str | None = None
    stitch_id: str | None = None
    rtt_ms: float | None = None
    loss: float | None = None


class Route(_Out):
    """A learned route to a remote VNID (``where: remote``, one per VNID and origin), or a
    stitched prefix route (``where: stitched``) with its metric band: as asked, as the
    kernel holds it, the substrate's own metric for the same prefix and the device the
    kernel picks (kernel fields null where the driver has no kernel)."""

    vnid: int | None
    where: str
    via: list[str]
    prefix: str | None = None
    metric: int | None = None
    priority: int | None = None
    kernel_metric: int | None = None
    substrate_metric: int | None = None
    chosen_device: str | None = None


class QosClass(_Out):
    """An HTB class in the desired dataplane state, named by its QoS class, with the
    kernel's cumulative counters (null where the driver cannot read them)."""

    device: str
    class_id: int
    rate_mbps: float
    ceil_mbps: float
    prio: int
    class_: str | None = Field(default=None, alias="class")
    stitch_id: str | None = Field(default=None, description="on a tunnel end: its stitch")
    bytes: int | None = None
    packets: int | None = None
    drops: int | None = None


class Allocation(_Out):
    """One decision of the allocation loop (empty list without an ``allocation:``
    section); rows carry more fields depending on the action."""

    now: float
    stitch_id: str
    action: str
    reason: str
    measured_mbps: float | None = None
    forecast_mbps: float | None = None
    quantile: float | None = None
    reserved_mbps: float | None = None


class Decision(Allocation):
    """A kept decision with its ``kind``. The allocation loop is the only decision maker
    the daemon runs today (kind ``allocation``); reroute and QoS decisions will appear
    here with their own kind."""

    kind: str


class Status(_Out):
    """This RM: identity, addresses, uptime, link usage, allocation loop."""

    rm_id: str
    segment: str
    listen: str
    driver: str
    uptime_s: float
    dataplane_objects: int
    link_usage: dict[str, dict[str, float]] = Field(
        description="per neighbour: reserved_mbps and capacity_mbps")
    allocation: dict[str, Any]


class Health(_Out):
    status: str


class Ready(_Out):
    ready: bool
    checks: dict[str, bool]


class Problem(BaseModel):
    field: str
    problem: str


class ApiError(BaseModel):
    error: str
    problems: list[Problem] = Field(default_factory=list)


# -- routes and the OpenAPI document ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Operation:
    """One operation: method, path, summary, body model, response model (a list when
    ``many``), the error statuses it may answer and whether the token is needed."""

    method: str
    path: str
    summary: str
    response: type[BaseModel]
    many: bool = False
    body: type[BaseModel] | None = None
    errors: tuple[int, ...] = ()
    auth: bool = True


_LISTS: tuple[tuple[str, type[BaseModel], str], ...] = (
    ("peers", Peer, "configured neighbours and what was heard from them"),
    ("vnids", Vnid, "local VNs and learned remote ones"),
    ("tunnels", Tunnel, "tunnel ends on this RM, with probe RTT and loss when live"),
    ("routes", Route, "learned routes to remote VNIDs and stitched prefix routes"),
    ("qos", QosClass, "HTB classes with the kernel's bytes, packets and drops"),
    ("allocations", Allocation, "the allocation loop's kept decisions, oldest first"),
    ("decisions", Decision, "every kept decision with its kind, oldest first"),
)

ROUTES: tuple[Operation, ...] = (
    Operation("get", "/healthz", "the daemon's event loop answers", Health, auth=False),
    Operation("get", "/readyz", "started: state open, UDP bound", Ready, errors=(503,),
           auth=False),
    Operation("get", f"{API_PREFIX}/status", "this Route Manager", Status),
    Operation("get", f"{API_PREFIX}/stitches", "every stitch in the state database", Stitch,
           many=True),
    Operation("post", f"{API_PREFIX}/stitches", "request a stitch and wait for its outcome",
           StitchCreated, body=StitchCreate, errors=(400, 422)),
    Operation("get", f"{API_PREFIX}/stitches/{{stitch_id}}", "one stitch", Stitch,
           errors=(404,)),
    Operation("patch", f"{API_PREFIX}/stitches/{{stitch_id}}", "resize a stitch in place",
           StitchResized, body=StitchResize, errors=(400, 404, 422)),
    Operation("delete", f"{API_PREFIX}/stitches/{{stitch_id}}", "release a stitch",
           StitchReleased, errors=(400, 404)),
    Operation("post", f"{API_PREFIX}/reload", "re-read the config file: apply new peers "
           "and trust, or refuse it (400, every problem) and keep the current one",
           Reloaded, errors=(400,)),
    *(Operation("get", f"{API_PREFIX}/{name}", summary, model, many=True)
      for name, model, summary in _LISTS),
)


def openapi_document(version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of :data:`ROUTES`, schemas generated from the models."""
    models = {r.response for r in ROUTES} | {r.body for r in ROUTES if r.body} | {ApiError}
    ordered = sorted(models, key=lambda m: m.__name__)
    _, top = models_json_schema(
        [(m, "validation" if m in {r.body for r in ROUTES} else "serialization")
         for m in ordered], ref_template="#/components/schemas/{model}")
    schemas = top.get("$defs", {})

    def ref(model: type[BaseModel]) -> dict[str, Any]:
        return {"$ref": f"#/components/schemas/{model.__name__}"}

    def error(status: int) -> dict[str, Any]:
        text = {400: "the request was refused (the error says why)", 401: "no or wrong token",
                404: "no such stitch", 422: "the body failed validation (every problem "
                "listed with its field)", 503: "not ready"}[status]
        return {"description": text, "content": {"application/json": {"schema":
                                                                       ref(ApiError)}}}

    paths: dict[str, dict[str, Any]] = {}
    for r in ROUTES:
        schema: dict[str, Any] = ({"type": "array", "items": ref(r.response)} if r.many
                                  else ref(r.response))
        op: dict[str, Any] = {
            "summary": r.summary,
            "operationId": f"{r.method}_{r.path.strip('/').replace('/', '_')}"
                           .replace("{", "").replace("}", ""),
            "responses": {"200": {"description": "OK", "content": {
                "application/json": {"schema": schema}}}},
        }
        for status in (*r.errors, *((401,) if r.auth else ())):
            op["responses"][str(status)] = error(status)
        if r.auth:
            op["security"] = [{"bearer": []}]
        else:
            op["security"] = []
        if "{stitch_id}" in r.path:
            op["parameters"] = [{"name": "stitch_id", "in": "path", "required": True,
                                 "schema": {"type": "string"}}]
        if r.body is not None:
            op["requestBody"] = {"required": True, "content": {
                "application/json": {"schema": ref(r.body)}}}
        paths.setdefault(r.path, {})[r.method] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "vnstitch Route Manager API", "version": version,
                 "description": "Operate one Route Manager: its stitches, peers, VNIDs, "
                                "tunnels, routes, QoS classes and decisions."},
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer",
                       "description": "the token in the daemon's http.token_file"}}},
    }
