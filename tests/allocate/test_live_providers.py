"""The live providers' config adapter: a good section, and bad fields named by path."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.rootutil import require_root, run_id
from vnstitch.allocate.errors import AllocateError
from vnstitch.allocate.providers import ResourceKey, ResourceKind
from vnstitch.allocate.providers.live import build_live_providers, parse_live_providers
from vnstitch.allocate.providers.storage import MIB

GOOD = {
    "state_dir": "/var/lib/vnstitch/volumes", "prefix": "rm-a", "hold_s": 60,
    "compute": {"vn100": {"command": ["/usr/bin/svc", "--port", 8080], "netns": "vn100",
                          "cpu_cores": 0.5, "memory_mib": 256,
                          "readiness": ["curl", "-sf", "localhost:8080"],
                          "max_instances": 8, "start_timeout_s": 30}},
    "storage": {"vn100": {"quota_gib": 100}},
}


def test_a_good_section_parses() -> None:
    cfg = parse_live_providers(GOOD)
    w = cfg.workloads["vn100"]
    assert w.command == ("/usr/bin/svc", "--port", "8080") and w.netns == "vn100"
    assert w.memory_bytes == 256 * MIB and w.readiness == ("curl", "-sf", "localhost:8080")
    assert cfg.volume_quotas_gib == {"vn100": 100.0} and cfg.hold_seconds == 60
    assert cfg.state_dir == Path("/var/lib/vnstitch/volumes") and cfg.prefix == "rm-a"


@pytest.mark.parametrize(("change", "message"), [
    ({"compute": {"vn100": {"command": []}}}, "providers.compute.vn100.command: must be"),
    ({"compute": {"vn100": {"command": ["x"], "cpu_cores": "x"}}},
     "providers.compute.vn100.cpu_cores: must be a number > 0, got 'x'"),
    ({"compute": {"vn100": {"command": ["x"], "cpus": 1}}},
     "providers.compute.vn100.cpus: unknown field"),
    ({"compute": {"vn100": {"command": ["x"], "memory_mib": 1}}},
     "providers.compute.vn100: compute workload: memory limit"),
    ({"storage": {"vn100": {}}}, "providers.storage.vn100.quota_gib: required"),
    ({"storage": []}, "providers.storage: must be a mapping"),
    ({"hold_s": -1}, "providers.hold_s: must be a number >= 0"),
])
def test_bad_fields_are_named_by_path(change: dict[str, object], message: str) -> None:
    with pytest.raises(AllocateError) as err:
        parse_live_providers({**GOOD, **change})
    assert str(err.value).startswith(message)


def test_state_dir_is_required() -> None:
    with pytest.raises(AllocateError, match=r"^providers\.state_dir: required"):
        parse_live_providers({"compute": {}})


@pytest.mark.root
def test_build_routes_by_kind_and_closes(tmp_path: Path) -> None:
    require_root()
    cfg = parse_live_providers({"state_dir": str(tmp_path), "prefix": f"vstl{run_id()}",
                                "compute": {"vn1": {"command": ["sleep", "60"]}},
                                "storage": {"vn1": {"quota_gib": 1}}})
    router, compute, storage = build_live_providers(cfg)
    assert compute is not None and storage is not None
    assert router.supports(ResourceKind.COMPUTE) and router.supports(ResourceKind.STORAGE)
    assert not router.supports(ResourceKind.BANDWIDTH)
    assert router.limit(ResourceKey(ResourceKind.STORAGE, "vn1")) == 1.0
    compute.close()
    storage.close()
