"""The HTB fluid model: guarantees first, then borrowing by prio / quantum, up to ceil."""

from __future__ import annotations

import random

import pytest

from vnstitch.routing.htb import HtbClass, HtbTree, flows_share, quantum_bytes, share, tree_for_link
from vnstitch.routing.qos import parse_policy, policy_to_tc


def _tree(*classes: tuple[str, float, float, int], link: float = 100.0,
          quantum: int = 200_000) -> HtbTree:
    leaves = tuple(HtbClass(n, r, c, p, quantum) for n, r, c, p in classes)
    return HtbTree(link, max(c.ceil_mbps for c in leaves), leaves)


def test_guarantees_first_then_spare_by_priority() -> None:
    tree = _tree(("video", 20, 100, 0), ("bulk", 10, 100, 1), ("email", 10, 100, 2))
    got = share(tree, {"video": 80, "bulk": 50, "email": 50})
    # assured 20 + 10 + 10; the 60 left go to video first, which wants exactly 60 more
    assert got == pytest.approx({"video": 80, "bulk": 10, "email": 10})


def test_ceil_caps_borrowing_and_the_rest_goes_down_the_priorities() -> None:
    tree = _tree(("video", 20, 50, 0), ("bulk", 10, 100, 1), ("email", 10, 100, 2))
    got = share(tree, {"video": 80, "bulk": 50, "email": 50})
    assert got == pytest.approx({"video": 50, "bulk": 40, "email": 10})


def test_same_prio_shares_spare_by_quantum() -> None:
    tree = _tree(("video", 20, 100, 0), ("bulk", 10, 100, 0), ("email", 10, 100, 0))
    got = share(tree, {"video": 80, "bulk": 50, "email": 50})
    assert got == pytest.approx({"video": 40, "bulk": 30, "email": 30})
    # unequal quanta (small rates: quantum = rate bytes/s / 10): spare split 1:2
    a = HtbClass("a", 1.0, 10.0, 0, quantum_bytes(1.0))
    b = HtbClass("b", 2.0, 10.0, 0, quantum_bytes(2.0))
    got = share(HtbTree(10.0, 10.0, (a, b)), {"a": 10, "b": 10})
    assert got == pytest.approx({"a": 1 + 7 / 3, "b": 2 + 14 / 3})


def test_kernel_quantum_clamp() -> None:
    assert quantum_bytes(1.0) == 12_500
    assert quantum_bytes(0.05) == 1_000
    assert quantum_bytes(1000.0) == 200_000


def test_tree_matches_what_policy_to_tc_installs() -> None:
    policy = parse_policy({"link_mbps": 1000, "classes": [
        {"name": "video", "priority": 0, "guaranteed_mbps": 300, "max_mbps": 800},
        {"name": "email", "priority": 3, "guaranteed_mbps": 50, "max_mbps": 600}]})
    limits, _ = policy_to_tc(policy, "eth0")
    tree = tree_for_link(policy, 1000.0, "priority")
    assert [(c.rate_mbps, c.ceil_mbps) for c in tree.classes] == \
        [(r.rate_mbps, r.ceil_mbps) for r in limits]
    assert tree.parent_mbps == max(r.ceil_mbps for r in limits)  # as tc.py sizes the parent
    assert [c.prio for c in tree.classes] == [0, 1]
    assert [c.prio for c in tree_for_link(policy, 1000.0, "quantum").classes] == [0, 0]
    scaled = tree_for_link(policy, 10_000.0, "priority")
    assert [c.rate_mbps for c in scaled.classes] == [3000.0, 500.0]


def test_random_demands_keep_htb_invariants() -> None:
    rng = random.Random(7)
    for _ in range(300):
        n = rng.randint(1, 5)
        rates = [rng.uniform(0, 30) for _ in range(n)]
        ceils = [r + rng.uniform(0, 80) for r in rates]
        link = max(sum(rates), rng.uniform(10, 150))
        tree = _tree(*((f"c{i}", rates[i], ceils[i], rng.randint(0, 2)) for i in range(n)),
                     link=link)
        demand = {f"c{i}": rng.uniform(0, 100) for i in range(n)}
        got = share(tree, demand)
        total = sum(got.values())
        assured = sum(min(demand[f"c{i}"], rates[i]) for i in range(n))
        # a leaf under its own rate sends without asking the parent; borrowing is capped
        # by what the parent has left
        cap = max(assured, min(link, tree.parent_mbps))
        assert total <= cap + 1e-6
        for i in range(n):
            c = f"c{i}"
            assert got[c] >= min(demand[c], rates[i]) - 1e-6  # the guarantee
            assert got[c] <= min(demand[c], ceils[i]) + 1e-6  # never above ceil or demand
        # work conserving: if anyone is short of min(demand, ceil), the parent is full
        if any(got[f"c{i}"] < min(demand[f"c{i}"], ceils[i]) - 1e-6 for i in range(n)):
            assert total == pytest.approx(cap, abs=1e-6)


def test_flows_share_a_class_in_proportion() -> None:
    tree = _tree(("video", 20, 100, 0), ("email", 10, 100, 1))
    rates = flows_share(tree, [("video", 30), ("email", 60), ("email", 30)])
    assert rates == pytest.approx([30, 70 * 2 / 3, 70 / 3])
    with pytest.raises(KeyError, match="nosuch"):
        share(tree, {"nosuch": 1.0})
