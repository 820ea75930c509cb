"""Config validation: a good file parses; each bad field is named with its line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from vnstitch.daemon.config import load_config, parse_config
from vnstitch.daemon.errors import ConfigError
from vnstitch.daemon.identity import write_key_file


def _good(tmp_path: Path) -> dict[str, object]:
    a = write_key_file(tmp_path / "a.key")
    b = write_key_file(tmp_path / "b.key")
    return {
        "segment": "A",
        "listen": {"address": "127.0.0.1", "port": 7701},
        "key_file": "a.key",
        "trust": [{"public_key": a.public_key_b64}, {"public_key": b.public_key_b64,
                                                     "id": b.rm_id}],
        "peers": [{"id": b.rm_id, "address": "127.0.0.1:7702", "capacity_mbps": 1000,
                   "latency_ms": 2, "cost": 1}],
        "local_vns": [{"vnid": 100, "components": ["10.100.1.0/24", "10.100.9.9"],
                       "host_ports": ["veth-h1"]}],
        "dataplane": {"driver": "linux", "netns": "rm-a",
                      "wireguard": {"endpoint": "10.0.1.1", "port": 51820}},
        "timers": {"announce_interval_s": 0.5, "probe_interval_s": 0.2, "probe_misses": 4},
        "state_db": "a.db",
        "control_socket": "/run/a.sock",
    }


def test_good_config_parses_and_resolves_paths(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text(yaml.safe_dump(_good(tmp_path)))
    cfg = load_config(path)
    assert cfg.segment == "A" and cfg.listen_port == 7701
    assert cfg.key_file == tmp_path.resolve() / "a.key"
    assert cfg.control_socket == Path("/run/a.sock")
    assert len(cfg.trust) == 2 and cfg.peers[0].address == ("127.0.0.1", 7702)
    assert cfg.local_vns[0].vnid == 100 and len(cfg.local_vns[0].components) == 2
    assert cfg.dataplane.driver == "linux" and cfg.dataplane.netns == "rm-a"
    assert cfg.timers.hold_time_s == pytest.approx(1.5)  # 3 x announce by default
    assert cfg.timers.probe_misses == 4


BAD = [
    (lambda c: c["listen"].update(port=70000), r"listen\.port: port must be in"),
    (lambda c: c["listen"].update(address="300.1.1.1"), r"listen\.address: not an IP"),
    (lambda c: c.pop("key_file"), r"key_file: missing required field"),
    (lambda c: c.update(colour="blue"), r"colour: unknown field"),
    (lambda c: c["peers"][0].update(address="localhost"), r"peers\[0\]\.address: must be 'IP:"),
    (lambda c: c["peers"][0].update(capacity_mbps=0), r"peers\[0\]\.capacity_mbps: must be >"),
    (lambda c: c["peers"][0].update(id="0" * 32), r"peers\[0\]\.id: .* not in the trust"),
    (lambda c: c["peers"][0].update(id="XYZ"), r"peers\[0\]\.id: Route Manager id must be"),
    (lambda c: c["trust"][1].update(public_key="not base64!"), r"trust\[1\]\.public_key: not"),
    (lambda c: c["trust"][1].update(id="0" * 32), r"trust\[1\]\.id: does not match"),
    (lambda c: c["local_vns"][0].update(vnid=2**24), r"local_vns\[0\]\.vnid: VNID .* out of"),
    (lambda c: c["local_vns"][0].update(vnid="x"), r"local_vns\[0\]\.vnid: VNID must be an int"),
    (lambda c: c["local_vns"][0].update(components=["10.0.0.0/33"]),
     r"local_vns\[0\]\.components\[0\]: bad virtual network component"),
    (lambda c: c["local_vns"][0].update(host_ports=["a-name-far-too-long"]),
     r"local_vns\[0\]\.host_ports\[0\]: not a Linux interface name"),
    (lambda c: c["dataplane"].update(driver="dpdk"), r"dataplane\.driver: must be one of"),
    (lambda c: c["timers"].update(probe_misses=1.5), r"timers\.probe_misses: must be an int"),
    (lambda c: c["timers"].update(probe_interval_s=-1), r"timers\.probe_interval_s: must be >"),
    (lambda c: c.update(segment="bad segment"), r"segment: segment id must be"),
]


@pytest.mark.parametrize(("mutate", "message"), BAD)
def test_each_bad_field_is_named(tmp_path: Path, mutate: object, message: str) -> None:
    cfg = _good(tmp_path)
    mutate(cfg)  # type: ignore[operator]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match=message) as err:
        load_config(path)
    assert str(err.value).startswith(f"{path}:")


def test_error_carries_line_and_column(tmp_path: Path) -> None:
    text = ("segment: A\nlisten:\n  address: 127.0.0.1\n  port: nope\nkey_file: k\n"
            "state_db: s\ncontrol_socket: c\n")
    with pytest.raises(ConfigError, match=r"^x\.yaml:4:9: listen\.port: must be an integer"):
        parse_config(text, "x.yaml", tmp_path)


def test_yaml_syntax_error_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"x\.yaml:2:\d+: not valid YAML"):
        parse_config("a: [1,\nb: }", "x.yaml", tmp_path)
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match="empty config"):
        parse_config("", "x.yaml", tmp_path)


@pytest.mark.parametrize("text", [".nan", ".inf", "-.inf", "1e999", "1" + "0" * 400])
def test_non_finite_and_huge_numbers_are_refused(tmp_path: Path, text: str) -> None:
    cfg = _good(tmp_path)
    body = yaml.safe_dump(cfg).replace("capacity_mbps: 1000", f"capacity_mbps: {text}")
    assert f"capacity_mbps: {text}" in body
    with pytest.raises(ConfigError, match=r"peers\[0\]\.capacity_mbps: (must be finite|out "
                                          r"of range|must be a number)"):
        parse_config(body, "c.yaml", tmp_path)


def test_every_problem_is_reported_not_only_the_first(tmp_path: Path) -> None:
    cfg = _good(tmp_path)
    cfg["timers"] = {"probe_interval_s": -1, "probe_misses": "x", "bogus": 1}
    cfg["listen"] = {"address": "nope", "port": 99999}
    with pytest.raises(ConfigError) as err:
        parse_config(yaml.safe_dump(cfg), "c.yaml", tmp_path)
    fields = sorted(line.split(": ")[1] for line in str(err.value).splitlines())
    assert fields == ["listen.address", "listen.port", "timers.bogus",
                      "timers.probe_interval_s", "timers.probe_misses"], str(err.value)


def test_published_schema_accepts_a_good_config_and_refuses_a_bad_one(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json  # noqa: PLC0415

    import jsonschema  # type: ignore[import-untyped]  # noqa: PLC0415

    from vnstitch.cli import main  # noqa: PLC0415

    assert main(["schema", "config", "--json"]) == 0
    schema = json.loads(capsys.readouterr().out)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    good = _good(tmp_path)
    assert list(validator.iter_errors(good)) == []
    good["local_vns"][0]["allow"] = "any"  # type: ignore[index]
    assert list(validator.iter_errors(good)) == []
    bad = dict(good)
    bad["timers"] = {"probe_misses": 1.5, "colour": 1}
    assert list(validator.iter_errors(bad))  # control: the schema does check


def test_problems_come_in_file_order_with_positions(tmp_path: Path) -> None:
    text = ("segment: A\nlisten: {address: 127.0.0.1, port: 1}\nkey_file: k\n"
            "state_db: s\ncontrol_socket: c\ncolour: red\n"
            "timers: {probe_misses: 0, hold_time_s: .nan}\n")
    with pytest.raises(ConfigError) as err:
        parse_config(text, "x.yaml", tmp_path)
    assert str(err.value).splitlines() == [
        "x.yaml:6:9: colour: unknown field (expected one of: allocation, congestion, "
            "control_socket, "
        "dataplane, http, key_file, listen, local_vns, log_level, peers, pra, qos, segment, "
        "state_db, timers, trust)",
        "x.yaml:7:24: timers.probe_misses: must be > 0, got 0",
        "x.yaml:7:40: timers.hold_time_s: must be finite, got number nan",
    ]


def test_congestion_section_is_checked_and_reaches_the_runtime(tmp_path: Path) -> None:
    head = ("segment: A\nlisten: {address: 127.0.0.1, port: 1}\nkey_file: k\n"
            "state_db: s\ncontrol_socket: c\n")
    ok = parse_config(head + "congestion: {interval_s: 0.5, holddown_s: 3}\n", "x.yaml",
                      tmp_path)
    assert (ok.congestion.interval_s, ok.congestion.holddown_s) == (0.5, 3.0)
    assert parse_config(head, "x.yaml", tmp_path).congestion.enabled  # default: on
    with pytest.raises(ConfigError, match=r"x.yaml:6:\d+: congestion.interval_s: .*finite"):
        parse_config(head + "congestion: {interval_s: .inf}\n", "x.yaml", tmp_path)
    with pytest.raises(ConfigError, match=r"congestion.low: need low < high"):
        parse_config(head + "congestion: {low: 0.9, high: 0.8}\n", "x.yaml", tmp_path)
