from __future__ import annotations

import pytest

from vnstitch.dataplane import (
    Bridge,
    BridgePort,
    DataplaneError,
    DataplaneState,
    FdbEntry,
    MemoryDataplane,
    OpKind,
    VxlanPort,
    WireguardInterface,
    plan,
    reconcile,
)


def _desired() -> DataplaneState:
    return DataplaneState([
        WireguardInterface("wg0", "k" * 44, 51820, "10.255.0.1/24"),
        VxlanPort("vx100", 100, "10.255.0.1", "wg0"),
        Bridge("br100"),
        BridgePort("br100", "vx100"),
        BridgePort("br100", "veth-h1"),
        FdbEntry("vx100", "10.255.0.2"),
    ])


def test_plan_orders_parents_first_and_is_idempotent() -> None:
    dp = MemoryDataplane(external_ports=["veth-h1"])
    ops = reconcile(dp, _desired())
    kinds = [op.obj.key.split(":")[0] for op in ops]
    assert kinds.index("wg") < kinds.index("vxlan") < kinds.index("port") < kinds.index("fdb")
    assert reconcile(dp, _desired()) == []
    ops = reconcile(dp, DataplaneState())
    assert [op.kind for op in ops] == [OpKind.REMOVE] * 6
    assert ops[0].obj.key.startswith("fdb") and ops[-1].obj.key.startswith("wg")


def test_plan_replaces_changed_objects() -> None:
    old = DataplaneState([VxlanPort("vx1", 1, "10.0.0.1", "wg0")])
    new = DataplaneState([VxlanPort("vx1", 1, "10.0.0.9", "wg0")])
    (op,) = plan(new, old)
    assert op.kind is OpKind.REPLACE and op.old is not None


def test_memory_driver_enforces_kernel_preconditions() -> None:
    dp = MemoryDataplane()
    with pytest.raises(DataplaneError, match="missing device"):
        reconcile(dp, DataplaneState([BridgePort("br9", "nope")]))


def test_private_key_not_in_repr() -> None:
    assert "secret" not in repr(WireguardInterface("wg0", "secret", 1, "10.0.0.1/24"))
