"""QoS enforced live: a policy from ``policy_to_tc`` on a veth really prioritises.

Two namespaces joined by a veth; the sender side gets the policy's HTB classes and u32
filters through the Linux dataplane driver, with the link limited to 50 Mbit/s. Two
iperf3 TCP flows run at once, one per class (ports 5201 and 5202):

* with a large guarantee, the stitched class gets at least (90% of) its 35 Mbit/s and
  the e-mail class the remainder;
* with equal small guarantees (10 + 10 of 50), the spare 30 Mbit/s goes to the stitched
  class first (HTB ``prio`` from the class priority), so e-mail absorbs the shortfall
  and stays near its guarantee -- without ``prio`` HTB would split the spare evenly.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import time

import pytest

from tests.rootutil import fresh_netns, require_root
from vnstitch.dataplane import DataplaneState, reconcile
from vnstitch.dataplane.linux import LinuxDataplane
from vnstitch.routing.qos import parse_policy, policy_to_tc

pytestmark = [pytest.mark.root, pytest.mark.slow]

POLICY = {
    "link_mbps": 50,
    "classes": [
        {"name": "stitched", "priority": 0, "guaranteed_mbps": 35, "max_mbps": 50},
        {"name": "email", "priority": 2, "guaranteed_mbps": 5, "max_mbps": 50},
    ],
    "applications": [
        {"name": "stitched-app", "class": "stitched", "ports": [5201], "protocol": "tcp"},
        {"name": "mail", "class": "email", "ports": [5202], "protocol": "tcp"},
    ],
}


def _sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=20)


def _iperf(ns: str, port: int, seconds: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["ip", "netns", "exec", ns, "iperf3", "-c", "10.77.0.2", "-p", str(port), "-t",
         str(seconds), "-J"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _mbps(proc: subprocess.Popen[str]) -> float:
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return float(json.loads(out)["end"]["sum_received"]["bits_per_second"]) / 1e6


def _run_pair(policy: dict[str, object]) -> tuple[float, float]:
    """(stitched, email) Mbit/s of two simultaneous 5-second iperf3 flows under ``policy``."""
    if shutil.which("iperf3") is None:
        pytest.skip("iperf3 not installed")
    with fresh_netns("qa") as a, fresh_netns("qb") as b:
        _sh("ip", "-n", a, "link", "add", "vqa", "type", "veth", "peer", "name", "vqb",
            "netns", b)
        _sh("ip", "-n", a, "addr", "add", "10.77.0.1/24", "dev", "vqa")
        _sh("ip", "-n", b, "addr", "add", "10.77.0.2/24", "dev", "vqb")
        _sh("ip", "-n", a, "link", "set", "vqa", "up", "alias", "vnstitch:qostest")
        _sh("ip", "-n", b, "link", "set", "vqb", "up")
        limits, filters = policy_to_tc(parse_policy(policy), "vqa")
        want = DataplaneState([*limits, *filters])
        with LinuxDataplane(a, owner="qostest") as dp:
            reconcile(dp, want)
            assert dp.observe() == want
        servers = [subprocess.Popen(["ip", "netns", "exec", b, "iperf3", "-s", "-1", "-p",
                                     str(p)], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL) for p in (5201, 5202)]
        try:
            time.sleep(0.5)  # let the servers listen (a test helper process, not core code)
            flows = [_iperf(a, 5201, 5), _iperf(a, 5202, 5)]
            stitched, email = (_mbps(f) for f in flows)
            print(f"stitched {stitched:.1f} Mbit/s, email {email:.1f} Mbit/s")
        finally:
            for s in servers:
                s.kill()
                s.wait()
    return stitched, email


def _need_tools() -> None:
    require_root()
    if shutil.which("iperf3") is None:
        pytest.skip("iperf3 not installed")


def test_policy_prioritises_the_guaranteed_class_on_a_shaped_veth() -> None:
    _need_tools()
    stitched, email = _run_pair(POLICY)
    assert stitched >= 0.9 * 35, (stitched, email)
    assert stitched + email <= 50 * 1.1, (stitched, email)
    assert email >= 1.0, (stitched, email)


def test_spare_capacity_goes_to_the_higher_priority_class() -> None:
    _need_tools()
    policy = copy.deepcopy(POLICY)
    for c in policy["classes"]:  # type: ignore[attr-defined]
        c["guaranteed_mbps"] = 10
    stitched, email = _run_pair(policy)
    # even split of the spare would give 25 / 25
    assert stitched >= 0.8 * 40, (stitched, email)
    assert 0.7 * 10 <= email <= 16, (stitched, email)
