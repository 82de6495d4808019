"""The admin in a real browser: Debian's headless Chromium driven by Selenium
through Debian's chromedriver, against the live gateway (tests/gateway.py).

Nothing is downloaded: both binaries are passed by path, so Selenium Manager
is never asked for a driver or a browser (and SE_OFFLINE forbids it to).
Without them the tests skip, except under ONEPROXY_FAIL_ON_SKIP=1 (CI, which
installs the packages), where that is a failure.

Fixtures for further browser tests:
- ``chromium``: one browser per test process (a fresh profile);
- ``browser``: a ``Browser`` on the live gateway, cookies cleared;
- ``admin_browser``: the same, logged in as the operator ``root``.

Screenshots go to data/artifacts/browser/<mode>/<test name>/ (gitignored).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest
from django.conf import settings

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# What this machine's closed network needs (no background fetches, no QUIC),
# and what running as root in a container needs (no sandbox).
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1600,900",
)
ROOT_PASSWORD = "browser-test-root-password"
WAIT = 15.0


def artifacts_dir() -> Path:
    mode = "service" if settings.SERVICE_MODE else "embedded"
    return settings.BASE_DIR / "data" / "artifacts" / "browser" / mode


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("ONEPROXY_FAIL_ON_SKIP") == "1":
        pytest.fail(f"browser test cannot run under ONEPROXY_FAIL_ON_SKIP=1: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        _unavailable(f"{' and '.join(missing)} missing: apt-get install chromium chromium-driver")
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager: never reach out
    os.environ["SE_AVOID_STATS"] = "true"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="oneproxy-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    # The DevTools network events, so a test can see every request's host.
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@dataclass
class Browser:
    """A Chromium page on the live gateway, with a few steps tests share."""

    driver: Any
    gateway: Any
    shots: Path

    def open(self, path: str) -> None:
        self.driver.get(self.gateway.url + path)

    def find(self, css: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str) -> list[Any]:
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def wait_for(self, css: str, timeout: float = WAIT) -> Any:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions
        from selenium.webdriver.support.ui import WebDriverWait

        return WebDriverWait(self.driver, timeout).until(
            expected_conditions.visibility_of_element_located((By.CSS_SELECTOR, css))
        )

    def until(self, condition: Callable[[], Any], timeout: float = WAIT) -> Any:
        from selenium.webdriver.support.ui import WebDriverWait

        return WebDriverWait(self.driver, timeout, poll_frequency=0.2).until(lambda _: condition())

    def fill(self, css: str, text: str) -> None:
        field = self.find(css)
        field.clear()
        field.send_keys(text)

    def select(self, css: str, value: str) -> None:
        from selenium.webdriver.support.ui import Select

        Select(self.find(css)).select_by_value(value)

    def submit(self, css: str = "input[type=submit][name=_save], form input[type=submit]") -> None:
        self.find(css).click()

    def messages(self) -> list[str]:
        return [m.text for m in self.find_all("ul.messagelist li")]

    def style(self, css: str, prop: str) -> str:
        return self.driver.execute_script(
            "return getComputedStyle(document.querySelector(arguments[0])).getPropertyValue(arguments[1]);", css, prop
        )

    def screenshot(self, name: str) -> Path:
        self.shots.mkdir(parents=True, exist_ok=True)
        path = self.shots / f"{name}.png"
        # The whole page, not only the window: changelists and forms run long.
        # DevTools captures beyond the viewport, so nothing is re-laid out.
        size = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 4000), "scale": 1}
        shot = self.driver.execute_cdp_cmd(
            "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
        )
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def requested_urls(self) -> list[str]:
        """Every URL the browser requested since the last call (the DevTools
        performance log: Network.requestWillBeSent), data: and blob: included."""
        urls = []
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message.get("method") == "Network.requestWillBeSent":
                urls.append(message["params"]["request"]["url"])
        return urls

    def login(self, username: str, password: str) -> None:
        self.open("/admin/login/?next=/admin/")
        self.fill("#id_username", username)
        self.fill("#id_password", password)
        self.submit("#login-form input[type=submit]")
        self.wait_for("#user-tools")


@pytest.fixture
def browser(chromium, gateway, request) -> Iterator[Browser]:
    chromium.delete_all_cookies()
    chromium.get_log("performance")  # what earlier tests loaded is theirs
    shots = artifacts_dir() / re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name)
    shutil.rmtree(shots, ignore_errors=True)
    yield Browser(driver=chromium, gateway=gateway, shots=shots)
    _close_admin_connections()


def _close_admin_connections() -> None:
    """The admin pages ran in the live gateway's worker threads, each keeping
    its PostgreSQL connection (CONN_MAX_AGE); end them, or the test database
    cannot be dropped at the end of the session."""
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )


@pytest.fixture
def root_operator(transactional_db):
    """The operator ``root``, as ``manage.py bootstrap`` creates it."""
    from billing import services
    from billing.models import User

    user, _ = services.create_user(username="root", password=ROOT_PASSWORD, role=User.Role.OPERATOR)
    return user


@pytest.fixture
def admin_browser(browser, root_operator) -> Browser:
    browser.login("root", ROOT_PASSWORD)
    return browser
