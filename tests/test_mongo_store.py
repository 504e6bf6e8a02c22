"""MongoStore over TCP: the store contract against the mongoeco wire server, with
PyMongo's async client and with Motor, and against a real MongoDB when MONGODB_URI is set."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pymongo
import pytest
import tornado.web
from motor.motor_asyncio import AsyncIOMotorClient
from motor.motor_tornado import MotorClient
from tornado.testing import AsyncTestCase, ExpectLog, gen_test

from tests.base import COOKIE, SessionTestCase
from tests.mongo_server import MongoWireServer
from tests.test_handler_api import SlowCounter
from tornado_session import SessionMixin
from tornado_session.errors import SessionOptionError, StoreUnavailableError
from tornado_session.stores import MongoStore
from tornado_session.testing import StoreContract

MONGODB_URI = os.environ.get("MONGODB_URI")
DATABASE = "tornado_session_test"
SERVER: MongoWireServer | None = None


@pytest.fixture(scope="module", autouse=True)
def wire_server() -> Iterator[MongoWireServer]:
    global SERVER
    server = MongoWireServer()
    server.start()
    SERVER = server
    yield server
    SERVER = None
    server.close()


def server_uri() -> str:
    assert SERVER is not None
    return SERVER.uri


def unique_collection() -> str:
    return "sessions_" + uuid.uuid4().hex[:12]


class TestMongoStoreContractPyMongo(StoreContract):
    """The contract with pymongo.AsyncMongoClient, the primary path."""

    def make_store(self) -> MongoStore:
        async def build() -> MongoStore:  # PyMongo's async client is made inside the loop
            self.client: Any = pymongo.AsyncMongoClient(
                server_uri(), event_listeners=[MongoStore.listener()],
                serverSelectionTimeoutMS=5000,
            )
            return MongoStore(
                self.client[DATABASE][unique_collection()], namespace="app-a:", clock=self.clock,
                user_key=self.user_key,
            )

        return self.io_loop.run_sync(build)

    def make_neighbour(self) -> MongoStore:
        return MongoStore(self.store.collection, namespace="app-b:", clock=self.clock)

    async def _close_store(self) -> None:
        await super()._close_store()
        await self.client.close()


class TestMongoStoreContractMotor(StoreContract):
    """The contract with a motor.motor_asyncio client, without a ConnectionMonitor
    (so the store watches driver errors instead)."""

    def make_store(self) -> MongoStore:
        self.client: Any = AsyncIOMotorClient(server_uri(), serverSelectionTimeoutMS=5000)
        return MongoStore(
            self.client[DATABASE][unique_collection()], namespace="app-a:", clock=self.clock,
            user_key=self.user_key,
        )

    def make_neighbour(self) -> MongoStore:
        return MongoStore(self.store.collection, namespace="app-b:", clock=self.clock)

    async def _close_store(self) -> None:
        await super()._close_store()
        self.client.close()


@pytest.mark.skipif(
    not MONGODB_URI, reason="MONGODB_URI is not set: no real MongoDB to test against"
)
class TestMongoStoreContractRealMongoDB(StoreContract):
    """The contract against a real MongoDB (CI's mongo:7 service)."""

    def make_store(self) -> MongoStore:
        assert MONGODB_URI
        return MongoStore.from_uri(
            MONGODB_URI, collection=unique_collection(), namespace="app-a:", clock=self.clock,
            serverSelectionTimeoutMS=5000, user_key=self.user_key,
        )

    def make_neighbour(self) -> MongoStore:
        return MongoStore(self.store.collection, namespace="app-b:", clock=self.clock)


class Login(SessionMixin, tornado.web.RequestHandler):
    def get(self, user: str) -> None:
        self.session["user_id"] = int(user)


class WhoAmI(SessionMixin, tornado.web.RequestHandler):
    def get(self) -> None:
        self.write(str(self.session.get("user_id", "nobody")))


class TestMongoStoreHTTP(SessionTestCase):
    """Whole requests against a MongoStore on the wire server."""

    def uri(self) -> str:
        return server_uri()

    def make_store(self) -> MongoStore:
        return MongoStore.from_uri(
            self.uri(), database=DATABASE, collection=unique_collection(), clock=self.clock,
            serverSelectionTimeoutMS=5000,
        )

    def get_handlers(self) -> list[Any]:
        return [
            *super().get_handlers(),
            (r"/slow/(\w+)", SlowCounter), (r"/login/(\d+)", Login), (r"/whoami", WhoAmI),
        ]

    def tearDown(self) -> None:
        assert isinstance(self.store, MongoStore)
        self.io_loop.run_sync(self.store.clear)
        self.io_loop.run_sync(self.store.close)
        super().tearDown()

    @gen_test(timeout=60)
    async def test_fifty_concurrent_requests_each_changing_its_own_key_all_survive(self) -> None:
        await self.fetch_async("/slow/start")
        responses = await asyncio.gather(*(self.fetch_async(f"/slow/k{i}") for i in range(50)))
        self.assertEqual([r.code for r in responses], [200] * 50)
        assert isinstance(self.store, MongoStore)
        documents = await self.store.collection.find({}).to_list(None)
        self.assertEqual(len(documents), 1)
        self.assertEqual(documents[0]["data"], {"start": 1, **{f"k{i}": 1 for i in range(50)}})

    def test_counter_counts_and_the_document_is_queryable(self) -> None:
        self.assertEqual(self.fetch("/count").body, b"1")
        self.assertEqual(self.fetch("/count").body, b"2")

        async def stored() -> list[dict[str, Any]]:
            assert isinstance(self.store, MongoStore)
            found: list[dict[str, Any]] = await self.store.collection.find(
                {"data.views": 2}
            ).to_list(None)
            return found

        (document,) = self.io_loop.run_sync(stored)
        self.assertEqual(document["data"], {"views": 2})
        self.assertEqual(len(document["_id"]), 64)  # a SHA-256 of the id, never the id
        self.assertNotIn(document["_id"], self.jar[COOKIE])
        expected = self.clock() + 86400
        self.assertAlmostEqual(document["expires"].timestamp(), expected, delta=1)

    def test_logout_everywhere_destroys_only_that_users_sessions(self) -> None:
        jars = []
        for user in (42, 42, 7):
            self.jar = {}
            self.fetch(f"/login/{user}")
            jars.append(dict(self.jar))
        assert isinstance(self.store, MongoStore)
        self.assertEqual(self.io_loop.run_sync(lambda: self.store.destroy_all(user_id=42)), 2)
        seen = []
        for jar in jars:
            self.jar = jar
            seen.append(self.fetch("/whoami").body)
        self.assertEqual(seen, [b"nobody", b"nobody", b"7"])


@pytest.mark.skipif(
    not MONGODB_URI, reason="MONGODB_URI is not set: no real MongoDB to test against"
)
class TestMongoStoreHTTPRealMongoDB(TestMongoStoreHTTP):
    def uri(self) -> str:
        assert MONGODB_URI
        return MONGODB_URI


class TestMotorTornado(SessionTestCase):
    """A motor.motor_tornado collection works as well (Tornado's own Motor flavour)."""

    def make_store(self) -> MongoStore:
        self.client: Any = MotorClient(server_uri(), serverSelectionTimeoutMS=5000)
        return MongoStore(self.client[DATABASE][unique_collection()], clock=self.clock)

    def tearDown(self) -> None:
        assert isinstance(self.store, MongoStore)
        self.io_loop.run_sync(self.store.clear)
        self.io_loop.run_sync(self.store.close)
        super().tearDown()
        self.client.close()

    def test_counter_and_bulk_operations_with_a_motor_tornado_client(self) -> None:
        self.assertEqual(self.fetch("/count").body, b"1")
        self.assertEqual(self.fetch("/count").body, b"2")
        assert isinstance(self.store, MongoStore)
        self.assertEqual(self.io_loop.run_sync(self.store.count), 1)
        self.assertEqual(self.io_loop.run_sync(lambda: self.store.destroy_all(views=2)), 1)
        self.assertEqual(self.fetch("/read").body, b"0")


class TestFromURI(AsyncTestCase):
    async def database_of(self, store: MongoStore) -> str:
        try:
            await store.setup()
            name: str = store.collection.database.name
            return name
        finally:
            await store.close()

    @gen_test
    async def test_database_named_in_the_uri_is_used(self) -> None:
        store = MongoStore.from_uri(server_uri() + "/fromuri")
        self.assertEqual(await self.database_of(store), "fromuri")

    @gen_test
    async def test_database_argument_wins_over_the_uri(self) -> None:
        store = MongoStore.from_uri(server_uri() + "/fromuri", database="explicit")
        self.assertEqual(await self.database_of(store), "explicit")

    @gen_test
    async def test_default_database_and_collection(self) -> None:
        store = MongoStore.from_uri(server_uri())
        self.assertEqual(await self.database_of(store), "tornado_session")
        self.assertEqual(store.collection.name, "sessions")

    @gen_test
    async def test_close_closes_the_client_it_created(self) -> None:
        store = MongoStore.from_uri(server_uri(), collection=unique_collection())
        await store.count()
        await store.close()
        with self.assertRaises(pymongo.errors.InvalidOperation):
            await store.client.admin.command("ping")

    @gen_test
    async def test_close_leaves_a_client_it_was_given_open(self) -> None:
        client: Any = pymongo.AsyncMongoClient(server_uri())
        try:
            store = MongoStore(client[DATABASE][unique_collection()])
            await store.count()
            await store.close()
            self.assertEqual((await client.admin.command("ping"))["ok"], 1)
        finally:
            await client.close()

    @gen_test
    async def test_setup_twice_and_on_an_existing_index_is_fine(self) -> None:
        client: Any = pymongo.AsyncMongoClient(server_uri())
        try:
            collection = client[DATABASE][unique_collection()]
            await collection.create_index([("expires", 1)], expireAfterSeconds=0)
            store = MongoStore(collection)
            await store.setup()
            await store.setup()
            indexes = await collection.index_information()
            self.assertEqual(indexes["expires_1"]["expireAfterSeconds"], 0)
            self.assertEqual(len(indexes), 2)  # _id and expires
        finally:
            await client.close()


class TestConstruction(AsyncTestCase):
    def test_something_else_than_a_collection_is_refused_naming_the_argument(self) -> None:
        with self.assertRaises(SessionOptionError) as caught:
            MongoStore("sessions")
        self.assertIn("MongoStore(collection='sessions')", str(caught.exception))

    def test_a_synchronous_pymongo_collection_is_refused(self) -> None:
        client: Any = pymongo.MongoClient("mongodb://127.0.0.1:1", connect=False)
        try:
            with self.assertRaises(SessionOptionError) as caught:
                MongoStore(client["app"]["sessions"])
        finally:
            client.close()
        self.assertIn("would block the IOLoop", str(caught.exception))
        self.assertIn("pymongo.AsyncMongoClient", str(caught.exception))

    @gen_test
    async def test_a_closed_store_is_unavailable(self) -> None:
        store = MongoStore.from_uri("mongodb://127.0.0.1:1")
        await store.close()
        with self.assertRaises(StoreUnavailableError):
            await store.get("k1")

    async def seconds_to_unavailable(self, uri: str) -> float:
        """How long a `get` takes to fail on a store built by `from_uri(uri)`."""
        store = MongoStore.from_uri(uri)
        started = time.monotonic()
        try:
            with ExpectLog("tornado_session.stores.mongo", "MongoDB cannot be reached"), \
                    self.assertRaises(StoreUnavailableError):
                await store.get("k1")
        finally:
            await store.close()
        return time.monotonic() - started

    @gen_test(timeout=15)
    async def test_unreachable_server_is_unavailable_within_two_seconds_not_thirty(self) -> None:
        self.assertLess(await self.seconds_to_unavailable("mongodb://127.0.0.1:1"), 6)

    @gen_test(timeout=15)
    async def test_server_selection_timeout_given_in_the_uri_is_kept(self) -> None:
        uri = "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=200"
        self.assertLess(await self.seconds_to_unavailable(uri), 1.5)

    def test_bad_probe_interval_is_refused_naming_the_option(self) -> None:
        for bad in (0, -1, True, "1"):
            with self.subTest(bad=bad), self.assertRaises(SessionOptionError) as caught:
                MongoStore.from_uri("mongodb://127.0.0.1:1", probe_interval=bad)
            self.assertIn(f"probe_interval={bad!r}", str(caught.exception))

    def test_no_driver_is_imported_by_the_package(self) -> None:
        code = (
            "import sys, tornado_session, tornado_session.stores\n"
            "print(sorted(m for m in ('pymongo', 'bson', 'motor') if m in sys.modules))"
        )
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=True)
        self.assertEqual(result.stdout.strip(), "[]")

    def test_without_pymongo_building_a_store_names_the_extra(self) -> None:
        code = (
            "import sys\n"
            "sys.modules['pymongo'] = sys.modules['bson'] = None\n"
            "from tornado_session.stores import MongoStore\n"
            "for build in (lambda: MongoStore(object()), lambda: MongoStore.from_uri('x'),\n"
            "              MongoStore.listener):\n"
            "    try:\n"
            "        build()\n"
            "    except ImportError as exc:\n"
            "        print(exc)\n"
        )
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=True)
        hint = 'MongoStore needs PyMongo: pip install "tornado-async-session[mongo]"'
        self.assertEqual(result.stdout.splitlines(), [hint] * 3)
