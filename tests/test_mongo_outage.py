"""A MongoDB outage, for real: the wire server is stopped mid-test and started again.

The server keeps its data in a SQLite file, so the restart (same port) is a
server restart, not a new database: the session must still be there after it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from types import SimpleNamespace
from typing import Any

from motor.motor_asyncio import AsyncIOMotorClient
from pymongo.errors import AutoReconnect
from tornado.testing import AsyncTestCase, ExpectLog, gen_test

from tests.base import SessionTestCase
from tests.mongo_server import MongoWireServer
from tornado_session.errors import StoreUnavailableError
from tornado_session.stores import MongoStore

#: Heartbeats every half second (PyMongo's minimum), so an outage shows quickly.
CLIENT_OPTIONS: dict[str, Any] = {"heartbeatFrequencyMS": 500, "serverSelectionTimeoutMS": 2000}


class OutageCase(SessionTestCase):
    server: MongoWireServer

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.server = MongoWireServer(persistent=True)
        cls.server.start()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.server.close()
        super().tearDownClass()

    def session_options(self) -> dict[str, Any]:
        return {"reconnect_timeout": 0.5}

    def setUp(self) -> None:
        super().setUp()
        self.events: list[tuple[str, str]] = []
        assert isinstance(self.store, MongoStore)
        for name in ("connect", "disconnect"):
            self.store.on(name, lambda payload, name=name: self.events.append(
                (name, threading.current_thread().name)
            ))

    def tearDown(self) -> None:
        if self.server.process is None:
            self.server.start()
        assert isinstance(self.store, MongoStore)
        self.io_loop.run_sync(self.store.close)
        super().tearDown()

    async def wait_for(self, event: str, timeout: float = 10.0) -> float:
        """Wait until the store emitted ``event``; returns how long it took."""
        started = time.monotonic()
        while event not in [name for name, _ in self.events]:
            if time.monotonic() - started > timeout:
                self.fail(f"no {event!r} within {timeout} s; events: {self.events}")
            await asyncio.sleep(0.02)
        return time.monotonic() - started

    async def stop_server(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.server.stop)

    async def start_server(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.server.start)

    async def outage_then_recovery(self) -> None:
        self.assertEqual((await self.fetch_async("/count")).body, b"1")
        self.assertEqual((await self.fetch_async("/count")).body, b"2")

        await self.stop_server()
        took = await self.wait_for("disconnect")  # from the heartbeats: no request made
        self.assertLess(took, 5)
        self.assertFalse(self.store.connected if self.store else True)

        for path in ("/read", "/count"):  # a read and a write both need the store
            started = time.monotonic()
            with ExpectLog("tornado_session.mixin", ".*answered 503"):
                response = await self.fetch_async(path)
            self.assertGreaterEqual(time.monotonic() - started, 0.5)  # reconnect_timeout
            self.assertEqual(response.code, 503)
            self.assertEqual(response.headers["Retry-After"], "1")
            self.assertNotIn("Set-Cookie", response.headers)
        unused = await self.fetch_async("/unused", cookies=False)
        self.assertEqual(unused.code, 200)  # a request not needing the store is not held

        await self.start_server()
        await self.wait_for("connect")
        self.assertEqual((await self.fetch_async("/read")).body, b"2")  # nothing lost
        self.assertEqual((await self.fetch_async("/count")).body, b"3")
        self.assertEqual([name for name, _ in self.events], ["disconnect", "connect"])
        loop_thread = threading.current_thread().name
        self.assertEqual({thread for _, thread in self.events}, {loop_thread})


class TestOutagePyMongo(OutageCase):
    """`MongoStore.from_uri`: PyMongo's async client with the store's own monitor."""

    def make_store(self) -> MongoStore:
        return MongoStore.from_uri(
            self.server.uri, database="outage", clock=self.clock, **CLIENT_OPTIONS
        )

    @gen_test(timeout=60)
    async def test_stop_gives_disconnect_and_503_restart_gives_connect_and_the_session(
        self,
    ) -> None:
        await self.outage_then_recovery()


class TestOutageMotorListener(OutageCase):
    """Motor with `MongoStore.listener()`: heartbeats arrive on PyMongo's threads."""

    def make_store(self) -> MongoStore:
        self.client: Any = AsyncIOMotorClient(
            self.server.uri, event_listeners=[MongoStore.listener()], **CLIENT_OPTIONS
        )
        return MongoStore(self.client["outage"]["motor"], clock=self.clock)

    def tearDown(self) -> None:
        super().tearDown()
        self.client.close()

    @gen_test(timeout=60)
    async def test_events_from_driver_threads_reach_the_loop(self) -> None:
        assert isinstance(self.store, MongoStore)
        self.assertIsNotNone(self.store.monitor)
        await self.outage_then_recovery()


class TestOutageWithoutListener(OutageCase):
    """A client built without the listener: errors and pings tell the store instead."""

    def make_store(self) -> MongoStore:
        self.client: Any = AsyncIOMotorClient(self.server.uri, **CLIENT_OPTIONS)
        return MongoStore(self.client["outage"]["plain"], clock=self.clock, probe_interval=0.1)

    def tearDown(self) -> None:
        super().tearDown()
        self.client.close()

    @gen_test(timeout=60)
    async def test_failed_request_marks_disconnected_and_the_probe_finds_the_restart(
        self,
    ) -> None:
        assert isinstance(self.store, MongoStore)
        self.assertIsNone(self.store.monitor)
        self.assertEqual((await self.fetch_async("/count")).body, b"1")
        await self.stop_server()
        with ExpectLog("tornado_session.stores.mongo", "MongoDB cannot be reached"), \
                ExpectLog("tornado_session.mixin", ".*answered 503"):
            response = await self.fetch_async("/read")
        self.assertEqual(response.code, 503)
        self.assertEqual([name for name, _ in self.events], ["disconnect"])
        await self.start_server()
        await self.wait_for("connect")  # the probe's ping, no request needed
        self.assertEqual((await self.fetch_async("/count")).body, b"2")


class GatedCollection:
    """A collection whose ``find_one`` calls answer when the test says, in its order.

    Real sockets cannot order two replies deterministically; this can.  Each
    ``find_one`` waits for its own future (``pending``); ``ping`` fails, as
    against a server that is gone.
    """

    def __init__(self) -> None:
        self.pending: list[asyncio.Future[Any]] = []
        client = SimpleNamespace(options=SimpleNamespace(event_listeners=()))
        self.database = SimpleNamespace(client=client, command=self._ping)

    def with_options(self, **options: Any) -> GatedCollection:
        return self

    async def find_one(self, *args: Any, **kwargs: Any) -> Any:
        self.pending.append(asyncio.get_running_loop().create_future())
        return await self.pending[-1]

    async def update_one(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    async def _ping(self, name: str) -> Any:
        raise AutoReconnect("127.0.0.1:1: connection closed")


class TestAnswerFromBeforeTheOutage(AsyncTestCase):
    """One call saw the server die; another call's answer, read before that, comes after."""

    def setUp(self) -> None:
        super().setUp()
        self.collection = GatedCollection()
        self.store = MongoStore(self.collection, create_ttl_index=False)
        self.events: list[str] = []
        for name in ("connect", "disconnect"):
            self.store.on(name, lambda payload, name=name: self.events.append(name))

    def tearDown(self) -> None:
        self.io_loop.run_sync(self.store.close)
        super().tearDown()

    async def lose_the_server(self) -> None:
        """A ``get`` fails with a connection error: the store is disconnected."""
        failing = asyncio.ensure_future(self.store.get("k2"))
        await asyncio.sleep(0)
        with ExpectLog("tornado_session.stores.mongo", "MongoDB cannot be reached"):
            self.collection.pending[-1].set_exception(AutoReconnect("connection closed"))
            with self.assertRaises(StoreUnavailableError):
                await failing
        self.assertFalse(self.store.connected)

    @gen_test
    async def test_an_answer_to_a_call_made_before_the_outage_does_not_report_mongodb_back(
        self,
    ) -> None:
        early = asyncio.ensure_future(self.store.get("k1"))
        await asyncio.sleep(0)  # sent, its answer on the way
        await self.lose_the_server()
        self.collection.pending[0].set_result(None)  # the earlier call's answer, handled now
        self.assertIsNone(await early)
        self.assertFalse(self.store.connected)
        self.assertEqual(self.events, ["disconnect"])

    @gen_test
    async def test_an_answer_to_a_call_made_during_the_outage_reports_mongodb_back(
        self,
    ) -> None:
        await self.lose_the_server()
        late = asyncio.ensure_future(self.store.get("k1"))
        await asyncio.sleep(0)
        with ExpectLog("tornado_session.stores.mongo", r"MongoDB answers again \(operation",
                       level=logging.INFO):
            self.collection.pending[-1].set_result(None)
            self.assertIsNone(await late)
        self.assertTrue(self.store.connected)
        self.assertEqual(self.events, ["disconnect", "connect"])

    @gen_test
    async def test_news_from_the_monitor_is_logged_once_per_change(self) -> None:
        with self.assertLogs("tornado_session.stores.mongo", "INFO") as logged:
            for _ in range(2):  # every heartbeat repeats it; one line
                self.store._from_monitor(False, "heartbeat failed")
            await self.lose_the_server_again()
            for _ in range(2):
                self.store._from_monitor(True, "heartbeat succeeded")
        self.assertEqual([(record.levelname, record.getMessage().split(":")[0])
                          for record in logged.records],
                         [("WARNING", "MongoDB cannot be reached (heartbeat failed)"),
                          ("INFO", "MongoDB answers again (heartbeat succeeded)")])
        self.assertEqual(self.events, ["disconnect", "connect"])

    async def lose_the_server_again(self) -> None:
        """A call failing while the monitor already reported the loss: nothing more to say."""
        failing = asyncio.ensure_future(self.store.get("k2"))
        await asyncio.sleep(0)
        self.collection.pending[-1].set_exception(AutoReconnect("connection closed"))
        with self.assertRaises(StoreUnavailableError):
            await failing
