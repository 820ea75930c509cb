"""Membership in the daemon: ``allow`` / ``owner`` / ``grant`` / ``revocations`` parsing
(bad fields named with their line), grant and revocation files, ``vnstitch vn``."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pytest
import yaml

from vnstitch.cli import main
from vnstitch.daemon.config import parse_config
from vnstitch.daemon.errors import ConfigError
from vnstitch.daemon.identity import load_key_file, write_key_file
from vnstitch.daemon.membership import MembershipFiles, access_policies, load_grants
from vnstitch.daemon.vnowner import OwnerDirectory
from vnstitch.model.ids import VNID
from vnstitch.protocol.config import CoreConfig
from vnstitch.protocol.core import RouteManagerCore
from vnstitch.protocol.identity import Identity, TrustStore


def _config(tmp_path: Path, vn: dict[str, object]) -> str:
    if not (tmp_path / "a.key").exists():
        write_key_file(tmp_path / "a.key")
        write_key_file(tmp_path / "b.key")
    a, b = load_key_file(tmp_path / "a.key"), load_key_file(tmp_path / "b.key")
    (tmp_path / "ids").write_text(f"{a.rm_id} {b.rm_id}")
    return yaml.safe_dump({
        "segment": "A", "listen": {"address": "127.0.0.1", "port": 7701},
        "key_file": "a.key", "state_db": "a.db", "control_socket": "a.sock",
        "trust": [{"public_key": a.public_key_b64, "name": "A"},
                  {"public_key": b.public_key_b64, "name": "B"}],
        "local_vns": [{"vnid": 100, "components": ["10.1.0.0/24"], **vn}]})


def test_allow_any_names_and_ids(tmp_path: Path) -> None:
    cfg = parse_config(_config(tmp_path, {"allow": "any"}), "a.yaml", tmp_path)
    assert cfg.local_vns[0].allow_any and access_policies(cfg)[VNID(100)].allow_any
    cfg = parse_config(_config(tmp_path, {"allow": ["B"]}), "a.yaml", tmp_path)
    _a_id, b_id = (tmp_path / "ids").read_text().split()
    assert cfg.local_vns[0].allow == (b_id,)  # a trust entry's name stands for its id
    cfg = parse_config(_config(tmp_path, {"allow": [b_id]}), "a.yaml", tmp_path)
    assert cfg.local_vns[0].allow == (b_id,) and not cfg.local_vns[0].allow_any
    # no allow: grants only (and nobody without an owner key)
    cfg = parse_config(_config(tmp_path, {}), "a.yaml", tmp_path)
    policy = access_policies(cfg)[VNID(100)]
    assert not policy.allow_any and not policy.allow and policy.owner is None


@pytest.mark.parametrize(("vn", "error"), [
    ({"allow": "everyone"}, r"a\.yaml:\d+:\d+: local_vns\[0\]\.allow: must be 'any'"),
    ({"allow": ["B", "Z"]}, r"local_vns\[0\]\.allow\[1\]: 'Z' is neither an RM id"),
    ({"owner": "not base64!"}, r"local_vns\[0\]\.owner: not valid base64"),
    ({"grant": 5}, r"local_vns\[0\]\.grant: must be"),
])
def test_bad_membership_fields_are_named(tmp_path: Path, vn: dict[str, object],
                                         error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        parse_config(_config(tmp_path, vn), "a.yaml", tmp_path)


def test_grant_files_are_read_and_checked(tmp_path: Path) -> None:
    owner = OwnerDirectory.create(tmp_path / "vn", 100)
    text = _config(tmp_path, {"owner": owner.owner_b64, "grant": "g.grant"})
    cfg = parse_config(text, "a.yaml", tmp_path)
    with pytest.raises(ConfigError, match=r"g\.grant: cannot read grant"):
        load_grants(cfg)
    a_id = (tmp_path / "ids").read_text().split()[0]
    g, _ = owner.grant(a_id, time.time() + 60, time.time(), tmp_path / "g.grant")
    assert load_grants(cfg) == (g,)
    other = OwnerDirectory.create(tmp_path / "vn7", 7)
    other.grant(a_id, time.time() + 60, time.time(), tmp_path / "g.grant")
    with pytest.raises(ConfigError, match="is for VNID 7"):
        load_grants(cfg)


def test_revocation_file_reaches_the_core_once_per_change(tmp_path: Path) -> None:
    owner = OwnerDirectory.create(tmp_path / "vn", 100)
    text = _config(tmp_path, {"owner": owner.owner_b64,
                              "revocations": str(owner.revocations_path)})
    cfg = parse_config(text, "a.yaml", tmp_path)
    ident = Identity(b"\x05" * 32)
    core = RouteManagerCore(CoreConfig(cfg.segment, (), access=access_policies(cfg)), ident,
                            TrustStore([ident.public_bytes]), random.Random(1))
    files = MembershipFiles(cfg, interval_s=1.0)
    files.poll(core, 0.0)
    assert core.stats.get("revocations_learnt") == 1  # version 0, empty
    a_id = (tmp_path / "ids").read_text().split()[0]
    owner.grant(a_id, time.time() + 60, time.time())
    owner.revoke(time.time(), member=a_id)
    files.poll(core, 0.5)  # within the interval: not read yet
    assert core.revoked_serials(VNID(100)) == frozenset()
    files.poll(core, 1.0)
    assert core.revoked_serials(VNID(100)) == {1}
    files.poll(core, 2.0)  # unchanged: not applied again
    assert core.stats.get("revocations_learnt") == 2


def test_vn_cli_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = str(tmp_path / "vn")
    member = "ab" * 16
    assert main(["vn", "init", "--dir", d, "--vnid", "100", "--json"]) == 0
    owner = json.loads(capsys.readouterr().out)["owner"]
    assert main(["vn", "grant", "--dir", d, "--member", member, "--days", "1", "--json"]) == 0
    grant = json.loads(capsys.readouterr().out)
    assert grant["serial"] == 1 and grant["member"] == member
    assert main(["vn", "show", "--dir", d, "--grant", grant["file"], "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["signature_ok"] is True
    assert main(["vn", "revoke", "--dir", d, "--member", member, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["revoked"] == [1]
    assert main(["vn", "show", "--dir", d, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["owner"] == owner and shown["grants"][0]["status"] == "revoked"
    assert shown["revocations"]["version"] == 1
    # bad input: one line on stderr, exit 2
    assert main(["vn", "grant", "--dir", d, "--member", "nope"]) == 2
    assert main(["vn", "revoke", "--dir", d, "--member", "cd" * 16]) == 2
    assert main(["vn", "init", "--dir", d, "--vnid", "100"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(e.startswith("vnstitch vn: error:") for e in err)
