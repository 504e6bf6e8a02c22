"""Attacks on sessions, against every store: fixation, forgery, replay, logout races, logs.

Each case runs against MemoryStore, a real redis-server and the MongoDB wire
server (tests/mongo_server.py).  What is already proven elsewhere
is not repeated here:

* an unknown id in a signed cookie is not adopted, with MemoryStore:
  tests/test_bad_input.py (``test_unknown_session_id_is_never_adopted``);
* every kind of tampered or garbage cookie: tests/test_bad_input.py and the
  fuzzing in tests/test_properties_cookies.py;
* a replayed cookie session (data in the cookie) past its expiry:
  tests/test_cookies.py (``TestCookieSessionExpiry``);
* ``Secure`` following ``X-Forwarded-Proto`` with ``xheaders=True``:
  tests/test_cookies.py (``TestSecureBehindAProxy``); here: that the header is
  ignored without ``xheaders``, and that the expiring cookie of a logout follows it too.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import Iterator
from typing import Any, ClassVar

import orjson
import tornado.web
from tornado.httpclient import AsyncHTTPClient, HTTPResponse
from tornado.testing import AsyncHTTPTestCase, ExpectLog, gen_test

from tests.base import COOKIE, COOKIE_SECRET, SessionTestCase, cookie_expired, set_cookies
from tests.load_users import SECRET as LOAD_SECRET
from tests.load_users import MongoServerCase, User, load_app
from tests.redis_server import RedisServerCase
from tornado_session import SessionMixin, SessionOptions
from tornado_session.serializers import hash_session_id
from tornado_session.stores import MemoryStore, MongoStore, RedisStore, Store


class Visit(SessionMixin, tornado.web.RequestHandler):
    """An anonymous visitor's page: puts something in the session."""

    def get(self) -> None:
        self.session["cart"] = self.session.get("cart", 0) + 1
        self.write("ok")


class Login(SessionMixin, tornado.web.RequestHandler):
    async def post(self) -> None:
        self.session["user"] = self.get_argument("user", "victim")
        await self.regenerate_session()
        self.write("in")


class Logout(SessionMixin, tornado.web.RequestHandler):
    async def post(self) -> None:
        await self.destroy_session()
        self.write("out")


class WhoAmI(SessionMixin, tornado.web.RequestHandler):
    def get(self) -> None:
        self.write(orjson.dumps(dict(self.session)))


class Crash(SessionMixin, tornado.web.RequestHandler):
    def get(self) -> None:
        self.session["half"] = "done"
        raise RuntimeError("handler failed")


class LogoutThenCrash(SessionMixin, tornado.web.RequestHandler):
    async def post(self) -> None:
        await self.destroy_session()
        raise RuntimeError("handler failed after the logout")


class LoginThenCrash(SessionMixin, tornado.web.RequestHandler):
    async def post(self) -> None:
        self.session["user"] = "victim"
        await self.regenerate_session()
        raise RuntimeError("handler failed after the login")


class Slow(SessionMixin, tornado.web.RequestHandler):
    """Loads the session, waits for the test's event, then writes (or only reads)."""

    gate: ClassVar[asyncio.Event]
    entered: ClassVar[asyncio.Event]

    async def get(self, what: str) -> None:
        user = self.session.get("user", "-")
        type(self).entered.set()
        await type(self).gate.wait()
        if what == "write":
            self.session["late"] = "write"
        elif what == "regenerate":
            await self.regenerate_session()
        self.write(user)


class SecurityCases(SessionTestCase):
    """The attacks, for the store `make_store` gives (subclasses pick it)."""

    __test__ = False

    def setUp(self) -> None:
        super().setUp()
        self.seen_cookies: set[str] = set()

    def get_handlers(self) -> list[Any]:
        return [(r"/visit", Visit), (r"/login", Login), (r"/logout", Logout),
                (r"/whoami", WhoAmI), (r"/crash", Crash), (r"/slow/(\w+)", Slow),
                (r"/logout-then-crash", LogoutThenCrash), (r"/login-then-crash", LoginThenCrash)]

    def use_options(self, **options: Any) -> None:
        """Serve from now on with these session options (same store)."""
        self._app = tornado.web.Application(
            self.get_handlers(), cookie_secret=COOKIE_SECRET,
            session=SessionOptions(store=self.store, clock=self.clock, **options),
        )
        self.http_server.request_callback = self._app

    def remember_cookies(self, response: HTTPResponse) -> None:
        super().remember_cookies(response)
        for morsel in set_cookies(response).values():
            if morsel.value:
                self.seen_cookies.add(morsel.value)

    async def peek(self, path: str, cookie: str | None) -> HTTPResponse:
        """A request with this cookie (or none) from another browser: the jar is left alone."""
        headers = {"Cookie": f"{COOKIE}={cookie}"} if cookie else {}
        response = await AsyncHTTPClient().fetch(
            self.get_url(path), headers=headers, raise_error=False
        )
        self.seen_cookies.update(m.value for m in set_cookies(response).values() if m.value)
        return response

    async def whoami(self, cookie: str | None) -> dict[str, Any]:
        response = await self.peek("/whoami", cookie)
        self.assertEqual(response.code, 200)
        data: dict[str, Any] = orjson.loads(response.body)
        return data

    async def record(self, session_id: str) -> dict[str, Any] | None:
        """The store's record of a session id, through the store's own API."""
        assert self.store is not None
        return await self.store.get(hash_session_id(session_id))

    def session_id(self, cookie: str) -> str:
        raw = tornado.web.decode_signed_value(
            COOKIE_SECRET, COOKIE, cookie.strip('"'), max_age_days=float("inf"), min_version=2,
            clock=self.clock,
        )
        assert raw is not None
        session_id: str = orjson.loads(raw)["i"]
        return session_id

    async def post(self, path: str, **kwargs: Any) -> HTTPResponse:
        return await self.fetch_async(path, method="POST", body="", **kwargs)

    # -- fixation ------------------------------------------------------------------

    @gen_test
    async def test_planted_cookie_is_worth_nothing_after_the_victim_logs_in(self) -> None:
        await self.fetch_async("/visit")  # the attacker's own, real session...
        planted = self.jar[COOKIE]
        # ...planted in the victim's browser, who logs in with it.
        self.assertEqual((await self.post("/login?user=victim")).code, 200)
        self.assertNotEqual(self.jar[COOKIE], planted)
        self.assertEqual(await self.whoami(self.jar[COOKIE]), {"cart": 1, "user": "victim"})
        self.assertEqual(await self.whoami(planted), {})
        self.assertIsNone(await self.record(self.session_id(planted)))

    @gen_test
    async def test_attacker_chosen_id_in_an_unsigned_cookie_is_never_adopted(self) -> None:
        # With signed=False (and a codec that does not authenticate, as an app may
        # wrongly give) the attacker writes the cookie; the id must still be ours.
        self.use_options(signed=False, encode=_unsigned,
                         decode=lambda value: orjson.loads(_b64(value)))
        await self.fetch_async("/visit")
        real_id = orjson.loads(_b64(self.jar[COOKIE]))["i"]
        for chosen in ("attacker-chosen-id-" + "z" * 30, hash_session_id(real_id)):
            self.jar.clear()
            forged = _unsigned({"e": self.clock() + 3600, "m": 3600, "i": chosen})
            response = await self.post("/login?user=victim",
                                       headers={"Cookie": f"{COOKIE}={forged}"})
            self.assertEqual(response.code, 200)
            given = orjson.loads(_b64(self.jar[COOKIE]))["i"]
            self.assertNotEqual(given, chosen)
            self.assertGreaterEqual(len(given), 43)  # 256 bits of secrets.token_urlsafe
            self.assertIsNone(await self.record(chosen))
            self.assertEqual(await self.whoami(forged), {})
            self.assertEqual(await self.whoami(self.jar[COOKIE]), {"user": "victim"})

    # -- forgery and replay ------------------------------------------------------------

    @gen_test
    async def test_cookie_for_a_real_session_signed_with_another_secret_is_rejected(
        self,
    ) -> None:
        await self.post("/login?user=victim")
        victim = self.jar[COOKIE]
        payload = {"e": self.clock() + 3600, "m": 3600, "i": self.session_id(victim)}
        forged = tornado.web.create_signed_value(
            "attacker-guess-" + "g" * 40, COOKIE, orjson.dumps(payload), version=2,
            clock=self.clock,
        ).decode()
        self.assertEqual(await self.whoami(forged), {})
        self.assertEqual(await self.whoami(victim), {"user": "victim"})  # untouched

    @gen_test
    async def test_cookie_replayed_past_its_expiry_is_refused_though_the_session_lives(
        self,
    ) -> None:
        self.use_options(rolling=True, max_age=100)
        await self.post("/login?user=victim")
        stolen = self.jar[COOKIE]
        self.clock.advance(60)
        self.assertEqual(await self.whoami(self.jar[COOKIE]), {"user": "victim"})
        await self.fetch_async("/whoami")  # rolling: the browser's cookie moves on
        self.assertNotEqual(self.jar[COOKIE], stolen)
        self.clock.advance(60)  # 120 s after the stolen cookie was issued
        expired: list[dict[str, Any]] = []
        self._app.settings["session"].events.on("session:expired", expired.append)
        self.assertEqual(await self.whoami(stolen), {})
        self.assertEqual(len(expired), 1)
        self.assertEqual(await self.whoami(self.jar[COOKIE]), {"user": "victim"})

    @gen_test
    async def test_stolen_cookie_is_dead_after_logout(self) -> None:
        await self.post("/login?user=victim")
        stolen = self.jar[COOKIE]
        response = await self.post("/logout")
        self.assertEqual(response.code, 200)
        self.assertNotIn(COOKIE, self.jar)
        self.assertEqual(await self.whoami(stolen), {})
        self.assertIsNone(await self.record(self.session_id(stolen)))

    # -- a planted cookie beside the live one -------------------------------------------

    @gen_test
    async def test_a_planted_dead_cookie_neither_shadows_nor_deletes_the_live_one(self) -> None:
        await self.post("/login?user=attacker")
        dead = self.jar[COOKIE]
        await self.post("/logout")  # the attacker's own session, now dead
        await self.post("/login?user=victim")
        live = self.jar[COOKIE]
        missed: list[dict[str, Any]] = []
        self._app.settings["session"].events.on("session:missed", missed.append)
        for header in (f"{COOKIE}={dead}; {COOKIE}={live}", f"{COOKIE}={live}; {COOKIE}={dead}"):
            response = await AsyncHTTPClient().fetch(
                self.get_url("/whoami"), headers={"Cookie": header}, raise_error=False
            )
            self.assertEqual(response.code, 200)
            self.assertEqual(orjson.loads(response.body), {"user": "victim"})
            self.assertIsNone(set_cookies(response).get(COOKIE))  # nothing deleted
        self.assertEqual(len(missed), 1)  # the dead one, when it came first
        self.assertEqual(await self.whoami(live), {"user": "victim"})
        self.assertIsNotNone(await self.record(self.session_id(live)))

    @gen_test
    async def test_only_dead_cookies_give_a_fresh_session(self) -> None:
        await self.post("/login?user=someone")
        first = self.jar[COOKIE]
        await self.post("/logout")
        await self.post("/login?user=someone-else")
        second = self.jar[COOKIE]
        await self.post("/logout")
        header = f"{COOKIE}={first}; {COOKIE}={second}"
        response = await AsyncHTTPClient().fetch(
            self.get_url("/whoami"), headers={"Cookie": header}, raise_error=False
        )
        self.assertEqual((response.code, orjson.loads(response.body)), (200, {}))

    # -- the absolute lifetime ----------------------------------------------------------

    async def keep_active(self, seconds: int, every: int = 30) -> None:
        """Use the session every ``every`` seconds for ``seconds`` (rolling keeps it alive)."""
        for _ in range(seconds // every):
            self.clock.advance(every)
            response = await self.fetch_async("/whoami")
            self.assertEqual(orjson.loads(response.body), {"user": "victim"})

    @gen_test
    async def test_a_session_in_use_ends_at_its_absolute_lifetime(self) -> None:
        self.use_options(rolling=True, max_age=60, absolute_max_age=100)
        expired: list[dict[str, Any]] = []
        self._app.settings["session"].events.on("session:expired", expired.append)
        await self.post("/login?user=victim")
        cookie = self.jar[COOKIE]
        await self.keep_active(90)  # active every 30 s: rolling alone would keep it forever
        self.clock.advance(15)  # 105 s after the login
        response = await self.fetch_async("/whoami")
        self.assertEqual(orjson.loads(response.body), {})
        self.assertEqual([event["reason"] for event in expired], ["absolute lifetime"])
        self.assertNotIn(COOKIE, self.jar)  # the response expired the cookie
        self.assertIsNone(await self.record(self.session_id(cookie)))  # and the record

    @gen_test
    async def test_a_login_restarts_the_absolute_lifetime(self) -> None:
        self.use_options(rolling=True, max_age=60, absolute_max_age=100)
        await self.post("/login?user=victim")
        await self.keep_active(90)
        await self.post("/login?user=victim")  # regenerates: the count starts again
        await self.keep_active(90)  # 180 s after the first login, 90 after the second
        self.clock.advance(15)
        self.assertEqual(orjson.loads((await self.fetch_async("/whoami")).body), {})

    # -- a logout or login inside a request that fails -----------------------------------

    @gen_test
    async def test_a_logout_in_a_failed_request_still_ends_the_session(self) -> None:
        await self.post("/login?user=victim")
        stolen = self.jar[COOKIE]
        with ExpectLog("tornado.application", "Uncaught exception"):
            response = await self.post("/logout-then-crash")
        self.assertEqual(response.code, 500)
        self.assertNotIn(COOKIE, self.jar)  # the response expired the cookie
        self.assertEqual(await self.whoami(stolen), {})
        self.assertIsNone(await self.record(self.session_id(stolen)))

    @gen_test
    async def test_a_login_in_a_failed_request_retires_the_old_id_and_writes_nothing(
        self,
    ) -> None:
        await self.fetch_async("/visit")
        planted = self.jar[COOKIE]
        with ExpectLog("tornado.application", "Uncaught exception"):
            response = await self.post("/login-then-crash")
        self.assertEqual(response.code, 500)
        self.assertNotIn(COOKIE, self.jar)
        self.assertEqual(await self.whoami(planted), {})
        self.assertIsNone(await self.record(self.session_id(planted)))
        assert self.store is not None
        self.assertEqual(await self.store.count(), 0)  # the new session was not written

    # -- a logout racing a slower request of the same session ---------------------------

    async def race(self, what: str) -> tuple[HTTPResponse, str]:
        """Start ``/slow/<what>``, log out while it waits, then let it finish."""
        Slow.gate, Slow.entered = asyncio.Event(), asyncio.Event()
        await self.post("/login?user=victim")
        cookie = self.jar[COOKIE]
        slow = asyncio.ensure_future(self.fetch_async(f"/slow/{what}"))
        await asyncio.wait_for(Slow.entered.wait(), 5)
        logout = await self.post("/logout")
        self.assertEqual(logout.code, 200)
        self.assertNotIn(COOKIE, self.jar)
        Slow.gate.set()
        return await slow, cookie

    @gen_test
    async def test_concurrent_logout_is_not_undone_by_a_slower_request_that_writes(
        self,
    ) -> None:
        response, cookie = await self.race("write")
        self.assertEqual((response.code, response.body), (200, b"victim"))
        morsel = set_cookies(response).get(COOKIE)
        self.assertIsNotNone(morsel)
        assert morsel is not None
        self.assertTrue(cookie_expired(morsel))  # the slow answer also ends the session
        self.assertNotIn(COOKIE, self.jar)
        self.assertEqual(await self.whoami(cookie), {})
        self.assertIsNone(await self.record(self.session_id(cookie)))

    @gen_test
    async def test_concurrent_logout_is_not_undone_by_a_slower_request_that_regenerates(
        self,
    ) -> None:
        response, cookie = await self.race("regenerate")
        self.assertEqual((response.code, response.body), (200, b"victim"))
        morsel = set_cookies(response).get(COOKIE)
        assert morsel is not None
        self.assertTrue(cookie_expired(morsel))  # no cookie for a new id: the session is over
        self.assertNotIn(COOKIE, self.jar)
        self.assertEqual(await self.whoami(cookie), {})
        assert self.store is not None
        self.assertEqual(await self.store.count(), 0)  # the data was not written under a new id

    @gen_test
    async def test_concurrent_logout_is_not_undone_by_a_slower_rolling_request(self) -> None:
        self.use_options(rolling=True)
        response, cookie = await self.race("read")
        self.assertEqual(response.code, 200)
        self.assertNotIn(COOKIE, self.jar)
        self.assertEqual(await self.whoami(cookie), {})
        self.assertIsNone(await self.record(self.session_id(cookie)))

    # -- logs ---------------------------------------------------------------------------

    def outage(self) -> Any:
        """Take the store down (undone by `recover`)."""
        raise NotImplementedError

    def recover(self) -> None:
        raise NotImplementedError

    @gen_test(timeout=30)
    async def test_no_session_id_store_key_or_cookie_value_in_any_log(self) -> None:
        self.use_options(reconnect_timeout=0.2)
        with capture_all_logs() as collector:
            await self.fetch_async("/visit")
            await self.post("/login?user=victim")
            # No ExpectLog here: it would hide the records from the collector.
            self.assertEqual((await self.fetch_async("/crash")).code, 500)
            await self.peek("/whoami", "forged|garbage")
            cookie = self.jar[COOKIE]
            await asyncio.to_thread(self.outage)
            self.assertEqual((await self.fetch_async("/whoami")).code, 503)
            await asyncio.to_thread(self.recover)
            await self.wait_connected()
            self.assertEqual((await self.fetch_async("/visit")).code, 200)
            await self.post("/logout")
        text = collector.text()
        self.assertIn("answered 503", text)
        self.assertIn("Uncaught exception", text)
        self.assertIn("RuntimeError: handler failed", text)  # tracebacks are checked too
        ids = {self.session_id(value) for value in self.seen_cookies if value.startswith("2|")}
        self.assertGreaterEqual(len(ids), 2)  # before and after the login
        for secret in {*self.seen_cookies, *ids, cookie}:
            self.assertNotIn(secret, text)
        ours = collector.text(prefix="tornado_session")
        for session_id in ids:
            self.assertNotIn(hash_session_id(session_id), ours)

    async def wait_connected(self) -> None:
        assert self.store is not None
        self.assertTrue(await self.store.wait_connected(10))


class TestSecurityMemoryStore(SecurityCases):
    __test__ = True

    @property
    def memory(self) -> MemoryStore:
        assert isinstance(self.store, MemoryStore)
        return self.store

    def outage(self) -> None:
        asyncio.run_coroutine_threadsafe(self.memory.close(), self.io_loop.asyncio_loop).result()  # type: ignore[attr-defined]

    def recover(self) -> None:
        asyncio.run_coroutine_threadsafe(self.memory.open(), self.io_loop.asyncio_loop).result()  # type: ignore[attr-defined]


class TestSecurityRedisStore(RedisServerCase, SecurityCases):
    __test__ = True

    def make_store(self) -> Store:
        return RedisStore.from_url(self.redis_server.url, probe_interval=0.1, clock=self.clock)

    def tearDown(self) -> None:
        assert self.store is not None
        self.io_loop.run_sync(self.store.close)
        super().tearDown()

    def outage(self) -> None:
        self.redis_server.stop()

    def recover(self) -> None:
        self.redis_server.start()


class TestSecurityMongoStore(MongoServerCase, SecurityCases):
    __test__ = True
    persistent = True

    def make_store(self) -> Store:
        return MongoStore.from_uri(self.mongo_uri, clock=self.clock, serverSelectionTimeoutMS=500)

    def tearDown(self) -> None:
        assert self.store is not None
        self.io_loop.run_sync(self.store.close)
        super().tearDown()

    def outage(self) -> None:
        self.mongo_server.stop()

    def recover(self) -> None:
        self.mongo_server.start()


class TestSecureFlag(SessionTestCase):
    def get_handlers(self) -> list[Any]:
        return [(r"/login", Login), (r"/logout", Logout)]

    def test_x_forwarded_proto_is_ignored_without_xheaders(self) -> None:
        response = self.fetch("/login", method="POST", body="",
                              headers={"X-Forwarded-Proto": "https"})
        morsel = self.session_cookie(response)
        assert morsel is not None
        self.assertFalse(morsel["secure"])


class TestSecureFlagBehindAProxy(SessionTestCase):
    def get_handlers(self) -> list[Any]:
        return [(r"/login", Login), (r"/logout", Logout)]

    def get_httpserver_options(self) -> dict[str, Any]:
        return {"xheaders": True}

    def test_logout_expiry_cookie_is_secure_behind_an_https_proxy(self) -> None:
        https = {"X-Forwarded-Proto": "https"}
        login = self.fetch("/login", method="POST", body="", headers=https)
        logout = self.fetch("/logout", method="POST", body="", headers=https)
        for response in (login, logout):
            morsel = self.session_cookie(response)
            assert morsel is not None
            self.assertTrue(morsel["secure"])
        self.assert_cookie_expired(logout)


class TestLoginExampleLogs(AsyncHTTPTestCase):
    """The login example's whole flow, every logger at DEBUG: no session id or cookie."""

    def get_app(self) -> tornado.web.Application:
        self.store = MemoryStore()
        return self.io_loop.run_sync(lambda: load_app(self.store, 2))

    @gen_test(timeout=30)
    async def test_no_session_id_or_cookie_in_any_log(self) -> None:
        client = AsyncHTTPClient(force_instance=True)
        alice, mallory = (User(self.get_url(""), name, client) for name in ("user0", "user1"))
        try:
            with capture_all_logs() as collector:
                await mallory.request("GET", "/login")
                wrong = await mallory.request("POST", "/login", {"username": "user0",
                                                                 "password": "guess" * 3})
                self.assertEqual(wrong.code, 403)
                await alice.log_in()  # regenerates the session
                self.assertEqual(await alice.count(), 200)
                del alice.jar["_xsrf"]
                refused = await alice.request("POST", "/logout")  # no _xsrf: Tornado's 403
                self.assertEqual(refused.code, 403)
                await alice.request("GET", "/profile")  # its forms give a new _xsrf
                self.assertIn("_xsrf", alice.jar)
                self.assertEqual(
                    (await alice.request("POST", "/logout-everywhere")).code, 302
                )
                await alice.log_in()
                self.assertEqual((await alice.request("POST", "/logout")).code, 302)
        finally:
            client.close()
        text = collector.text()
        self.assertIn("'_xsrf' argument missing", text)
        cookies = alice.session_cookies | mallory.session_cookies
        ids = {_signed_id(value) for value in cookies}
        self.assertEqual(len(ids), 2)  # each login a new id; a logout's flash needs no session
        for secret in cookies | ids:
            self.assertNotIn(secret, text)
        ours = collector.text(prefix="tornado_session") + collector.text(prefix="examples")
        for session_id in ids:
            self.assertNotIn(hash_session_id(session_id), ours)


@contextlib.contextmanager
def capture_all_logs() -> Iterator[_Collect]:
    """Every record of every logger, at DEBUG, while the block runs."""
    collector = _Collect()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(collector)
    root.setLevel(logging.DEBUG)
    try:
        yield collector
    finally:
        root.removeHandler(collector)
        root.setLevel(old_level)
    assert collector.records, "nothing was logged: the capture does not work"


def _signed_id(cookie: str) -> str:
    raw = tornado.web.decode_signed_value(
        LOAD_SECRET, COOKIE, cookie.strip('"'), max_age_days=float("inf"), min_version=2
    )
    assert raw is not None
    session_id: str = orjson.loads(raw)["i"]
    return session_id


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def text(self, prefix: str = "") -> str:
        """Every message with its traceback, of the loggers whose name starts with ``prefix``."""
        formatter = logging.Formatter("%(name)s %(message)s")
        return "\n".join(
            formatter.format(record) for record in self.records if record.name.startswith(prefix)
        )


def _unsigned(payload: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(payload)).rstrip(b"=").decode()


def _b64(value: str) -> bytes:
    value = value.strip('"')
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
