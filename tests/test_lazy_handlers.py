"""Lazy loading per handler (``session_lazy``), and a session used before it is loaded."""

from __future__ import annotations

import re
import time
import unittest
from typing import Any

import tornado.web
from tornado.testing import ExpectLog, gen_test

from tests.base import COOKIE, CountingStore, SessionTestCase
from tornado_session import SessionMixin, SessionNotLoadedError
from tornado_session.errors import SessionOptionError
from tornado_session.stores import MemoryStore


class Counter(SessionMixin, tornado.web.RequestHandler):
    def get(self) -> None:
        self.session["views"] = self.session.get("views", 0) + 1
        self.write(str(self.session["views"]))


class LazyPage(SessionMixin, tornado.web.RequestHandler):
    """Loads the session only when asked to (``?load=1``), whatever the option says."""

    session_lazy = True

    async def get(self) -> None:
        if self.get_argument("touch_first", None):
            try:
                self.session.get("views")
            except SessionNotLoadedError as exc:
                self.write("error: " + str(exc))
                return
        if self.get_argument("load", None):
            await self.load_session()
            self.write(str(self.session.get("views", 0)))
        else:
            self.write("not loaded")


class EagerPage(SessionMixin, tornado.web.RequestHandler):
    """Loaded in prepare() even when the option says lazy=True."""

    session_lazy = False

    def get(self) -> None:
        self.write(str(self.session.get("views", 0)))


class LazyCounter(SessionMixin, tornado.web.RequestHandler):
    async def get(self) -> None:
        await self.load_session()
        self.session["views"] = self.session.get("views", 0) + 1
        self.write(str(self.session["views"]))


class LazyHandlersCase(SessionTestCase):
    def get_handlers(self) -> list[Any]:
        return [(r"/count", Counter), (r"/lazy-count", LazyCounter), (r"/lazy", LazyPage),
                (r"/eager", EagerPage)]

    @property
    def counting(self) -> CountingStore:
        assert isinstance(self.store, CountingStore)
        return self.store


class TestLazyHandlerInAnEagerApplication(LazyHandlersCase):
    def test_a_lazy_handler_that_never_loads_makes_no_store_call(self) -> None:
        self.fetch("/count")
        self.counting.reset_calls()
        response = self.fetch("/lazy")
        self.assertEqual(response.body, b"not loaded")
        self.assertEqual(self.counting.calls["get"], 0)
        self.assertNotIn("Vary", response.headers)

    def test_a_lazy_handler_that_loads_reads_the_session_and_varies_on_cookie(self) -> None:
        self.fetch("/count")
        self.fetch("/count")
        self.counting.reset_calls()
        response = self.fetch("/lazy?load=1")
        self.assertEqual(response.body, b"2")
        self.assertEqual(self.counting.calls["get"], 1)
        self.assertIn("Cookie", response.headers["Vary"])

    def test_the_other_handlers_still_load_in_prepare(self) -> None:
        self.fetch("/count")
        self.counting.reset_calls()
        self.assertEqual(self.fetch("/count").body, b"2")
        self.assertEqual(self.counting.calls["get"], 1)

    def test_touching_the_session_before_loading_names_the_handler_and_the_call(self) -> None:
        self.fetch("/count")
        body = self.fetch("/lazy?touch_first=1").body.decode()
        self.assertIn("LazyPage.session_lazy is True", body)
        self.assertIn("await self.load_session()", body)


class TestEagerHandlerInALazyApplication(LazyHandlersCase):
    def session_options(self) -> dict[str, Any]:
        return {"lazy": True}

    def test_an_eager_handler_loads_in_prepare(self) -> None:
        self.assertEqual(self.fetch("/lazy-count").body, b"1")
        self.counting.reset_calls()
        response = self.fetch("/eager")
        self.assertEqual(response.body, b"1")
        self.assertEqual(self.counting.calls["get"], 1)
        self.assertIn("Cookie", response.headers["Vary"])

    def test_the_lazy_handlers_still_wait_for_load_session(self) -> None:
        self.fetch("/lazy-count")
        self.counting.reset_calls()
        self.assertEqual(self.fetch("/lazy").body, b"not loaded")
        self.assertEqual(self.counting.calls["get"], 0)
        with ExpectLog("tornado.application", ".*Uncaught exception GET /count"):
            self.assertEqual(self.fetch("/count").code, 500)


class LazyOutageCase(LazyHandlersCase):
    def session_options(self) -> dict[str, Any]:
        return {"reconnect_timeout": 0.3}

    async def outage(self) -> None:
        await self.fetch_async("/count")
        self.assertIn(COOKIE, self.jar)
        assert isinstance(self.store, MemoryStore)
        await self.store.close()


class TestLazyHandlerOutage(LazyOutageCase):
    @gen_test
    async def test_a_lazy_handler_that_never_loads_is_not_held(self) -> None:
        await self.outage()
        started = time.monotonic()
        response = await self.fetch_async("/lazy")
        self.assertLess(time.monotonic() - started, 0.25)
        self.assertEqual((response.code, response.body), (200, b"not loaded"))

    @gen_test
    async def test_a_lazy_handler_that_loads_gets_503_with_retry_after(self) -> None:
        await self.outage()
        with ExpectLog("tornado_session.mixin", ".*LazyPage answered 503"):
            response = await self.fetch_async("/lazy?load=1")
        self.assertEqual(response.code, 503)
        self.assertEqual(response.headers["Retry-After"], "1")
        self.assertNotIn("Set-Cookie", response.headers)


class TestEagerHandlerOutage(LazyOutageCase):
    def session_options(self) -> dict[str, Any]:
        return {"reconnect_timeout": 0.3, "lazy": True}

    async def outage(self) -> None:
        await self.fetch_async("/lazy-count")
        self.assertIn(COOKIE, self.jar)
        assert isinstance(self.store, MemoryStore)
        await self.store.close()

    @gen_test
    async def test_an_eager_handler_gets_503_with_retry_after(self) -> None:
        await self.outage()
        with ExpectLog("tornado_session.mixin", ".*EagerPage answered 503"):
            response = await self.fetch_async("/eager")
        self.assertEqual(response.code, 503)
        self.assertEqual(response.headers["Retry-After"], "1")

    @gen_test
    async def test_a_lazy_handler_beside_it_is_not_held(self) -> None:
        await self.outage()
        response = await self.fetch_async("/lazy")
        self.assertEqual((response.code, response.body), (200, b"not loaded"))


# -- a session used before SessionMixin.prepare() loaded it (issue 18, item 6) ---------


class UsesSessionBeforeSuperPrepare(SessionMixin, tornado.web.RequestHandler):
    async def prepare(self) -> None:
        self.user = self.session.get("user")  # before the mixin's prepare(): too early
        await super().prepare()

    def get(self) -> None:
        self.write(self.user or "-")


class ReportsTheEarlyUse(UsesSessionBeforeSuperPrepare):
    async def prepare(self) -> None:
        try:
            await super().prepare()
        except SessionNotLoadedError as exc:
            self.finish("error: " + str(exc))


class ChecksTheUserEarly(SessionMixin, tornado.web.RequestHandler):
    """Reads ``current_user`` (from the session) before the mixin's prepare()."""

    def get_current_user(self) -> Any:
        return self.session.get("user")

    async def prepare(self) -> None:
        try:
            self.current_user  # noqa: B018
        except SessionNotLoadedError as exc:
            self.finish("error: " + str(exc))
            return
        await super().prepare()


class UsesSessionInInitialize(SessionMixin, tornado.web.RequestHandler):
    def initialize(self) -> None:
        try:
            self.session.get("user")
        except SessionNotLoadedError as exc:
            self.error = str(exc)

    def get(self) -> None:
        self.write("error: " + self.error)


class ForgetsSuperPrepare(SessionMixin, tornado.web.RequestHandler):
    def prepare(self) -> None:
        self.started = True  # and no super().prepare(): the session is never loaded

    def get(self) -> None:
        try:
            self.write(self.session.get("user", "-"))
        except SessionNotLoadedError as exc:
            self.write("error: " + str(exc))


class SetsUser(SessionMixin, tornado.web.RequestHandler):
    def get(self) -> None:
        self.session["user"] = "ada"


class TestSessionUsedBeforeSuperPrepare(SessionTestCase):
    def get_handlers(self) -> list[Any]:
        return [(r"/early", UsesSessionBeforeSuperPrepare), (r"/report", ReportsTheEarlyUse),
                (r"/current-user", ChecksTheUserEarly),
                (r"/in-initialize", UsesSessionInInitialize), (r"/forgets", ForgetsSuperPrepare),
                (r"/login", SetsUser)]

    def test_the_error_says_to_call_super_prepare_first_in_the_prepare_that_used_it(
        self,
    ) -> None:
        self.fetch("/login")
        message = self.fetch("/report").body.decode()
        # The prepare() that used the session is the base class's, not ReportsTheEarlyUse's own.
        self.assertIn("ReportsTheEarlyUse used the session before SessionMixin.prepare() "
                      "loaded it: call `await super().prepare()` first in "
                      "UsesSessionBeforeSuperPrepare.prepare()", message)
        self.assertNotIn("did not run", message)  # it did run, later: the old, wrong message

    def test_a_current_user_read_from_the_session_too_early_names_that_prepare(self) -> None:
        self.fetch("/login")
        message = self.fetch("/current-user").body.decode()
        self.assertIn("call `await super().prepare()` first in ChecksTheUserEarly.prepare()",
                      message)

    def test_a_prepare_that_never_calls_the_mixins_is_named(self) -> None:
        self.fetch("/login")
        self.assertEqual(
            self.fetch("/forgets").body.decode(),
            "error: ForgetsSuperPrepare used the session in ForgetsSuperPrepare.get(), but "
            "SessionMixin.prepare() never loaded it: ForgetsSuperPrepare.prepare() must call "
            "`await super().prepare()`, first",
        )

    def test_a_use_outside_prepare_names_the_method_and_where_to_move_it(self) -> None:
        self.fetch("/login")
        message = self.fetch("/in-initialize").body.decode()
        self.assertIn("UsesSessionInInitialize used the session in "
                      "UsesSessionInInitialize.initialize(), before SessionMixin.prepare() "
                      "loaded it: use it in prepare() after `await super().prepare()`, or in "
                      "the handler method", message)

    def test_it_is_a_500_logged_with_the_error(self) -> None:
        self.fetch("/login")
        with ExpectLog("tornado.application", ".*Uncaught exception GET /early"):
            self.assertEqual(self.fetch("/early").code, 500)

    def test_a_visitor_without_a_session_cookie_is_served(self) -> None:
        response = self.fetch("/early", cookies=False)
        self.assertEqual((response.code, response.body), (200, b"-"))


class TestSessionLazyIsCheckedWhenTheHandlerIsDefined(unittest.TestCase):
    def test_session_lazy_must_be_none_true_or_false(self) -> None:
        for value in (1, 0, "yes", "", []):
            with self.subTest(value=value), self.assertRaisesRegex(
                SessionOptionError,
                rf"Page.session_lazy must be None \(follow the lazy option\), True or False, "
                rf"not {re.escape(repr(value))}",
            ):
                type("Page", (SessionMixin, tornado.web.RequestHandler), {"session_lazy": value})

    def test_none_true_and_false_are_taken(self) -> None:
        for value in (None, True, False):
            page = type("Page", (SessionMixin, tornado.web.RequestHandler),
                        {"session_lazy": value})
            self.assertIs(page.session_lazy, value)
