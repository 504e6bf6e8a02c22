"""Session data encrypted at rest: the store contract, what a dump shows, keys, tampering.

`EncryptedStore` wraps MemoryStore, RedisStore (a real redis-server) and MongoStore
(the wire-protocol server); each passes the whole store contract, and what the backend
holds (the MemoryStore entry, the raw Redis value, the MongoDB document) contains no
plaintext of the session: neither values nor key names.
"""

from __future__ import annotations

import base64
import builtins
import sys
import uuid
from typing import Any

import orjson
import pymongo
import pytest
import redis.asyncio
import tornado.web
from tornado.testing import AsyncTestCase, ExpectLog, gen_test

from tests.base import COOKIE, CountingStore, SessionTestCase
from tests.mongo_server import MongoWireServer
from tests.redis_server import RedisServerCase
from tornado_session import SessionMixin, serializers
from tornado_session.errors import SessionError, SessionOptionError
from tornado_session.stores import EncryptedStore, MemoryStore, MongoStore, RedisStore, Store
from tornado_session.testing import StoreContract

KEY_1 = "store-key-one-" + "1" * 40
KEY_2 = "store-key-two-" + "2" * 40
#: What the contract's destroy_all tests match on: readable, as a user index would be.
READABLE = ("user_id", "role", "user", "missing", "key", "n")
PRIVATE = {"email": "ada@example.com", "address": "12 Private Lane", "cart": [101, 102]}
NEEDLES = [b"ada@example.com", b"Private Lane", b"email", b"address", b"cart", b"101"]

SERVER: MongoWireServer | None = None


@pytest.fixture(scope="module", autouse=True)
def wire_server() -> Any:
    global SERVER
    server = MongoWireServer()
    server.start()
    SERVER = server
    yield server
    SERVER = None
    server.close()


def encrypted(store: Store, keys: dict[int, str] | None = None) -> EncryptedStore:
    return EncryptedStore(store, keys=keys or {1: KEY_1}, readable=READABLE)


def refused() -> ExpectLog:
    """The warning of a record that reads as missing because a field does not open."""
    return ExpectLog("tornado_session.stores.encrypted",
                     "an EncryptedStore record holds a field that does not decrypt")


def assert_no_plaintext(raw: bytes) -> None:
    for needle in NEEDLES:
        assert needle not in raw, f"{needle!r} is readable in {raw[:200]!r}"


# -- the contract on every store ------------------------------------------------


class TestEncryptedMemoryStoreContract(StoreContract):
    def make_store(self) -> EncryptedStore:
        return encrypted(MemoryStore(clock=self.clock))

    def make_neighbour(self) -> EncryptedStore:
        return encrypted(MemoryStore(clock=self.clock))


class TestEncryptedRedisStoreContract(RedisServerCase, StoreContract):
    follows_clock = False
    short_max_age = 0.3

    def make_store(self) -> EncryptedStore:
        return encrypted(RedisStore.from_url(self.redis_server.url, clock=self.clock))

    def make_neighbour(self) -> EncryptedStore:
        return encrypted(
            RedisStore.from_url(self.redis_server.url, namespace="other-app:", clock=self.clock)
        )


class TestEncryptedMongoStoreContract(StoreContract):
    def make_store(self) -> EncryptedStore:
        async def build() -> EncryptedStore:
            assert SERVER is not None
            self.client: Any = pymongo.AsyncMongoClient(
                SERVER.uri, event_listeners=[MongoStore.listener()],
                serverSelectionTimeoutMS=5000,
            )
            collection = self.client["tornado_session_test"]["enc_" + uuid.uuid4().hex[:12]]
            return encrypted(MongoStore(collection, namespace="app-a:", clock=self.clock))

        return self.io_loop.run_sync(build)

    def make_neighbour(self) -> EncryptedStore:
        inner = self.store.store
        assert isinstance(inner, MongoStore)
        return encrypted(MongoStore(inner.collection, namespace="app-b:", clock=self.clock))

    async def _close_store(self) -> None:
        await super()._close_store()
        await self.client.close()


# -- what the backend holds -------------------------------------------------------


class TestWhatAMemoryDumpShows(AsyncTestCase):
    @gen_test
    async def test_the_memory_entry_holds_no_plaintext(self) -> None:
        inner = MemoryStore()
        store = encrypted(inner)
        await store.set("k", {**PRIVATE, "user_id": 7}, 60)
        raw = inner._entries["k"][1]
        assert_no_plaintext(raw)
        self.assertEqual(orjson.loads(raw)["user_id"], 7)  # readable, as asked
        self.assertEqual(await store.get("k"), {**PRIVATE, "user_id": 7})


class TestWhatARedisDumpShows(RedisServerCase, AsyncTestCase):
    @gen_test
    async def test_the_raw_redis_value_holds_no_plaintext_and_keeps_its_ttl(self) -> None:
        inner = RedisStore.from_url(self.redis_server.url)
        store = encrypted(inner)
        client = redis.asyncio.Redis.from_url(self.redis_server.url)
        try:
            await store.set("k", {**PRIVATE, "user_id": 7}, 60)
            loaded = await store.get("k")
            assert loaded is not None
            loaded_copy = serializers.Loaded.decode(loaded.raw)
            await store.set("k", {**PRIVATE, "user_id": 7, "cart": [101, 102, 103]}, 60,
                            previous=loaded_copy)
            raw = await client.get("tornado_session:k")
            assert raw is not None
            assert_no_plaintext(raw)
            self.assertEqual(orjson.loads(raw)["user_id"], 7)
            self.assertGreater(await client.pttl("tornado_session:k"), 50_000)
            self.assertEqual((await store.get("k"))["cart"], [101, 102, 103])  # type: ignore[index]
            self.assertEqual(await store.destroy_all(user_id=7), 1)
        finally:
            await client.aclose()
            await store.close()


class TestWhatAMongoDocumentShows(AsyncTestCase):
    @gen_test
    async def test_the_mongo_document_holds_no_plaintext_and_keeps_its_expiry(self) -> None:
        assert SERVER is not None
        client: Any = pymongo.AsyncMongoClient(SERVER.uri, serverSelectionTimeoutMS=5000)
        collection = client["tornado_session_test"]["dump_" + uuid.uuid4().hex[:12]]
        store = encrypted(MongoStore(collection, namespace="app:"))
        try:
            await store.set("k", {**PRIVATE, "user_id": 7}, 60)
            loaded = await store.get("k")
            assert loaded is not None
            await store.set("k", {**PRIVATE, "user_id": 7, "cart": [101, 102, 103]}, 60,
                            previous=serializers.Loaded.decode(loaded.raw))
            document = await collection.find_one({"_id": "app:k"})
            assert document is not None
            assert_no_plaintext(repr(document).encode())
            self.assertEqual(document["data"]["user_id"], 7)
            self.assertIn("expires", document)
            self.assertEqual((await store.get("k"))["cart"], [101, 102, 103])  # type: ignore[index]
            self.assertEqual(await store.destroy_all(user_id=7), 1)
        finally:
            await store.close()
            await client.close()


# -- keys, tampering, rotation ------------------------------------------------------


class TestKeysAndTampering(AsyncTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.inner = MemoryStore()

    def record(self, key: str = "k") -> dict[str, Any]:
        result: dict[str, Any] = orjson.loads(self.inner._entries[key][1])
        return result

    def put_record(self, record: dict[str, Any], key: str = "k") -> None:
        entry = self.inner._entries[key]
        for segment in (self.inner._probation, self.inner._protected):
            if key in segment:
                segment[key] = (entry[0], orjson.dumps(record, option=orjson.OPT_SORT_KEYS))

    @gen_test
    async def test_tampering_with_any_byte_of_a_field_reads_as_missing(self) -> None:
        store = encrypted(self.inner)
        await store.set("k", {"email": "ada@example.com"}, 60)
        original = self.record()
        (field, value), = original.items()
        token = base64.b64decode(value)
        for at in range(len(token)):
            flipped = token[:at] + bytes([token[at] ^ 0x01]) + token[at + 1:]
            self.put_record({field: base64.b64encode(flipped).decode()})
            with refused():
                self.assertIsNone(await store.get("k"))

    @gen_test
    async def test_a_field_moved_to_another_session_or_name_does_not_open(self) -> None:
        store = encrypted(self.inner)
        await store.set("k", {"role": "user", "email": "a@b"}, 60)
        await store.set("other", {"email": "mallory@evil"}, 60)
        mallory = self.record("other")
        (field, value), = mallory.items()
        self.put_record({field: value})  # mallory's sealed email copied into k
        with refused():
            self.assertIsNone(await store.get("k"))
        self.put_record({"~1.AAAAAAAAAAAAAAAA": value}, key="other")  # under another id
        with refused():
            self.assertIsNone(await store.get("other"))

    @gen_test
    async def test_plaintext_where_a_sealed_field_belongs_reads_as_missing(self) -> None:
        store = encrypted(self.inner)
        await store.set("k", {"email": "a@b"}, 60)
        self.put_record({"is_admin": True})
        with refused():
            self.assertIsNone(await store.get("k"))
        self.put_record({"~1.x": "not base64!"})
        with refused():
            self.assertIsNone(await store.get("k"))

    @gen_test
    async def test_a_wrong_or_removed_key_reads_as_missing(self) -> None:
        await encrypted(self.inner, {1: KEY_1}).set("k", {"email": "a@b"}, 60)
        for keys in ({1: KEY_2}, {2: KEY_2}):
            with refused():
                self.assertIsNone(await encrypted(self.inner, keys).get("k"))

    @gen_test
    async def test_rotation_reads_old_fields_and_reseals_them_at_the_next_write(self) -> None:
        old = encrypted(self.inner, {1: KEY_1})
        await old.set("k", {"email": "a@b", "cart": [1], "user_id": 3}, 60)
        rotated = encrypted(self.inner, {1: KEY_1, 2: KEY_2})
        loaded = await rotated.get("k")
        self.assertEqual(loaded, {"email": "a@b", "cart": [1], "user_id": 3})
        assert loaded is not None
        # A write that changes one key reseals every field under version 2.
        await rotated.set("k", {**loaded, "cart": [1, 2]}, 60,
                          previous=serializers.Loaded.decode(loaded.raw))
        record = self.record()
        sealed = [field for field in record if field != "user_id"]
        self.assertEqual(len(sealed), 2)
        self.assertTrue(all(field.startswith("~2.") for field in sealed), record)
        self.assertTrue(all(base64.b64decode(record[f])[0] == 2 for f in sealed))
        # Key 1 can now go.
        newest_only = encrypted(self.inner, {2: KEY_2})
        self.assertEqual(await newest_only.get("k"), {"email": "a@b", "cart": [1, 2],
                                                       "user_id": 3})

    @gen_test
    async def test_an_unchanged_write_after_rotation_reseals_too(self) -> None:
        await encrypted(self.inner, {1: KEY_1}).set("k", {"email": "a@b"}, 60)
        rotated = encrypted(self.inner, {1: KEY_1, 2: KEY_2})
        loaded = await rotated.get("k")
        assert loaded is not None
        await rotated.set("k", loaded, 60, previous=serializers.Loaded.decode(loaded.raw))
        self.assertTrue(all(field.startswith("~2.") for field in self.record()))

    @gen_test
    async def test_a_key_found_under_two_versions_keeps_the_newer_and_drops_the_older(
        self,
    ) -> None:
        await encrypted(self.inner, {1: KEY_1}).set("k", {"cart": [1]}, 60)
        older = self.record()
        await encrypted(self.inner, {1: KEY_1, 2: KEY_2}).set("k", {"cart": [2]}, 60)
        self.put_record({**older, **self.record()})
        rotated = encrypted(self.inner, {1: KEY_1, 2: KEY_2})
        loaded = await rotated.get("k")
        self.assertEqual(loaded, {"cart": [2]})
        assert loaded is not None
        await rotated.set("k", {"cart": [3]}, 60, previous=serializers.Loaded.decode(loaded.raw))
        self.assertEqual(len(self.record()), 1)

    @gen_test
    async def test_destroy_all_by_an_encrypted_key_says_which_keys_can_be_matched(self) -> None:
        store = encrypted(self.inner)
        await store.set("k", {"email": "a@b", "user_id": 1}, 60)
        with pytest.raises(SessionError, match=r"'email' is encrypted; name it in "
                                               r"EncryptedStore\(readable=\.\.\.\)"):
            await store.destroy_all(email="a@b")
        self.assertEqual(await store.destroy_all(user_id=1), 1)

    @gen_test
    async def test_an_update_without_the_record_in_memory_reads_it_again(self) -> None:
        store = encrypted(self.inner)
        await store.set("k", {"a": 1, "b": 1}, 60)
        loaded = await store.get("k")
        assert loaded is not None
        other = encrypted(self.inner)  # another process: nothing remembered
        self.assertTrue(await other.set("k", {"a": 2, "b": 1}, 60,
                                        previous=serializers.Loaded.decode(loaded.raw)))
        # The first process's update of b, from the same load, keeps a=2.
        self.assertTrue(await store.set("k", {"a": 1, "b": 2}, 60,
                                        previous=serializers.Loaded.decode(loaded.raw)))
        self.assertEqual(await store.get("k"), {"a": 2, "b": 2})
        await store.destroy("k")
        self.assertFalse(await other.set("k", {"a": 3, "b": 2}, 60, previous={"a": 2, "b": 2}))


class TestOneStoreCallPerUpdate(AsyncTestCase):
    @gen_test
    async def test_two_requests_of_one_session_update_with_no_second_read(self) -> None:
        inner = CountingStore()
        store = encrypted(inner)
        await store.set("k", {"a": 0, "b": 0}, 60)
        loaded = await store.get("k")
        assert loaded is not None
        first, second = (serializers.Loaded.decode(loaded.raw) for _ in range(2))
        self.assertTrue(await store.set("k", {"a": 1, "b": 0}, 60, previous=first))
        self.assertTrue(await store.set("k", {"a": 0, "b": 1}, 60, previous=second))
        self.assertEqual(inner.calls["get"], 1)  # the load only: each update is one set
        self.assertEqual(await store.get("k"), {"a": 1, "b": 1})


class TestConstruction:
    @pytest.mark.parametrize(
        ("kwargs", "says"),
        [
            ({"keys": {}}, r"EncryptedStore option keys=\{\} is invalid"),
            ({"keys": {1: "short"}}, r"5 bytes, too short; expected at least 32"),
            ({"keys": {1: KEY_1}, "readable": "user_id"}, r"expected a list of key names"),
            ({"keys": {1: KEY_1}, "readable": ["~x"]}, r"'~x' is not a key name"),
            ({"keys": {1: KEY_1}, "readable": [""]}, r"'' is not a key name"),
        ],
    )
    def test_bad_options_fail_naming_the_problem(self, kwargs: dict[str, Any], says: str) -> None:
        with pytest.raises(SessionOptionError, match=says):
            EncryptedStore(MemoryStore(), **kwargs)

    def test_only_a_store_not_yet_encrypted_can_be_wrapped(self) -> None:
        with pytest.raises(SessionOptionError, match=r"expected a store"):
            EncryptedStore({}, keys={1: KEY_1})  # type: ignore[arg-type]
        with pytest.raises(SessionOptionError, match=r"not already encrypted"):
            EncryptedStore(encrypted(MemoryStore()), keys={1: KEY_1})

    def test_without_the_package_it_fails_naming_the_extra(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        real_import = builtins.__import__

        def no_cryptography(name: str, *args: Any, **kwargs: Any) -> Any:
            if name == "cryptography" or name.startswith("cryptography."):
                raise ImportError(f"No module named {name!r}")
            return real_import(name, *args, **kwargs)

        for name in [m for m in sys.modules if m.startswith("cryptography")]:
            monkeypatch.delitem(sys.modules, name)
        monkeypatch.setattr(builtins, "__import__", no_cryptography)
        with pytest.raises(SessionOptionError, match=r"tornado-async-session\[crypto\]"):
            EncryptedStore(MemoryStore(), keys={1: KEY_1})


# -- through HTTP ------------------------------------------------------------------


class Profile(SessionMixin, tornado.web.RequestHandler):
    def get(self) -> None:
        self.session.update(PRIVATE)
        self.session["views"] = self.session.get("views", 0) + 1
        self.write(str(self.session["views"]))


class TestEncryptedStoreOverHTTP(SessionTestCase):
    def make_store(self) -> Store:
        self.counting = CountingStore(clock=self.clock)
        return EncryptedStore(self.counting, keys={1: KEY_1})

    def get_handlers(self) -> list[Any]:
        return [*super().get_handlers(), (r"/profile", Profile)]

    def test_sessions_work_with_one_store_call_per_read_and_two_per_change(self) -> None:
        self.assertEqual(self.fetch("/profile").body, b"1")
        self.assertEqual(self.fetch("/profile").body, b"2")
        self.counting.reset_calls()
        self.assertEqual(self.fetch("/read").body, b"2")
        self.assertEqual(self.counting.calls, {"get": 1, "set": 0, "destroy": 0, "touch": 0})
        self.counting.reset_calls()
        self.assertEqual(self.fetch("/count").body, b"3")
        self.assertEqual(self.counting.calls, {"get": 1, "set": 1, "destroy": 0, "touch": 0})
        (entry,) = self.counting._entries.values()
        assert_no_plaintext(entry[1])
        self.assertNotIn(b"views", entry[1])

    def test_a_tampered_record_gives_a_fresh_session_not_an_error(self) -> None:
        self.fetch("/count")
        self.fetch("/count")
        (key,) = self.counting._entries
        segment = (self.counting._protected if key in self.counting._protected
                   else self.counting._probation)
        expires, raw = segment[key]
        segment[key] = (expires, raw.replace(b"A", b"B", 1) if b"A" in raw
                        else raw.replace(b"B", b"A", 1))
        with refused():
            response = self.fetch("/count")
        self.assertEqual((response.code, response.body), (200, b"1"))
        self.assertIn(COOKIE, self.jar)

    def test_the_stores_events_are_the_wrapped_stores(self) -> None:
        seen: list[str] = []
        self.store.on("disconnect", lambda payload: seen.append("disconnect"))
        self.io_loop.run_sync(self.counting.close)
        self.assertEqual(seen, ["disconnect"])
        self.assertFalse(self.store.connected)
        self.io_loop.run_sync(self.counting.open)
        self.assertTrue(self.store.connected)

