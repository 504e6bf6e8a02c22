"""The example apps, driven over HTTP the way a browser drives them.

Each `Browser` is the package's test client (`tornado_session.testing.SessionClient`:
its own cookies, kept as a browser keeps them) that also posts forms with the
``_xsrf`` value of the last page it read, and follows redirects by hand, so
every test sees the status, the ``Location`` and the cookies of each step.
Sessions are set up and read with the client's session transactions, through
the application's own lifecycle: no test decodes a cookie or computes a store key.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import logging
import os
import queue
import re
import subprocess
import sys
import threading
import time
import unittest
import urllib.parse
from pathlib import Path
from typing import Any
from unittest import mock

import tornado.web
from tornado.httpclient import AsyncHTTPClient, HTTPResponse
from tornado.testing import AsyncHTTPTestCase, ExpectLog, gen_test

from examples import counter, login
from tests.base import set_cookies
from tornado_session import SessionOptions, StoreUnavailableError
from tornado_session.flash import FLASH_KEY
from tornado_session.stores import MemoryStore
from tornado_session.testing import SessionClient

ROOT = Path(__file__).resolve().parent.parent
SECRET = "examples-test-secret-" + "s" * 32
SESSION = "tornado.sess"
#: The cookie that carries a visitor's flash messages (they get no session for one).
FLASH = "tornado.sess.flash"
#: scrypt's cost in the tests that sign up and log in many times.
CHEAP_COST = login.ScryptCost(n=2**10, r=8, p=1)
_XSRF_INPUT = re.compile(r'<input type="hidden" name="_xsrf" value="([^"]+)"')


class Browser(SessionClient):
    """One browser: the test client, with the last page's ``_xsrf`` value and forms."""

    def __init__(self, case: AsyncHTTPTestCase) -> None:
        super().__init__(case)
        self.xsrf: str | None = None

    def request(
        self, method: str, path: str, form: dict[str, str] | None = None, *,
        xsrf: bool = True, cookies: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> HTTPResponse:
        """``method path`` with the browser's cookies (or exactly ``cookies``, then not kept)."""
        headers = dict(headers or {})
        body = None
        if method == "POST":
            fields = dict(form or {})
            if xsrf and self.xsrf is not None:
                fields["_xsrf"] = self.xsrf
            body = urllib.parse.urlencode(fields)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        # The form field, not the client's X-XSRFToken header: the page's token is under test.
        response = self.fetch(path, method=method, body=body, headers=headers, xsrf=False,
                              cookies=cookies)
        assert response.code < 500, f"{path} answered {response.code}: {response.body!r}"
        if cookies is None:
            match = _XSRF_INPUT.search(response.body.decode("utf-8", "replace"))
            if match:
                self.xsrf = html.unescape(match.group(1))
        return response

    def get(self, path: str, **kwargs: Any) -> HTTPResponse:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, form: dict[str, str] | None = None, **kwargs: Any) -> HTTPResponse:
        return self.request("POST", path, form, **kwargs)

    def follow(self, response: HTTPResponse) -> HTTPResponse:
        """Follow redirects (GET, same origin) until a page answers."""
        for _ in range(5):
            if response.code not in (301, 302, 303):
                return response
            response = self.get(response.headers["Location"])
        raise AssertionError("more than 5 redirects")


def text(response: HTTPResponse) -> str:
    return response.body.decode("utf-8")


class TestCounter(AsyncHTTPTestCase):
    def get_app(self) -> tornado.web.Application:
        return counter.make_app(cookie_secret=SECRET)

    def test_counts_the_views_of_each_session(self) -> None:
        first, second = Browser(self), Browser(self)
        self.assertEqual([text(first.get("/")) for _ in range(3)], ["1", "2", "3"])
        self.assertEqual(text(second.get("/")), "1")
        self.assertEqual(text(first.get("/")), "4")

    def test_without_cookie_a_visit_starts_again(self) -> None:
        browser = Browser(self)
        browser.get("/")
        browser.get("/")
        browser.clear_cookies()
        self.assertEqual(text(browser.get("/")), "1")


class TestCounterInTheCookie(AsyncHTTPTestCase):
    def get_app(self) -> tornado.web.Application:
        return counter.make_app(cookie_secret=SECRET, session=SessionOptions(store=None))

    def test_counts_with_the_data_in_the_signed_cookie(self) -> None:
        browser = Browser(self)
        self.assertEqual([text(browser.get("/")) for _ in range(3)], ["1", "2", "3"])


class LoginAppTest(AsyncHTTPTestCase):
    """The login app on a MemoryStore, with a test client per browser."""

    def setUp(self) -> None:
        # scrypt at OWASP's cost takes ~1 s here: these tests hash a lot, so
        # they lower it (TestPasswordHashing checks the default).
        cheap = mock.patch.object(login, "SCRYPT_COST", CHEAP_COST)
        cheap.start()
        self.addCleanup(cheap.stop)
        self.store = MemoryStore()
        self.users = login.MemoryUsers()
        super().setUp()
        self.browser = Browser(self)

    def get_app(self) -> tornado.web.Application:
        #: The application, for the browsers' session transactions.
        self.app = self.make_app()
        return self.app

    def make_app(self) -> tornado.web.Application:
        return login.make_app(
            cookie_secret=SECRET, session=SessionOptions(store=self.store), users=self.users
        )

    def fetch(self, path: str, raise_error: bool = False, **kwargs: Any) -> HTTPResponse:
        response = super().fetch(path, raise_error=raise_error, **kwargs)
        assert response.code < 500, f"{path} answered {response.code}: {response.body!r}"
        return response

    def signup(
        self, browser: Browser, username: str = "alice", password: str = "correct horse"
    ) -> HTTPResponse:
        browser.get("/signup")
        return browser.post("/signup", {"username": username, "password": password})

    def login(
        self, browser: Browser, username: str = "alice", password: str = "correct horse"
    ) -> HTTPResponse:
        browser.get("/login")
        return browser.post("/login", {"username": username, "password": password})

    def assert_redirect(self, response: HTTPResponse, location: str) -> None:
        self.assertEqual(response.code, 302, text(response))
        self.assertEqual(response.headers["Location"], location)

    def assert_logged_out(self, browser: Browser, cookies: dict[str, str] | None = None) -> None:
        self.assert_redirect(browser.get("/profile", cookies=cookies), "/login")

    def assert_session_is_gone(self, cookie: str) -> None:
        """A browser holding ``cookie`` loads no session: its record was destroyed."""
        old = Browser(self)
        old.set_cookie(SESSION, cookie)
        with old.session_transaction(self.app) as session:
            self.assertTrue(session.is_new)


class TestLoginFlow(LoginAppTest):
    def test_index_sends_visitors_to_login_and_users_to_profile(self) -> None:
        self.assert_redirect(self.browser.get("/"), "/login")
        self.signup(self.browser)
        self.assert_redirect(self.browser.get("/"), "/profile")

    def test_pages_answer_without_a_session_cookie(self) -> None:
        for path in ("/login", "/signup"):
            response = self.browser.get(path)
            self.assertEqual(response.code, 200)
            self.assertIn('name="_xsrf"', text(response))
            self.assertNotIn(SESSION, self.browser.cookies)

    def test_signup_logs_in_and_profile_shows_the_username(self) -> None:
        response = self.signup(self.browser)
        self.assert_redirect(response, "/profile")
        self.assertIn(SESSION, self.browser.cookies)
        profile = self.browser.follow(response)
        self.assertEqual(profile.code, 200)
        self.assertIn('<strong id="username">alice</strong>', text(profile))
        self.assertIn("Welcome, alice! Your account is ready.", text(profile))

    def test_flash_message_is_shown_once(self) -> None:
        profile = self.browser.follow(self.signup(self.browser))
        self.assertIn("Your account is ready.", text(profile))
        again = self.browser.get("/profile")
        self.assertEqual(again.code, 200)
        self.assertNotIn("Your account is ready.", text(again))

    def test_login_answers_302_to_profile_under_a_new_session_id(self) -> None:
        self.signup(self.browser)
        self.browser.post("/logout")
        # A session from before the login: one an attacker planted in the browser, say.
        with self.browser.session_transaction(self.app) as session:
            session["theme"] = "dark"
        before = self.browser.cookies[SESSION]
        with self.browser.session_transaction(self.app) as session:
            old_id = session.id
        response = self.login(self.browser)
        self.assert_redirect(response, "/profile")
        with self.browser.session_transaction(self.app) as session:
            self.assertNotEqual(session.id, old_id)
            self.assertEqual((session["username"], session["theme"]), ("alice", "dark"))
        self.assertIn("Welcome back, alice.", text(self.browser.follow(response)))
        # The id from before the login is worth nothing now: its record is gone.
        self.assert_session_is_gone(before)
        self.assert_logged_out(self.browser, cookies={SESSION: before})

    def test_a_session_set_up_by_the_test_is_logged_in(self) -> None:
        self.signup(Browser(self))  # the account; this browser never sees the login form
        with self.browser.session_transaction(self.app) as session:
            session.update(user_id="1", username="alice", login_at=0)
        profile = self.browser.get("/profile")
        self.assertEqual(profile.code, 200)
        self.assertIn('<strong id="username">alice</strong>', text(profile))

    def test_profile_sends_visitors_to_login_with_a_message(self) -> None:
        response = self.browser.get("/profile")
        self.assert_redirect(response, "/login")
        page = self.browser.follow(response)
        self.assertEqual(page.code, 200)
        self.assertIn("Log in to see your profile.", text(page))

    def test_logged_in_user_is_sent_from_login_and_signup_to_profile(self) -> None:
        self.signup(self.browser)
        self.assert_redirect(self.browser.get("/login"), "/profile")
        self.assert_redirect(self.browser.get("/signup"), "/profile")

    def test_logout_destroys_the_session_and_its_old_cookie(self) -> None:
        self.signup(self.browser)
        old_cookie = self.browser.cookies[SESSION]
        response = self.browser.post("/logout")
        self.assert_redirect(response, "/login")
        self.assertNotIn(SESSION, self.browser.cookies)  # expired, and no new one for the message
        self.assertIn("You are logged out.", text(self.browser.follow(response)))
        self.assert_logged_out(self.browser)
        self.assert_logged_out(self.browser, cookies={SESSION: old_cookie})
        self.assert_session_is_gone(old_cookie)
        self.assertEqual(self.io_loop.run_sync(self.store.count), 0)

    def test_logout_everywhere_ends_every_session_of_the_user_only(self) -> None:
        laptop, phone, other = self.browser, Browser(self), Browser(self)
        self.signup(laptop)
        self.login(phone)
        self.signup(other, "bob", "bobs password")
        self.assertEqual(phone.get("/profile").code, 200)
        response = laptop.post("/logout-everywhere")
        self.assert_redirect(response, "/login")
        self.assertIn("Logged out of 2 sessions.", text(laptop.follow(response)))
        self.assert_logged_out(laptop)
        self.assert_logged_out(phone)
        bob = other.get("/profile")
        self.assertEqual(bob.code, 200)
        self.assertIn('<strong id="username">bob</strong>', text(bob))

    def test_logout_everywhere_when_logged_out_just_redirects(self) -> None:
        self.browser.get("/login")
        self.assert_redirect(self.browser.post("/logout-everywhere"), "/login")

    def test_output_is_html_escaped(self) -> None:
        name = '<script>alert("x")</script>&'
        profile = self.browser.follow(self.signup(self.browser, name))
        self.assertEqual(profile.code, 200)
        self.assertNotIn("<script>alert", text(profile))
        self.assertIn("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;", text(profile))

    def test_password_is_stored_as_a_salted_scrypt_hash(self) -> None:
        self.signup(self.browser, "alice", "correct horse")
        self.signup(Browser(self), "carol", "correct horse")
        alice = self.io_loop.run_sync(lambda: self.users.find("alice"))
        carol = self.io_loop.run_sync(lambda: self.users.find("carol"))
        assert alice is not None and carol is not None
        self.assertTrue(alice.password_hash.startswith("scrypt$"))
        self.assertNotIn("correct horse", alice.password_hash)
        self.assertNotEqual(alice.password_hash, carol.password_hash)  # per-user salt
        self.assertTrue(login.check_password("correct horse", alice.password_hash))
        self.assertFalse(login.check_password("correct horsE", alice.password_hash))


class TestLoginFailures(LoginAppTest):
    def assert_form_with(self, response: HTTPResponse, code: int, message: str) -> None:
        self.assertEqual(response.code, code, text(response))
        self.assertIn('<form method="post"', text(response))
        self.assertIn(html.escape(message, quote=False), text(response))

    def test_wrong_password_answers_the_form_with_a_message(self) -> None:
        self.signup(self.browser)
        self.browser.post("/logout")
        response = self.login(self.browser, "alice", "wrong password")
        self.assert_form_with(response, 403, "Wrong username or password.")
        self.assertIn('value="alice"', text(response))
        self.assert_logged_out(self.browser)

    def test_unknown_user_gets_the_same_answer_as_a_wrong_password(self) -> None:
        response = self.login(self.browser, "nobody", "some password")
        self.assert_form_with(response, 403, "Wrong username or password.")
        self.assertNotIn(SESSION, self.browser.cookies)

    def test_missing_xsrf_token_is_refused(self) -> None:
        self.signup(self.browser)
        for path in ("/login", "/signup", "/logout", "/logout-everywhere"):
            response = self.browser.post(path, {"username": "alice", "password": "x" * 8},
                                         xsrf=False)
            self.assertEqual(response.code, 403, path)
        self.assertEqual(self.browser.get("/profile").code, 200)  # still logged in

    def test_xsrf_token_of_another_browser_is_refused(self) -> None:
        intruder = Browser(self)
        intruder.get("/login")
        self.browser.get("/login")
        self.browser.xsrf = intruder.xsrf
        response = self.browser.post("/login", {"username": "a", "password": "b"})
        self.assertEqual(response.code, 403)

    def test_signup_rejects_bad_input_with_a_message(self) -> None:
        cases = [
            ({"username": "", "password": "long enough"}, "Enter a username."),
            ({"username": "   ", "password": "long enough"}, "Enter a username."),
            ({"password": "long enough"}, "Enter a username."),
            ({"username": "u" * 65, "password": "long enough"}, "at most 64 characters"),
            ({"username": "a\nb", "password": "long enough"}, "control characters"),
            ({"username": "dave", "password": ""}, "Enter a password."),
            ({"username": "dave", "password": "short"}, "at least 8 characters"),
            ({"username": "dave", "password": "p" * 1025}, "at most 1024 characters"),
        ]
        self.browser.get("/signup")
        for form, message in cases:
            with self.subTest(form=form):
                self.assert_form_with(self.browser.post("/signup", form), 400, message)
        self.assertIsNone(self.io_loop.run_sync(lambda: self.users.find("dave")))
        self.assertNotIn(SESSION, self.browser.cookies)

    def test_longest_allowed_username_and_password_work(self) -> None:
        name, password = "u" * 64, "p" * 1024
        self.assert_redirect(self.signup(self.browser, name, password), "/profile")
        self.browser.post("/logout")
        self.assert_redirect(self.login(self.browser, name, password), "/profile")

    def test_duplicate_signup_is_refused_and_keeps_the_first_password(self) -> None:
        self.signup(self.browser, "alice", "first password")
        response = self.signup(Browser(self), "alice", "second password")
        self.assert_form_with(response, 409, "That username is taken.")
        self.assert_redirect(self.login(Browser(self), "alice", "first password"), "/profile")
        self.assertEqual(self.login(Browser(self), "alice", "second password").code, 403)

    def test_login_rejects_empty_and_overlong_fields(self) -> None:
        cases = [
            ({"username": "", "password": "x"}, "Enter a username."),
            ({"username": "alice", "password": ""}, "Enter a password."),
            ({}, "Enter a username."),
            ({"username": "alice", "password": "p" * 1025}, "at most 1024 characters"),
        ]
        self.browser.get("/login")
        for form, message in cases:
            with self.subTest(form=form):
                self.assert_form_with(self.browser.post("/login", form), 400, message)

    def test_invalid_utf8_in_a_field_is_a_400(self) -> None:
        self.browser.get("/login")
        response = self.fetch(
            "/login", method="POST",
            body=b"username=%FF%FE&password=x&_xsrf=" + (self.browser.xsrf or "").encode(),
            headers={"Cookie": self.browser.cookie_header("/login") or ""},
        )
        self.assertEqual(response.code, 400)

    def test_garbage_session_cookie_is_a_fresh_visitor(self) -> None:
        response = self.browser.get("/profile", cookies={SESSION: "garbage|x|y"})
        self.assert_redirect(response, "/login")


# -- the attack review of the login example (issue 14, items 9-11) -------------------------


class CountingScrypt:
    """``hashlib.scrypt``, counting its calls and the ``(n, r, p)`` of each; ``delay``: slower."""

    def __init__(self, delay: float = 0.0) -> None:
        self.real = hashlib.scrypt
        self.delay = delay
        self.calls: list[tuple[int, int, int]] = []
        self.lock = threading.Lock()

    def __call__(self, password: bytes, **kwargs: Any) -> bytes:
        with self.lock:
            self.calls.append((kwargs["n"], kwargs["r"], kwargs["p"]))
        time.sleep(self.delay)  # in the hashing thread, as a slower machine would be
        return self.real(password, **kwargs)

    def take(self) -> list[tuple[int, int, int]]:
        with self.lock:
            calls, self.calls = self.calls, []
        return calls


class TestLoginTiming(LoginAppTest):
    def test_every_login_attempt_hashes_once_at_the_accounts_cost(self) -> None:
        """Unknown, known and invalid usernames all cost one scrypt: timing tells nothing."""
        self.signup(self.browser, "alice", "correct horse")
        alice = self.io_loop.run_sync(lambda: self.users.find("alice"))
        assert alice is not None
        _, n, r, p, _, _ = alice.password_hash.split("$")
        cost = (int(n), int(r), int(p))
        self.browser.post("/logout")
        self.browser.get("/login")
        attempts = {
            "unknown username": {"username": "nobody", "password": "some password"},
            "wrong password": {"username": "alice", "password": "wrong password"},
            "right password": {"username": "alice", "password": "correct horse"},
            "empty username": {"username": "", "password": "some password"},
            "no fields": {},
            "overlong username": {"username": "u" * 65, "password": "some password"},
            "control character": {"username": "a\nb", "password": "some password"},
            "empty password": {"username": "alice", "password": ""},
            "overlong password": {"username": "alice", "password": "p" * 1025},
        }
        scrypt = CountingScrypt()
        with mock.patch("hashlib.scrypt", scrypt):
            for case, form in attempts.items():
                with self.subTest(case):
                    response = self.browser.post("/login", form)
                    self.assertIn(response.code, (302, 400, 403), text(response))
                    self.assertEqual(scrypt.take(), [cost])
                    self.browser.delete_cookie(SESSION)  # anonymous again
            with self.subTest("invalid UTF-8"):
                response = self.fetch(
                    "/login", method="POST",
                    body=b"username=%FF%FE&password=x&_xsrf=" + (self.browser.xsrf or "").encode(),
                    headers={"Cookie": f"_xsrf={self.browser.cookies['_xsrf']}"},
                )
                self.assertEqual(response.code, 400)
                self.assertEqual(scrypt.take(), [cost])


class TestAnonymousVisitors(LoginAppTest):
    def test_anonymous_profile_visits_store_nothing_and_set_no_session_cookie(self) -> None:
        for _ in range(1000):
            response = self.browser.get("/profile", cookies={})
            self.assert_redirect(response, "/login")
            self.assertNotIn(SESSION, set_cookies(response))
        self.assertEqual(self.io_loop.run_sync(self.store.count), 0)

    def test_a_forged_flash_cookie_shows_nothing(self) -> None:
        # A visitor's messages wait in a signed cookie: only texts the app flashed are shown.
        self.browser.get("/profile")  # a real one, to tamper with
        genuine = self.browser.cookies[FLASH]
        for value in ("<script>alert(1)</script>", "profile%3Cb%3E", "x" * 100,
                      genuine[:-1] + ("0" if genuine[-1] != "0" else "1")):
            page = self.browser.get("/login", cookies={FLASH: value})
            self.assertEqual(page.code, 200)
            self.assertNotIn("<script>alert", text(page))
            self.assertNotIn(value, text(page))
            self.assertNotIn('class="flash', text(page))

    def test_anonymous_logout_stores_nothing(self) -> None:
        self.browser.get("/login")
        xsrf = {"_xsrf": self.browser.cookies["_xsrf"]}
        for _ in range(50):
            response = self.browser.post("/logout", cookies=xsrf)
            self.assert_redirect(response, "/login")
            self.assertNotIn(SESSION, set_cookies(response))
        self.assertEqual(self.io_loop.run_sync(self.store.count), 0)

    def test_flash_messages_are_capped_keeping_the_newest(self) -> None:
        self.signup(self.browser)
        for _ in range(15):  # logging in again and again, no page in between
            self.assert_redirect(
                self.browser.post("/login", {"username": "alice", "password": "correct horse"}),
                "/profile",
            )
        with self.browser.session_transaction(self.app) as session:
            messages = session[FLASH_KEY]
        self.assertEqual(len(messages), 10)
        self.assertEqual(messages[-1], ["info", "Welcome back, alice."])
        profile = self.browser.get("/profile")
        self.assertEqual(text(profile).count('class="flash'), 10)


class TestPasswordHashing(unittest.TestCase):
    """At the module's default cost: OWASP's (slow on purpose, a second or so here)."""

    def test_new_hashes_use_owasps_scrypt_cost(self) -> None:
        record = login.hash_password("correct horse")
        self.assertTrue(record.startswith("scrypt$131072$8$1$"), record)
        self.assertTrue(login.check_password("correct horse", record))
        self.assertFalse(login.check_password("correct horsE", record))

    def test_a_record_with_the_old_cost_still_verifies(self) -> None:
        old = ("scrypt$16384$8$1$b2xkLXJlY29yZC1zYWx0IQ$"
               "EYA1OL2hwRvsiGT-xh3PyaXMTS0GcNqggICUmMmgxuE")
        self.assertTrue(login.check_password("correct horse", old))
        self.assertFalse(login.check_password("correct horsE", old))

    def test_a_record_beyond_the_memory_bound_is_refused_not_computed(self) -> None:
        huge = "scrypt$1073741824$8$1$b2xkLXJlY29yZC1zYWx0IQ$" + "A" * 43
        self.assertFalse(login.check_password("correct horse", huge))


class TestLoginThrottle(LoginAppTest):
    def guess(self, username: str, **kwargs: Any) -> HTTPResponse:
        return self.browser.post("/login", {"username": username, "password": "wrong guess"},
                                 **kwargs)

    def assert_throttled(self, response: HTTPResponse) -> int:
        self.assertEqual(response.code, 429, text(response))
        self.assertIn('<form method="post"', text(response))
        self.assertIn("Too many failed logins.", text(response))
        retry_after = int(response.headers["Retry-After"])
        self.assertTrue(1 <= retry_after <= 900, retry_after)
        return retry_after

    def test_failed_logins_per_username_are_answered_429_with_retry_after(self) -> None:
        self.signup(Browser(self), "alice", "correct horse")
        self.signup(Browser(self), "bob", "bobs password")
        self.browser.get("/login")
        for _ in range(5):
            self.assertEqual(self.guess("alice").code, 403)
        self.assertGreater(self.assert_throttled(self.guess("alice")), 890)
        # Even the right password: the guesses stop here.
        right = self.browser.post("/login", {"username": "alice", "password": "correct horse"})
        self.assert_throttled(right)
        self.assertNotIn(SESSION, self.browser.cookies)
        # Another name from the same address is not locked.
        self.assert_redirect(
            self.browser.post("/login", {"username": "bob", "password": "bobs password"}),
            "/profile",
        )

    def test_unknown_usernames_are_throttled_like_known_ones(self) -> None:
        self.browser.get("/login")
        for _ in range(5):
            self.assertEqual(self.guess("nobody").code, 403)
        self.assert_throttled(self.guess("nobody"))

    def test_successful_logins_do_not_count(self) -> None:
        self.signup(Browser(self), "alice", "correct horse")
        self.browser.get("/login")
        for number in range(19):  # 19 failures, 4 at most per name
            self.assertEqual(self.guess(f"user{number // 4}").code, 403)
        for _ in range(3):
            self.browser.delete_cookie(SESSION)
            self.assert_redirect(
                self.browser.post("/login", {"username": "alice", "password": "correct horse"}),
                "/profile",
            )
        self.browser.delete_cookie(SESSION)
        self.assertEqual(self.guess("carol").code, 403)  # the 20th failure
        self.assert_throttled(self.guess("dave"))


    @gen_test(timeout=60)
    async def test_concurrent_guesses_cannot_pass_the_bound(self) -> None:
        """30 guesses at once from one address: 20 are checked, 10 refused."""
        client = AsyncHTTPClient(force_instance=True, max_clients=30)
        scrypt = CountingScrypt(delay=0.2)  # slow hashes: every request is in before one ends
        try:
            page = await client.fetch(self.get_url("/login"))
            xsrf = set_cookies(page)["_xsrf"]
            with mock.patch("hashlib.scrypt", scrypt):
                responses = await asyncio.gather(*(
                    client.fetch(
                        self.get_url("/login"), method="POST", raise_error=False,
                        headers={"Cookie": f"_xsrf={xsrf.coded_value}"},
                        body=urllib.parse.urlencode({"username": f"user{number}",
                                                     "password": "wrong guess",
                                                     "_xsrf": xsrf.value}),
                    )
                    for number in range(30)
                ))
        finally:
            client.close()
        self.assertEqual(sorted(r.code for r in responses), [403] * 20 + [429] * 10)
        self.assertEqual(len(scrypt.take()), 20)


class UnreachableUsers(login.MemoryUsers):
    """Accounts whose store is down while ``down`` is true."""

    down = False

    async def find(self, username: str) -> login.User | None:
        if self.down:
            raise StoreUnavailableError("the users collection is unreachable")
        return await super().find(username)


class TestLoginThrottleOutage(LoginAppTest):
    def make_app(self) -> tornado.web.Application:
        self.users = UnreachableUsers()
        return super().make_app()

    def test_an_outage_of_the_users_store_is_not_a_failed_login(self) -> None:
        assert isinstance(self.users, UnreachableUsers)
        self.signup(self.browser, "alice", "correct horse")
        self.browser.delete_cookie(SESSION)
        self.users.down = True
        form = {"username": "alice", "password": "correct horse"}
        with ExpectLog("tornado_session", ".*answered 503", required=False):
            for _ in range(25):
                response = AsyncHTTPTestCase.fetch(
                    self, "/login", method="POST",
                    body=urllib.parse.urlencode({**form, "_xsrf": self.browser.xsrf or ""}),
                    headers={"Cookie": f"_xsrf={self.browser.cookies['_xsrf']}"},
                )
                self.assertEqual(response.code, 503)
        self.users.down = False
        self.assert_redirect(self.browser.post("/login", form), "/profile")


class TestLoginThrottleBehindAProxy(LoginAppTest):
    def get_httpserver_options(self) -> dict[str, Any]:
        return {"xheaders": True}

    def test_failed_logins_per_address_are_answered_429(self) -> None:
        first, second = {"X-Real-Ip": "203.0.113.7"}, {"X-Real-Ip": "198.51.100.9"}
        self.browser.get("/login", headers=first)
        for number in range(20):
            response = self.browser.post(
                "/login", {"username": f"user{number // 4}", "password": "wrong guess"},
                headers=first,
            )
            self.assertEqual(response.code, 403)
        throttled = self.browser.post("/login", {"username": "newname", "password": "guess"},
                                      headers=first)
        self.assertEqual(throttled.code, 429)
        self.assertIn("Retry-After", throttled.headers)
        elsewhere = self.browser.post("/login", {"username": "newname", "password": "guess"},
                                      headers=second)
        self.assertEqual(elsewhere.code, 403)


class TestLoginThrottleWindow(LoginAppTest):
    def make_app(self) -> tornado.web.Application:
        self.now = 1000.0
        return login.make_app(
            cookie_secret=SECRET, session=SessionOptions(store=self.store), users=self.users,
            login_throttle=login.LoginThrottle(clock=lambda: self.now),
        )

    def test_retry_after_counts_down_and_the_window_slides(self) -> None:
        self.browser.get("/login")
        form = {"username": "alice", "password": "wrong guess"}
        for _ in range(5):
            self.assertEqual(self.browser.post("/login", form).code, 403)
            self.now += 10
        response = self.browser.post("/login", form)
        self.assertEqual((response.code, response.headers["Retry-After"]), (429, "850"))
        self.now += 849.5
        self.assertEqual(self.browser.post("/login", form).headers["Retry-After"], "1")
        self.now += 0.5  # the first failure leaves the window: one more try
        self.assertEqual(self.browser.post("/login", form).code, 403)
        self.assertEqual(self.browser.post("/login", form).headers["Retry-After"], "10")


class TestLoginThrottleMemory(unittest.TestCase):
    def test_memory_is_bounded_and_forgets_the_oldest(self) -> None:
        now = 0.0
        throttle = login.LoginThrottle(max_keys=100, clock=lambda: now)
        for number in range(1000):
            throttle.attempt(f"name{number}", f"192.0.2.{number % 250}")
        self.assertLessEqual(throttle.size(), 200)
        for _ in range(5):
            throttle.attempt("last", "192.0.2.1")
        self.assertGreater(throttle.retry_after("last", "198.51.100.1"), 0)
        now = 900.0
        self.assertEqual(throttle.retry_after("last", "192.0.2.1"), 0)

    def test_ipv6_clients_are_counted_by_their_64_bit_prefix(self) -> None:
        throttle = login.LoginThrottle()
        for number in range(20):
            throttle.attempt(None, f"2001:db8:1:2::{number:x}")
        self.assertGreater(throttle.retry_after(None, "2001:db8:1:2:ffff::1"), 0)
        self.assertEqual(throttle.retry_after(None, "2001:db8:1:3::1"), 0)


class TestPrivatePages(LoginAppTest):
    def test_pages_for_a_logged_in_user_are_not_kept_by_caches(self) -> None:
        profile = self.browser.follow(self.signup(self.browser))
        self.assertEqual(profile.code, 200)
        self.assertEqual(profile.headers.get("Cache-Control"), "no-store")
        again = self.login(self.browser, "alice", "wrong password")  # logged in: a page
        self.assertEqual(again.headers.get("Cache-Control"), "no-store")
        self.assertEqual(self.browser.get("/login").headers.get("Cache-Control"), "no-store")


class TestXsrfCookieBehindAProxy(LoginAppTest):
    def get_httpserver_options(self) -> dict[str, Any]:
        return {"xheaders": True}

    def test_xsrf_cookie_is_secure_when_the_proxy_says_https(self) -> None:
        response = self.browser.get("/login", headers={"X-Forwarded-Proto": "https"})
        self.assertTrue(set_cookies(response)["_xsrf"]["secure"])

    def test_xsrf_cookie_is_not_secure_over_plain_http(self) -> None:
        response = self.browser.get("/login")
        self.assertFalse(set_cookies(response)["_xsrf"]["secure"])


class TestLoginAppConfiguration(AsyncHTTPTestCase):
    def get_app(self) -> tornado.web.Application:
        return login.make_app()

    def test_make_app_defaults_run_in_memory(self) -> None:
        browser = Browser(self)
        browser.get("/signup")
        response = browser.post("/signup", {"username": "zoë", "password": "long enough"})
        self.assertEqual(response.code, 302)
        self.assertIn("zoë", text(browser.follow(response)))

    def test_make_app_refuses_cookie_sessions(self) -> None:
        with self.assertRaisesRegex(ValueError, "needs a session store"):
            login.make_app(cookie_secret=SECRET, session=SessionOptions(store=None))

    @gen_test
    async def test_memory_backends_are_announced_in_one_log_line(self) -> None:
        with ExpectLog("examples.login", ".*users and sessions are kept in memory",
                       level=logging.INFO):
            store, users = await login.open_backends("")
        self.assertIsInstance(store, MemoryStore)
        self.assertIsInstance(users, login.MemoryUsers)

    def test_cookie_secret_comes_from_the_flag_then_the_environment(self) -> None:
        self.assertEqual(login.cookie_secret("flag", {"COOKIE_SECRET": "env"}), "flag")
        self.assertEqual(login.cookie_secret("", {"COOKIE_SECRET": "env"}), "env")
        with ExpectLog("examples.login", ".*using a random one"):
            first = login.cookie_secret("", {})
        with ExpectLog("examples.login", ".*using a random one"):
            second = login.cookie_secret("", {})
        self.assertGreaterEqual(len(first), 32)
        self.assertNotEqual(first, second)


# -- the examples as processes, the way README runs them ----------------------------------


class RunningExample:
    """``python -m examples.NAME --port=0`` in a subprocess; `url` once it listens."""

    def __init__(self, name: str, *args: str, env: dict[str, str] | None = None) -> None:
        environ = {k: v for k, v in os.environ.items()
                   if k not in ("MONGODB_URI", "COOKIE_SECRET")}
        environ.update(env or {})
        self.process = subprocess.Popen(
            [sys.executable, "-m", f"examples.{name}", "--port=0", *args],
            cwd=ROOT, env=environ, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True,
        )
        self.log: list[str] = []
        self._lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()
        self.url = self._wait_for_url(name)

    def _read_log(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._lines.put(line)
        self._lines.put("")  # the process closed its stderr

    def _wait_for_url(self, name: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                break
            if not line:
                break
            self.log.append(line)
            match = re.search(rf"{name} example on (http://\S+/)", line)
            if match:
                return match.group(1)
        self.stop()
        raise AssertionError(f"examples.{name} did not start:\n{''.join(self.log)}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(timeout=10)
        while not self._lines.empty():
            self.log.append(self._lines.get())
        if self.process.stderr is not None:
            self.process.stderr.close()

    def __enter__(self) -> RunningExample:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def http_get(url: str) -> tuple[int, str]:
    import urllib.request

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.headers.get("Location", "")


def test_login_example_runs_as_a_module_in_memory() -> None:
    with RunningExample("login") as app:
        assert app.url.startswith("http://127.0.0.1:")
        status, body = http_get(app.url + "login")
        assert status == 200 and "<h1>Log in</h1>" in body
        assert http_get(app.url) == (302, "/login")
    log = "".join(app.log)
    assert "users and sessions are kept in memory" in log
    assert "using a random one" in log


def test_login_example_takes_the_secret_from_the_environment() -> None:
    with RunningExample("login", env={"COOKIE_SECRET": "from-the-environment" * 2}) as app:
        assert http_get(app.url + "signup")[0] == 200
    assert "using a random one" not in "".join(app.log)


def test_counter_example_runs_as_a_module() -> None:
    with RunningExample("counter", "--store=cookie") as app:
        assert http_get(app.url) == (200, "1")


class TestDevicesPage(LoginAppTest):
    """The login example's "Your devices" page, on a store with a user index."""

    def setUp(self) -> None:
        super().setUp()
        self.phone = Browser(self)

    def get_app(self) -> tornado.web.Application:
        self.store = MemoryStore(user_key="user_id")
        return login.make_app(
            cookie_secret=SECRET, session=SessionOptions(store=self.store), users=self.users
        )

    def handles(self, browser: Browser) -> list[str]:
        page = text(browser.get("/devices"))
        return re.findall(r'name="handle" value="([0-9a-f]+)"', page)

    def test_visitors_are_sent_to_login(self) -> None:
        self.assert_redirect(self.browser.get("/devices"), "/login")
        self.assertNotIn(SESSION, self.browser.cookies)
        self.assertIn("Log in to see your devices.", text(self.browser.get("/login")))

    def test_each_login_is_listed_and_the_current_one_marked(self) -> None:
        self.signup(self.browser)
        self.login(self.phone)
        page = text(self.browser.get("/devices"))
        self.assertEqual(page.count('class="session'), 2)
        self.assertEqual(page.count("(this device)"), 1)
        self.assertIn("127.0.0.0/24", page)

    def test_revoking_another_device_logs_it_out_and_needs_the_xsrf_token(self) -> None:
        self.signup(self.browser)
        self.login(self.phone)
        page = text(self.browser.get("/devices"))
        other = re.search(r'<li class="session">.*?name="handle" value="([0-9a-f]+)"', page, re.S)
        assert other is not None, page
        refused = self.browser.post("/devices/revoke", {"handle": other.group(1)}, xsrf=False)
        self.assertEqual(refused.code, 403)
        self.assertEqual(self.phone.get("/profile").code, 200)
        done = self.browser.post("/devices/revoke", {"handle": other.group(1)})
        self.assert_redirect(done, "/devices")
        self.assertIn("That device is logged out.", text(self.browser.get("/devices")))
        self.assert_logged_out(self.phone)
        self.assertEqual(self.browser.get("/profile").code, 200)

    def test_a_handle_of_another_users_session_ends_nothing(self) -> None:
        self.signup(self.browser)
        mallory = Browser(self)
        self.signup(mallory, "mallory")
        (alices,) = self.handles(self.browser)
        self.assert_redirect(mallory.post("/devices/revoke", {"handle": alices}), "/devices")
        self.assertIn("That session had already ended.", text(mallory.get("/devices")))
        self.assertEqual(self.browser.get("/profile").code, 200)

    def test_revoking_this_device_logs_this_browser_out(self) -> None:
        self.signup(self.browser)
        (mine,) = self.handles(self.browser)
        self.assert_redirect(self.browser.post("/devices/revoke", {"handle": mine}), "/login")
        self.assert_logged_out(self.browser)

    def test_log_out_everywhere_else(self) -> None:
        self.signup(self.browser)
        self.login(self.phone)
        tablet = Browser(self)
        self.login(tablet)
        self.assert_redirect(self.phone.post("/devices/revoke-others"), "/devices")
        self.assertIn("Logged out of 2 other sessions.", text(self.phone.get("/devices")))
        self.assert_logged_out(self.browser)
        self.assert_logged_out(tablet)
        self.assertEqual(self.phone.get("/profile").code, 200)


class TestDevicesPageWithoutAUserIndex(LoginAppTest):
    def test_the_page_says_the_store_keeps_no_user_index(self) -> None:
        self.signup(self.browser)
        page = self.browser.get("/devices")
        self.assertEqual(page.code, 200)
        self.assertIn("keeps no user index", text(page))
        self.assert_redirect(self.browser.post("/logout-everywhere"), "/login")


class TestDescribeAgent(unittest.TestCase):
    def test_browsers_and_systems_are_named_in_a_few_words(self) -> None:
        cases = {
            "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0":
                "Firefox on Linux",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1": "Safari on iPhone",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/131.0 Safari/537.36 Edg/131.0": "Edge on Windows",
            "curl/8.5.0": "curl/8.5.0",
            "": "unknown device",
        }
        for agent, described in cases.items():
            self.assertEqual(login.describe_agent(agent), described, agent)
