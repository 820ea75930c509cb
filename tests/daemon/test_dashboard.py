"""The dashboard in headless Chromium (selenium + chromedriver) against a running daemon.

The page loads from the daemon, takes the token, reads the API and shows the stitch; the
browser's console has no errors; a screenshot is kept (its path is printed; set
``VNSTITCH_ARTEFACTS=DIR`` to also copy it there). Control: without the token the same
page shows no stitch and says the API was not reached.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.daemon.httphelpers import HttpNode, http_daemons
from vnstitch.dataplane.memory import MemoryDataplane

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow, pytest.mark.skipif(
    shutil.which("chromium") is None or shutil.which("chromedriver") is None,
    reason="Debian packages chromium and chromium-driver not installed")]


ALLOCATION = {"interval_s": 0.2, "forecaster": "naive", "min_mbps": 1, "unit_mbps": 1}


def feed_traffic(node: HttpNode, steps: int = 20) -> None:
    """Raise the memory dataplane's tx counter of the stitch's tunnel port, so the
    allocation loop measures a rate, forecasts it and decides; wait for its decisions."""
    qos = node.call("GET", "/api/v1/qos")[1]
    assert qos, "no HTB class for the stitch"
    device = qos[0]["device"]
    driver = node.daemon.driver
    assert isinstance(driver, MemoryDataplane)
    tx = 0
    for i in range(steps):
        tx += int((8 + 4 * (i % 5)) * 1e6 / 8 * 0.2)  # 8..24 Mbit/s over 0.2 s
        driver.set_counters(device, 0, tx)
        time.sleep(0.2)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        rows = node.call("GET", "/api/v1/decisions")[1]
        if sum(1 for r in rows if r.get("forecast_mbps") is not None) >= 5:
            return
        time.sleep(0.2)
    raise AssertionError("the allocation loop made no forecasts")


@pytest.fixture
def browser() -> Iterator[object]:
    from selenium import webdriver  # noqa: PLC0415
    from selenium.webdriver.chrome.service import Service  # noqa: PLC0415

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(shutil.which("chromium"))
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=opts,
                              service=Service(executable_path=shutil.which("chromedriver")))
    try:
        yield driver
    finally:
        driver.quit()


def _drawn(css: str) -> Callable[[Any], bool]:
    return lambda d: bool(d.find_elements("css selector", css))


def test_dashboard_shows_the_stitch_without_console_errors(
        browser: object, tmp_path: Path) -> None:
    from selenium.webdriver.chrome.webdriver import WebDriver  # noqa: PLC0415
    from selenium.webdriver.common.by import By  # noqa: PLC0415
    from selenium.webdriver.support.ui import WebDriverWait  # noqa: PLC0415

    assert isinstance(browser, WebDriver)
    (tmp_path / "cluster").mkdir()
    with http_daemons(tmp_path / "cluster", allocation=ALLOCATION) as nodes:
        a: HttpNode = nodes[0]
        status, created = a.call("POST", "/api/v1/stitches", {"vnid": 100,
                                                              "bandwidth_mbps": 20})
        assert status == 200 and created["established"], created
        sid = created["stitch_id"]
        feed_traffic(a)
        browser.get(a.base + "/")
        wait = WebDriverWait(browser, 30)
        # control: before the token is given nothing from the API is shown
        assert sid not in browser.find_element(By.ID, "stitches").text
        assert "token" in browser.find_element(By.ID, "status").text
        browser.find_element(By.ID, "token").send_keys(a.token)
        browser.find_element(By.CSS_SELECTOR, "#login button").click()
        wait.until(lambda d: sid in d.find_element(By.ID, "stitches").text)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f'polyline[data-stitch="{sid}"]'))
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#chart polyline")) > 0)
        # measured rate, the forecast band (10-90 %) and the reservation, all drawn
        for part in ("polygon.band", "polyline.series-measured",
                     "polyline.series-reserved", "polyline.series-forecast"):
            wait.until(_drawn(f"#chart {part}"))
        assert "connected" in browser.find_element(By.ID, "status").text
        assert browser.execute_script("return sessionStorage.getItem('vnstitch-token')") \
            == a.token
        shot = tmp_path / "dashboard.png"
        assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
        print(f"dashboard screenshot: {shot}")
        if os.environ.get("VNSTITCH_ARTEFACTS"):
            out = Path(os.environ["VNSTITCH_ARTEFACTS"])
            out.mkdir(parents=True, exist_ok=True)
            shutil.copy(shot, out / "dashboard.png")
        logs = browser.get_log("browser")  # type: ignore[no-untyped-call]
        errors = [e for e in logs if e.get("level") == "SEVERE"]
        assert not errors, errors
