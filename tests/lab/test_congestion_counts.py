"""The congestion demo's accounting: a reordered datagram is not a lost one; the
poller names the devices of netlink link events.

iperf3's server keeps its loss count unsigned; when datagrams queued on the old path
arrive after newer ones from the new path, an interval's loss change is negative and
its JSON prints it wrapped around 2**64 as a double. These checks build that JSON.
"""

from __future__ import annotations

import json
import struct

from vnstitch.daemon.linksampler import RTM_DELLINK, RTM_NEWLINK
from vnstitch.lab.congestion import _delivered, _intervals, link_names

WRAP = 2.0 ** 64


def _iperf(losses: list[float], packets: int, final_lost: int) -> str:
    rows = [{"sum": {"start": i * 0.1, "end": (i + 1) * 0.1, "packets": packets,
                     "lost_packets": lost}} for i, lost in enumerate(losses)]
    return json.dumps({"server_output_json": {"intervals": rows,
                                              "end": {"sum": {"lost_packets": final_lost}}}})


def test_one_wrapped_interval_is_the_reordered_datagrams_found() -> None:
    # 30 counted lost at the move, 25 of them arrive late: 5 really lost.
    ivs, final = _intervals(_iperf([0, 30, WRAP - 25, 0], 100, 5))
    assert [lost for *_, lost in ivs] == [0, 30, -25, 0] and final == 5
    frac, sent, lost = _delivered(ivs, 0.0, 0.0, 0.4)
    assert (sent, lost) == (400, 5) and frac == 1 - 5 / 400


def test_a_window_that_ends_before_the_late_arrivals_counts_them_lost() -> None:
    ivs, final = _intervals(_iperf([0, 30, WRAP - 25, 0], 100, 5))
    assert _delivered(ivs, 0.0, 0.0, 0.2)[2] == 30
    # with the final count: an interval outside the window took some back, so the
    # exact rule does not apply either
    assert _delivered(ivs, 0.0, 0.0, 0.2, final)[2] == 30


def test_several_wrapped_intervals_are_unknown_without_the_final_count() -> None:
    # the sizes are lost in the double's rounding: never an understatement
    ivs, final = _intervals(_iperf([40, WRAP - 10, WRAP - 20, 0], 100, 10))
    assert [lost for *_, lost in ivs] == [40, None, None, 0] and final == 10
    assert _delivered(ivs, 0.0, 0.0, 0.4)[2] == 40


def test_the_final_count_makes_a_window_with_several_wrapped_intervals_exact() -> None:
    # 3 lost before the move, 40 counted at it and 30 of them found in two intervals
    # (sizes unknown): 10 lost in the move, 3 + 10 in the run
    ivs, final = _intervals(_iperf([3, 0, 40, WRAP - 10, WRAP - 20, 0], 100, 13))
    assert _delivered(ivs, 0.0, 0.15, 0.6, final)[2] == 10
    # control: without the final count they stay counted as lost
    assert _delivered(ivs, 0.0, 0.15, 0.6)[2] == 40


def test_control_clean_run_unchanged() -> None:
    ivs, final = _intervals(_iperf([0, 3, 0, 1], 100, 4))
    assert _delivered(ivs, 0.0, 0.0, 0.4)[2] == 4
    assert _delivered(ivs, 0.0, 0.0, 0.4, final)[2] == 4
    assert _delivered(ivs, 0.0, 0.15, 0.4, final)[2] == 1


def _link(kind: int, name: bytes | None) -> bytes:
    body = struct.pack("=BxHiII", 0, 1, 7, 0, 0)
    if name is not None:
        payload = name + b"\0"
        attr = struct.pack("=HH", 4 + len(payload), 3) + payload  # IFLA_IFNAME
        body += attr + b"\0" * (-len(attr) % 4)
    return struct.pack("=IHHII", 16 + len(body), kind, 0, 0, 0) + body


def test_the_pollers_link_events_name_their_devices() -> None:
    data = (_link(RTM_NEWLINK, b"wg0abc") + _link(RTM_DELLINK, b"wg1") + _link(99, b"x")
            + _link(RTM_NEWLINK, None))
    assert link_names(data) == [(RTM_NEWLINK, "wg0abc"), (RTM_DELLINK, "wg1")]
    assert link_names(data[:10]) == []
