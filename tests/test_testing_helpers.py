"""`tornado_session.testing.SessionClient` and its session transactions, on every store.

The transaction loads the client's session through the application's own
lifecycle and commits it back, so a test sets up a logged-in client or reads
what a request stored without knowing the cookie's payload or the store's
keys: tried here on MemoryStore, a real redis-server, the MongoDB wire server
and signed cookie sessions.
"""

from __future__ import annotations

import time
from typing import Any
from unittest import mock

import orjson
import tornado.web
from tornado.testing import AsyncHTTPTestCase, gen_test

from tests.load_users import MongoServerCase
from tests.redis_server import RedisServerCase
from tornado_session import SessionMixin, SessionOptions, testing
from tornado_session.stores import MemoryStore, MongoStore, RedisStore, Store
from tornado_session.testing import SessionClient

SECRET = "helpers-test-secret-" + "h" * 32
COOKIE = "tornado.sess"


class WhoAmI(SessionMixin, tornado.web.RequestHandler):
    def get(self) -> None:
        self.write(orjson.dumps(dict(self.session)))


class Count(SessionMixin, tornado.web.RequestHandler):
    def get(self) -> None:
        self.session["views"] = self.session.get("views", 0) + 1
        self.write(str(self.session["views"]))


class Login(SessionMixin, tornado.web.RequestHandler):
    async def post(self) -> None:
        self.session["user"] = self.get_body_argument("user")
        await self.regenerate_session()
        self.redirect("/whoami")


class Logout(SessionMixin, tornado.web.RequestHandler):
    async def post(self) -> None:
        await self.destroy_session()
        self.redirect("/whoami")


class TransactionCase(AsyncHTTPTestCase):
    """An application on the store `make_store` gives (``None``: signed cookie sessions)."""

    __test__ = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.__test__ = True

    def make_store(self) -> Store | None:
        return MemoryStore()

    def setUp(self) -> None:
        super().setUp()
        self.client = SessionClient(self)

    def tearDown(self) -> None:
        store = SessionMixin.configure_application(self.app).store
        if store is not None:
            self.io_loop.run_sync(store.close)
        super().tearDown()

    def get_app(self) -> tornado.web.Application:
        self.app = tornado.web.Application(
            [(r"/whoami", WhoAmI), (r"/count", Count), (r"/login", Login), (r"/logout", Logout)],
            cookie_secret=SECRET, session=SessionOptions(store=self.make_store()),
        )
        return self.app

    def whoami(self) -> dict[str, Any]:
        response = self.client.fetch("/whoami")
        self.assertEqual(response.code, 200)
        data: dict[str, Any] = orjson.loads(response.body)
        return data

    def test_a_session_set_in_a_transaction_is_the_one_the_application_reads(self) -> None:
        with self.client.session_transaction(self.app) as session:
            self.assertTrue(session.is_new)
            session["user"] = "ada"
            session["roles"] = ["admin"]
        self.assertIn(COOKIE, self.client.cookies)
        self.assertEqual(self.whoami(), {"user": "ada", "roles": ["admin"]})

    def test_a_transaction_reads_what_the_application_stored(self) -> None:
        self.client.fetch("/count")
        self.client.fetch("/count")
        with self.client.session_transaction(self.app) as session:
            self.assertFalse(session.is_new)
            self.assertEqual(dict(session), {"views": 2})

    def test_a_change_in_a_transaction_is_seen_by_the_next_request(self) -> None:
        self.client.fetch("/count")
        with self.client.session_transaction(self.app) as session:
            session["views"] = 10
        self.assertEqual(self.client.fetch("/count").body, b"11")
        with self.client.session_transaction(self.app) as session:
            self.assertEqual(session["views"], 11)

    def test_a_transaction_that_changes_nothing_keeps_the_cookie(self) -> None:
        self.client.fetch("/count")
        before = self.client.cookies[COOKIE]
        with self.client.session_transaction(self.app) as session:
            self.assertEqual(session["views"], 1)
        self.assertEqual(self.client.cookies[COOKIE], before)
        self.assertEqual(self.client.fetch("/count").body, b"2")

    def test_a_transaction_that_raises_commits_nothing(self) -> None:
        self.client.fetch("/count")
        with self.assertRaises(KeyError), self.client.session_transaction(self.app) as session:
            session["views"] = 100
            raise KeyError("the test's own error")
        self.assertEqual(self.client.fetch("/count").body, b"2")

    def test_an_empty_new_session_gives_no_cookie(self) -> None:
        with self.client.session_transaction(self.app) as session:
            self.assertEqual(dict(session), {})
        self.assertNotIn(COOKIE, self.client.cookies)

    def test_a_login_and_a_logout_are_followed(self) -> None:
        response = self.client.fetch("/login", method="POST", body="user=ada",
                                     follow_redirects=True)
        self.assertEqual(orjson.loads(response.body), {"user": "ada"})
        with self.client.session_transaction(self.app) as session:
            self.assertEqual(session["user"], "ada")
            session["user"] = "grace"
        self.assertEqual(self.whoami(), {"user": "grace"})
        self.client.fetch("/logout", method="POST", body="")
        self.assertNotIn(COOKIE, self.client.cookies)
        with self.client.session_transaction(self.app) as session:
            self.assertTrue(session.is_new)
            self.assertEqual(dict(session), {})

    @gen_test
    async def test_async_with_inside_a_coroutine(self) -> None:
        async with self.client.session_transaction(self.app) as session:
            session["views"] = 41
        self.assertEqual((await self.client.fetch_async("/count")).body, b"42")
        async with self.client.session_transaction(self.app) as session:
            self.assertEqual(session["views"], 42)


class TestTransactionsOnMemoryStore(TransactionCase):
    pass


class TestTransactionsOnSignedCookies(TransactionCase):
    def make_store(self) -> Store | None:
        return None


class TestTransactionsOnRedis(RedisServerCase, TransactionCase):
    def make_store(self) -> Store | None:
        return RedisStore.from_url(self.redis_server.url)


class TestTransactionsOnMongo(MongoServerCase, TransactionCase):
    def make_store(self) -> Store | None:
        return MongoStore.from_uri(self.mongo_uri, serverSelectionTimeoutMS=5000)


# -- the client's cookies, like a browser's -----------------------------------------------


class SetsCookies(tornado.web.RequestHandler):
    def get(self) -> None:
        what = self.get_argument("what")
        if what == "plain":
            self.set_cookie("theme", "dark")
        elif what == "short":
            self.set_cookie("short", "1", max_age=60)
        elif what == "clear":
            self.clear_cookie("theme")  # an expires date in the past
        elif what == "max-age-0":
            self.add_header("Set-Cookie", "theme=; Max-Age=0; Path=/")
        elif what == "pathed":
            self.set_cookie("theme", "light", path="/private")
        elif what == "clear-pathed":
            self.clear_cookie("theme", path="/private")
        elif what == "redirect":
            self.set_cookie("step", "one")
            self.redirect("/echo")
            return
        self.write("ok")


class Echo(tornado.web.RequestHandler):
    def get(self, *args: str) -> None:
        self.write(self.request.headers.get("Cookie", ""))


class TestClientCookies(AsyncHTTPTestCase):
    def get_app(self) -> tornado.web.Application:
        return tornado.web.Application(
            [(r"/set", SetsCookies), (r"/echo", Echo), (r"/(private)(/.*)?", Echo),
             (r"/privateer", Echo)],
            cookie_secret=SECRET,
        )

    def setUp(self) -> None:
        super().setUp()
        self.client = SessionClient(self)

    def echo(self, path: str = "/echo") -> str:
        return self.client.fetch(path).body.decode()

    def test_cookies_are_kept_and_sent_back(self) -> None:
        self.client.fetch("/set?what=plain")
        self.assertEqual(self.client.cookies, {"theme": "dark"})
        self.assertEqual(self.echo(), "theme=dark")

    def test_a_cookie_cleared_with_a_past_expiry_is_deleted(self) -> None:
        self.client.fetch("/set?what=plain")
        self.client.fetch("/set?what=clear")
        self.assertEqual(self.client.cookies, {})
        self.assertEqual(self.echo(), "")

    def test_max_age_zero_deletes(self) -> None:
        self.client.fetch("/set?what=plain")
        self.client.fetch("/set?what=max-age-0")
        self.assertNotIn("theme", self.client.cookies)

    def test_a_cookie_past_its_max_age_is_no_longer_sent(self) -> None:
        self.client.fetch("/set?what=short")
        self.assertEqual(self.echo(), "short=1")
        later = time.time() + 61
        with mock.patch.object(testing.time, "time", return_value=later):
            self.assertEqual(self.client.cookie_header("/echo"), None)

    def test_cookies_go_only_to_their_path_the_longest_path_first(self) -> None:
        self.client.fetch("/set?what=plain")
        self.client.fetch("/set?what=pathed")
        self.assertEqual(self.echo("/echo"), "theme=dark")
        self.assertEqual(self.echo("/private"), "theme=light; theme=dark")
        self.assertEqual(self.echo("/private/page"), "theme=light; theme=dark")
        self.assertEqual(self.echo("/privateer"), "theme=dark")

    def test_clearing_with_another_path_leaves_the_cookie_as_a_browser_does(self) -> None:
        self.client.fetch("/set?what=pathed")
        self.client.fetch("/set?what=clear")  # path "/": not the cookie's
        self.assertEqual(self.echo("/private"), "theme=light")
        self.client.fetch("/set?what=clear-pathed")
        self.assertEqual(self.echo("/private"), "")

    def test_follow_redirects_keeps_the_cookies_each_step_sets(self) -> None:
        response = self.client.fetch("/set?what=redirect", follow_redirects=True)
        self.assertEqual((response.code, response.body), (200, b"step=one"))
        response = self.client.fetch("/set?what=redirect")
        self.assertEqual(response.code, 302)

    def test_cookies_given_to_one_request_are_sent_instead_and_nothing_is_kept(self) -> None:
        self.client.fetch("/set?what=plain")
        self.assertEqual(self.client.fetch("/echo", cookies={"other": "1"}).body, b"other=1")
        self.assertEqual(self.client.fetch("/echo", cookies={}).body, b"")
        self.client.fetch("/set?what=short", cookies={})  # sets "short": not kept
        self.assertEqual(self.client.cookies, {"theme": "dark"})
        self.assertEqual(self.echo(), "theme=dark")

    def test_fetch_inside_a_coroutine_says_to_await_fetch_async(self) -> None:
        async def inside() -> None:
            with self.assertRaisesRegex(RuntimeError, r"await client.fetch_async"):
                self.client.fetch("/echo")
            transaction = self.client.session_transaction(self._app)
            with self.assertRaisesRegex(RuntimeError, r"async with client.session_transaction"):
                transaction.__enter__()

        self.io_loop.run_sync(inside)


class XsrfPage(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write(self.xsrf_form_html())

    def post(self) -> None:
        self.write("posted")


class TestClientXsrf(AsyncHTTPTestCase):
    def get_app(self) -> tornado.web.Application:
        return tornado.web.Application([(r"/form", XsrfPage)], xsrf_cookies=True,
                                       cookie_secret=SECRET)

    def test_a_post_carries_the_xsrf_cookie_in_a_header(self) -> None:
        client = SessionClient(self)
        self.assertEqual(client.fetch("/form", method="POST", body="").code, 403)
        client.fetch("/form")
        self.assertIn("_xsrf", client.cookies)
        self.assertEqual(client.fetch("/form", method="POST", body="").body, b"posted")
        self.assertEqual(client.fetch("/form", method="POST", body="", xsrf=False).code, 403)
