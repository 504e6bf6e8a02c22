"""RedisStore when the server goes away and comes back, and under concurrent requests."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import time
from typing import Any

import tornado.web
from redis.exceptions import ConnectionError as RedisConnectionError
from tornado.testing import AsyncTestCase, ExpectLog, gen_test

from tests.base import COOKIE, SessionTestCase
from tests.redis_server import RedisServerCase, free_port
from tornado_session import SessionMixin
from tornado_session.errors import StoreUnavailableError
from tornado_session.stores import RedisStore

NS = "tornado_session:"


class Recorder:
    """Collects a store's connect/disconnect events in order."""

    def __init__(self, store: RedisStore) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        store.on("connect", lambda payload: self.events.append(("connect", payload)))
        store.on("disconnect", lambda payload: self.events.append(("disconnect", payload)))

    def names(self) -> list[str]:
        return [name for name, _ in self.events]

    async def wait_for(self, name: str, count: int = 1, timeout: float = 5.0) -> float:
        """Wait until ``name`` was emitted ``count`` times; returns the seconds waited."""
        started = time.monotonic()
        while self.names().count(name) < count:
            if time.monotonic() - started > timeout:
                raise AssertionError(f"no {name!r} event within {timeout} s: {self.names()}")
            await asyncio.sleep(0.01)
        return time.monotonic() - started


class RedisStoreOutageCase(RedisServerCase, AsyncTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.store = RedisStore.from_url(self.redis_server.url, probe_interval=0.2)
        self.recorder = Recorder(self.store)

    def tearDown(self) -> None:
        self.io_loop.run_sync(self.store.close)
        super().tearDown()

    async def stop_server(self) -> None:
        await asyncio.to_thread(self.redis_server.stop)

    async def start_server(self) -> None:
        await asyncio.to_thread(self.redis_server.start)

    def probes(self) -> list[asyncio.Task[Any]]:
        return [
            task for task in asyncio.all_tasks()
            if "_probe_until_back" in repr(task.get_coro()) and not task.done()
        ]


class TestConnectionEvents(RedisStoreOutageCase):
    @gen_test(timeout=20)
    async def test_failed_command_emits_disconnect_once_and_raises_our_error(self) -> None:
        await self.store.set("k", {"n": 1}, 60)
        self.assertEqual(self.probes(), [])  # no task while connected
        await self.stop_server()
        with ExpectLog("tornado_session.stores.redis", "Redis cannot be reached"):
            for call in (self.store.get("k"), self.store.set("k", {"n": 2}, 60),
                         self.store.destroy("k"), self.store.count()):
                with self.assertRaises(StoreUnavailableError):
                    await call
        self.assertFalse(self.store.connected)
        self.assertEqual(self.recorder.names(), ["disconnect"])
        payload = self.recorder.events[0][1]
        self.assertEqual(payload["key"], "RedisStore")
        self.assertEqual(payload["reason"], "ConnectionError")
        self.assertEqual(len(self.probes()), 1)

    @gen_test(timeout=20)
    async def test_server_coming_back_is_noticed_without_any_request(self) -> None:
        await self.store.set("k", {"n": 1}, 60)
        await self.stop_server()
        with ExpectLog("tornado_session.stores.redis", "Redis cannot be reached"), \
                self.assertRaises(StoreUnavailableError):
            await self.store.get("k")
        await asyncio.sleep(0.5)  # a few failed probes
        self.assertEqual(self.recorder.names(), ["disconnect"])
        await self.start_server()
        waited = await self.recorder.wait_for("connect", timeout=3)
        self.assertLess(waited, 1.0)  # probe_interval is 0.2 s
        self.assertEqual(self.recorder.events[-1][1]["reason"], "probe")
        self.assertTrue(self.store.connected)
        await asyncio.sleep(0.05)
        self.assertEqual(self.probes(), [])  # the probe ended with the outage

    @gen_test(timeout=20)
    async def test_first_success_after_a_failure_emits_connect_once(self) -> None:
        await self.store.set("k", {"n": 1}, 60)
        await self.stop_server()
        with ExpectLog("tornado_session.stores.redis", "Redis cannot be reached"), \
                self.assertRaises(StoreUnavailableError):
            await self.store.get("k")
        await self.start_server()
        self.assertIsNone(await self.store.get("k"))  # persistence is off
        await self.store.set("k", {"n": 2}, 60)
        await asyncio.sleep(0.5)
        self.assertEqual(self.recorder.names(), ["disconnect", "connect"])

    @gen_test(timeout=20)
    async def test_server_that_hangs_times_out_as_unavailable(self) -> None:
        # The store's own timeout (from_url's way), then the client's socket_timeout.
        for options in ({"timeout": 0.3}, {"timeout": None, "socket_timeout": 0.3}):
            store = RedisStore.from_url(self.redis_server.url, probe_interval=0.1, **options)
            recorder = Recorder(store)
            await store.set("k", {"n": 1}, 60)
            process = self.redis_server.process
            assert process is not None
            os.kill(process.pid, signal.SIGSTOP)
            try:
                started = time.monotonic()
                with ExpectLog(
                    "tornado_session.stores.redis", "Redis cannot be reached.*Timeout"
                ), self.assertRaisesRegex(StoreUnavailableError, "(?i)timeout"):
                    await store.get("k")
                self.assertLess(time.monotonic() - started, 2.0)
                self.assertEqual(recorder.names(), ["disconnect"])
                self.assertEqual(recorder.events[0][1]["reason"], "TimeoutError")
            finally:
                os.kill(process.pid, signal.SIGCONT)
            await recorder.wait_for("connect", timeout=3)
            self.assertEqual(await store.get("k"), {"n": 1})
            await store.close()

    @gen_test(timeout=20)
    async def test_a_probe_that_died_is_started_again_by_a_waiting_request(self) -> None:
        await self.stop_server()
        with ExpectLog("tornado_session.stores.redis", "Redis cannot be reached"), \
                self.assertRaises(StoreUnavailableError):
            await self.store.get("k")
        (probe,) = self.probes()
        probe.cancel()
        await asyncio.wait([probe])
        self.assertEqual(self.probes(), [])
        await self.start_server()
        self.assertTrue(await self.store.wait_connected(3))  # what the lifecycle calls
        self.assertEqual(self.recorder.names(), ["disconnect", "connect"])

    @gen_test(timeout=20)
    async def test_an_unexpected_error_in_the_probe_does_not_end_it(self) -> None:
        await self.stop_server()
        with ExpectLog("tornado_session.stores.redis", "Redis cannot be reached"), \
                self.assertRaises(StoreUnavailableError):
            await self.store.get("k")
        real_ping = self.store.client.ping
        calls = []

        async def broken_once() -> bool:
            calls.append(1)
            if len(calls) == 1:
                raise RuntimeError("a bug")
            return await real_ping()

        with ExpectLog("tornado_session.stores.redis", "the Redis probe failed unexpectedly"):
            self.store.client.ping = broken_once  # type: ignore[method-assign]
            await self.start_server()
            await self.recorder.wait_for("connect", timeout=3)
        self.assertGreaterEqual(len(calls), 2)

    @gen_test(timeout=20)
    async def test_close_while_disconnected_cancels_the_probe(self) -> None:
        await self.stop_server()
        with ExpectLog("tornado_session.stores.redis", "Redis cannot be reached"), \
                self.assertRaises(StoreUnavailableError):
            await self.store.get("k")
        (probe,) = self.probes()
        await self.store.close()
        self.assertTrue(probe.cancelled())
        self.assertEqual(self.probes(), [])
        await self.start_server()
        await asyncio.sleep(0.3)
        self.assertEqual(self.recorder.names(), ["disconnect"])


class TestAnswerFromBeforeTheLoss(AsyncTestCase):
    """One command saw Redis go; another's answer, read before that, is handled after.

    Real sockets cannot order two replies deterministically, so the client's
    ``GET`` is replaced: each call waits until the test answers it, in the
    test's order.  ``PING`` fails, as against a server that is gone.
    """

    def setUp(self) -> None:
        super().setUp()
        self.store = RedisStore.from_url(f"redis://127.0.0.1:{free_port()}", probe_interval=0.05)
        self.pending: list[asyncio.Future[Any]] = []
        self.store.client.get = self.get  # type: ignore[method-assign,assignment]
        self.store.client.ping = self.ping  # type: ignore[method-assign]
        self.recorder = Recorder(self.store)

    def tearDown(self) -> None:
        self.io_loop.run_sync(self.store.close)
        super().tearDown()

    async def get(self, name: str) -> Any:
        self.pending.append(asyncio.get_running_loop().create_future())
        return await self.pending[-1]

    async def ping(self) -> bool:
        raise RedisConnectionError("Error 111 connecting to 127.0.0.1. Connection refused.")

    async def lose_the_server(self) -> None:
        """A ``get`` fails with a connection error: the store is disconnected."""
        failing = asyncio.ensure_future(self.store.get("k2"))
        await asyncio.sleep(0)
        with ExpectLog("tornado_session.stores.redis", "Redis cannot be reached"):
            self.pending[-1].set_exception(RedisConnectionError("Connection closed by server."))
            with self.assertRaises(StoreUnavailableError):
                await failing
        self.assertFalse(self.store.connected)

    @gen_test
    async def test_an_answer_to_a_command_sent_before_the_loss_does_not_report_redis_back(
        self,
    ) -> None:
        early = asyncio.ensure_future(self.store.get("k1"))
        await asyncio.sleep(0)  # sent, its answer on the way
        await self.lose_the_server()
        self.pending[0].set_result(None)  # the earlier command's answer, handled now
        self.assertIsNone(await early)
        self.assertFalse(self.store.connected)
        self.assertEqual(self.recorder.names(), ["disconnect"])

    @gen_test
    async def test_an_answer_to_a_command_sent_during_the_outage_reports_redis_back(
        self,
    ) -> None:
        await self.lose_the_server()
        late = asyncio.ensure_future(self.store.get("k1"))
        await asyncio.sleep(0)
        with ExpectLog("tornado_session.stores.redis", r"Redis answers again \(operation",
                       level=logging.INFO):
            self.pending[-1].set_result(None)
            self.assertIsNone(await late)
        self.assertTrue(self.store.connected)
        self.assertEqual(self.recorder.names(), ["disconnect", "connect"])
        self.assertEqual(self.recorder.events[-1][1]["reason"], "operation succeeded")


class Counter(SessionMixin, tornado.web.RequestHandler):
    def get(self) -> None:
        self.session["views"] = self.session.get("views", 0) + 1
        self.write(str(self.session["views"]))


class Reader(SessionMixin, tornado.web.RequestHandler):
    def get(self) -> None:
        self.write(str(self.session.get("views", 0)))


class SlowCounter(SessionMixin, tornado.web.RequestHandler):
    async def get(self, key: str) -> None:
        await asyncio.sleep(0.01)
        self.session[key] = self.session.get(key, 0) + 1
        self.write("ok")


class RedisHTTPCase(RedisServerCase, SessionTestCase):
    reconnect_timeout = 0.5

    def make_store(self) -> RedisStore:
        self.redis = RedisStore.from_url(self.redis_server.url, probe_interval=0.1)
        self.recorder = Recorder(self.redis)
        return self.redis

    def session_options(self) -> dict[str, Any]:
        return {"reconnect_timeout": self.reconnect_timeout}

    def get_handlers(self) -> list[Any]:
        return [(r"/count", Counter), (r"/read", Reader),
                (r"/slow/(\w+)", SlowCounter)]

    def tearDown(self) -> None:
        self.io_loop.run_sync(self.redis.close)
        super().tearDown()

    def stored(self) -> dict[str, Any]:
        """The one session in Redis, read by the test's own client."""
        with self.redis_server.admin() as admin:
            names = list(admin.scan_iter(match=NS + "*"))
            self.assertEqual(len(names), 1, names)
            data: dict[str, Any] = json.loads(admin.get(names[0]))
            return data

    async def outage_503(self, path: str) -> None:
        started = time.monotonic()
        with ExpectLog("tornado_session.mixin", ".*answered 503"), \
                ExpectLog("tornado_session.stores.redis", "Redis cannot be reached"):
            response = await self.fetch_async(path)
        self.assertGreaterEqual(time.monotonic() - started, self.reconnect_timeout)
        self.assertEqual(response.code, 503)
        self.assertEqual(response.headers["Retry-After"], "1")
        self.assertNotIn("Set-Cookie", response.headers)


class TestOutageWithPersistence(RedisHTTPCase):
    appendonly = True

    @gen_test(timeout=30)
    async def test_stop_gives_503_and_restart_serves_the_data_written_before(self) -> None:
        self.assertEqual((await self.fetch_async("/count")).body, b"1")
        self.assertEqual((await self.fetch_async("/count")).body, b"2")
        cookie = self.jar[COOKIE]
        await asyncio.to_thread(self.redis_server.stop)

        await self.outage_503("/read")
        self.assertEqual(self.recorder.names(), ["disconnect"])
        started = time.monotonic()
        fresh = await self.fetch_async("/read", cookies=False)  # no cookie: no store call
        self.assertEqual((fresh.code, fresh.body), (200, b"0"))
        self.assertLess(time.monotonic() - started, 0.4)  # not held

        await asyncio.to_thread(self.redis_server.start)
        await self.recorder.wait_for("connect", timeout=3)
        self.assertEqual(self.recorder.names(), ["disconnect", "connect"])
        self.assertEqual((await self.fetch_async("/read")).body, b"2")
        response = await self.fetch_async("/count")
        self.assertEqual((response.code, response.body), (200, b"3"))
        self.assertEqual(self.jar[COOKIE], cookie)
        self.assertEqual(self.stored()["views"], 3)


class TestRequestHeldDuringOutage(RedisHTTPCase):
    appendonly = True
    reconnect_timeout = 5.0

    @gen_test(timeout=30)
    async def test_request_waiting_during_the_outage_is_served_when_redis_returns(self) -> None:
        self.assertEqual((await self.fetch_async("/count")).body, b"1")
        await asyncio.to_thread(self.redis_server.stop)
        with ExpectLog("tornado_session.stores.redis", "Redis cannot be reached"):
            waiting = asyncio.ensure_future(self.fetch_async("/count"))
            await self.recorder.wait_for("disconnect")
        await asyncio.sleep(0.3)
        self.assertFalse(waiting.done())
        started = time.monotonic()
        await asyncio.to_thread(self.redis_server.start)
        response = await waiting
        self.assertLess(time.monotonic() - started, 2.0)
        self.assertEqual((response.code, response.body), (200, b"2"))
        self.assertEqual(self.stored()["views"], 2)


class TestOutageWithoutPersistence(RedisHTTPCase):
    @gen_test(timeout=30)
    async def test_after_a_restart_requests_succeed_with_a_new_session(self) -> None:
        self.assertEqual((await self.fetch_async("/count")).body, b"1")
        missed: list[dict[str, Any]] = []
        self._app.settings["session"].events.on("session:missed", missed.append)
        await asyncio.to_thread(self.redis_server.stop)
        await self.outage_503("/count")
        await asyncio.to_thread(self.redis_server.start)
        await self.recorder.wait_for("connect", timeout=3)
        response = await self.fetch_async("/count")
        self.assertEqual((response.code, response.body), (200, b"1"))  # the data was in memory
        self.assertEqual(len(missed), 1)
        self.assertEqual(self.stored()["views"], 1)


class TestConcurrentRequests(RedisHTTPCase):
    @gen_test(timeout=30)
    async def test_fifty_concurrent_requests_each_changing_its_own_key_all_survive(self) -> None:
        await self.fetch_async("/slow/start")
        responses = await asyncio.gather(
            *(self.fetch_async(f"/slow/k{i}") for i in range(50))
        )
        self.assertEqual({r.code for r in responses}, {200})
        expected = {f"k{i}": 1 for i in range(50)}
        expected["start"] = 1
        self.assertEqual(self.stored(), expected)
        self.assertEqual(await self.redis.count(), 1)

    @gen_test(timeout=30)
    async def test_store_key_is_a_hash_of_the_id_never_the_id(self) -> None:
        await self.fetch_async("/count")
        with self.redis_server.admin() as admin:
            (name,) = list(admin.scan_iter(match=NS + "*"))
        self.assertRegex(name.decode(), rf"^{NS}[0-9a-f]{{64}}$")
        cookie = self.jar[COOKIE]
        self.assertNotIn(name.decode()[len(NS):], cookie)
