"""One failing kernel object never blocks the others (errors and backoff per object)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.daemon.helpers import run, until, write_cluster
from vnstitch.daemon.config import load_config
from vnstitch.daemon.coreadapter import protocol_core_factory
from vnstitch.daemon.runtime import RouteManagerDaemon
from vnstitch.dataplane.memory import MemoryDataplane
from vnstitch.dataplane.objects import Bridge, VxlanPort
from vnstitch.dataplane.retry import ObjectRetry

pytestmark = pytest.mark.timeout(30)


def test_a_refused_object_backs_off_alone_while_later_changes_reach_the_dataplane(
        tmp_path: Path) -> None:
    nodes = write_cluster(tmp_path, ["A"], [], {"A": [{"vnid": 100, "host_ports": ["hA"]}]})
    cfg = load_config(nodes["A"].config_path)

    async def body() -> None:
        driver = MemoryDataplane(external_ports=["hA"])
        d = RouteManagerDaemon(cfg, protocol_core_factory, driver, rng=random.Random(1))
        await d.start()
        try:
            # Two VXLAN devices for one VNI: the second is refused (File exists).
            d.core_desired = d.core_desired.with_objects(add=[
                Bridge("u0"), VxlanPort("vxa", 7, "10.0.0.1", "u0"),
                VxlanPort("vxb", 7, "10.0.0.1", "u0")])
            d.dataplane_changed()
            have = driver.observe()
            assert "vxlan:vxa" in have and "bridge:u0" in have and "vxlan:vxb" not in have
            failing = d.object_retry.failing
            assert list(failing) == ["vxlan:vxb"] and failing["vxlan:vxb"].failures == 1
            # A later, unrelated change still reaches the dataplane at once.
            d.core_desired = d.core_desired.with_objects(add=[Bridge("later")])
            d.dataplane_changed()
            assert "bridge:later" in driver.observe()
            # The refused object is retried on its own schedule, with growing delays.
            await until(lambda: failing["vxlan:vxb"].failures >= 3, 10)
            assert d.metrics["dataplane_object_errors"] >= 3
            # Once it can apply (the conflict is gone), it converges and is forgotten.
            d.core_desired = d.core_desired.with_objects(remove=["vxlan:vxa"])
            await until(lambda: "vxlan:vxb" in driver.observe(), 10)
            assert d.object_retry.failing == {}
        finally:
            await d.stop()

    run(body())


def test_object_backoff_grows_caps_and_jitters_from_the_injected_rng() -> None:
    retry = ObjectRetry(random.Random(7))
    delays = []
    for n in range(12):
        retry.failed({"k": "boom"}, now=float(n))
        delays.append(retry.failing["k"].retry_at - n)
    assert delays[0] <= 0.5 and delays[5] > delays[1]  # grows
    assert max(delays) <= 30.0 and delays[-1] >= 15.0  # capped, jitter <= 50%
    again = ObjectRetry(random.Random(7))
    again.failed({"k": "boom"}, now=0.0)
    assert again.failing["k"].retry_at == pytest.approx(delays[0])  # same seed, same jitter
    assert retry.waiting(11.0) == {"k"} and retry.waiting(1e9) == frozenset()
    retry.succeeded(["k"])
    assert retry.next_due() is None
