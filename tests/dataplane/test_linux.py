"""Linux-only driver behaviour: ownership, adoption after a restart, real processes."""

from __future__ import annotations

import asyncio

import pytest
from pyroute2 import IPRoute

from tests.dataplane.test_contract import HOST_PORT, stitch
from tests.rootutil import fresh_netns, require_root, run_id
from vnstitch.dataplane import (
    Bridge,
    DataplaneError,
    DataplaneState,
    OpKind,
    RateLimit,
    WireguardInterface,
    reconcile,
)
from vnstitch.dataplane.linux import LinuxDataplane
from vnstitch.dataplane.wireguard_go import socket_is_live, uapi_socket_path
from vnstitch.lab import netns as labns

pytestmark = pytest.mark.root


def test_ownership_adoption_and_cleanup() -> None:
    require_root()

    wg = f"vwl{run_id()}"
    with fresh_netns("l") as ns:
        with IPRoute(netns=ns) as ipr:
            ipr.link("add", ifname=HOST_PORT, kind="veth", peer=f"{HOST_PORT}p")
            ipr.link("add", ifname="foreignbr", kind="bridge")
        want = stitch(wg, peers=2)
        with LinuxDataplane(ns, owner="a") as dp:
            reconcile(dp, want)
            assert socket_is_live(wg) and labns.pids_in(ns)
        # Another owner sees none of it, and cannot clobber it.
        with LinuxDataplane(ns, owner="b") as other:
            assert len(other.observe()) == 0
        # A restarted driver (no memory) adopts what is there: nothing is recreated,
        # at most spelling differences are replaced in place, then it has converged.
        with LinuxDataplane(ns, owner="a") as again:
            ops = reconcile(again, want)
            assert all(op.kind is OpKind.REPLACE for op in ops), [str(o) for o in ops]
            assert reconcile(again, want) == []
            # A second class on the same device joins the HTB tree and converges.
            more = want.with_objects(add=[RateLimit("vs100", 11, 5, 5)])
            reconcile(again, more)
            assert reconcile(again, more) == []
            reconcile(again, DataplaneState())
        with IPRoute(netns=ns) as ipr:
            names = {m.get_attr("IFLA_IFNAME") for m in ipr.get_links()}
            port = ipr.get_links(ipr.link_lookup(ifname=HOST_PORT)[0])[0]
        assert names == {"lo", HOST_PORT, f"{HOST_PORT}p", "foreignbr"}
        assert port.get_attr("IFLA_MASTER") is None
        assert not uapi_socket_path(wg).exists() and labns.pids_in(ns) == []


def test_bad_key_is_a_dataplane_error_and_leaks_no_daemon() -> None:
    require_root()

    wg = f"vwk{run_id()}"
    with fresh_netns("k") as ns, LinuxDataplane(ns) as dp:
        with pytest.raises(DataplaneError, match=f"create wg:{wg}.*private key"):
            reconcile(dp, DataplaneState([WireguardInterface(wg, "k" * 44, 1, "10.0.0.1/24")]))
        assert labns.pids_in(ns) == [] and not socket_is_live(wg)


def test_asyncio_callers_must_use_a_thread() -> None:
    require_root()

    async def drive(dp: LinuxDataplane) -> list[str]:
        with pytest.raises(DataplaneError, match=r"asyncio\.to_thread"):
            dp.observe()
        ops = await asyncio.to_thread(reconcile, dp, DataplaneState([Bridge("vsb1")]))
        again = await asyncio.to_thread(reconcile, dp, DataplaneState([Bridge("vsb1")]))
        return [str(o) for o in ops + again]

    with fresh_netns("t") as ns, LinuxDataplane(ns) as dp:
        assert asyncio.run(drive(dp)) == ["create bridge:vsb1"]


def test_two_threads_read_and_reconcile_one_driver_at_once() -> None:
    """The daemon reconciles in one worker thread while ``show qos`` / ``/metrics`` read
    class counters in another: each call has its own netlink socket, so neither uses or
    closes the other's (a shared one failed with EBADF)."""
    import threading  # noqa: PLC0415

    require_root()
    dev = f"vtq{run_id()}"[:13]
    with fresh_netns("t") as ns:
        dp = LinuxDataplane(ns, owner="a")
        reconcile(dp, DataplaneState().with_objects(add=[Bridge(dev)]))
        states = [DataplaneState().with_objects(add=[Bridge(dev),
                                                     RateLimit(dev, 10, rate, 100)])
                  for rate in (5.0, 7.0)]
        errors: list[BaseException] = []
        done = threading.Event()

        def read() -> None:
            try:
                while not done.is_set():
                    dp.class_stats(dev)
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)

        readers = [threading.Thread(target=read) for _ in range(2)]
        for t in readers:
            t.start()
        try:
            for i in range(10):
                reconcile(dp, states[i % 2])
        finally:
            done.set()
            for t in readers:
                t.join(30)
        assert errors == [], errors
        assert [(s.class_id) for s in dp.class_stats(dev)] == [10]
        reconcile(dp, DataplaneState())
