"""The daemon's HTTP API: two daemons on 127.0.0.1 (memory dataplane, real core)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from openapi_spec_validator import validate

from tests.daemon.helpers import run
from tests.daemon.httphelpers import HttpNode, http_daemons, write_http_cluster, write_token
from vnstitch.daemon.config import load_config
from vnstitch.daemon.coreadapter import make_driver, protocol_core_factory
from vnstitch.daemon.http import HttpError
from vnstitch.daemon.runtime import RouteManagerDaemon

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[HttpNode]]:
    with http_daemons(tmp_path_factory.mktemp("http")) as ns:
        yield ns


def test_post_stitch_appears_on_both_ends(nodes: list[HttpNode]) -> None:
    a, b = nodes
    status, created = a.call("POST", "/api/v1/stitches", {"vnid": 100, "bandwidth_mbps": 20})
    assert status == 200 and created["established"] is True, created
    sid = created["stitch_id"]
    for node in (a, b):
        status, stitches = node.call("GET", "/api/v1/stitches")
        assert status == 200
        assert sid in {s["stitch_id"] for s in stitches}, (node.base, stitches)
    status, one = a.call("GET", f"/api/v1/stitches/{sid}")
    assert status == 200 and one["status"] == "up" and one["reserved_mbps"] == 20
    # the control socket reports the same stitch: one implementation behind both doors
    from vnstitch.daemon.control import request  # noqa: PLC0415
    sock = a.daemon.config.control_socket
    assert sid in {s["stitch_id"] for s in request(sock, {"cmd": "show", "what": "stitches"})}
    status, resized = a.call("PATCH", f"/api/v1/stitches/{sid}", {"bandwidth_mbps": 30})
    assert status == 200 and resized["ok"] is True and resized["new_mbps"] == 30, resized
    status, gone = a.call("DELETE", f"/api/v1/stitches/{sid}")
    assert status == 200 and gone == {"stitch_id": sid, "released": True}


def test_without_or_with_wrong_token_401(nodes: list[HttpNode]) -> None:
    a = nodes[0]
    for token in ("", "not-the-token-at-all"):
        status, body = a.call("GET", "/api/v1/stitches", token=token)
        assert status == 401 and "token" in body["error"]
        status, _ = a.call("POST", "/api/v1/stitches", {"vnid": 100, "bandwidth_mbps": 1},
                           token=token)
        assert status == 401
    assert a.call("GET", "/api/v1/peers")[0] == 200  # control: the right token passes
    assert a.call("GET", "/healthz", token="")[0] == 200
    assert a.call("GET", "/readyz", token="")[1]["ready"] is True


def test_bad_bodies_name_every_field(nodes: list[HttpNode]) -> None:
    a = nodes[0]
    status, body = a.call("POST", "/api/v1/stitches",
                          {"vnid": 0, "bandwidth_mbps": "x", "colour": "red"})
    assert status == 422
    assert {p["field"] for p in body["problems"]} == {"vnid", "bandwidth_mbps", "colour"}
    said = {p["field"]: p["problem"] for p in body["problems"]}  # the config files' words
    assert said["bandwidth_mbps"] == "must be a number, got text 'x'", said
    assert said["colour"].startswith("unknown field (expected one of: "), said
    status, body = a.call("POST", "/api/v1/stitches", raw=b'{"vnid": 100, "bandwidth_mbps":')
    assert status == 400 and "not JSON" in body["error"]
    status, body = a.call("POST", "/api/v1/stitches",
                          raw=b'{"vnid": 100, "bandwidth_mbps": Infinity}')
    assert status in (400, 422)
    status, body = a.call("PATCH", "/api/v1/stitches/nope", {"bandwidth_mbps": 5})
    assert status == 404
    assert a.call("DELETE", "/api/v1/stitches/nope")[0] == 404
    status, body = a.call("POST", "/api/v1/stitches", {"vnid": 4242, "bandwidth_mbps": 5,
                                                       "wait_s": 5})
    assert status == 200 and body["established"] is False  # nobody has it: refused, not 5xx


def test_lists_answer_and_openapi_is_valid(nodes: list[HttpNode]) -> None:
    a = nodes[0]
    for name in ("peers", "vnids", "tunnels", "routes", "qos", "allocations", "decisions"):
        status, rows = a.call("GET", f"/api/v1/{name}")
        assert status == 200 and isinstance(rows, list), (name, rows)
    assert a.call("GET", "/api/v1/routes")[1][0]["vnid"] in (100, 200)
    status, doc = a.call("GET", "/openapi.json", token="")
    assert status == 200
    validate(doc)
    assert "/api/v1/stitches/{stitch_id}" in doc["paths"]
    assert set(doc["paths"]["/api/v1/stitches/{stitch_id}"]) == {"get", "patch", "delete"}


def test_token_file_readable_by_others_refuses_to_start(tmp_path: Path) -> None:
    config = load_config(write_http_cluster(tmp_path)["A"])
    write_token(tmp_path / "A.token", mode=0o644)

    async def body(expect_refusal: bool) -> None:
        d = RouteManagerDaemon(config, protocol_core_factory, make_driver(config))
        await d.start()
        try:
            if expect_refusal:
                with pytest.raises(HttpError, match=r"mode 0644.*chmod 600"):
                    await d.start_control()
            else:
                await d.start_control()
                assert d.http is not None
        finally:
            await d.stop()
    run(body(True))
    os.chmod(tmp_path / "A.token", 0o600)  # control: the same file at 0600 starts
    run(body(False))


def test_cli_through_http_matches_the_socket(nodes: list[HttpNode],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from vnstitch.cli import main  # noqa: PLC0415

    a = nodes[0]
    assert a.daemon.config.http is not None
    door = ["--url", a.base, "--token-file", str(a.daemon.config.http.token_file)]
    assert main(["routemgr", "stitch", "--vnid", "100", "--bandwidth", "5", *door,
                 "--json"]) == 0
    sid = json.loads(capsys.readouterr().out)["stitch_id"]
    shown = {}
    for how in (door, ["--socket", str(a.daemon.config.control_socket)]):
        assert main(["routemgr", "show", "stitches", *how, "--json"]) == 0
        shown[how[0]] = {s["stitch_id"]: s["status"]
                         for s in json.loads(capsys.readouterr().out)["stitches"]}
    assert shown["--url"] == shown["--socket"] and shown["--url"][sid] == "up"
    assert main(["routemgr", "release", sid, *door]) == 0
    capsys.readouterr()
    # a refusal arrives as one line naming what is wrong, exit 2
    assert main(["routemgr", "release", "nope", *door]) == 2
    err = capsys.readouterr().err
    assert "no stitch 'nope'" in err or "no such stitch" in err, err  # socket / HTTP door
    # a bad number does not even leave the CLI: a usage error, exit 2
    with pytest.raises(SystemExit) as usage:
        main(["routemgr", "stitch", "--vnid", "200", "--bandwidth", "-1", *door])
    assert usage.value.code == 2 and "--bandwidth" in capsys.readouterr().err


def test_socket_refuses_infinite_hop_limit_with_a_reason(nodes: list[HttpNode]) -> None:
    from vnstitch.daemon.control import request  # noqa: PLC0415
    from vnstitch.daemon.errors import ControlError  # noqa: PLC0415

    sock = nodes[0].daemon.config.control_socket
    with pytest.raises(ControlError, match="stitch: hop_limit: must be finite"):
        request(sock, {"cmd": "stitch", "vnid": 100, "bandwidth_mbps": 1,
                       "hop_limit": 1e400})
    # control: the connection-level door still answers afterwards
    assert isinstance(request(sock, {"cmd": "show", "what": "peers"}), list)
