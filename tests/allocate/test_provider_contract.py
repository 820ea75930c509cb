"""ONE contract for every provider (``sim`` and ``linux``): the same test runs on both."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from vnstitch.allocate.providers import (
    CapacityLoss,
    LinuxBandwidthProvider,
    Outage,
    Provider,
    RequestStatus,
    ResourceKey,
    ResourceKind,
    SimProvider,
    SimResource,
)
from vnstitch.dataplane import MemoryDataplane, RateLimit

LINK = ResourceKey(ResourceKind.BANDWIDTH, "A->B")
CAPACITY = 1000.0


def make_sim() -> Provider:
    return SimProvider({ResourceKind.BANDWIDTH: SimResource(delay_seconds=60.0, quota=CAPACITY,
                                                            price_per_unit_hour=0.01)})


def make_linux() -> Provider:
    dp = MemoryDataplane(external_ports=["wg-ab"])
    return LinuxBandwidthProvider(dp, {"A->B": ("wg-ab", 10)}, {"A->B": CAPACITY})


@pytest.fixture(params=[make_sim, make_linux], ids=["sim", "linux"])
def provider(request: pytest.FixtureRequest) -> Provider:
    factory: Callable[[], Provider] = request.param
    return factory()


def test_is_a_provider(provider: Provider) -> None:
    assert isinstance(provider, Provider)
    assert provider.supports(ResourceKind.BANDWIDTH)
    assert provider.limit(LINK) == CAPACITY


def test_scale_out_becomes_available_after_lead_time(provider: Provider) -> None:
    r = provider.request(LINK, 200.0, now=0.0)
    assert r.status is RequestStatus.ACCEPTED and r.ready_at is not None and r.reason
    assert provider.committed(LINK, 0.0) == 200.0
    lead = provider.lead_time(ResourceKind.BANDWIDTH)
    assert r.ready_at == pytest.approx(lead)
    assert provider.available(LINK, lead) == 200.0


def test_requests_are_idempotent(provider: Provider) -> None:
    first = provider.request(LINK, 300.0, now=0.0)
    again = provider.request(LINK, 300.0, now=1.0)
    assert first.status is RequestStatus.ACCEPTED
    assert again.status is RequestStatus.UNCHANGED
    assert provider.committed(LINK, 2.0) == 300.0


def test_scale_in_is_immediate(provider: Provider) -> None:
    provider.request(LINK, 300.0, now=0.0)
    settle = provider.lead_time(ResourceKind.BANDWIDTH) + 1
    assert provider.request(LINK, 100.0, now=settle).status is RequestStatus.ACCEPTED
    assert provider.available(LINK, settle) == 100.0
    assert provider.request(LINK, 0.0, now=settle + 1).ok
    assert provider.committed(LINK, settle + 1) == 0.0


def test_beyond_limit_is_refused_and_changes_nothing(provider: Provider) -> None:
    provider.request(LINK, 100.0, now=0.0)
    r = provider.request(LINK, CAPACITY + 1, now=1.0)
    assert r.status is RequestStatus.REFUSED and not r.ok and r.reason
    assert provider.committed(LINK, 1.0) == 100.0


def test_every_result_is_logged_with_a_reason(provider: Provider) -> None:
    provider.request(LINK, 10.0, now=0.0)
    provider.request(LINK, 10.0, now=1.0)
    provider.request(LINK, CAPACITY * 2, now=2.0)
    assert [r.status for r in provider.log] == [
        RequestStatus.ACCEPTED, RequestStatus.UNCHANGED, RequestStatus.REFUSED]
    assert all(r.reason for r in provider.log)


def test_unsupported_kind_is_refused_not_raised(provider: Provider) -> None:
    key = ResourceKey(ResourceKind.STORAGE, "seg-1")
    assert not provider.supports(ResourceKind.STORAGE)
    assert provider.request(key, 5.0, now=0.0).status is RequestStatus.REFUSED


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
