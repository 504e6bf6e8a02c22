"""Flash messages: shown once, after a redirect, capped, and never a session of their own."""

from __future__ import annotations

import unittest
import urllib.parse
from typing import Any

import orjson
import tornado.web
from tornado.testing import AsyncHTTPTestCase, ExpectLog

from tornado_session import SessionMixin, SessionOptions
from tornado_session.errors import SessionOptionError
from tornado_session.flash import FLASH_COOKIE_MAX_AGE, FLASH_KEY
from tornado_session.stores import MemoryStore, Store
from tornado_session.testing import FakeClock, SessionClient

SECRET = "flash-test-secret-" + "f" * 32
SESSION = "tornado.sess"
FLASH = "tornado.sess.flash"


class Flash(SessionMixin, tornado.web.RequestHandler):
    """``POST /flash?m=text&c=category`` flashes, then redirects to the page that shows them."""

    def post(self) -> None:
        for _ in range(int(self.get_argument("times", "1"))):
            self.flash(self.get_argument("m"), self.get_argument("c", "info"))
        self.redirect("/show")


class Show(SessionMixin, tornado.web.RequestHandler):
    def get(self) -> None:
        only = self.get_arguments("only")
        self.write(orjson.dumps({
            "messages": self.get_flashed_messages(with_categories=True, category_filter=only),
            "again": self.get_flashed_messages(),
        }))


class Login(SessionMixin, tornado.web.RequestHandler):
    async def post(self) -> None:
        self.session["user"] = "ada"
        await self.regenerate_session()
        self.flash("Welcome back.")
        self.redirect("/show")


class Logout(SessionMixin, tornado.web.RequestHandler):
    async def post(self) -> None:
        await self.destroy_session()
        self.flash("You are logged out.")
        self.redirect("/show")


class FlashThenFail(SessionMixin, tornado.web.RequestHandler):
    def post(self) -> None:
        self.flash("lost")
        raise RuntimeError("the handler failed")


class FlashWithoutSaving(SessionMixin, tornado.web.RequestHandler):
    def post(self) -> None:
        self.session_save = False
        self.flash("not kept")


class FlashCase(AsyncHTTPTestCase):
    __test__ = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.__test__ = True

    def make_store(self) -> Store | None:
        return MemoryStore(clock=self.clock)

    def setUp(self) -> None:
        self.clock = FakeClock()
        self.store = self.make_store()
        super().setUp()
        self.client = SessionClient(self)

    def get_app(self) -> tornado.web.Application:
        self.app = tornado.web.Application(
            [(r"/flash", Flash), (r"/show", Show), (r"/login", Login), (r"/logout", Logout),
             (r"/fail", FlashThenFail), (r"/unsaved", FlashWithoutSaving)],
            cookie_secret=SECRET, session=SessionOptions(store=self.store, clock=self.clock),
        )
        return self.app

    def flash(self, message: str, category: str = "info", times: int = 1) -> Any:
        query = urllib.parse.urlencode({"m": message, "c": category, "times": times})
        response = self.client.fetch(f"/flash?{query}", method="POST", body="")
        self.assertEqual(response.code, 302)
        return response

    def show(self, query: str = "") -> list[list[str]]:
        response = self.client.fetch("/show" + query)
        self.assertEqual(response.code, 200)
        messages: list[list[str]] = orjson.loads(response.body)["messages"]
        return messages

    def log_in(self) -> None:
        self.client.fetch("/login", method="POST", body="")
        self.assertIn(SESSION, self.client.cookies)

    def test_a_message_survives_the_redirect_and_is_shown_once(self) -> None:
        self.flash("Saved")
        self.assertEqual(self.show(), [["info", "Saved"]])
        self.assertEqual(self.show(), [])

    def test_a_visitor_without_a_session_gets_a_flash_cookie_and_no_session(self) -> None:
        response = self.flash("Hello")
        self.assertNotIn(SESSION, self.client.cookies)
        self.assertIn(FLASH, self.client.cookies)
        self.assertNotIn("tornado.sess=", response.headers.get("Set-Cookie", ""))
        self.assertEqual(self.show(), [["info", "Hello"]])
        self.assertNotIn(FLASH, self.client.cookies)  # expired once shown

    def test_a_logged_in_visitor_keeps_messages_in_the_session(self) -> None:
        self.log_in()
        self.show()
        self.flash("Saved", "success")
        self.assertNotIn(FLASH, self.client.cookies)
        with self.client.session_transaction(self.app) as session:
            self.assertEqual(session[FLASH_KEY], [["success", "Saved"]])
        self.assertEqual(self.show(), [["success", "Saved"]])
        with self.client.session_transaction(self.app) as session:
            self.assertNotIn(FLASH_KEY, session)
            self.assertEqual(session["user"], "ada")

    def test_the_count_is_capped_keeping_the_newest(self) -> None:
        for number in range(15):
            self.flash(f"m{number}")
        self.assertEqual(self.show(), [["info", f"m{number}"] for number in range(5, 15)])
        self.log_in()
        self.show()
        self.flash("x", times=25)
        with self.client.session_transaction(self.app) as session:
            self.assertEqual(len(session[FLASH_KEY]), 10)

    def test_messages_of_a_visitor_move_into_the_session_once_there_is_one(self) -> None:
        self.flash("before login")
        self.log_in()  # flashes "Welcome back." into the new session
        self.assertNotIn(FLASH, self.client.cookies)
        self.assertEqual(self.show(), [["info", "before login"], ["info", "Welcome back."]])

    def test_a_logout_message_needs_no_session(self) -> None:
        self.log_in()
        self.show()
        self.client.fetch("/logout", method="POST", body="")
        self.assertNotIn(SESSION, self.client.cookies)
        self.assertEqual(self.show(), [["info", "You are logged out."]])

    def test_categories_filter_and_later_calls_see_the_same(self) -> None:
        self.flash("a", "error")
        self.flash("b", "info")
        self.flash("c", "error")
        response = self.client.fetch("/show?only=error")
        body = orjson.loads(response.body)
        self.assertEqual(body["messages"], [["error", "a"], ["error", "c"]])
        self.assertEqual(body["again"], ["a", "b", "c"])  # every message was taken at once
        self.assertEqual(self.show(), [])

    def test_a_page_that_shows_messages_varies_on_cookie(self) -> None:
        self.flash("x")
        self.assertIn("Cookie", self.client.fetch("/show").headers["Vary"])

    def test_a_failed_response_keeps_no_flash(self) -> None:
        with ExpectLog("tornado.application", ".*Uncaught exception"):
            self.assertEqual(self.client.fetch("/fail", method="POST", body="").code, 500)
        self.assertEqual(self.show(), [])

    def test_session_save_false_keeps_no_flash(self) -> None:
        self.assertEqual(self.client.fetch("/unsaved", method="POST", body="").code, 200)
        self.assertEqual(self.show(), [])

    def test_a_flash_cookie_is_forgotten_after_its_lifetime(self) -> None:
        self.flash("stale")
        self.clock.advance(FLASH_COOKIE_MAX_AGE + 1)
        self.assertEqual(self.show(), [])

    def test_forged_and_foreign_flash_cookies_show_nothing(self) -> None:
        self.flash("genuine")
        genuine = self.client.cookies[FLASH]
        self.client.fetch("/show")
        self.log_in()
        self.show()  # "Welcome back."
        session_cookie = self.client.cookies[SESSION]
        for value in ("garbage", genuine.replace("2|1:0", "2|1:1"), session_cookie,
                      '"<script>alert(1)</script>"'):
            with self.subTest(value=value):
                self.client.set_cookie(FLASH, value)
                self.assertEqual(self.show(), [])
                self.assertNotIn(FLASH, self.client.cookies)  # expired

    def test_the_flash_cookie_cannot_be_used_as_a_session_cookie(self) -> None:
        self.flash("x")
        value = self.client.cookies[FLASH]
        self.client.clear_cookies()
        self.client.set_cookie(SESSION, value)
        with self.client.session_transaction(self.app) as session:
            self.assertTrue(session.is_new)

    def test_a_long_message_drops_the_oldest_to_fit_the_cookie(self) -> None:
        self.flash("x" * 1000)
        self.flash("y" * 1000)
        self.flash("z" * 1000)
        self.assertEqual([text[:1] for _, text in self.show()], ["y", "z"])

    def test_a_message_too_long_for_any_cookie_fails_at_the_flash(self) -> None:
        with ExpectLog("tornado.application", ".*Uncaught exception"):
            response = self.client.fetch("/flash?m=" + "x" * 5000, method="POST", body="")
        self.assertEqual(response.code, 500)


class TestFlashOnMemoryStore(FlashCase):
    def test_a_thousand_anonymous_flash_and_redirect_round_trips_store_nothing(self) -> None:
        for number in range(1000):
            response = self.client.fetch(f"/flash?m=m{number}", method="POST", body="",
                                         follow_redirects=True)
            self.assertEqual(orjson.loads(response.body)["messages"],
                             [["info", f"m{number}"]])
            self.assertNotIn(SESSION, self.client.cookies)
        assert isinstance(self.store, MemoryStore)
        self.assertEqual(self.io_loop.run_sync(self.store.count), 0)


class TestFlashOnSignedCookies(FlashCase):
    def make_store(self) -> Store | None:
        return None


class LazyShow(Show):
    session_lazy = True


class TestFlashInLazyHandlers(FlashCase):
    def get_app(self) -> tornado.web.Application:
        app = super().get_app()
        app.add_handlers(r".*", [(r"/lazy-show", LazyShow)])
        return app

    def test_without_a_session_cookie_nothing_needs_loading(self) -> None:
        self.flash("x")
        response = self.client.fetch("/lazy-show")
        self.assertEqual(orjson.loads(response.body)["messages"], [["info", "x"]])

    def test_with_one_the_session_must_be_loaded_first(self) -> None:
        self.log_in()
        with ExpectLog("tornado.application", ".*Uncaught exception"):
            self.assertEqual(self.client.fetch("/lazy-show").code, 500)


# -- bad input ---------------------------------------------------------------------------


class FlashesWhatItIsGiven(SessionMixin, tornado.web.RequestHandler):
    def post(self) -> None:
        message: Any = orjson.loads(self.get_argument("m"))
        category: Any = orjson.loads(self.get_argument("c", '"info"'))
        try:
            self.flash(message, category)
        except TypeError as exc:
            self.write(f"{type(exc).__name__}: {exc}")


class FiltersByAString(SessionMixin, tornado.web.RequestHandler):
    def get(self) -> None:
        try:
            self.get_flashed_messages(category_filter="error")
        except TypeError as exc:
            self.write(f"{type(exc).__name__}: {exc}")


class TestFlashBadInput(AsyncHTTPTestCase):
    def get_app(self) -> tornado.web.Application:
        return tornado.web.Application(
            [(r"/flash", FlashesWhatItIsGiven), (r"/filter", FiltersByAString)],
            cookie_secret=SECRET, session=SessionOptions(store=MemoryStore()),
        )

    def test_a_message_or_category_that_is_not_a_str_is_a_type_error(self) -> None:
        for message, category in (("1", "2"), ("null", '"info"'), ('"ok"', "3"),
                                  ('["a"]', '"info"')):
            with self.subTest(message=message, category=category):
                query = urllib.parse.urlencode({"m": message, "c": category})
                response = self.fetch(f"/flash?{query}", method="POST", body="")
                self.assertTrue(response.body.startswith(
                    b"TypeError: flash() takes a str message and category"), response.body)
                self.assertNotIn("Set-Cookie", response.headers)  # nothing kept

    def test_a_str_category_filter_says_to_pass_a_list(self) -> None:
        self.assertEqual(self.fetch("/filter").body,
                         b"TypeError: get_flashed_messages() takes category_filter as a list "
                         b"of categories, such as ['error'], not a str")


class TestFlashMaxIsCheckedWhenTheHandlerIsDefined(unittest.TestCase):
    def test_flash_max_must_be_a_positive_int(self) -> None:
        for value in (0, -1, 2.5, "10", None, True):
            with self.subTest(value=value), self.assertRaisesRegex(
                SessionOptionError, rf"Page.flash_max must be an int of 1 or more, not {value!r}"
            ):
                type("Page", (SessionMixin, tornado.web.RequestHandler), {"flash_max": value})

    def test_a_positive_int_is_taken(self) -> None:
        page = type("Page", (SessionMixin, tornado.web.RequestHandler), {"flash_max": 1})
        self.assertEqual(page.flash_max, 1)
