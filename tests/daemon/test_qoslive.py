"""The ``qos:`` section live in the daemon: config, the desired-state overlay, the views."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.daemon.helpers import run, start_daemon, until, write_cluster
from vnstitch.control import SetQosClasses
from vnstitch.daemon import control
from vnstitch.daemon.config import parse_config
from vnstitch.daemon.coreadapter import make_driver, protocol_core_factory
from vnstitch.daemon.errors import ConfigError
from vnstitch.daemon.qosconfig import QosConfig, parse_qos
from vnstitch.daemon.qoslive import QosLive
from vnstitch.dataplane import (
    Bridge,
    DataplaneState,
    MemoryDataplane,
    RateLimit,
    Route,
    U32Filter,
    VxlanPort,
    WireguardInterface,
    reconcile,
)
from vnstitch.model.ids import VNID
from vnstitch.protocol.api import StitchConstraints
from vnstitch.routing.table import SUBSTRATE_METRIC, stitch_route_metric

pytestmark = pytest.mark.timeout(60)

QOS: dict[str, Any] = {
    "link_mbps": 100,
    "classes": [{"name": "video", "priority": 0, "guaranteed_mbps": 60, "max_mbps": 100},
                {"name": "email", "priority": 3, "guaranteed_mbps": 5, "max_mbps": 100}],
    "applications": [{"name": "tv", "class": "video", "dscp": [34]},
                     {"name": "vn100", "class": "video", "vnid": 100}],
    "interfaces": [{"device": "a-t", "capacity_mbps": 50}],
    "stitching_priority": {"default": 10, "vnids": {200: 12}, "classes": {"video": 14}},
}


def _fail(path: str, problem: str) -> ConfigError:
    return ConfigError(f"{path}: {problem}")


def _qos(**changes: Any) -> QosConfig:
    cfg = parse_qos({**QOS, **changes}, _fail)
    assert cfg is not None
    return cfg


def _tunnel_state(vnid: int = 100) -> DataplaneState:
    return DataplaneState([
        WireguardInterface("wg1", "k", 51821, "10.255.0.0/31"),
        VxlanPort("vx1", vnid, "10.255.0.0", "wg1"), Bridge(f"vn{vnid}"),
        RateLimit("vx1", 1, 8.0, 20.0),
        Route("10.2.0.0/24", f"vn{vnid}", stitch_route_metric())])


def test_priority_comes_from_vn_then_class_then_default() -> None:
    cfg = _qos()
    assert cfg.vn_class(100) == "video" and cfg.vn_class(300) is None
    assert cfg.route_metric(100) == stitch_route_metric(14)  # VN 100's class: video
    assert cfg.route_metric(200) == stitch_route_metric(12)  # its own entry
    assert cfg.route_metric(300) == stitch_route_metric(10)  # the default
    assert max(cfg.route_metric(v) for v in (100, 200, 300)) < SUBSTRATE_METRIC


def test_overlay_classes_tunnel_ends_interfaces_and_routes() -> None:
    live = QosLive(_qos())
    out = live.overlay(_tunnel_state())
    routes = [o for o in out if isinstance(o, Route)]
    assert [r.metric for r in routes] == [stitch_route_metric(14)]
    vx = sorted((o for o in out if isinstance(o, RateLimit) and o.device == "vx1"),
                key=lambda o: o.class_id)
    # the stitch's one class (8 of 20 Mbit/s) split by the policy: 60% / 5% of 8
    assert [(o.class_id, o.rate_mbps, o.ceil_mbps) for o in vx] == [(10, 4.8, 20.0),
                                                                      (20, 0.4, 20.0)]
    assert [o.prio for o in vx] == [0, 1]
    dscp = [o for o in out if isinstance(o, U32Filter) and o.device == "vx1"
            and o.matches == ("ip tos 0x88 0xfc",)]
    assert len(dscp) == 1 and dscp[0].class_id == 10
    sub = [o for o in out if isinstance(o, RateLimit) and o.device == "a-t"]
    assert sorted((o.rate_mbps, o.ceil_mbps) for o in sub) == [(2.5, 50.0), (30.0, 50.0)]
    wg = [o for o in out if isinstance(o, U32Filter) and o.device == "a-t"
          and "ip sport 51821 0xffff" in o.matches]
    assert len(wg) == 1 and wg[0].class_id == 10  # VN 100's WireGuard traffic: video
    assert live.class_name(10) == "video" and live.class_name(20) == "email"
    assert live.class_name(15) is None
    # tunnels: false leaves the stitch's own class alone
    plain = QosLive(_qos(tunnels=False)).overlay(_tunnel_state())
    assert plain.get("rate:vx1:1") == RateLimit("vx1", 1, 8.0, 20.0)


def test_a_tunnels_filter_on_a_substrate_link_keeps_its_key_as_others_come_and_go() -> None:
    """A make-before-break move adds a second tunnel of VN 100, then removes the first:
    neither changes the other's filter (a changed key is a replace in the kernel, and
    for that moment the tunnel's packets would fall into the default class)."""
    live = QosLive(_qos())

    def filters(state: DataplaneState) -> dict[str, str]:
        return {m: o.key for o in live.overlay(state) if isinstance(o, U32Filter)
                and o.device == "a-t" for m in o.matches if m.startswith("ip sport")}

    one = _tunnel_state()
    # the successor's WireGuard name sorts before the old one's
    two = one.with_objects(add=[WireguardInterface("wg0", "k", 51822, "10.255.0.2/31"),
                                VxlanPort("vx0", 100, "10.255.0.2", "wg0")])
    after = two.with_objects(remove=["wg:wg1", "vxlan:vx1", "rate:vx1:1"])
    old, new = "ip sport 51821 0xffff", "ip sport 51822 0xffff"
    assert filters(two)[old] == filters(one)[old]
    assert filters(after)[new] == filters(two)[new]
    assert filters(two)[old] != filters(two)[new]


def test_controller_classes_replace_the_interface_rates() -> None:
    live = QosLive(_qos())
    assert live.set_classes(SetQosClasses("a-t", (("video", 20.0, 40.0),
                                                  ("email", 1.0, 40.0))))
    assert not live.set_classes(SetQosClasses("a-t", (("video", 20.0, 40.0),
                                                      ("email", 1.0, 40.0))))
    assert not live.set_classes(SetQosClasses("not-mine", (("video", 1.0, 1.0),)))
    out = live.overlay(_tunnel_state())
    assert out.get("rate:a-t:10") == RateLimit("a-t", 10, 20.0, 40.0, 0)
    assert out.get("rate:a-t:20") == RateLimit("a-t", 20, 1.0, 40.0, 1)
    assert "rate:not-mine:10" not in out


@pytest.mark.parametrize(("change", "where"), [
    ({"borrow": "fair"}, "qos.borrow"),
    ({"tunnels": "yes"}, "qos.tunnels"),
    ({"interfaces": [{"device": "a-t", "capacity_mbps": 0}]}, "qos.interfaces[0].capacity_mbps"),
    ({"interfaces": [{"device": "a" * 16, "capacity_mbps": 5}]}, "qos.interfaces[0].device"),
    ({"interfaces": [{"device": "x", "capacity_mbps": 5, "speed": 1}]},
     "qos.interfaces[0].speed"),
    ({"stitching_priority": {"default": 16}}, "qos.stitching_priority.default"),
    ({"stitching_priority": {"classes": {"bulk": 3}}}, "qos.stitching_priority.classes.bulk"),
    ({"stitching_priority": {"vnids": {"x": 3}}}, "qos.stitching_priority.vnids.x"),
    ({"classes": [{"name": "video", "priority": 0, "guaranteed_mbps": 200}]},
     "qos.classes[0].guaranteed_mbps"),
    ({"colour": 1}, "qos.colour"),
])
def test_bad_sections_name_the_field(change: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_qos({**QOS, **change}, _fail)
    assert str(err.value).startswith(f"{where}: "), str(err.value)


def test_config_file_errors_carry_file_line_and_column(tmp_path: Path) -> None:
    nodes = write_cluster(tmp_path, ["A"], [], {})
    path = nodes["A"].config_path
    cfg = yaml.safe_load(path.read_text())
    cfg["qos"] = {**QOS, "borrow": "fair"}
    text = yaml.safe_dump(cfg, sort_keys=False)
    with pytest.raises(ConfigError) as err:
        parse_config(text, "a.yaml", tmp_path)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "borrow: fair" in t)
    assert f"a.yaml:{line}:" in str(err.value) and "qos.borrow: must be one of" in str(err.value)
    cfg["qos"] = QOS
    parsed = parse_config(yaml.safe_dump(cfg), "a.yaml", tmp_path)
    assert parsed.qos is not None and parsed.qos.devices == ("a-t",)


def test_every_qos_problem_of_a_config_file_is_reported_at_once(tmp_path: Path) -> None:
    import jsonschema  # type: ignore[import-untyped]  # noqa: PLC0415

    from vnstitch.cli.schema import schema_of  # noqa: PLC0415
    from vnstitch.daemon.config import ConfigProblemsError  # noqa: PLC0415

    nodes = write_cluster(tmp_path, ["A"], [], {})
    cfg = yaml.safe_load(nodes["A"].config_path.read_text())
    cfg["qos"] = {**QOS, "borrow": "fair", "tunnels": "yes",
                  "interfaces": [{"device": "a-t", "capacity_mbps": 50},
                                 {"device": "x", "capacity_mbps": float("nan")},
                                 {"device": "a-t", "capacity_mbps": 5}],
                  "stitching_priority": {"classes": {"bulk": 3}}}
    text = yaml.safe_dump(cfg, sort_keys=False)
    with pytest.raises(ConfigProblemsError) as err:
        parse_config(text, "a.yaml", tmp_path)
    fields = [ln.split(": ")[1] for ln in err.value.problems]
    assert sorted(fields) == ["qos.borrow", "qos.interfaces[1].capacity_mbps",
                              "qos.interfaces[2].device",
                              "qos.stitching_priority.classes.bulk", "qos.tunnels"
                              ], err.value.problems
    lines = [int(re.match(r"a\.yaml:(\d+):\d+: ", ln)[1])  # type: ignore[index]
             for ln in err.value.problems]
    assert lines == sorted(lines)  # in the order of the file
    assert any("must be finite" in ln for ln in err.value.problems)
    # the published config schema describes the section (editors see the same rules)
    validator = jsonschema.Draft202012Validator(schema_of("config"))
    assert list(validator.iter_errors(yaml.safe_load(text)))
    cfg["qos"] = QOS
    good = yaml.safe_load(yaml.safe_dump(cfg))
    good["qos"]["stitching_priority"]["vnids"] = {"200": 12}  # YAML keys are text
    assert list(validator.iter_errors(good)) == []  # control


VN_A = [{"vnid": 100, "components": ["10.1.0.0/24"], "host_ports": ["hA"]}]
VN_B = [{"vnid": 100, "components": ["10.2.0.0/24"], "host_ports": ["hB"]}]


def test_daemon_applies_qos_and_shows_it(tmp_path: Path) -> None:
    nodes = write_cluster(tmp_path, ["A", "B"], [("A", "B")], {"A": VN_A, "B": VN_B})
    path = nodes["A"].config_path
    cfg = yaml.safe_load(path.read_text())
    cfg["qos"] = QOS
    cfg["allocation"] = {"interval_s": 0.05, "hold_steps": 0, "grow_after": 0}
    path.write_text(yaml.safe_dump(cfg))

    async def body() -> None:
        from vnstitch.daemon.config import load_config  # noqa: PLC0415

        cfg_a = load_config(path)
        kernel = make_driver(cfg_a)
        assert isinstance(kernel, MemoryDataplane) and "a-t" in kernel.external_ports
        a = await start_daemon(cfg_a, protocol_core_factory, kernel)
        b = await start_daemon(nodes["B"].config_path, protocol_core_factory)
        try:
            await until(lambda: a.routes.get(100) is not None, 5)
            _, fut = a.request_stitch(VNID(100), StitchConstraints(20))
            assert (await asyncio.wait_for(fut, 5)).established
            await until(lambda: reconcile(kernel, a.desired_state()) == [], 5)
            rows = await control.dispatch(a, {"cmd": "show", "what": "qos"})
            by = {(r["device"], r["class"]): r for r in rows}
            assert by[("a-t", "video")]["rate_mbps"] == 30.0
            vx = [r for r in rows if r["device"].startswith("vx")]
            assert {r["class"] for r in vx} == {"video", "email"}
            assert all(r["ceil_mbps"] == 20.0 and r["drops"] == 0 for r in vx)
            kernel.set_class_stats(vx[0]["device"], 20, 1500, 1, 7)
            rows = await control.dispatch(a, {"cmd": "show", "what": "qos"})
            email = next(r for r in rows if r["device"] == vx[0]["device"]
                         and r["class"] == "email")
            assert (email["bytes"], email["packets"], email["drops"]) == (1500, 1, 7)
            routes = await control.dispatch(a, {"cmd": "show", "what": "routes"})
            stitched = [r for r in routes if r["where"] == "stitched"]
            assert [(r["vnid"], r["prefix"], r["metric"]) for r in stitched] == [
                (100, "10.2.0.0/24", stitch_route_metric(14))]
            assert stitched[0]["kernel_metric"] is None  # the memory driver has no kernel
            assert kernel.observe().get(f"route:254:10.2.0.0/24:{stitch_route_metric(14)}")
            # The owned interface is the controller's link sample; its SetQosClasses
            # (the policy scaled to the link's 50 Mbit/s) reach the overlay.
            assert a.qos is not None
            await until(lambda: "a-t" in a.qos.link_classes, 5)  # type: ignore[union-attr]
            assert a.qos.link_classes["a-t"] == (("video", 30.0, 50.0), ("email", 2.5, 50.0))
            rows = control.view(a, "allocations")
            assert any(r["action"] == "qos-classes" and r["subject"] == "a-t" for r in rows)
        finally:
            await a.stop()
            await b.stop()

    run(body())


def test_controller_qos_action_reaches_the_desired_state() -> None:
    """The one controller, given the qos section's policy and a sample of an owned link,
    emits SetQosClasses; the daemon's overlay installs those rates on that device."""
    from vnstitch.control import Controller, LinkSample  # noqa: PLC0415
    from vnstitch.daemon.allocation import control_policy  # noqa: PLC0415
    from vnstitch.daemon.config import AllocationConfig  # noqa: PLC0415

    cfg = _qos()
    controller = Controller(control_policy(AllocationConfig(), cfg.policy))
    out = controller.step(10.0, [], {}, [LinkSample("a-t", 0.0, 0, 40.0)])
    actions = [a for a in out.actions if isinstance(a, SetQosClasses)]
    assert [a.device for a in actions] == ["a-t"]
    live = QosLive(cfg)
    assert live.set_classes(actions[0])
    state = live.overlay(_tunnel_state())
    assert state.get("rate:a-t:10") == RateLimit("a-t", 10, 24.0, 40.0, 0)  # 60% of 40
    assert state.get("rate:a-t:20") == RateLimit("a-t", 20, 2.0, 40.0, 1)
