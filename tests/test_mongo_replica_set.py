"""MongoStore on a replica set whose primary steps down mid-request, and on a sharded cluster.

No mongod runs here, so two MockupDB servers pose as the two members of
replica set ``rs``: each answers ``hello`` with the set's current view (which
member is primary, the election id), and the test decides when the primary
changes.  PyMongo's retryable writes then do what the issue asks: a session
write answered with ``NotWritablePrimary`` is sent once more, with the same
``lsid`` and ``txnNumber``, to the member elected since; if that one refuses
too, the store raises `StoreUnavailableError`, which the lifecycle answers
with 503: never a 200 for a session that was not written.

The same mock server shows the command shapes a sharded cluster routes:
every per-session command filters on ``_id`` (one shard on a collection
sharded on ``{_id: "hashed"}``); only the bulk operations do not (broadcast).

`TestRealReplicaSet` runs the same checks against a real replica set when
``MONGODB_URI`` names one (and steps its primary down only with
``MONGODB_ALLOW_STEP_DOWN=1``); without one it is skipped, never passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
import unittest
import uuid
from typing import Any, ClassVar

import pymongo
import pymongo.errors
from bson import ObjectId
from mockupdb import MockupDB
from tornado.testing import AsyncTestCase, ExpectLog, gen_test

from tests.base import COOKIE, SessionTestCase
from tests.mongo_mock import MockMongoCase
from tornado_session.errors import StoreUnavailableError
from tornado_session.stores import MongoStore
from tornado_session.testing import FakeClock

NOT_WRITABLE_PRIMARY = 10107
HANDSHAKE = ("hello", "ismaster", "isMaster")
#: The commands a member refuses when it is not the primary (a changed session is a findAndModify).
WRITES = ("update", "findAndModify", "delete", "insert")


class ReplicaSet:
    """Two MockupDB members of replica set ``rs``; `step_down` makes the other one primary."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.members = [MockupDB(auto_ismaster=False, max_wire_version=21) for _ in range(2)]
        for member in self.members:
            member.run()
        self.addresses = [f"127.0.0.1:{member.port}" for member in self.members]
        self.primary = 0
        self.election = 1
        #: ``(member index, command name, document)`` of every command but the handshake.
        self.commands: list[tuple[int, str, dict[str, Any]]] = []
        #: How each member answers writes: "ok", or "refuse" (NotWritablePrimary).
        self.writes = ["ok", "ok"]
        #: When set, the primary steps down as it refuses its next write.
        self.step_down_on_write = False
        for index, member in enumerate(self.members):
            member.autoresponds(lambda request, index=index: self._handle(index, request))

    @property
    def uri(self) -> str:
        return f"mongodb://{','.join(self.addresses)}/app?replicaSet=rs"

    def stop(self) -> None:
        for member in self.members:
            member.stop()

    def hello(self, index: int) -> dict[str, Any]:
        """What member ``index`` says of the set now."""
        return {
            "isWritablePrimary": index == self.primary, "ismaster": index == self.primary,
            "secondary": index != self.primary, "setName": "rs", "hosts": self.addresses,
            "primary": self.addresses[self.primary], "me": self.addresses[index],
            "setVersion": 1, "electionId": ObjectId(f"7fffffff{self.election:016x}"),
            "helloOk": True, "maxWireVersion": 21, "minWireVersion": 0,
            "logicalSessionTimeoutMinutes": 30,
        }

    def step_down(self) -> None:
        """The other member is elected primary."""
        self.primary = 1 - self.primary
        self.election += 1

    @staticmethod
    def not_writable_primary(request: Any) -> Any:
        """The answer of a member that is no longer primary (MongoDB 4.4+ labels it)."""
        return request.command_err(
            NOT_WRITABLE_PRIMARY, "not primary", errorLabels=["RetryableWriteError"]
        )

    def _handle(self, index: int, request: Any) -> Any:
        name = request.command_name
        with self.lock:
            if name in HANDSHAKE:
                return request.ok(self.hello(index))
            if name in ("ping", "endSessions"):
                return request.ok()
            self.commands.append((index, name, dict(request.doc)))
            if name in WRITES:
                if self.step_down_on_write and index == self.primary:
                    self.step_down_on_write = False
                    self.step_down()
                    return self.not_writable_primary(request)
                if self.writes[index] == "refuse" or index != self.primary:
                    return self.not_writable_primary(request)
                if name == "findAndModify":  # a changed session's write: the record before
                    return request.ok(value={"data": {}}, lastErrorObject={"n": 1})
                return request.ok(n=1, nModified=1)
            if name == "find":
                cursor = {"id": 0, "ns": "app.sessions", "firstBatch": []}
                return request.ok(cursor=cursor)
            return request.ok()


class TestPrimaryStepDown(AsyncTestCase):
    replica_set: ClassVar[ReplicaSet]

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.replica_set = ReplicaSet()
        cls.addClassCleanup(cls.replica_set.stop)

    def setUp(self) -> None:
        super().setUp()
        rs = self.replica_set
        rs.primary, rs.election, rs.writes, rs.step_down_on_write = 0, 1, ["ok", "ok"], False
        rs.commands.clear()
        self.store = MongoStore.from_uri(
            rs.uri, create_ttl_index=False, clock=FakeClock(),
            serverSelectionTimeoutMS=3000, heartbeatFrequencyMS=500,
        )

    def tearDown(self) -> None:
        self.io_loop.run_sync(self.store.close)
        super().tearDown()

    def writes_seen(self) -> list[tuple[int, dict[str, Any]]]:
        return [(index, doc) for index, name, doc in self.replica_set.commands
                if name in ("update", "findAndModify")]

    @gen_test(timeout=20)
    async def test_a_write_refused_by_a_primary_stepping_down_is_retried_on_the_new_one(
        self,
    ) -> None:
        self.replica_set.step_down_on_write = True
        self.assertTrue(await self.store.set("k1", {"user": "ann"}, 60, previous={}))
        (first, refused), (second, retried) = self.writes_seen()
        self.assertEqual((first, second), (0, 1))  # the old primary, then the new one
        self.assertEqual(retried["update"], refused["update"])  # a findAndModify
        self.assertEqual(retried["query"], refused["query"])
        # One retryable write, sent twice: MongoDB applies it at most once.
        self.assertEqual(retried["lsid"], refused["lsid"])
        self.assertEqual(retried["txnNumber"], refused["txnNumber"])
        self.assertEqual(retried["writeConcern"], {"w": "majority"})

    @gen_test(timeout=20)
    async def test_a_write_refused_twice_is_a_store_outage_never_a_silent_loss(self) -> None:
        self.replica_set.step_down_on_write = True
        self.replica_set.writes = ["refuse", "refuse"]  # the new primary steps down too
        with self.assertRaises(StoreUnavailableError):
            await self.store.set("k1", {"user": "ann"}, 60, previous={})
        self.assertEqual([index for index, _ in self.writes_seen()], [0, 1])  # retried once

    @gen_test(timeout=20)
    async def test_sessions_are_read_from_the_primary_and_written_with_majority(self) -> None:
        # Even when the application's client prefers secondaries for its own reads.
        store = MongoStore.from_uri(
            self.replica_set.uri + "&readPreference=secondaryPreferred",
            create_ttl_index=False, serverSelectionTimeoutMS=3000,
        )
        try:
            for _ in range(3):
                await store.get("k1")
            await store.set("k1", {"n": 1}, 60)
            await store.destroy("k1")
        finally:
            await store.close()
        names = [name for _, name, _ in self.replica_set.commands]
        self.assertEqual(names, ["find"] * 3 + ["update", "delete"])
        for index, name, doc in self.replica_set.commands:
            self.assertEqual(index, self.replica_set.primary, name)
            if name == "find":
                self.assertEqual(doc.get("$readPreference", {"mode": "primary"}),
                                 {"mode": "primary"})
            else:
                self.assertEqual(doc["writeConcern"], {"w": "majority"}, name)

    @gen_test(timeout=20)
    async def test_a_write_concern_of_the_uri_is_kept(self) -> None:
        store = MongoStore.from_uri(
            self.replica_set.uri + "&w=1", create_ttl_index=False,
            serverSelectionTimeoutMS=3000,
        )
        try:
            await store.set("k1", {"n": 1}, 60)
        finally:
            await store.close()
        ((_, update),) = self.writes_seen()
        self.assertEqual(update["writeConcern"], {"w": 1})


class TestStepDownOverHTTP(SessionTestCase):
    """What a user sees when the primary steps down as their session is saved."""

    replica_set: ClassVar[ReplicaSet]

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.replica_set = ReplicaSet()
        cls.addClassCleanup(cls.replica_set.stop)

    def make_store(self) -> MongoStore:
        rs = self.replica_set
        rs.primary, rs.election, rs.writes, rs.step_down_on_write = 0, 1, ["ok", "ok"], False
        rs.commands.clear()
        self.mongo = MongoStore.from_uri(
            rs.uri, create_ttl_index=False, serverSelectionTimeoutMS=3000,
            heartbeatFrequencyMS=500,
        )
        return self.mongo

    def session_options(self) -> dict[str, Any]:
        return {"reconnect_timeout": 1.0}

    def tearDown(self) -> None:
        self.io_loop.run_sync(self.mongo.close)
        super().tearDown()

    @gen_test(timeout=20)
    async def test_a_login_saved_during_a_step_down_answers_200_and_is_on_the_new_primary(
        self,
    ) -> None:
        self.replica_set.step_down_on_write = True
        with ExpectLog("tornado_session", ".*", required=False):
            response = await self.fetch_async("/count")
        self.assertEqual((response.code, response.body), (200, b"1"))
        self.assertIn(COOKIE, self.jar)
        writes = [index for index, name, _ in self.replica_set.commands if name == "update"]
        self.assertEqual(writes, [0, 1])

    @gen_test(timeout=20)
    async def test_a_save_refused_by_both_primaries_answers_503_and_sets_no_cookie(self) -> None:
        self.replica_set.step_down_on_write = True
        self.replica_set.writes = ["refuse", "refuse"]
        with ExpectLog("tornado_session.mixin", ".*answered 503"), \
                ExpectLog("tornado_session", ".*", required=False):
            response = await self.fetch_async("/count")
        self.assertEqual(response.code, 503)
        self.assertIn("Retry-After", response.headers)
        self.assertNotIn("Set-Cookie", response.headers)


class TestCommandShapesForSharding(MockMongoCase, AsyncTestCase):
    """Which commands a mongos can send to one shard (``_id`` in the filter), and which not."""

    def setUp(self) -> None:
        super().setUp()
        self.clock = FakeClock()
        self.store = self.mock_store()

    def tearDown(self) -> None:
        self.io_loop.run_sync(self.store.close)
        super().tearDown()

    @gen_test(timeout=20)
    async def test_every_per_session_command_targets_one_id_and_only_bulk_ones_broadcast(
        self,
    ) -> None:
        await self.store.setup()
        self.mock.documents["k1"] = {"_id": "k1", "data": {"n": 1}}
        self.mock.clear()
        await self.store.get("k1")
        await self.store.set("k1", {"n": 2}, 60, previous={"n": 1})
        await self.store.set("k2", {"n": 1}, 60)
        await self.store.touch("k1", 60)
        await self.store.destroy("k1")
        per_session = list(self.mock.commands)
        self.assertEqual([name for name, _ in per_session],
                         ["find", "findAndModify", "update", "update", "delete"])
        for name, doc in per_session:
            (spec,) = (doc.get("updates") or doc.get("deletes")
                       or [{"q": doc["filter"] if name == "find" else doc["query"]}])
            self.assertIsInstance(spec["q"]["_id"], str, name)  # an equality on _id
            self.assertEqual(spec.get("multi", False), False, name)
            self.assertIn(spec.get("limit", 1), (0, 1), name)

        self.mock.clear()
        await self.store.destroy_all(user=1)
        await self.store.clear()
        for name, doc in self.mock.commands:
            (spec,) = doc["deletes"]
            self.assertNotIn("_id", spec["q"], name)  # no shard key: every shard is asked
            self.assertEqual(spec["limit"], 0)

    @gen_test(timeout=20)
    async def test_the_user_index_queries_broadcast_on_the_user_field(self) -> None:
        indexed = MongoStore.from_uri(
            self.mock.uri, clock=self.clock, user_key="user_id", serverSelectionTimeoutMS=3000
        )
        try:
            await indexed.setup()
            self.mock.clear()
            await indexed.user_sessions(7)
            await indexed.destroy_user(7)
        finally:
            await indexed.close()
        self.assertEqual([name for name, _ in self.mock.commands], ["find", "delete"])
        (_, find), (_, delete) = self.mock.commands
        for query in (find["filter"], delete["deletes"][0]["q"]):
            self.assertNotIn("_id", query)  # not the shard key: every shard is asked
            self.assertEqual(query["user"], 7)  # each answers from its (user, expires) index


#: A real replica set to test against: ``MONGODB_URI`` naming one (``?replicaSet=...``).
MONGODB_URI = os.environ.get("MONGODB_URI")
#: Stepping the primary down disturbs every client of that replica set: only when asked to.
ALLOW_STEP_DOWN = os.environ.get("MONGODB_ALLOW_STEP_DOWN") == "1"


def real_replica_set() -> dict[str, Any]:
    """``hello`` of the replica set ``MONGODB_URI`` names; the test is skipped without one."""
    if not MONGODB_URI:
        raise unittest.SkipTest("MONGODB_URI is not set: no real replica set to test against")
    with pymongo.MongoClient(MONGODB_URI, serverSelectionTimeoutMS=5000) as client:
        hello: dict[str, Any] = client.admin.command("hello")
    if "setName" not in hello:
        raise unittest.SkipTest("MONGODB_URI names a single server, not a replica set")
    return hello


class TestRealReplicaSet(AsyncTestCase):
    """The replica-set behaviour above, against a real one when ``MONGODB_URI`` names it.

    CI has no mongod (docs/scaling.md), so these run only where one is: the
    write concern and read preference the store uses, and, with
    ``MONGODB_ALLOW_STEP_DOWN=1`` and at least two electable members, a
    ``replSetStepDown`` of the primary while sessions are being written.
    """

    hello: ClassVar[dict[str, Any]]

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.hello = real_replica_set()

    def setUp(self) -> None:
        super().setUp()
        assert MONGODB_URI
        self.store = MongoStore.from_uri(
            MONGODB_URI, collection="sessions_" + uuid.uuid4().hex[:12],
            serverSelectionTimeoutMS=20_000,
        )

    def tearDown(self) -> None:
        async def drop() -> None:
            if self.store.collection is not None:  # None when the test made no call
                await self.store.collection.drop()
            await self.store.close()

        self.io_loop.run_sync(drop, timeout=60)
        super().tearDown()

    @gen_test(timeout=60)
    async def test_sessions_are_written_with_majority_and_read_from_the_primary(self) -> None:
        await self.store.set("k1", {"n": 1}, 60)
        self.assertEqual(await self.store.get("k1"), {"n": 1})
        collection = self.store.collection
        self.assertEqual(collection.write_concern.document, {"w": "majority"})
        self.assertEqual(collection.read_preference.mongos_mode, "primary")

    @gen_test(timeout=180)
    async def test_a_step_down_under_load_loses_no_acknowledged_write(self) -> None:
        if not ALLOW_STEP_DOWN:
            self.skipTest("set MONGODB_ALLOW_STEP_DOWN=1 to step the primary down")
        if len(self.hello.get("hosts", [])) < 2:
            self.skipTest("the replica set has one electable member: nothing to fail over to")
        acknowledged: dict[str, int] = {}
        outcomes = {"written": 0, "unavailable": 0}
        stop = asyncio.Event()

        async def writer(key: str) -> None:
            n, loaded = 0, None
            while not stop.is_set():
                n += 1
                try:
                    if await self.store.set(key, {"n": n}, 300, previous=loaded):
                        acknowledged[key], loaded = n, {"n": n}
                        outcomes["written"] += 1
                except StoreUnavailableError:
                    outcomes["unavailable"] += 1  # the 503 of the failover window
                    await asyncio.sleep(0.05)

        def step_down() -> None:
            assert MONGODB_URI
            # The old primary closes its connections as it steps down.
            with (pymongo.MongoClient(MONGODB_URI, serverSelectionTimeoutMS=20_000) as client,
                  contextlib.suppress(pymongo.errors.AutoReconnect)):
                client.admin.command({"replSetStepDown": 20, "secondaryCatchUpPeriodSecs": 10})

        keys = [f"user{n}" for n in range(10)]
        writers = [asyncio.ensure_future(writer(key)) for key in keys]
        await asyncio.sleep(2)
        before = outcomes["written"]
        await asyncio.get_running_loop().run_in_executor(None, step_down)
        deadline = time.monotonic() + 60
        while outcomes["written"] < before + 200 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)  # writes go on, on the new primary
        stop.set()
        await asyncio.gather(*writers)

        self.assertGreater(outcomes["written"], before + 200, outcomes)
        for key in keys:
            # Majority-acknowledged writes survive the election: that one or a later one.
            stored = await self.store.get(key)
            assert stored is not None, key
            self.assertGreaterEqual(stored["n"], acknowledged[key], key)
