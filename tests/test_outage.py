"""A store outage: requests that need the store wait, then get 503; the others never notice."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import tornado.web
from tornado.testing import AsyncTestCase, ExpectLog, gen_test

from tests.base import COOKIE, SessionTestCase
from tornado_session import SessionMixin
from tornado_session.stores import MemoryStore


class Lazy(SessionMixin, tornado.web.RequestHandler):
    async def get(self) -> None:
        load = self.get_argument("load", "no")
        if load in ("yes", "count"):
            await self.load_session()
            if load == "count":
                self.session["views"] = self.session.get("views", 0) + 1
            self.write(str(self.session.get("views", 0)))
        else:
            self.write("not loaded")


class OutageCase(SessionTestCase):
    def session_options(self) -> dict[str, Any]:
        return {"reconnect_timeout": 0.3}

    def get_handlers(self) -> list[Any]:
        return [*super().get_handlers(), (r"/lazy", Lazy)]

    @property
    def memory(self) -> MemoryStore:
        assert isinstance(self.store, MemoryStore)
        return self.store

    async def start_session_then_outage(self) -> None:
        response = await self.fetch_async("/count")
        self.assertEqual(response.body, b"1")
        await self.memory.close()


class TestOutage(OutageCase):
    @gen_test
    async def test_request_needing_the_store_gets_503_with_retry_after(self) -> None:
        await self.start_session_then_outage()
        started = time.monotonic()
        with ExpectLog("tornado_session.mixin", ".*answered 503"):
            response = await self.fetch_async("/read")
        self.assertGreaterEqual(time.monotonic() - started, 0.3)
        self.assertEqual(response.code, 503)
        self.assertEqual(response.headers["Retry-After"], "1")
        self.assertNotIn("Set-Cookie", response.headers)
        self.assertEqual(self.memory._waiters, [])

    @gen_test
    async def test_requests_not_needing_the_store_are_not_held(self) -> None:
        await self.start_session_then_outage()
        started = time.monotonic()
        no_cookie = await self.fetch_async("/read", cookies=False)
        unused = await self.fetch_async("/unused", cookies=False)
        self.assertLess(time.monotonic() - started, 0.25)
        self.assertEqual((no_cookie.code, no_cookie.body), (200, b"0"))
        self.assertEqual(unused.code, 200)

    @gen_test
    async def test_new_session_write_during_outage_gets_503_and_no_cookie(self) -> None:
        await self.start_session_then_outage()
        with ExpectLog("tornado_session.mixin", ".*answered 503"):
            response = await self.fetch_async("/count", cookies=False)
        self.assertEqual(response.code, 503)
        self.assertNotIn("Set-Cookie", response.headers)

    @gen_test
    async def test_reconnect_releases_waiting_requests_at_once(self) -> None:
        await self.start_session_then_outage()
        self.io_loop.call_later(0.05, lambda: asyncio.ensure_future(self.memory.open()))
        started = time.monotonic()
        response = await self.fetch_async("/count")
        self.assertLess(time.monotonic() - started, 0.25)
        self.assertEqual((response.code, response.body), (200, b"2"))

    @gen_test
    async def test_cookie_is_never_reset_and_data_survives_the_outage(self) -> None:
        await self.start_session_then_outage()
        cookie_before = self.jar[COOKIE]
        with ExpectLog("tornado_session.mixin", ".*answered 503"):
            response = await self.fetch_async("/count")
        self.assertEqual(response.code, 503)
        self.assertNotIn("Set-Cookie", response.headers)
        await self.memory.open()
        self.assertEqual(self.jar[COOKIE], cookie_before)
        self.assertEqual((await self.fetch_async("/count")).body, b"2")

    @gen_test
    async def test_store_failing_during_the_commit_gives_503_not_200(self) -> None:
        await self.start_session_then_outage()
        await self.memory.open()

        original_set = self.memory.set

        async def fail_once(*args: Any, **kwargs: Any) -> bool:
            self.memory.set = original_set  # type: ignore[method-assign]
            await self.memory.close()
            return await original_set(*args, **kwargs)

        self.memory.set = fail_once  # type: ignore[method-assign]
        with ExpectLog("tornado_session.mixin", ".*answered 503"):
            response = await self.fetch_async("/count")
        self.assertEqual(response.code, 503)
        self.assertIn("Retry-After", response.headers)
        await self.memory.open()
        self.assertEqual((await self.fetch_async("/read")).body, b"1")


class TestLazyOutage(OutageCase):
    def session_options(self) -> dict[str, Any]:
        return {"reconnect_timeout": 0.3, "lazy": True}

    @gen_test
    async def test_lazy_request_that_never_loads_is_not_held(self) -> None:
        response = await self.fetch_async("/lazy?load=count")
        self.assertIn(COOKIE, self.jar)
        await self.memory.close()
        started = time.monotonic()
        response = await self.fetch_async("/lazy")
        self.assertLess(time.monotonic() - started, 0.25)
        self.assertEqual((response.code, response.body), (200, b"not loaded"))

    @gen_test
    async def test_lazy_load_during_outage_gets_503(self) -> None:
        await self.fetch_async("/lazy?load=count")
        self.assertIn(COOKIE, self.jar)
        await self.memory.close()
        with ExpectLog("tornado_session.mixin", ".*answered 503"):
            response = await self.fetch_async("/lazy?load=yes")
        self.assertEqual(response.code, 503)
        self.assertIn("Retry-After", response.headers)


class PingedStore(MemoryStore):
    """A MemoryStore with a server to ping: each ping waits until the test answers it."""

    backend = "the test server"

    def __init__(self) -> None:
        super().__init__()
        self.pinging = asyncio.Event()
        self.answer = asyncio.Event()

    async def ping(self) -> None:
        self.pinging.set()
        await self.answer.wait()


class TestProbe(AsyncTestCase):
    @gen_test
    async def test_a_probe_answered_after_another_signal_reported_the_store_back_stays_quiet(
        self,
    ) -> None:
        store = PingedStore()
        connects: list[dict[str, Any]] = []
        store.on("connect", connects.append)
        with self.assertLogs(__name__, "WARNING"):
            store._connection_lost(OSError("connection refused"))
        await store.pinging.wait()
        store.mark_connected(reason="heartbeat")  # as PyMongo's heartbeat does
        with self.assertNoLogs(__name__):
            store.answer.set()
            assert store._probe_task is not None
            await store._probe_task
        self.assertTrue(store.connected)
        self.assertEqual([event["reason"] for event in connects], ["heartbeat"])
        await store.close()

    @gen_test
    async def test_a_probe_that_brings_the_store_back_says_so_once(self) -> None:
        store = PingedStore()
        connects: list[dict[str, Any]] = []
        store.on("connect", connects.append)
        with self.assertLogs(__name__, "WARNING"):
            store._connection_lost(OSError("connection refused"))
        store.answer.set()
        with self.assertLogs(__name__, "INFO") as logged:
            assert store._probe_task is not None
            await store._probe_task
        self.assertEqual([record.getMessage() for record in logged.records],
                         ["the test server answers again (probe)"])
        self.assertEqual([event["reason"] for event in connects], ["probe"])
        await store.close()

    @gen_test
    async def test_a_probe_answered_after_the_store_came_back_and_went_again_stays_quiet(
        self,
    ) -> None:
        store = PingedStore()
        connects: list[dict[str, Any]] = []
        store.on("connect", connects.append)
        with self.assertLogs(__name__, "WARNING"):
            store._connection_lost(OSError("connection refused"))
        await store.pinging.wait()  # the ping is sent ...
        with self.assertLogs(__name__, "INFO"):
            store.mark_connected(reason="heartbeat")  # ... the store comes back ...
            store._connection_lost(OSError("connection reset"))  # ... and goes again
        store.pinging.clear()
        store.answer.set()  # the ping sent before that last loss is answered now,
        store.answer.clear()  # (and the next one waits)
        await store.pinging.wait()  # and the probe pings again instead of reporting it
        self.assertFalse(store.connected)
        self.assertEqual([event["reason"] for event in connects], ["heartbeat"])
        await store.close()
