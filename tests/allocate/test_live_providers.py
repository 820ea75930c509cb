"""The live providers' config section (schema: the daemon's ``pra: providers:``): a good
section, every bad field named by path at once, and the providers built from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.rootutil import require_root, run_id
from vnstitch.allocate.providers import ResourceKey, ResourceKind
from vnstitch.allocate.providers.live import LiveProviderConfig, build_live_providers
from vnstitch.allocate.providers.storage import MIB
from vnstitch.daemon.pra_model import ProvidersSection, to_providers
from vnstitch.yamlfile import dotted, problems_of

GOOD = {
    "state_dir": "/var/lib/vnstitch/volumes", "prefix": "rm-a", "hold_s": 60,
    "compute": {"vn100": {"command": ["/usr/bin/svc", "--port", 8080], "netns": "vn100",
                          "cpu_cores": 0.5, "memory_mib": 256,
                          "readiness": ["curl", "-sf", "localhost:8080"],
                          "max_instances": 8, "start_timeout_s": 30}},
    "storage": {"vn100": {"quota_gib": 100}},
}


def parse_live_providers(doc: object) -> LiveProviderConfig:
    return to_providers(ProvidersSection.model_validate(doc))


def problems(doc: object) -> list[str]:
    return [f"{dotted(p.loc)}: {p.problem}" for p in problems_of(ProvidersSection, doc,
                                                                  ("providers",))]


def test_a_good_section_parses() -> None:
    assert problems(GOOD) == []
    cfg = parse_live_providers(GOOD)
    w = cfg.workloads["vn100"]
    assert w.command == ("/usr/bin/svc", "--port", "8080") and w.netns == "vn100"
    assert w.memory_bytes == 256 * MIB and w.readiness == ("curl", "-sf", "localhost:8080")
    assert cfg.volume_quotas_gib == {"vn100": 100.0} and cfg.hold_seconds == 60
    assert cfg.state_dir == Path("/var/lib/vnstitch/volumes") and cfg.prefix == "rm-a"


@pytest.mark.parametrize(("change", "message"), [
    ({"compute": {"vn100": {"command": []}}},
     "providers.compute.vn100.command: must have at least 1 item, got 0"),
    ({"compute": {"vn100": {"command": ["x"], "cpu_cores": "x"}}},
     "providers.compute.vn100.cpu_cores: must be a number, got text 'x'"),
    ({"compute": {"vn100": {"command": ["x"], "cpus": 1}}},
     "providers.compute.vn100.cpus: unknown field"),
    ({"compute": {"vn100": {"command": ["x"], "memory_mib": 1}}},
     "providers.compute.vn100: compute workload: memory limit"),
    ({"storage": {"vn100": {}}}, "providers.storage.vn100.quota_gib: missing required field"),
    ({"storage": []}, "providers.storage: must be a mapping"),
    ({"hold_s": -1}, "providers.hold_s: must be >= 0, got -1"),
    ({"hold_s": float("nan")}, "providers.hold_s: must be finite"),
])
def test_bad_fields_are_named_by_path(change: dict[str, object], message: str) -> None:
    found = problems({**GOOD, **change})
    assert len(found) == 1 and found[0].startswith(message), found


def test_every_problem_at_once_and_state_dir_is_required() -> None:
    found = problems({"compute": {"vn1": {"command": []}}, "storage": {"vn1": {}}})
    assert found == ["providers.state_dir: missing required field",
                     "providers.compute.vn1.command: must have at least 1 item, got 0",
                     "providers.storage.vn1.quota_gib: missing required field"]


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
