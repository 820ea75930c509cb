"""ONE contract for every provider (``sim``, ``linux``, ``by-kind``, ``compute``, ``storage``).

Each case names the key it exercises, its limit, a unit the amounts are multiples of
(compute: whole instances; storage: MiB) and ``settle``: real providers start
instances in real time, so the check that scaled-out capacity becomes available waits
for them first (a no-op for the others). The compute and storage cases need root
(cgroups, loop devices) and skip cleanly otherwise; after each of them the fixture
checks that exactly their own kernel objects are gone.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.rootutil import fresh_netns, require_root, run_id
from vnstitch.allocate.providers import (
    CapacityLoss,
    ComputeProvider,
    LinuxBandwidthProvider,
    Outage,
    Provider,
    ProvidersByKind,
    RequestStatus,
    ResourceKey,
    ResourceKind,
    SimProvider,
    SimResource,
    StorageProvider,
    Workload,
)
from vnstitch.allocate.providers.compute import CgroupExecutor
from vnstitch.allocate.providers.leftovers import compute_leftovers, storage_leftovers
from vnstitch.allocate.providers.storage import MIB
from vnstitch.dataplane import MemoryDataplane, RateLimit

LINK = ResourceKey(ResourceKind.BANDWIDTH, "A->B")
CAPACITY = 1000.0


@dataclass
class Case:
    provider: Provider
    key: ResourceKey
    limit: float
    unit: float
    other: ResourceKind  # a kind this provider does not offer
    settle: Callable[[], None] = lambda: None
    extra: dict[str, object] = field(default_factory=dict)


def make_sim(tmp: Path) -> Iterator[Case]:
    yield Case(SimProvider({ResourceKind.BANDWIDTH: SimResource(
        delay_seconds=60.0, quota=CAPACITY, price_per_unit_hour=0.01)}),
        LINK, CAPACITY, 100.0, ResourceKind.STORAGE)


def make_linux(tmp: Path) -> Iterator[Case]:
    dp = MemoryDataplane(external_ports=["wg-ab"])
    yield Case(LinuxBandwidthProvider(dp, {"A->B": ("wg-ab", 10)}, {"A->B": CAPACITY}),
               LINK, CAPACITY, 100.0, ResourceKind.STORAGE)


def make_by_kind(tmp: Path) -> Iterator[Case]:
    dp = MemoryDataplane(external_ports=["wg-ab"])
    linux = LinuxBandwidthProvider(dp, {"A->B": ("wg-ab", 10)}, {"A->B": CAPACITY})
    yield Case(ProvidersByKind({ResourceKind.BANDWIDTH: linux}), LINK, CAPACITY, 100.0,
               ResourceKind.STORAGE)


def make_compute(tmp: Path) -> Iterator[Case]:
    require_root()
    prefix = f"vstc{run_id()}"
    with fresh_netns("pc") as ns:
        executor = CgroupExecutor(prefix=prefix)
        p = ComputeProvider({"vn100": Workload(("sleep", "600"), ns, 0.1, 16 * MIB,
                                               max_instances=4)}, executor=executor)
        key = ResourceKey(ResourceKind.COMPUTE, "vn100")
        t0 = time.monotonic()

        def settle() -> None:
            assert p.wait_ready(key, lambda: time.monotonic() - t0, timeout=20)

        try:
            yield Case(p, key, 4.0, 1.0, ResourceKind.STORAGE, settle)
        finally:
            p.close()
        assert compute_leftovers(executor.layout, prefix) == []


def make_storage(tmp: Path) -> Iterator[Case]:
    require_root()
    prefix = f"vsts{run_id()}"
    p = StorageProvider({"vn100": 256.0}, tmp, unit_bytes=MIB, prefix=prefix)
    try:
        yield Case(p, ResourceKey(ResourceKind.STORAGE, "vn100"), 256.0, 16.0,
                   ResourceKind.COMPUTE)
    finally:
        p.close()
    assert storage_leftovers(tmp, prefix) == []


@pytest.fixture(params=[make_sim, make_linux, make_by_kind,
                        pytest.param(make_compute, marks=pytest.mark.root),
                        pytest.param(make_storage, marks=pytest.mark.root)],
                ids=["sim", "linux", "by-kind", "compute", "storage"])
def case(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Case]:
    factory: Callable[[Path], Iterator[Case]] = request.param
    yield from factory(tmp_path)


def test_is_a_provider(case: Case) -> None:
    assert isinstance(case.provider, Provider)
    assert case.provider.supports(case.key.kind)
    assert case.provider.limit(case.key) == case.limit


def test_scale_out_becomes_available_after_lead_time(case: Case) -> None:
    p, key, u = case.provider, case.key, case.unit
    r = p.request(key, 2 * u, now=0.0)
    lead = p.lead_time(key.kind)  # before any probe: compute refines it as it measures
    assert r.status is RequestStatus.ACCEPTED and r.ready_at is not None and r.reason
    assert r.ready_at == pytest.approx(lead)
    assert p.committed(key, 0.0) == 2 * u
    case.settle()
    assert p.available(key, lead) == 2 * u


def test_requests_are_idempotent(case: Case) -> None:
    p, key, u = case.provider, case.key, case.unit
    first = p.request(key, 3 * u, now=0.0)
    again = p.request(key, 3 * u, now=1.0)
    assert first.status is RequestStatus.ACCEPTED
    assert again.status is RequestStatus.UNCHANGED
    assert p.committed(key, 2.0) == 3 * u


def test_scale_in_is_immediate(case: Case) -> None:
    p, key, u = case.provider, case.key, case.unit
    p.request(key, 3 * u, now=0.0)
    case.settle()
    settle = p.lead_time(key.kind) + 1
    assert p.request(key, 1 * u, now=settle).status is RequestStatus.ACCEPTED
    assert p.available(key, settle) == 1 * u
    assert p.request(key, 0.0, now=settle + 1).ok
    assert p.committed(key, settle + 1) == 0.0


def test_beyond_limit_is_refused_and_changes_nothing(case: Case) -> None:
    p, key, u = case.provider, case.key, case.unit
    p.request(key, 1 * u, now=0.0)
    r = p.request(key, case.limit + u, now=1.0)
    assert r.status is RequestStatus.REFUSED and not r.ok and r.reason
    assert p.committed(key, 1.0) == 1 * u


def test_every_result_is_logged_with_a_reason(case: Case) -> None:
    p, key, u = case.provider, case.key, case.unit
    p.request(key, 1 * u, now=0.0)
    p.request(key, 1 * u, now=1.0)
    p.request(key, case.limit * 2, now=2.0)
    assert [r.status for r in p.log] == [
        RequestStatus.ACCEPTED, RequestStatus.UNCHANGED, RequestStatus.REFUSED]
    assert all(r.reason for r in p.log)


def test_unsupported_kind_is_refused_not_raised(case: Case) -> None:
    key = ResourceKey(case.other, "seg-1")
    assert not case.provider.supports(case.other)
    assert case.provider.request(key, 5.0, now=0.0).status is RequestStatus.REFUSED


# -- implementation-specific behaviour beyond the contract -----------------------------

def test_linux_writes_htb_desired_state() -> None:
    dp = MemoryDataplane(external_ports=["wg-ab"])
    p = LinuxBandwidthProvider(dp, {"A->B": ("wg-ab", 10)}, {"A->B": CAPACITY})
    p.request(LINK, 250.0, now=0.0)
    assert dp.observe().get("rate:wg-ab:10") == RateLimit("wg-ab", 10, 250.0, CAPACITY)
    n_ops = len(dp.applied)
    p.request(LINK, 250.0, now=1.0)
    assert len(dp.applied) == n_ops  # idempotent: no op reached the driver
    p.request(LINK, 0.0, now=2.0)
    assert "rate:wg-ab:10" not in dp.observe()


def test_linux_driver_failure_is_a_failed_result() -> None:
    dp = MemoryDataplane()  # the device does not exist: the driver refuses the create
    p = LinuxBandwidthProvider(dp, {"A->B": ("wg-missing", 10)}, {"A->B": CAPACITY})
    r = p.request(LINK, 5.0, now=0.0)
    assert r.status is RequestStatus.FAILED and "missing device" in r.reason


def test_sim_outage_losses_quota_and_billing() -> None:
    vm = ResourceKey(ResourceKind.COMPUTE, "seg-1")
    p = SimProvider({ResourceKind.COMPUTE: SimResource(delay_seconds=300, quota=10,
                                                       price_per_unit_hour=2.0)},
                    outages=[Outage(1000, 2000, ResourceKind.COMPUTE)],
                    losses=[CapacityLoss(3600, vm, 2)])
    assert p.request(vm, 4, now=0).ready_at == 300
    assert p.available(vm, 299) == 0 and p.available(vm, 300) == 4
    assert p.request(vm, 6, now=1500).status is RequestStatus.FAILED
    assert p.request(vm, 11, now=2500).status is RequestStatus.REFUSED
    assert p.available(vm, 3600) == 2  # two VMs crashed
    assert p.cost(3600) == pytest.approx(4 * 2.0 * 1.0)  # 4 VMs billed for one hour
    assert p.request(vm, 4, now=3600).status is RequestStatus.ACCEPTED  # re-order the lost
    with pytest.raises(Exception, match="backwards"):
        p.available(vm, 10)
