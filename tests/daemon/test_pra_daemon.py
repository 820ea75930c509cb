"""The live PRA inside the daemon: config, stitching events, user feed, show allocations."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.daemon.helpers import run, start_daemon, until, write_cluster
from vnstitch.daemon import control
from vnstitch.daemon.config import load_config, parse_config
from vnstitch.daemon.coreadapter import make_driver, protocol_core_factory
from vnstitch.daemon.errors import ConfigError, ControlError
from vnstitch.dataplane import MemoryDataplane
from vnstitch.model.ids import VNID
from vnstitch.protocol.api import StitchConstraints

VN_A = [{"vnid": 100, "components": ["10.1.0.0/24"], "host_ports": ["hA"]}]
VN_B = [{"vnid": 100, "components": ["10.2.0.0/24"], "host_ports": ["hB"]}]
PRA = {"interval_s": 0.05, "min_fit": 3, "refit_every": 5, "blend_steps": 5,
       "vns": {100: {"class": "web", "profile": "database_access",
                     "bandwidth": {"model": "lagreg", "prior": 4}}}}


def _text(pra: object) -> str:
    return yaml.safe_dump({"segment": "A", "listen": {"address": "127.0.0.1", "port": 7701},
                           "key_file": "a.key", "state_db": "a.db", "control_socket": "a.sock",
                           "pra": pra})


def test_pra_config_parses(tmp_path: Path) -> None:
    cfg = parse_config(_text(PRA), "a.yaml", tmp_path).pra
    assert cfg is not None and cfg.interval_s == 0.05 and cfg.vns[0].vnid == 100
    assert cfg.vns[0].kinds["bandwidth"].model == "lagreg"
    assert parse_config(_text(None), "a.yaml", tmp_path).pra is None


@pytest.mark.parametrize(("section", "error"), [
    ({"interval_s": 0}, r"a\.yaml:\d+:\d+: pra\.interval_s: must be > 0, got 0"),
    ({"vns": {100: {"compute": {"model": "oracle"}}}},
     r"pra\.vns\.100\.compute\.model: unknown model 'oracle'"),
    ({"vns": {100: {"class": "gold"}}}, r"pra\.vns\.100\.class: unknown class"),
    ({"vns": {100: {"colour": 1}}}, r"pra\.vns\.100\.colour: unknown field"),
    ({"providers": {"compute": {}}}, r"pra\.providers\.state_dir: missing required field"),
    ({"season": float("inf")}, r"pra\.season: must be finite"),
    ({"vns": {100: {"bandwidth": {"options": {"lags": float("nan")}}}}},
     r"pra\.vns\.100\.bandwidth\.options\.lags: must be finite"),
])
def test_pra_config_errors_name_the_field(tmp_path: Path, section: object, error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        parse_config(_text(section), "a.yaml", tmp_path)


def test_every_pra_problem_is_reported_at_once_in_file_order(tmp_path: Path) -> None:
    import jsonschema  # type: ignore[import-untyped]  # noqa: PLC0415

    from vnstitch.cli.schema import schema_of  # noqa: PLC0415
    from vnstitch.daemon.config import ConfigProblemsError  # noqa: PLC0415

    bad = {"interval_s": -1, "season": float("nan"), "fit_cpus": [0, -1], "colour": 1,
           "vns": {100: {"class": "gold", "bandwidth": {"model": "oracle", "prior": -2}},
                   "x": {}},
           "providers": {"compute": {"vn100": {"command": [], "memory_mib": 1}},
                         "storage": {"vn100": {"quota_gib": float("inf")}}}}
    text = _text(bad)
    with pytest.raises(ConfigProblemsError) as err:
        parse_config(text, "a.yaml", tmp_path)
    fields = [ln.split(": ")[1] for ln in err.value.problems]
    assert sorted(fields) == sorted([
        "pra.interval_s", "pra.season", "pra.fit_cpus[1]", "pra.colour",
        "pra.vns.100.class", "pra.vns.100.bandwidth.model", "pra.vns.100.bandwidth.prior",
        "pra.vns.x", "pra.providers.state_dir", "pra.providers.compute.vn100.command",
        "pra.providers.storage.vn100.quota_gib"]), err.value.problems
    positions = [tuple(map(int, re.match(r"a\.yaml:(\d+):(\d+): ", ln).groups()))  # type: ignore[union-attr]
                 for ln in err.value.problems]
    assert positions == sorted(positions)  # in the order of the file
    # the published config schema describes the section; the good one passes (control)
    validator = jsonschema.Draft202012Validator(schema_of("config"))
    assert list(validator.iter_errors(yaml.safe_load(text)))
    good = yaml.safe_load(_text({**PRA, "providers": {
        "state_dir": "/tmp/x", "compute": {"vn100": {"command": ["svc", 8080]}}}}))
    assert list(validator.iter_errors(good)) == []
    assert parse_config(yaml.safe_dump(good), "a.yaml", tmp_path).pra is not None


def test_feed_request_is_checked() -> None:
    from vnstitch.daemon.pra_daemon import feed_rows  # noqa: PLC0415

    assert feed_rows({"vnid": 100, "rows": [[1.0, 3]]}) == (100, [(1.0, 3.0)])
    with pytest.raises(ControlError, match=r"rows\[1\]: expected \[unix time, users >= 0\]"):
        feed_rows({"vnid": 100, "rows": [[1.0, 3], [2.0, -1]]})


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[dict[str, Path]]:
    nodes = write_cluster(tmp_path, ["A", "B"], [("A", "B")], {"A": VN_A, "B": VN_B})
    path = nodes["A"].config_path
    cfg = yaml.safe_load(path.read_text())
    cfg["pra"] = PRA
    path.write_text(yaml.safe_dump(cfg))
    yield {n: node.config_path for n, node in nodes.items()}


def test_daemon_pra_sources_and_allocations(cluster: dict[str, Path]) -> None:
    cfg_a = load_config(cluster["A"])
    kernel = make_driver(cfg_a)
    assert isinstance(kernel, MemoryDataplane)

    async def body() -> None:
        a = await start_daemon(cfg_a, protocol_core_factory, kernel)
        b = await start_daemon(cluster["B"], protocol_core_factory)
        try:
            assert a.pra is not None
            await until(lambda: a.routes.get(100) is not None, 5)
            sid, fut = a.request_stitch(VNID(100), StitchConstraints(20))
            assert (await asyncio.wait_for(fut, 5)).established
            cid = f"{sid}/bandwidth"

            def row() -> dict[str, object] | None:
                rows = [r for r in control.view(a, "allocations") if r.get("consumer") == cid]
                return rows[0] if rows and "forecast" in rows[0] else None

            await until(lambda: row() is not None, 5)
            first = row()
            assert first is not None
            assert first["sources"] == ["profile"]  # a new stitch: the cold start
            assert first["cold_start"] is not None
            now = a.now()
            fed = await control.dispatch(a, {"cmd": "feed", "vnid": 100, "rows": [
                [now - 60 + k, 5.0] for k in range(120)]})
            assert fed == {"vnid": 100, "rows": 120}
            dev = next(t.vxlan_device for t in a.core.tunnel_views())
            tx = 0
            loop = asyncio.get_running_loop()
            t0 = last = loop.time()
            while loop.time() - t0 < 2.0:  # 8 Mbit/s through the stitch end
                await asyncio.sleep(0.01)
                tx += round(8e6 / 8 * (loop.time() - last))
                last = loop.time()
                kernel.set_counters(dev, 0, tx)

            def warm() -> dict[str, object] | None:
                r = row()
                return r if r and "users" in r["sources"] else None  # type: ignore[operator]

            try:  # a fit in a fresh worker process (spawned, imports numpy): seconds
                await until(lambda: warm() is not None, 40)
            except AssertionError:
                raise AssertionError(f"no fit with the users column: {row()}") from None
            r = warm()
            assert r is not None
            assert r["model"] == "lagreg" and "history" in r["sources"]  # type: ignore[operator]
            assert r["quantile"] is not None and r["action"]
            json.dumps(control.view(a, "allocations"), allow_nan=False)
            kinds = {d["kind"] for d in control.view(a, "decisions")}
            assert "pra" in kinds
            with pytest.raises(ControlError, match="rows must be a list"):
                await control.dispatch(a, {"cmd": "feed", "vnid": 100, "rows": []})
            await a.stop()
            a2 = await start_daemon(cfg_a, protocol_core_factory, kernel)
            try:  # the feed was kept in the state database
                assert a2.pra is not None and a2.pra.runtime is not None
                assert a2.pra.runtime.controller.fed_vnids() == [100]
            finally:
                await a2.stop()
        finally:
            await b.stop()

    run(body(), 60)
