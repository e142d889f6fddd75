"""Browser tests drive Debian's Chromium through Selenium against pytest-django's live server.

Without Chromium they skip locally (with the reason) but fail in CI, where a skipped browser
test would hide a broken labelling page."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def _missing() -> str | None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.exists():
            return (
                f"{path} is missing: install Debian's browser with "
                "`apt-get install -y chromium chromium-driver`"
            )
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed: `pip install -e .[test]`"
    return None


@pytest.fixture
def browser() -> Iterator[object]:
    reason = _missing()
    if reason is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"Browser tests must run in CI: {reason}")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--window-size=1280,900",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
