"""The web console in a real headless browser against a real deployment (issue 17).

``streamlabel run --ui`` on embedded defaults (a fixed broker port, the console on
a free loopback port) in a subprocess; SNIPS items stream in as JSON Lines without
labels; Debian's chromium, driven by Selenium, reads the console while they do:
the overview updates, a discovered class appears on the Classes page, renaming it
there changes its name on the ``classes`` topic and on the page, teaching an
unknown item from the Unknowns page revises its label, and the map renders the
number of points the server projected. A screenshot of each page is saved
(under ``$STREAMLABEL_SCREENSHOTS`` when set, e.g. docs/img/console, else in the
test's temporary folder). No request leaves 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import threading
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from run_process import RunProcess, until

from streamlabel.datasets import read_tsv
from streamlabel.kafka.broker import free_port
from streamlabel.testing.browser import BROWSER_MISSING, browser_available, headless_chromium

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SNIPS = ROOT / "data" / "snips" / "test.tsv"


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunProcess]:
    ui_port = free_port()
    d = RunProcess(
        tmp_path_factory.mktemp("run") / "run.log", ["--ui"],
        env={"STREAMLABEL_METRICS__PORT": str(free_port()), "STREAMLABEL_UI__PORT": str(ui_port)},
    )  # fmt: skip
    try:
        d.wait_for("bootstrap:", 300)
        url = d.wait_for("console:", 60)
        assert url == f"http://127.0.0.1:{ui_port}/"
        yield d
    finally:
        d.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not browser_available():
        pytest.fail(BROWSER_MISSING)
    driver = headless_chromium(window=(1440, 1000), console_log=True)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = os.environ.get("STREAMLABEL_SCREENSHOTS")
    out = Path(where) if where else tmp_path_factory.mktemp("console-screenshots")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _offsite(driver: Any) -> list[str]:
    urls = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name).concat([location.href]);"
    )
    return [u for u in urls if not u.startswith(("http://127.0.0.1:", "data:", "blob:"))]


def _errors(driver: Any) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def _wait(driver: Any, condition: Callable[[Any], Any], timeout: float = 30) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.3).until(condition)


def test_the_console_follows_and_steers_a_running_deployment(
    deployment: RunProcess, browser: Any, shots: Path, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    d, b = deployment, browser
    base = f"http://127.0.0.1:{d.env['STREAMLABEL_UI__PORT']}"
    snips = read_tsv(SNIPS)
    items = tmp_path / "items.jsonl"
    items.write_text(
        "".join(json.dumps({"id": f"s{i}", "text": t}) + "\n" for i, t in enumerate(snips.texts))
    )

    # 1. the overview updates while items stream
    b.get(base + "/")
    _wait(b, lambda dr: dr.find_element(By.ID, "live").text == "live")
    producer = threading.Thread(target=lambda: d.cli("produce", str(items)))
    producer.start()
    first = int(_wait(b, lambda dr: int(dr.execute_script(
        "return Number(document.body.dataset.itemsTotal || 0)")) or None, 240))  # fmt: skip
    later = _wait(b, lambda dr: (n := int(dr.execute_script(
        "return Number(document.body.dataset.itemsTotal)"))) > first and n, 120)  # fmt: skip
    assert later > first
    assert b.find_elements(By.CSS_SELECTOR, "#chart-items canvas")
    assert b.find_element(By.CSS_SELECTOR, "[data-s=restarts]").text != "n/a"
    producer.join()

    # 2. a discovered class appears on the Classes page
    def discovered() -> list[dict[str, Any]]:
        states = d.json_lines("classes", "list")
        return [s for s in states if s["origin"] == "discovery" and s["status"] != "retired"]

    found = until("a discovered class", discovered, 400, every_s=5)[0]
    cid = found["class_id"]
    b.get(base + "/classes")
    row = _wait(b, lambda dr: dr.find_element(By.CSS_SELECTOR, f"tr[data-class-id='{cid}']"))
    assert "awaiting" in row.get_attribute("class")
    b.save_screenshot(str(shots / "classes.png"))

    # 3. renaming it from the page renames it on the classes topic and on the page
    row.find_element(By.CSS_SELECTOR, "form.rename input[name=name]").send_keys("console-named")
    row.find_element(By.CSS_SELECTOR, "form.rename button").click()
    result = _wait(b, lambda dr: dr.find_element(By.CSS_SELECTOR, "#result .result"))
    assert result.get_attribute("data-status") == "applied", result.text
    states = {s["class_id"]: s for s in d.json_lines("classes", "list", "--all")}
    assert states[cid]["name"] == "console-named"
    _wait(b, lambda dr: dr.find_element(By.CSS_SELECTOR, f"tr[data-class-id='{cid}']")
          .get_attribute("data-name") == "console-named")  # fmt: skip

    # 4. teaching an unknown item from the Unknowns page revises its label
    b.get(base + "/unknowns")
    box = _wait(
        b, lambda dr: dr.find_element(By.CSS_SELECTOR, "#unknowns-table input[name=item_ids]"), 120
    )
    item_id = box.get_attribute("value")
    box.click()
    b.find_element(By.ID, "teach-label").send_keys("console-named")
    b.save_screenshot(str(shots / "unknowns.png"))
    b.find_element(By.ID, "teach-button").click()
    result = _wait(b, lambda dr: dr.find_element(By.CSS_SELECTOR, "#result .result"))
    assert result.get_attribute("data-status") == "applied", result.text

    def revised() -> dict[str, Any] | None:
        r = d.latest_labels().get(item_id)
        return r if r and r["revision"] > 0 and r["label"] == cid else None

    taught = until("the taught item's revised label", revised, 120, every_s=2)
    assert taught["class_name"] == "console-named"

    # 5. the map renders the points the server projected
    b.get(base + "/map")
    plot = _wait(b, lambda dr: dr.find_element(By.CSS_SELECTOR, "#map[data-rendered]"))
    with urllib.request.urlopen(base + "/map.json", timeout=10) as r:
        projected = json.loads(r.read())
    active = [s for s in d.json_lines("classes", "list") if s["status"] != "retired"]
    rendered = int(plot.get_attribute("data-rendered"))
    assert rendered == int(plot.get_attribute("data-points")) > 0
    assert abs(rendered - sum(projected["counts"].values())) <= 50  # new unknowns may arrive
    assert projected["counts"]["prototype"] == len(active)
    assert b.find_elements(By.CSS_SELECTOR, "#map canvas")
    b.save_screenshot(str(shots / "map.png"))

    b.get(base + "/")  # the overview again, now with discoveries on its timeline
    _wait(
        b,
        lambda dr: int(dr.execute_script("return Number(document.body.dataset.updates || 0)")) >= 2,
    )
    b.save_screenshot(str(shots / "overview.png"))

    b.get(base + "/drift")
    _wait(b, lambda dr: dr.find_element(By.ID, "drift-section"))
    b.save_screenshot(str(shots / "drift.png"))
    assert _offsite(b) == []
    assert _errors(b) == []

    # 6. the report: one file that opens offline with every section rendered
    report = tmp_path / "report.html"
    d.cli("report", "--out", str(report))
    html = report.read_text()
    assert 'src="http' not in html
    assert 'href="http' not in html
    b.get(report.as_uri())
    for section in ("classes", "map-part", "unknowns", "drift"):
        assert b.find_element(By.ID, section).is_displayed()
    assert int(b.find_element(By.ID, "map").get_attribute("data-rendered")) > 0
    assert b.find_elements(By.CSS_SELECTOR, "#map canvas")
    assert _errors(b) == []
