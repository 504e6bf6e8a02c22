"""MongoStore at the wire: the exact commands it sends, seen by MockupDB."""

from __future__ import annotations

import asyncio
from typing import Any

from pymongo.hello import Hello
from pymongo.monitoring import ServerHeartbeatFailedEvent, ServerHeartbeatSucceededEvent
from tornado.testing import AsyncTestCase, ExpectLog, gen_test

from tests.base import COOKIE, SessionTestCase
from tests.mongo_mock import MockMongoCase, bson_datetime
from tornado_session import SessionError, StoreUnavailableError
from tornado_session.serializers import Append, Increment
from tornado_session.stores import MongoStore, Owner, Written
from tornado_session.testing import FakeClock

NOW = 1_700_000_000.25


class WireCase(MockMongoCase, AsyncTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.clock = FakeClock(NOW)
        self.store = self.mock_store()

    def tearDown(self) -> None:
        self.io_loop.run_sync(self.store.close)
        super().tearDown()

    def only_update(self) -> dict[str, Any]:
        (command,) = self.mock.of("update")
        (update,) = command["updates"]
        return dict(update)

    def only_modify(self) -> dict[str, Any]:
        (command,) = self.mock.of("findAndModify")
        return dict(command)


class TestWireCommands(WireCase):
    @gen_test
    async def test_ttl_index_is_created_once_before_the_first_operations(self) -> None:
        await asyncio.gather(*(self.store.get(f"k{i}") for i in range(5)))
        self.assertEqual(self.mock.names(), ["createIndexes"] + ["find"] * 5)
        (command,) = self.mock.of("createIndexes")
        self.assertEqual(command["createIndexes"], "sessions")
        self.assertEqual(
            command["indexes"],
            [{"key": {"expires": 1}, "name": "expires_1", "expireAfterSeconds": 0}],
        )

    @gen_test
    async def test_explicit_setup_is_not_repeated_on_first_use(self) -> None:
        await self.store.setup()
        await self.store.get("k")
        self.assertEqual(self.mock.names(), ["createIndexes", "find"])

    @gen_test
    async def test_read_filters_on_expires_after_now(self) -> None:
        await self.store.setup()
        await self.store.get("k1")
        self.clock.advance(100)
        await self.store.get("k1")
        first, second = self.mock.of("find")
        self.assertEqual(first["filter"], {"_id": "k1", "expires": {"$gt": bson_datetime(NOW)}})
        self.assertEqual(second["filter"]["expires"], {"$gt": bson_datetime(NOW + 100)})
        self.assertEqual(first["projection"], {"data": 1, "_id": 0})
        self.assertEqual(first["limit"], 1)

    @gen_test
    async def test_new_session_is_one_upsert_of_the_whole_document(self) -> None:
        await self.store.setup()
        self.mock.clear()
        self.assertTrue(await self.store.set("k1", {"n": 1, "a.b": {"$c": 2}}, 60))
        self.assertEqual(self.mock.names(), ["update"])
        update = self.only_update()
        self.assertEqual(update["q"], {"_id": "k1"})
        self.assertEqual(update["u"], {
            "_id": "k1",
            "data": {"n": 1, "a%2Eb": {"%24c": 2}},
            "expires": bson_datetime(NOW + 60),
        })
        self.assertTrue(update["upsert"])

    @gen_test
    async def test_update_sets_and_unsets_only_the_changed_keys_of_a_live_record(self) -> None:
        await self.store.setup()
        self.mock.documents["k1"] = {"_id": "k1", "data": {"a": 1, "b": 2, "d": 5}}
        self.mock.clear()
        written = await self.store.set(
            "k1", {"a": 1, "b": 3, "c": [4]}, 60, previous={"a": 1, "b": 2, "d": 5}
        )
        self.assertIs(written, True)  # the fields as they were: nobody changed them meanwhile
        command = self.only_modify()
        self.assertEqual(command["query"], {"_id": "k1", "expires": {"$gt": bson_datetime(NOW)}})
        self.assertEqual(command["update"], {
            "$set": {"expires": bson_datetime(NOW + 60), "data.b": 3, "data.c": [4]},
            "$unset": {"data.d": ""},
        })
        self.assertEqual(command["fields"], {"_id": 0, "data.b": 1, "data.c": 1, "data.d": 1})
        self.assertFalse(command.get("new", False))
        self.assertFalse(command.get("upsert", False))
        self.assertEqual(self.mock.documents["k1"]["data"], {"a": 1, "b": 3, "c": [4]})

    @gen_test
    async def test_update_of_a_vanished_record_writes_nothing_and_says_so(self) -> None:
        await self.store.setup()
        self.assertFalse(await self.store.set("gone", {"n": 2}, 60, previous={"n": 1}))
        self.assertFalse(self.only_modify().get("upsert", False))
        self.assertNotIn("gone", self.mock.documents)

    @gen_test
    async def test_increment_and_append_are_inc_and_push_with_slice(self) -> None:
        await self.store.setup()
        self.mock.documents["k1"] = {"_id": "k1", "data": {"views": 6, "log": [1, 2, 3]}}
        self.mock.clear()
        written = await self.store.set(  # another request counted 5 and appended 3 meanwhile
            "k1", {"views": 2, "log": [2, {"a.b": 4}]}, 60,
            previous={"views": 1, "log": [1, 2]},
            ops={"views": Increment(1), "log": Append(({"a.b": 4},), 2)},
        )
        self.assertEqual(self.only_modify()["update"], {
            "$set": {"expires": bson_datetime(NOW + 60)},
            "$inc": {"data.views": 1},
            "$push": {"data.log": {"$each": [{"a%2Eb": 4}], "$slice": -2}},
        })
        self.assertEqual(written, Written(True, (), {"views": 7, "log": [3, {"a.b": 4}]}))
        self.assertEqual(self.mock.documents["k1"]["data"],
                         {"views": 7, "log": [3, {"a%2Eb": 4}]})

    @gen_test
    async def test_a_conflict_is_read_from_the_fields_as_they_were(self) -> None:
        await self.store.setup()
        self.mock.documents["k1"] = {"_id": "k1", "data": {"n": 5, "other": 1}}
        written = await self.store.set("k1", {"n": 2, "other": 1}, 60,
                                       previous={"n": 1, "other": 1})
        self.assertEqual(written, Written(True, ("n",)))
        self.assertEqual(self.mock.documents["k1"]["data"], {"n": 2, "other": 1})

    @gen_test
    async def test_an_increment_mongodb_refuses_is_written_again_as_the_value(self) -> None:
        await self.store.setup()
        self.mock.documents["k1"] = {"_id": "k1", "data": {"n": "x"}}
        self.mock.clear()
        written = await self.store.set("k1", {"n": 2}, 60, previous={"n": 1},
                                       ops={"n": Increment(1)})
        first, second = self.mock.of("findAndModify")
        self.assertEqual(first["update"]["$inc"], {"data.n": 1})
        self.assertEqual(second["update"], {"$set": {"expires": bson_datetime(NOW + 60),
                                                     "data.n": 2}})
        self.assertEqual(written, Written(True, ("n",)))
        self.assertEqual(self.mock.documents["k1"]["data"], {"n": 2})

    @gen_test
    async def test_first_write_wins_compares_each_field_in_the_update(self) -> None:
        await self.store.setup()
        self.mock.documents["k1"] = {"_id": "k1", "data": {"n": 1, "s": "$x"}}
        self.mock.clear()
        await self.store.set("k1", {"n": 2, "views": 1}, 60, previous={"n": 1, "s": "$x"},
                             ops={"views": Increment(1)}, on_conflict="first_write_wins")

        def keep(path: str) -> dict[str, Any]:
            return {"$cond": [{"$eq": [{"$type": path}, "missing"]}, "$$REMOVE", path]}

        n_same = {"$eq": ["$data.n", {"$literal": 1}]}
        s_same = {"$eq": ["$data.s", {"$literal": "$x"}]}
        views_ok = {"$in": [{"$type": "$data.views"}, ["int", "long", "missing"]]}
        self.assertEqual(self.only_modify()["update"], [{"$set": {
            "expires": bson_datetime(NOW + 60),
            "data.n": {"$cond": [n_same, {"$literal": 2}, keep("$data.n")]},
            "data.views": {"$cond": [views_ok, {"$add": [{"$ifNull": ["$data.views", 0]}, 1]},
                                     keep("$data.views")]},
            "data.s": {"$cond": [s_same, "$$REMOVE", keep("$data.s")]},
        }}])

    @gen_test
    async def test_fail_writes_every_field_or_none(self) -> None:
        await self.store.setup()
        self.mock.documents["k1"] = {"_id": "k1", "data": {"n": 1}}
        self.mock.clear()
        await self.store.set("k1", {"n": 2, "m": 1}, 60, previous={"n": 1},
                             on_conflict="fail")
        verdict, stage, cleanup = self.only_modify()["update"]
        every = {"$and": [{"$eq": ["$data.n", {"$literal": 1}]},
                          {"$eq": [{"$type": "$data.m"}, "missing"]}]}
        flag = "_tornado_session_all_as_loaded"
        self.assertEqual(verdict, {"$set": {flag: every}})  # once, however many fields
        self.assertEqual(stage["$set"]["data.n"]["$cond"][:2], ["$" + flag, {"$literal": 2}])
        self.assertEqual(stage["$set"]["data.m"]["$cond"][:2], ["$" + flag, {"$literal": 1}])
        self.assertEqual(cleanup, {"$unset": flag})

    @gen_test
    async def test_update_with_nothing_changed_and_touch_set_only_the_expiry(self) -> None:
        await self.store.setup()
        self.mock.documents["k1"] = {"_id": "k1", "data": {"n": 1}}
        await self.store.set("k1", {"n": 1}, 60, previous={"n": 1})
        self.clock.advance(5)
        self.assertTrue(await self.store.touch("k1", 90))
        first, second = (command["updates"][0] for command in self.mock.of("update"))
        self.assertEqual(first["u"], {"$set": {"expires": bson_datetime(NOW + 60)}})
        self.assertEqual(second["u"], {"$set": {"expires": bson_datetime(NOW + 95)}})
        self.assertEqual(second["q"], {"_id": "k1", "expires": {"$gt": bson_datetime(NOW + 5)}})
        self.assertFalse(second["upsert"])

    @gen_test
    async def test_destroy_all_matches_present_equal_values_of_live_sessions(self) -> None:
        await self.store.setup()
        await self.store.destroy_all(user_id=42, **{"a.b": [1]})
        (command,) = self.mock.of("delete")
        (delete,) = command["deletes"]
        self.assertEqual(delete["q"], {
            "expires": {"$gt": bson_datetime(NOW)},
            "data.user_id": {"$exists": True, "$eq": 42, "$not": {"$type": "array"}},
            "data.a%2Eb": {"$exists": True, "$eq": [1]},
        })
        self.assertEqual(delete["limit"], 0)


class TestWireErrors(WireCase):
    @gen_test
    async def test_network_error_is_store_unavailable_and_reported_until_the_server_answers(
        self,
    ) -> None:
        await self.store.setup()
        events: list[str] = []
        self.store.on("disconnect", lambda payload: events.append("disconnect"))
        self.store.on("connect", lambda payload: events.append("connect"))
        self.mock.fail.add("find")
        with self.assertRaises(StoreUnavailableError):
            await self.store.get("k1")
        self.assertEqual(events, ["disconnect"])
        self.assertFalse(self.store.connected)
        self.assertTrue(await self.store.wait_connected(5))
        self.assertEqual(events, ["disconnect", "connect"])

    @gen_test
    async def test_command_error_is_a_session_error_not_an_outage(self) -> None:
        await self.store.setup()
        self.mock.refuse["find"] = 2  # BadValue
        with self.assertRaises(SessionError) as caught:
            await self.store.get("k1")
        self.assertNotIsInstance(caught.exception, StoreUnavailableError)
        self.assertIn("refused by the test", str(caught.exception))
        self.assertTrue(self.store.connected)

    @gen_test
    async def test_index_with_other_options_names_the_conflict(self) -> None:
        self.mock.refuse["createIndexes"] = 85  # IndexOptionsConflict
        with self.assertRaises(SessionError) as caught:
            await self.store.setup()
        self.assertIn("already has an index on 'expires' with other options", str(caught.exception))
        self.assertIn("create_ttl_index=False", str(caught.exception))

    @gen_test
    async def test_create_ttl_index_false_sends_no_create_indexes(self) -> None:
        store = MongoStore.from_uri(self.mock.uri, create_ttl_index=False, clock=self.clock)
        try:
            await store.get("k1")
        finally:
            await store.close()
        self.assertEqual(self.mock.names(), ["find"])


class MockHTTPCase(MockMongoCase, SessionTestCase):
    """The HTTP flow against a MongoStore on MockupDB."""

    def make_store(self) -> MongoStore:
        return self.mock_store()

    def tearDown(self) -> None:
        assert self.store is not None
        self.io_loop.run_sync(self.store.close)
        super().tearDown()


class TestWireHTTP(MockHTTPCase):
    def test_unchanged_session_is_read_and_never_written(self) -> None:
        self.assertEqual(self.fetch("/count").body, b"1")
        self.assertEqual(self.mock.names(), ["createIndexes", "update"])
        self.mock.clear()
        self.assertEqual(self.fetch("/read").body, b"1")
        self.assertEqual(self.fetch("/read").body, b"1")
        self.assertEqual(self.mock.names(), ["find", "find"])

    def test_failed_write_answers_503_never_200(self) -> None:
        self.mock.fail.add("update")
        with ExpectLog("tornado_session.mixin", ".*answered 503"):
            response = self.fetch("/count")
        self.assertEqual(response.code, 503)
        self.assertIn("Retry-After", response.headers)
        self.assertIsNone(self.session_cookie(response))
        self.assertEqual(self.mock.documents, {})


class TestWireTouchAfter(MockHTTPCase):
    def session_options(self) -> dict[str, Any]:
        return {"rolling": True, "touch_after": 60, "max_age": 3600}

    def test_rolling_session_is_touched_once_per_touch_after(self) -> None:
        self.assertEqual(self.fetch("/count").body, b"1")
        self.mock.clear()
        for advance in (10, 20, 29):  # 59 s after the write: not yet due
            self.clock.advance(advance)
            self.assertEqual(self.fetch("/read").body, b"1")
        self.assertEqual(self.mock.names(), ["find"] * 3)
        self.clock.advance(2)  # 61 s: one touch
        touched_at = self.clock.now
        self.assertEqual(self.fetch("/read").body, b"1")
        self.clock.advance(30)
        self.assertEqual(self.fetch("/read").body, b"1")
        self.assertEqual(self.mock.names(), ["find"] * 4 + ["update"] + ["find"])
        (command,) = self.mock.of("update")
        (touch,) = command["updates"]
        self.assertEqual(touch["u"], {"$set": {"expires": bson_datetime(touched_at + 3600)}})
        self.assertIn(COOKIE, self.jar)



class TestConnectionMonitor(AsyncTestCase):
    """The listener's rule, fed PyMongo's own heartbeat events: up while any server takes writes."""

    A = ("db-a", 27017)
    B = ("db-b", 27017)

    def setUp(self) -> None:
        super().setUp()
        self.mock_store = MongoStore.from_uri("mongodb://127.0.0.1:1")
        self.events: list[str] = []
        self.mock_store.on("disconnect", lambda payload: self.events.append("disconnect"))
        self.mock_store.on("connect", lambda payload: self.events.append("connect"))
        self.monitor = MongoStore.listener()
        self.monitor.attach(self.mock_store)

    def tearDown(self) -> None:
        self.io_loop.run_sync(self.mock_store.close)
        super().tearDown()

    def beat(self, address: tuple[str, int], reply: dict[str, Any] | None) -> None:
        if reply is None:
            self.monitor.failed(ServerHeartbeatFailedEvent(0.01, OSError("refused"), address))
        else:
            self.monitor.succeeded(
                ServerHeartbeatSucceededEvent(0.01, Hello({"ok": 1, **reply}), address)
            )

    def test_primary_lost_with_only_a_secondary_left_is_down_until_one_takes_writes(self) -> None:
        self.beat(self.A, {"isWritablePrimary": True, "setName": "rs"})
        self.beat(self.B, {"secondary": True, "setName": "rs"})
        self.assertEqual(self.events, [])
        self.beat(self.A, None)
        self.assertEqual(self.events, ["disconnect"])
        self.beat(self.B, {"secondary": True, "setName": "rs"})  # still no writable server
        self.assertEqual(self.events, ["disconnect"])
        self.beat(self.B, {"isWritablePrimary": True, "setName": "rs"})  # B was elected
        self.assertEqual(self.events, ["disconnect", "connect"])
        self.assertTrue(self.mock_store.connected)

    def test_one_failing_server_of_two_writable_ones_is_not_an_outage(self) -> None:
        self.beat(self.A, {"isWritablePrimary": True, "msg": "isdbgrid"})
        self.beat(self.B, {"isWritablePrimary": True, "msg": "isdbgrid"})
        self.beat(self.A, None)
        self.assertEqual(self.events, [])
        self.beat(self.B, None)
        self.assertEqual(self.events, ["disconnect"])

    def test_a_store_attached_during_an_outage_learns_it_at_once(self) -> None:
        self.beat(self.A, None)
        late = MongoStore.from_uri("mongodb://127.0.0.1:1")
        self.monitor.attach(late)
        self.assertFalse(late.connected)
        self.monitor.detach(late)
        self.beat(self.A, {"isWritablePrimary": True})
        self.assertFalse(late.connected)  # detached: no longer told
        self.assertTrue(self.mock_store.connected)


class TestWireUserIndex(WireCase):
    """The exact commands of the user index (a store with ``user_key``)."""

    def setUp(self) -> None:
        super().setUp()
        self.io_loop.run_sync(self.store.close)
        self.mock.reset()
        self.store = MongoStore.from_uri(self.mock.uri, clock=self.clock, user_key="user_id",
                                         serverSelectionTimeoutMS=3000)

    def owner(self, user: Any) -> Owner:
        return Owner(user, NOW - 10, NOW - 10, "Firefox", "192.0.2.0/24")

    @gen_test
    async def test_setup_creates_the_user_index_on_user_and_expires(self) -> None:
        await self.store.setup()
        indexes = [command["indexes"][0]["key"] for command in self.mock.of("createIndexes")]
        self.assertEqual(indexes, [{"expires": 1}, {"user": 1, "expires": 1}])

    @gen_test
    async def test_a_session_of_a_user_carries_its_owner_beside_the_data(self) -> None:
        await self.store.setup()
        self.mock.clear()
        await self.store.set("k1", {"user_id": 42}, 60, owner=self.owner(42))
        self.assertEqual(self.mock.names(), ["update"])  # one round trip, as without an index
        self.assertEqual(self.only_update()["u"], {
            "_id": "k1", "data": {"user_id": 42}, "expires": bson_datetime(NOW + 60),
            "user": 42, "created": bson_datetime(NOW - 10), "seen": bson_datetime(NOW),
            "agent": "Firefox", "address": "192.0.2.0/24",
        })

    @gen_test
    async def test_writes_that_leave_the_user_alone_only_move_seen_in_the_same_update(
        self,
    ) -> None:
        await self.store.setup()
        self.mock.documents["k1"] = {"_id": "k1", "data": {"user_id": 42, "n": 1}}
        self.mock.clear()
        await self.store.set("k1", {"user_id": 42, "n": 2}, 60, previous={"user_id": 42, "n": 1})
        self.clock.advance(5)
        await self.store.touch("k1", 60)
        self.assertEqual(self.mock.names(), ["findAndModify", "update"])
        self.assertEqual(self.only_modify()["update"], {"$set": {
            "expires": bson_datetime(NOW + 60), "data.n": 2, "seen": bson_datetime(NOW)}})
        self.assertEqual(self.only_update()["u"], {"$set": {
            "expires": bson_datetime(NOW + 65), "seen": bson_datetime(NOW + 5)}})

    @gen_test
    async def test_a_logout_by_update_unsets_the_owner(self) -> None:
        await self.store.setup()
        self.mock.documents["k1"] = {"_id": "k1", "data": {"user_id": 42}}
        self.mock.clear()
        await self.store.set("k1", {}, 60, previous={"user_id": 42}, owner=self.owner(None))
        self.assertEqual(self.only_modify()["update"]["$unset"], {
            "data.user_id": "", "user": "", "created": "", "seen": "", "agent": "",
            "address": "",
        })

    @gen_test
    async def test_listing_and_destroying_a_user_filter_on_the_index_and_expiry(self) -> None:
        await self.store.setup()
        self.mock.clear()
        self.assertEqual(await self.store.user_sessions(42), [])
        self.assertEqual(await self.store.destroy_all(user_id=42), 0)
        (find,) = self.mock.of("find")
        self.assertEqual(find["filter"], {"user": 42, "expires": {"$gt": bson_datetime(NOW)}})
        self.assertEqual(find["projection"], {"data": 0})
        (delete,) = self.mock.of("delete")
        self.assertEqual(delete["deletes"][0]["q"],
                         {"user": 42, "expires": {"$gt": bson_datetime(NOW)}})
        self.assertEqual(delete["deletes"][0]["limit"], 0)
