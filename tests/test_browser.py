"""The login example in a real browser: headless Chromium driven by Selenium.

scripts/setup.sh installs Debian's ``chromium`` and ``chromium-driver``
(``setup_chromium``); the test drives ``/usr/bin/chromium`` through
``/usr/bin/chromedriver``, so Selenium downloads nothing.  It checks what only
a browser can tell: that the forms work with the ``_xsrf`` cookie as a browser
sends it, and that the session cookie is stored HttpOnly and SameSite=Lax.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.test_examples import RunningExample

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SESSION = "tornado.sess"


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-quic", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def app() -> Iterator[RunningExample]:
    with RunningExample("login") as running:
        yield running


def submit(driver: webdriver.Chrome, **fields: str) -> None:
    """Fill in the page's form like a person and press its button."""
    for name, value in fields.items():
        box = driver.find_element(By.NAME, name)
        box.clear()
        box.send_keys(value)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()


def wait_for_path(driver: webdriver.Chrome, path: str) -> None:
    WebDriverWait(driver, 20).until(lambda d: d.current_url.endswith(path))


def session_cookie(driver: webdriver.Chrome) -> dict[str, Any] | None:
    for cookie in driver.get_cookies():
        if cookie["name"] == SESSION:
            return dict(cookie)
    return None


def test_sign_up_log_in_reload_and_log_out_in_chromium(
    browser: webdriver.Chrome, app: RunningExample
) -> None:
    browser.get(app.url + "signup")
    submit(browser, username="alice", password="correct horse battery")
    wait_for_path(browser, "/profile")
    assert browser.find_element(By.ID, "username").text == "alice"
    assert "Your account is ready." in browser.page_source

    cookie = session_cookie(browser)
    assert cookie is not None, browser.get_cookies()
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Lax"
    assert cookie["secure"] is False  # plain http: secure=None follows the protocol
    assert cookie["path"] == "/"
    # HttpOnly: the page's scripts cannot read the session cookie.
    assert SESSION not in browser.execute_script("return document.cookie")

    browser.refresh()
    assert browser.find_element(By.ID, "username").text == "alice"
    assert "Your account is ready." not in browser.page_source  # the flash showed once

    browser.find_element(By.ID, "logout").click()
    wait_for_path(browser, "/login")
    assert "You are logged out." in browser.page_source
    browser.get(app.url + "profile")
    wait_for_path(browser, "/login")

    submit(browser, username="alice", password="wrong password")
    error = WebDriverWait(browser, 20).until(lambda d: d.find_element(By.CSS_SELECTOR, ".error"))
    assert error.text == "Wrong username or password."
    submit(browser, username="alice", password="correct horse battery")
    wait_for_path(browser, "/profile")
    assert browser.find_element(By.ID, "username").text == "alice"
    assert "Welcome back, alice." in browser.page_source
    browser.find_element(By.ID, "logout").click()
    wait_for_path(browser, "/login")
