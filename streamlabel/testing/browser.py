"""A headless Debian chromium driven by Selenium, for the pages a person looks at.

The docs site test, the console test and ``bench throughput --console`` all
read pages the way a user's browser does; they open it here, the same way
(``make browser`` installs ``chromium`` and ``chromium-driver``).
"""

from __future__ import annotations

import shutil
from typing import Any

from streamlabel.errors import StreamlabelError

__all__ = ["BROWSER_MISSING", "browser_available", "headless_chromium"]

BROWSER_MISSING = "needs Debian's chromium and chromium-driver: run `make browser`"


def browser_available() -> bool:
    """Whether ``chromium`` and ``chromedriver`` are on the PATH."""
    return shutil.which("chromium") is not None and shutil.which("chromedriver") is not None


def headless_chromium(*, window: tuple[int, int] | None = None, console_log: bool = False) -> Any:
    """A started headless chromium (a Selenium ``webdriver.Chrome``); the caller quits it.

    Args:
        window: its window size in pixels (screenshots), else chromium's default.
        console_log: keep the pages' console messages (``get_log("browser")``).

    Raises:
        StreamlabelError: chromium or chromedriver is not installed.
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver is None:
        raise StreamlabelError(BROWSER_MISSING)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    if window is not None:
        options.add_argument(f"--window-size={window[0]},{window[1]}")
    if console_log:
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    browser.set_page_load_timeout(60)
    return browser
