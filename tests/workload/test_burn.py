"""The CPU burner's schedule, with fake clocks (no waiting, no burning)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vnstitch.workload.burn import duty, main, read_demand, run, trace_demand


def test_duty_is_clamped_to_one_core() -> None:
    assert duty(0.25, 0.1) == pytest.approx((0.025, 0.075))
    assert duty(3.0, 0.1) == (0.1, 0.0)
    assert duty(-1.0, 0.1) == (0.0, 0.1)


def test_trace_is_replayed_faster_and_holds_its_last_value() -> None:
    at = trace_demand([10.0, 50.0, 90.0], step_seconds=300, speedup=60, cores_at_100=2.0,
                      start=1)
    assert at(0.0) == pytest.approx(1.0)  # row 1: 50% of 2 cores
    assert at(4.99) == pytest.approx(1.0)
    assert at(5.0) == pytest.approx(1.8)  # 300 s / 60 = 5 s per row
    assert at(500.0) == pytest.approx(1.8)


def test_demand_file_missing_or_bad_means_nothing(tmp_path: Path) -> None:
    f = tmp_path / "d"
    assert read_demand(f) == 0.0
    f.write_text("nan")
    assert read_demand(f) == 0.0
    f.write_text("0.4\n")
    assert read_demand(f) == 0.4


class FakeClocks:
    """Wall and CPU time: spinning advances both, sleeping only the wall."""

    def __init__(self, contention: float = 1.0) -> None:
        self.wall = self.cpu = 0.0
        self.contention = contention  # CPU seconds per wall second while spinning
        self.slept = 0.0

    def clock(self) -> float:
        self.wall += 0.001
        self.cpu += 0.001 * self.contention
        return self.wall

    def cpu_clock(self) -> float:
        return self.cpu

    def sleep(self, s: float) -> None:
        self.wall += s
        self.slept += s


def test_run_burns_the_demanded_cpu_time() -> None:
    c = FakeClocks()
    burned = run(lambda t: 0.3, 0.1, duration=1.0, clock=c.clock, cpu_clock=c.cpu_clock,
                 sleep=c.sleep)
    assert burned == pytest.approx(0.3, abs=0.03)
    assert c.slept == pytest.approx(0.7, abs=0.05)


def test_run_on_a_contended_cpu_stops_at_the_interval_end() -> None:
    c = FakeClocks(contention=0.25)  # a throttled instance gets a quarter of a core
    burned = run(lambda t: 1.0, 0.1, duration=1.0, clock=c.clock, cpu_clock=c.cpu_clock,
                 sleep=c.sleep)
    assert burned == pytest.approx(0.25, abs=0.03)  # the rest of the demand is unserved


def test_bad_trace_is_refused_with_exit_2(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--trace", str(tmp_path / "none.csv"), "--duration", "0"]) == 2
    assert "none.csv" in capsys.readouterr().err
