"""The documentation site, read in a real headless browser (Debian's chromium + chromedriver).

The site is built offline by mkdocs-material and served here from 127.0.0.1: a
reader must get every page, the generated references, working navigation and
search, with no request leaving the machine and no script error.
"""

from __future__ import annotations

import functools
import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamlabel.testing.browser import BROWSER_MISSING, browser_available, headless_chromium

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The site built into a temporary folder, served on a free loopback port."""
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "DISABLE_MKDOCS_2_WARNING": "true"}
    mkdocs = Path(sys.executable).with_name("mkdocs")
    subprocess.run(
        [str(mkdocs), "build", "--strict", "--quiet", "--site-dir", str(out)],
        cwd=ROOT, env=env, check=True, timeout=300,
    )  # fmt: skip
    handler = functools.partial(_QuietHandler, directory=str(out))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not browser_available():
        pytest.fail(BROWSER_MISSING)
    driver = headless_chromium(console_log=True)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver: object, condition: object, timeout: float = 20) -> object:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition)


def _offsite_requests(driver) -> list[str]:
    urls = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name).concat([location.href]);"
    )
    return [u for u in urls if not u.startswith(("http://127.0.0.1:", "data:", "blob:"))]


def _script_errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def test_the_front_page_reads_offline_with_its_headline_table(site: str, browser) -> None:
    from selenium.webdriver.common.by import By

    browser.get(site + "/")
    assert "streamlabel" in browser.title
    assert browser.find_element(By.TAG_NAME, "h1").text.strip()
    assert browser.find_elements(By.CSS_SELECTOR, "article table"), "no headline table"
    assert _offsite_requests(browser) == []
    assert _script_errors(browser) == []


def test_navigation_reaches_the_generated_settings_reference(site: str, browser) -> None:
    from selenium.webdriver.common.by import By

    browser.get(site + "/")
    link = browser.find_element(By.CSS_SELECTOR, "a[href$='reference/settings/']")
    browser.execute_script("arguments[0].click();", link)
    _wait(browser, lambda d: d.current_url.endswith("/reference/settings/"))
    names = [c.text.split()[0] for c in browser.find_elements(By.CSS_SELECTOR, "article td code")]
    assert "kafka.bootstrap_servers" in names
    assert "discovery.min_cluster_size" in names
    assert _script_errors(browser) == []


def test_the_commands_reference_lists_every_top_level_command(site: str, browser) -> None:
    from selenium.webdriver.common.by import By

    from streamlabel.cli import build_parser

    browser.get(site + "/reference/cli/")
    text = browser.find_element(By.TAG_NAME, "article").text
    parser = build_parser()
    commands = next(a for a in parser._actions if a.choices and isinstance(a.choices, dict))
    for name in commands.choices:
        assert f"streamlabel {name}" in text, name


def test_search_finds_a_page_by_a_word_in_it(site: str, browser) -> None:
    from selenium.webdriver.common.by import By

    browser.get(site + "/")
    browser.find_element(By.CSS_SELECTOR, "label[for='__search']").click()
    box = _wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, "input.md-search__input"))
    box.send_keys("duplicates")
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".md-search-result__item"))
    links = browser.find_elements(By.CSS_SELECTOR, ".md-search-result__item a")
    assert any("/guarantees/" in (a.get_attribute("href") or "") for a in links)
    assert _offsite_requests(browser) == []
