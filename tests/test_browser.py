"""The login example in a real browser: headless Chromium driven by Selenium.

scripts/setup.sh installs Debian's ``chromium`` and ``chromium-driver``
(``setup_chromium``); the test drives ``/usr/bin/chromium`` through
``/usr/bin/chromedriver``, so Selenium downloads nothing.  It checks what only
a browser can tell: that the forms work with the ``_xsrf`` cookie as a browser
sends it, and that the session cookie is stored HttpOnly and SameSite=Lax.
"""

from __future__ import annotations

import contextlib
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
    with chromium() as driver:
        yield driver


@pytest.fixture
def second_browser() -> Iterator[webdriver.Chrome]:
    """Another browser with a profile of its own: another device of the same user."""
    with chromium(user_agent=PHONE) as driver:
        yield driver


#: The second browser's ``User-Agent``: a phone, so the devices page tells the two apart.
PHONE = ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
         "Chrome/131.0 Mobile Safari/537.36")


@contextlib.contextmanager
def chromium(user_agent: str | None = None) -> Iterator[webdriver.Chrome]:
    """Headless Chromium with a fresh profile (its own cookies)."""
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-quic", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    if user_agent is not None:
        options.add_argument(f"--user-agent={user_agent}")
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


def test_devices_page_revokes_another_browsers_session_which_lands_on_login(
    browser: webdriver.Chrome, second_browser: webdriver.Chrome, app: RunningExample
) -> None:
    laptop, phone = browser, second_browser
    laptop.get(app.url + "signup")
    submit(laptop, username="bob", password="correct horse battery")
    wait_for_path(laptop, "/profile")
    phone.get(app.url + "login")
    submit(phone, username="bob", password="correct horse battery")
    wait_for_path(phone, "/profile")

    laptop.find_element(By.ID, "devices").click()
    wait_for_path(laptop, "/devices")
    sessions = laptop.find_elements(By.CSS_SELECTOR, "#sessions li")
    assert len(sessions) == 2, laptop.page_source
    current = laptop.find_element(By.CSS_SELECTOR, "#sessions li.current")
    assert "(this device)" in current.text
    assert "127.0.0.0/24" in current.text  # the network, not the address
    other = next(li for li in sessions if "current" not in (li.get_attribute("class") or ""))
    assert "Chrome on Android" in other.text, other.text
    other.find_element(By.CSS_SELECTOR, "button.revoke").click()
    wait_for_path(laptop, "/devices")
    assert "That device is logged out." in laptop.page_source
    assert len(laptop.find_elements(By.CSS_SELECTOR, "#sessions li")) == 1

    phone.get(app.url + "profile")  # the revoked session is dead on its next request
    wait_for_path(phone, "/login")
    assert "Log in to see your profile." in phone.page_source
    laptop.get(app.url + "profile")  # the laptop is still logged in
    assert laptop.find_element(By.ID, "username").text == "bob"


def test_log_out_everywhere_else_keeps_only_this_browser(
    browser: webdriver.Chrome, second_browser: webdriver.Chrome, app: RunningExample
) -> None:
    laptop, phone = browser, second_browser
    laptop.get(app.url + "signup")
    submit(laptop, username="carol", password="correct horse battery")
    wait_for_path(laptop, "/profile")
    phone.get(app.url + "login")
    submit(phone, username="carol", password="correct horse battery")
    wait_for_path(phone, "/profile")
    phone.get(app.url + "devices")
    phone.find_element(By.ID, "revoke-others").click()
    wait_for_path(phone, "/devices")
    assert "Logged out of 1 other session." in phone.page_source
    laptop.get(app.url + "profile")
    wait_for_path(laptop, "/login")
    phone.get(app.url + "profile")
    assert phone.find_element(By.ID, "username").text == "carol"
