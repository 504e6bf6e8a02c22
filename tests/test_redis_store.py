"""RedisStore against a real redis-server: the store contract, the exact commands, TTLs."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
import unittest
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar
from unittest import mock

import redis
import redis.asyncio
from hypothesis import given
from hypothesis import strategies as st
from redis._parsers import _AsyncRESP3Parser
from redis.utils import HIREDIS_AVAILABLE
from tornado.testing import AsyncTestCase, ExpectLog, gen_test

from tests.base import SessionTestCase
from tests.redis_server import RedisServer, RedisServerCase
from tornado_session import serializers
from tornado_session.errors import (
    SessionOptionError,
    SessionSerializationError,
    StoreUnavailableError,
)
from tornado_session.serializers import Append, Increment
from tornado_session.stores import Owner, RedisStore, Written
from tornado_session.testing import StoreContract

NS = "tornado_session:"


class TestRedisStoreContract(RedisServerCase, StoreContract):
    follows_clock = False  # Redis expires keys on its own clock (the expiry tests sleep)
    short_max_age = 0.3  # TTLs are in milliseconds: no need for whole seconds

    def make_store(self) -> RedisStore:
        return RedisStore.from_url(self.redis_server.url, clock=self.clock, user_key=self.user_key)

    def make_neighbour(self) -> RedisStore:
        return RedisStore.from_url(self.redis_server.url, namespace="other-app:", clock=self.clock)


class TestRedisStoreContractWithOwnClient(RedisServerCase, StoreContract):
    """The same contract through a client the application made, in another namespace.

    This client parses replies in Python (redis-py's RESP3 parser) where `from_url` gets
    hiredis's, which requirements.txt installs: both parsers are covered.
    """

    follows_clock = False
    short_max_age = 0.3

    def make_store(self) -> RedisStore:
        pool = redis.asyncio.ConnectionPool(
            port=self.redis_server.port, protocol=3, parser_class=_AsyncRESP3Parser
        )
        self.client = redis.asyncio.Redis(connection_pool=pool)
        return RedisStore(self.client, namespace="app:{sessions}:", timeout=2, clock=self.clock,
                          user_key=self.user_key)

    def test_the_parsers_are_the_ones_meant(self) -> None:
        self.assertIs(self.client.connection_pool.connection_kwargs["parser_class"],
                      _AsyncRESP3Parser)
        self.assertTrue(HIREDIS_AVAILABLE, "requirements.txt pins hiredis")

    async def _close_store(self) -> None:
        await super()._close_store()
        await self.client.aclose(close_connection_pool=True)


class Monitor:
    """The commands the server received, read with MONITOR in a thread."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.commands: list[dict[str, Any]] = []
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self.server.admin() as client, client.monitor() as monitor:
            self._ready.set()
            for command in monitor.listen():
                if command["command"] == "ECHO end-of-monitor":
                    return
                self.commands.append(command)

    def start(self) -> None:
        self._thread.start()
        assert self._ready.wait(5)
        time.sleep(0.05)  # MONITOR is in place once its reply is read

    def stop(self) -> None:
        with self.server.admin() as client:
            client.echo("end-of-monitor")
        self._thread.join(5)

    def sent(self) -> list[str]:
        """Commands sent by clients (not by Lua scripts), without the HELLO handshake."""
        return [
            c["command"] for c in self.commands
            if c["client_type"] != "lua" and not c["command"].startswith("HELLO")
        ]

    def scripted(self) -> list[str]:
        """Commands run inside Lua scripts."""
        return [c["command"] for c in self.commands if c["client_type"] == "lua"]


class RedisCase(RedisServerCase, AsyncTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.store = RedisStore.from_url(self.redis_server.url)

    def tearDown(self) -> None:
        self.io_loop.run_sync(self.store.close)
        super().tearDown()

    @contextmanager
    def monitor(self) -> Iterator[Monitor]:
        monitor = Monitor(self.redis_server)
        monitor.start()
        try:
            yield monitor
        finally:
            monitor.stop()

    def pttl(self, key: str) -> int:
        with self.redis_server.admin() as admin:
            ttl: int = admin.pttl(NS + key)
            return ttl


def raw(data: dict[str, Any]) -> bytes:
    """A session as the store keeps it: its canonical JSON."""
    return serializers.dumps(data)


class TestCommandsSent(RedisCase):
    """One round trip per operation in the common case, and the exact commands."""

    @gen_test
    async def test_each_operation_is_one_command(self) -> None:
        with self.monitor() as monitor:
            await self.store.get("k")
            await self.store.set("k", {"a": 1}, 60)
            await self.store.touch("k", 120)
            await self.store.set("k", {"a": 1}, 90, previous={"a": 1})
            await self.store.destroy("k")
        self.assertEqual(
            monitor.sent(),
            [f"GET {NS}k", f'SET {NS}k {{"a":1}} PX 60000', f"PEXPIRE {NS}k 120000",
             f"PEXPIRE {NS}k 90000", f"DEL {NS}k"],
        )
        self.assertEqual(monitor.scripted(), [])

    @gen_test
    async def test_get_answers_the_stored_bytes_with_the_data(self) -> None:
        await self.store.set("k", {"b": [1, {"c": None}], "a": "é"}, 60)
        loaded = await self.store.get("k")
        self.assertIs(type(loaded), serializers.Loaded)
        assert isinstance(loaded, serializers.Loaded)
        self.assertEqual(loaded, {"a": "é", "b": [1, {"c": None}]})
        with self.redis_server.admin() as admin:
            self.assertEqual(loaded.raw, admin.get(NS + "k"))
        self.assertEqual(loaded.raw, raw({"a": "é", "b": [1, {"c": None}]}))

    @gen_test
    async def test_a_changed_session_is_one_update_script_call(self) -> None:
        await self.store.set("warm", {}, 60)
        await self.store.set("warm", {"n": 1}, 60, previous={})  # loads the script once
        before = {"same": [1, 2], "changed": 1, "removed": "x"}
        after = {"same": [1, 2], "changed": 2, "added": True}
        await self.store.set("k", before, 60)
        loaded = await self.store.get("k")
        assert loaded is not None
        with self.monitor() as monitor:
            self.assertTrue(await self.store.set("k", after, 60, previous=loaded))
        # The bytes loaded, the bytes to write, the conflict policy (l: last write
        # wins), then the changes in key order (a removed key with an empty value).
        (sent,) = monitor.sent()
        self.assertRegex(sent, rf"^EVALSHA [0-9a-f]{{40}} 1 {NS}k 60000 ")
        self.assertTrue(sent.endswith(
            f' {raw(before).decode()} {raw(after).decode()} l "added" true "changed" 2 "removed" '
        ), sent)
        self.assertEqual(
            monitor.scripted(), [f"GET {NS}k", f"SET {NS}k {raw(after).decode()} PX 60000"]
        )
        self.assertEqual(await self.store.get("k"), after)

    @gen_test
    async def test_update_of_a_destroyed_session_writes_nothing(self) -> None:
        await self.store.set("k", {"n": 1}, 60)
        await self.store.destroy("k")
        with self.monitor() as monitor:
            self.assertFalse(await self.store.set("k", {"n": 2}, 60, previous={"n": 1}))
        self.assertEqual(monitor.scripted(), [f"GET {NS}k"])
        with self.redis_server.admin() as admin:
            self.assertEqual(admin.exists(NS + "k"), 0)

    @gen_test
    async def test_update_with_nothing_changed_only_renews_the_ttl(self) -> None:
        await self.store.set("k", {"n": 1}, 60)
        with self.monitor() as monitor:
            self.assertTrue(await self.store.set("k", {"n": 1}, 30, previous={"n": 1}))
        self.assertEqual(monitor.sent(), [f"PEXPIRE {NS}k 30000"])

    @gen_test
    async def test_script_forgotten_by_the_server_is_sent_again(self) -> None:
        await self.store.set("k", {"n": 1}, 60)
        await self.store.set("k", {"n": 2}, 60, previous={"n": 1})
        with self.redis_server.admin() as admin:
            admin.script_flush()
        with self.monitor() as monitor:
            self.assertTrue(await self.store.set("k", {"n": 3}, 60, previous={"n": 2}))
        self.assertEqual(
            [command.split(" ")[0] for command in monitor.sent()], ["EVALSHA", "EVAL"]
        )
        self.assertEqual(await self.store.get("k"), {"n": 3})

    @gen_test
    async def test_a_new_store_sends_the_script_only_if_the_server_lacks_it(self) -> None:
        await self.store.set("k", {"n": 1}, 60)
        with self.redis_server.admin() as admin:
            admin.script_flush()  # the server runs for the whole class: a new one, say
        with self.monitor() as monitor:
            await self.store.set("k", {"n": 2}, 60, previous={"n": 1})
        self.assertEqual(
            [command.split(" ")[0] for command in monitor.sent()], ["EVALSHA", "EVAL"]
        )
        second = RedisStore.from_url(self.redis_server.url)  # another process, say
        try:
            with self.monitor() as monitor:
                self.assertTrue(await second.set("k", {"n": 3}, 60, previous={"n": 2}))
            self.assertEqual([command.split(" ")[0] for command in monitor.sent()], ["EVALSHA"])
        finally:
            await second.close()

    @gen_test
    async def test_bulk_operations_scan_the_namespace_and_never_use_keys(self) -> None:
        for i in range(1200):  # several SCAN pages
            await self.store.set(f"s{i}", {"user_id": i % 3}, 60)
        with self.monitor() as monitor:
            self.assertEqual(await self.store.count(), 1200)
            self.assertEqual(await self.store.destroy_all(user_id=1), 400)
        names = {command.split(" ")[0] for command in monitor.sent()}
        self.assertEqual(names, {"SCAN", "MGET", "UNLINK"})
        scans = [c for c in monitor.sent() if c.startswith("SCAN")]
        self.assertGreater(len(scans), 3)
        self.assertTrue(all(c.endswith(f"MATCH {NS}* COUNT 500 TYPE string") for c in scans))
        with self.monitor() as monitor:
            await self.store.clear()
        self.assertEqual({command.split(" ")[0] for command in monitor.sent()}, {"SCAN", "UNLINK"})
        scans = [c for c in monitor.sent() if c.startswith("SCAN")]
        self.assertTrue(all(c.endswith(f"MATCH {NS}* COUNT 500") for c in scans))
        self.assertEqual(await self.store.count(), 0)

    @gen_test
    async def test_keys_command_is_disabled_on_the_test_server(self) -> None:
        # The fixture renames KEYS away, so a store that used it could not pass.
        with self.redis_server.admin() as admin, self.assertRaises(redis.ResponseError):
            admin.execute_command("KEYS", "*")


class TestConcurrentUpdates(RedisCase):
    """A write between this request's load and its update: merged key by key, atomically."""

    async def load(self, key: str) -> serializers.Loaded:
        loaded = await self.store.get(key)
        assert isinstance(loaded, serializers.Loaded)
        return loaded

    def write(self, key: str, data: dict[str, Any] | bytes) -> None:
        """Another request's write (or another program's), by the test's own client."""
        with self.redis_server.admin() as admin:
            admin.set(NS + key, data if isinstance(data, bytes) else raw(data), keepttl=True)

    @gen_test
    async def test_a_write_since_the_load_is_merged_key_by_key_in_the_same_call(self) -> None:
        await self.store.set("k", {"a": 0, "b": 0, "gone": 1, "kept": 1}, 60)
        first, second = await self.load("k"), await self.load("k")
        self.assertTrue(await self.store.set(
            "k", {"a": 1, "b": 0, "gone": 1, "kept": 1, "new1": 1}, 60, previous=first
        ))
        with self.monitor() as monitor:
            self.assertTrue(await self.store.set(
                "k", {"a": 0, "b": 2, "kept": 1, "new2": [2, {"x": "y"}]}, 30, previous=second
            ))
        # One round trip still: the script applies this request's changes (b, gone,
        # new2) to the record the other request left, and keeps the other's (a, new1).
        merged = {"a": 1, "b": 2, "kept": 1, "new1": 1, "new2": [2, {"x": "y"}]}
        self.assertEqual([c.split(" ")[0] for c in monitor.sent()], ["EVALSHA"])
        self.assertEqual(
            monitor.scripted(), [f"GET {NS}k", f"SET {NS}k {raw(merged).decode()} PX 30000"]
        )
        with self.redis_server.admin() as admin:
            self.assertEqual(admin.get(NS + "k"), raw(merged))  # canonical: keys in order
        self.assertTrue(29_000 < self.pttl("k") <= 30_000)

    @gen_test
    async def test_increments_appends_and_conflicts_are_settled_in_the_same_call(self) -> None:
        await self.store.set("k", {"views": 1, "log": ["a"], "n": 0}, 60)
        first, second = await self.load("k"), await self.load("k")
        self.assertTrue(await self.store.set(
            "k", {"views": 2, "log": ["a", "b"], "n": 1}, 60, previous=first,
            ops={"views": Increment(1), "log": Append(("b",), 2)},
        ))
        with self.monitor() as monitor:
            written = await self.store.set(
                "k", {"views": 6, "log": ["a", {"c": 1}], "n": 5}, 60, previous=second,
                ops={"views": Increment(5), "log": Append(({"c": 1},), 2)},
            )
        (sent,) = monitor.sent()
        self.assertTrue(sent.endswith(' l "log" <2|[{"c":1}] "n" 5 "views" +5'), sent)
        self.assertEqual(written, Written(True, ("n",), {"views": 7, "log": ["b", {"c": 1}]}))
        with self.redis_server.admin() as admin:
            stored = {"log": ["b", {"c": 1}], "n": 5, "views": 7}
            self.assertEqual(admin.get(NS + "k"), raw(stored))

    @gen_test
    async def test_fail_leaves_the_record_as_it_was_in_the_same_call(self) -> None:
        await self.store.set("k", {"n": 0, "a": 0}, 60)
        first, second = await self.load("k"), await self.load("k")
        await self.store.set("k", {"n": 1, "a": 0}, 60, previous=first)
        with self.monitor() as monitor:
            written = await self.store.set("k", {"n": 2, "a": 1}, 60, previous=second,
                                           on_conflict="fail")
        self.assertEqual(written, Written(False, ("n",)))
        self.assertEqual([c.split(" ")[0] for c in monitor.sent()], ["EVALSHA"])
        self.assertEqual(monitor.scripted(), [f"GET {NS}k"])

    @gen_test
    async def test_keys_added_around_and_between_the_stored_ones_keep_their_order(
        self,
    ) -> None:
        await self.store.set("k", {"b": 1, "d": 1, "é": 1}, 60)
        loaded = await self.load("k")
        self.write("k", {"b": 2, "d": 1, "é": 1, "f": 1})
        update = {"": 0, "a": 0, "b": 1, "c": 0, "d": 1, "dd": 0, "é": 1, "z": 0, "ü": 0}
        self.assertTrue(await self.store.set("k", update, 60, previous=loaded))
        with self.redis_server.admin() as admin:
            self.assertEqual(admin.get(NS + "k"), raw({**update, "b": 2, "f": 1}))

    @gen_test
    async def test_removing_every_key_after_a_concurrent_write_keeps_only_the_others(
        self,
    ) -> None:
        await self.store.set("k", {"a": 1, "b": 1}, 60)
        loaded = await self.load("k")
        self.write("k", {"a": 1, "b": 1, "c": 1})
        self.assertTrue(await self.store.set("k", {}, 60, previous=loaded))
        self.assertEqual(await self.store.get("k"), {"c": 1})
        loaded = await self.load("k")
        self.write("k", {"c": 2})
        self.assertTrue(await self.store.set("k", {}, 60, previous=loaded))
        with self.redis_server.admin() as admin:
            self.assertEqual(admin.get(NS + "k"), b"{}")

    @gen_test
    async def test_logout_before_the_update_wins_also_after_a_concurrent_write(self) -> None:
        await self.store.set("k", {"a": 0, "b": 0}, 60)
        loaded = await self.load("k")
        self.write("k", {"a": 1, "b": 0})  # another request's write...
        await self.store.destroy("k")  # ... and a logout, before this request's update
        with self.monitor() as monitor:
            self.assertFalse(await self.store.set("k", {"a": 0, "b": 2}, 60, previous=loaded))
        self.assertEqual(monitor.scripted(), [f"GET {NS}k"])  # read, and nothing written
        with self.redis_server.admin() as admin:
            self.assertEqual(admin.exists(NS + "k"), 0)

    @gen_test
    async def test_expiry_before_the_update_wins_too(self) -> None:
        await self.store.set("k", {"a": 0}, 0.05)
        loaded = await self.load("k")
        await asyncio.sleep(0.1)
        self.assertFalse(await self.store.set("k", {"a": 1}, 60, previous=loaded))
        self.assertIsNone(await self.store.get("k"))

    @gen_test
    async def test_concurrent_requests_changing_the_same_key_last_write_wins(self) -> None:
        await self.store.set("k", {"n": 0, "other": 0}, 60)
        first, second = await self.load("k"), await self.load("k")
        self.assertTrue(await self.store.set("k", {"n": 1, "other": 0}, 60, previous=first))
        self.assertTrue(await self.store.set("k", {"n": 2, "other": 0}, 60, previous=second))
        self.assertEqual(await self.store.get("k"), {"n": 2, "other": 0})

    @gen_test
    async def test_a_reader_never_sees_a_record_without_an_acknowledged_write(self) -> None:
        # 20 writers, each adding its own keys, and a reader polling: every key a
        # writer was told was written stays in every later read.
        await self.store.set("k", {}, 60)
        acknowledged: set[str] = set()
        done = False

        async def writer(i: int) -> None:
            for round_ in range(10):
                loaded = await self.load("k")
                name = f"w{i}r{round_}"
                self.assertTrue(
                    await self.store.set("k", {**loaded, name: True}, 60, previous=loaded)
                )
                acknowledged.add(name)

        async def reader() -> None:
            while not done:
                seen = set(acknowledged)
                data = await self.load("k")
                self.assertLessEqual(seen, set(data))

        polling = asyncio.ensure_future(reader())
        await asyncio.gather(*(writer(i) for i in range(20)))
        done = True
        await polling
        self.assertEqual(set(await self.load("k")), acknowledged)
        self.assertEqual(len(acknowledged), 200)


class TestUpdateOfJSONFromAnotherWriter(RedisCase):
    """JSON the script cannot split (another program wrote it): merged by the store instead."""

    FOREIGN = b'{"b": 0, "a": 0, "c": 0}'  # spaces, keys out of order: not orjson's

    def after_each_script_call(self, *writes: bytes | None) -> None:
        """After the store's i-th ``EVALSHA``, another client writes ``writes[i]`` (None: DEL).

        The write lands between the script's answer and the store's next command:
        the race a real concurrent request can win.
        """
        evalsha = self.store.client.evalsha
        pending = list(writes)

        async def racing_evalsha(*args: Any) -> Any:
            answer = await evalsha(*args)
            if pending:
                with self.redis_server.admin() as admin:
                    write = pending.pop(0)
                    if write is None:
                        admin.delete(NS + "k")
                    else:
                        admin.set(NS + "k", write, keepttl=True)
            return answer

        self.store.client.evalsha = racing_evalsha  # type: ignore[method-assign]

    async def loaded_foreign(self) -> serializers.Loaded:
        await self.store.set("warm", {"n": 1}, 60, previous={})  # the server has the script
        with self.redis_server.admin() as admin:
            admin.set(NS + "k", self.FOREIGN, px=60_000)
        loaded = await self.store.get("k")
        assert isinstance(loaded, serializers.Loaded)
        self.assertEqual(loaded.raw, self.FOREIGN)
        return loaded

    @gen_test
    async def test_a_record_still_as_loaded_is_written_back_canonical(self) -> None:
        loaded = await self.loaded_foreign()
        self.assertTrue(await self.store.set("k", {"a": 1, "b": 0, "c": 0}, 60, previous=loaded))
        with self.redis_server.admin() as admin:
            self.assertEqual(admin.get(NS + "k"), b'{"a":1,"b":0,"c":0}')

    @gen_test
    async def test_a_record_changed_since_the_load_is_merged_by_the_store(self) -> None:
        loaded = await self.loaded_foreign()
        with self.redis_server.admin() as admin:
            admin.set(NS + "k", b'{"b": 1, "a": 0, "c": 0}', keepttl=True)
        # ... and another write between the script's answer and the store's retry.
        self.after_each_script_call(b'{"b": 1, "a": 0, "c": 3}')
        with self.monitor() as monitor:
            written = await self.store.set("k", {"a": 2, "b": 0, "c": 0}, 60, previous=loaded)
        self.assertTrue(written)
        # Answered the first; the racing SET; answered it (still foreign); wrote.
        self.assertEqual(
            [c.split(" ")[0] for c in monitor.sent()], ["EVALSHA", "SET", "EVALSHA", "EVALSHA"]
        )
        self.assertEqual(await self.store.get("k"), {"a": 2, "b": 1, "c": 3})

    @gen_test
    async def test_logout_between_the_answer_and_the_retry_wins(self) -> None:
        loaded = await self.loaded_foreign()
        with self.redis_server.admin() as admin:
            admin.set(NS + "k", b'{"b": 1, "a": 0, "c": 0}', keepttl=True)
        self.after_each_script_call(None)  # the logout
        with self.monitor() as monitor:
            written = await self.store.set("k", {"a": 2, "b": 0, "c": 0}, 60, previous=loaded)
        self.assertFalse(written)
        self.assertEqual(
            [c.split(" ")[0] for c in monitor.sent()], ["EVALSHA", "DEL", "EVALSHA"]
        )
        self.assertEqual(monitor.scripted(), [f"GET {NS}k", f"GET {NS}k"])  # nothing written
        with self.redis_server.admin() as admin:
            self.assertEqual(admin.exists(NS + "k"), 0)


#: Keys that sort around each other, need JSON escapes or are not ASCII.
KEYS = st.sampled_from(["", "a", "a!", "ab", "b", "é", "ü", "z", "~", "\x7f", "🎉", 'q"', "b\\",
                        "\n", "\x00"])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1),
                    st.floats(allow_nan=False, allow_infinity=False),
                    st.text(alphabet='ab"\\{}[],:é\n', max_size=4))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(KEYS, inner, max_size=3)), max_leaves=6)
SESSIONS = st.dictionaries(KEYS, VALUES, max_size=6)


class TestMergeInRedis(RedisServerCase, unittest.TestCase):
    """The script's key-by-key merge equals the definition, for any sessions."""

    def setUp(self) -> None:
        super().setUp()
        self.loop = asyncio.new_event_loop()
        self.store = RedisStore.from_url(self.redis_server.url)

    def tearDown(self) -> None:
        self.loop.run_until_complete(self.store.close())
        self.loop.close()
        super().tearDown()

    @given(SESSIONS, SESSIONS, SESSIONS)
    def test_the_merge_is_the_definition(
        self, loaded: dict[str, Any], data: dict[str, Any], current: dict[str, Any]
    ) -> None:
        # This request loaded ``loaded`` and writes ``data``; another one wrote
        # ``current`` in between.  Expected: ``current`` with this request's changes.
        to_set, to_unset = serializers.changed_keys(loaded, data)
        expected = {**current, **to_set}
        for key in to_unset:
            expected.pop(key, None)
        with self.redis_server.admin() as admin:
            admin.set(NS + "k", raw(current), px=60_000)
        written = self.loop.run_until_complete(
            self.store.set("k", data, 60, previous=loaded)
        )
        self.assertTrue(written)
        with self.redis_server.admin() as admin:
            stored = admin.get(NS + "k")
        self.assertEqual(serializers.loads(stored), expected)
        if raw(loaded) == raw(current) or not any(
            char in key for key in expected for char in '"\\\n\x00'
        ):
            self.assertEqual(stored, raw(expected))  # canonical: keys in orjson's order


class TestRecordsThatAreNotSessions(RedisCase):
    """Other types (the hash of the earlier layout) and garbage read as missing, never as a 500."""

    def old_layout(self, key: str, data: dict[str, Any]) -> None:
        """A session as the store's earlier layout kept it: a hash, field 0xFF its marker."""
        with self.redis_server.admin() as admin:
            admin.hset(NS + key, mapping={
                b"\xff": b"1", **{k.encode(): serializers.dumps(v) for k, v in data.items()}
            })
            admin.pexpire(NS + key, 60_000)

    @gen_test
    async def test_a_session_of_the_earlier_layout_reads_as_missing_with_a_warning(self) -> None:
        self.old_layout("old", {"user_id": 1})
        with ExpectLog("tornado_session.stores.redis", ".*is not a string.*earlier layout"):
            self.assertIsNone(await self.store.get("old"))

    @gen_test
    async def test_an_update_of_a_record_of_another_type_writes_nothing(self) -> None:
        self.old_layout("old", {"user_id": 1})
        with ExpectLog("tornado_session.stores.redis", ".*is not a string"):
            written = await self.store.set(
                "old", {"user_id": 1, "n": 2}, 30, previous={"user_id": 1}
            )
        self.assertFalse(written)
        with self.redis_server.admin() as admin:
            self.assertEqual(admin.type(NS + "old"), b"hash")
            self.assertEqual(admin.hgetall(NS + "old"), {b"\xff": b"1", b"user_id": b"1"})
            self.assertGreater(admin.pttl(NS + "old"), 50_000)  # nor renewed

    @gen_test
    async def test_a_new_session_replaces_whatever_the_key_held(self) -> None:
        self.old_layout("old", {"user_id": 1})
        self.assertTrue(await self.store.set("old", {"n": 1}, 60))
        self.assertEqual(await self.store.get("old"), {"n": 1})

    @gen_test
    async def test_bulk_operations_skip_records_of_another_type_and_clear_deletes_them(
        self,
    ) -> None:
        self.old_layout("old", {"user_id": 1})
        with self.redis_server.admin() as admin:
            admin.rpush(NS + "list", b"x")
        await self.store.set("new", {"user_id": 1}, 60)
        self.assertEqual(await self.store.count(), 1)
        self.assertEqual(await self.store.destroy_all(user_id=1), 1)
        self.assertEqual(await self.store.count(), 0)
        await self.store.clear()
        with self.redis_server.admin() as admin:
            self.assertEqual(list(admin.scan_iter(match=NS + "*")), [])

    @gen_test
    async def test_values_that_are_not_a_json_object_read_as_missing_with_a_warning(
        self,
    ) -> None:
        with self.redis_server.admin() as admin:
            admin.set(NS + "good", '{"\u00e9":{"a":[1]}}'.encode())
            for name, value in [("text", b"not json"), ("list", b'[["a", 1]]'),
                                ("number", b"1"), ("bytes", b"\xff\xfe")]:
                admin.set(NS + name, value)
        self.assertEqual(await self.store.get("good"), {"é": {"a": [1]}})
        for name in ("text", "list", "number", "bytes"):
            with ExpectLog("tornado_session.stores.redis", ".*does not hold a JSON object"):
                self.assertIsNone(await self.store.get(name), name)

    @gen_test
    async def test_an_update_finding_garbage_since_the_load_writes_nothing(self) -> None:
        await self.store.set("k", {"n": 1}, 60)
        with self.redis_server.admin() as admin:
            admin.set(NS + "k", b"not json", keepttl=True)
        with ExpectLog("tornado_session.stores.redis", ".*does not hold a JSON object"):
            self.assertFalse(await self.store.set("k", {"n": 2}, 60, previous={"n": 1}))
        with self.redis_server.admin() as admin:
            self.assertEqual(admin.get(NS + "k"), b"not json")


class TestRecordOfAnotherTypeOverHTTP(RedisServerCase, SessionTestCase):
    """A cookie whose record is an earlier layout's hash: a fresh session, not an error page."""

    def make_store(self) -> RedisStore:
        self.redis = RedisStore.from_url(self.redis_server.url)
        return self.redis

    def tearDown(self) -> None:
        self.io_loop.run_sync(self.redis.close)
        super().tearDown()

    @gen_test
    async def test_the_request_gets_a_fresh_session(self) -> None:
        self.assertEqual((await self.fetch_async("/count")).body, b"1")
        self.assertEqual((await self.fetch_async("/count")).body, b"2")
        with self.redis_server.admin() as admin:
            (name,) = admin.scan_iter(match=NS + "*")
            admin.delete(name)
            admin.hset(name, mapping={b"\xff": b"1", b"views": b"2"})
            admin.pexpire(name, 60_000)
        with ExpectLog("tornado_session.stores.redis", ".*is not a string"):
            response = await self.fetch_async("/count")
        self.assertEqual((response.code, response.body), (200, b"1"))
        self.assertEqual((await self.fetch_async("/count")).body, b"2")


class TestExpiryByServerTtl(RedisCase):
    @gen_test
    async def test_every_write_gives_the_key_its_max_age_as_ttl(self) -> None:
        await self.store.set("k", {"n": 1}, 60)
        self.assertTrue(59_000 < self.pttl("k") <= 60_000)
        await self.store.set("k", {"n": 2}, 300, previous={"n": 1})
        self.assertTrue(299_000 < self.pttl("k") <= 300_000)
        await self.store.set("k", {"n": 3}, 120)  # a whole replacement
        self.assertTrue(119_000 < self.pttl("k") <= 120_000)

    @gen_test
    async def test_touch_and_update_with_nothing_changed_reset_the_ttl(self) -> None:
        await self.store.set("k", {"n": 1}, 10)
        self.assertTrue(await self.store.touch("k", 600))
        self.assertTrue(599_000 < self.pttl("k") <= 600_000)
        await self.store.set("k", {"n": 1}, 20, previous={"n": 1})
        self.assertTrue(19_000 < self.pttl("k") <= 20_000)

    @gen_test
    async def test_reading_leaves_the_ttl_alone(self) -> None:
        await self.store.set("k", {"n": 1}, 10)
        with self.redis_server.admin() as admin:
            admin.pexpire(NS + "k", 5_000)
        await self.store.get("k")
        self.assertTrue(4_000 < self.pttl("k") <= 5_000)

    @gen_test
    async def test_fractional_max_age_rounds_up_to_a_millisecond(self) -> None:
        with self.monitor() as monitor:
            await self.store.set("k", {"n": 1}, 1.0001)
            await self.store.set("k", {"n": 2}, 2.0001, previous={"n": 1})
            await self.store.touch("k", 0.0001)
        self.assertIn(f'SET {NS}k {{"n":1}} PX 1001', monitor.sent())
        self.assertIn(f'SET {NS}k {{"n":2}} PX 2001', monitor.scripted())
        self.assertIn(f"PEXPIRE {NS}k 1", monitor.sent())
        await self.store.set("tiny", {"n": 1}, 0.0000001)
        await asyncio.sleep(0.01)
        self.assertIsNone(await self.store.get("tiny"))

    @gen_test(timeout=10)
    async def test_the_server_expires_the_key_without_any_read(self) -> None:
        await self.store.set("k", {"n": 1}, 0.2)
        await asyncio.sleep(0.5)
        with self.redis_server.admin() as admin:
            self.assertEqual(admin.exists(NS + "k"), 0)
            self.assertEqual(admin.dbsize(), 0)


class TestNamespace(RedisCase):
    @gen_test
    async def test_bulk_operations_leave_keys_outside_the_namespace_alone(self) -> None:
        other = RedisStore.from_url(self.redis_server.url, namespace="other:")
        try:
            with self.redis_server.admin() as admin:
                admin.set("tornado_session", "not under the namespace")
                admin.hset("plain-hash", "f", "v")
            await self.store.set("mine", {"user_id": 1}, 60)
            await other.set("theirs", {"user_id": 1}, 60)
            self.assertEqual(await self.store.count(), 1)
            self.assertEqual(await self.store.destroy_all(user_id=1), 1)
            await self.store.set("mine", {"user_id": 1}, 60)
            await self.store.clear()
            self.assertEqual(await other.get("theirs"), {"user_id": 1})
            with self.redis_server.admin() as admin:
                self.assertEqual(
                    sorted(admin.scan_iter()), [b"other:theirs", b"plain-hash", b"tornado_session"]
                )
        finally:
            await other.close()

    @gen_test
    async def test_namespace_with_pattern_characters_matches_only_itself(self) -> None:
        star = RedisStore.from_url(self.redis_server.url, namespace="s*[1]:")
        try:
            with self.redis_server.admin() as admin:
                admin.set("sX1:lookalike", "{}")
            await star.set("k", {"n": 1}, 60)
            self.assertEqual(await star.count(), 1)
            await star.clear()
            with self.redis_server.admin() as admin:
                self.assertEqual(admin.exists("sX1:lookalike"), 1)
                self.assertEqual(admin.exists("s*[1]:k"), 0)
        finally:
            await star.close()

    @gen_test
    async def test_value_that_is_not_json_replacing_a_stored_one_names_its_key(self) -> None:
        await self.store.set("k", {"a": 1, "b": 2}, 60)
        with self.assertRaises(SessionSerializationError) as caught:
            await self.store.set("k", {"a": object(), "b": 3}, 60, previous={"a": 1, "b": 2})
        self.assertEqual(caught.exception.key, "a")
        self.assertEqual(await self.store.get("k"), {"a": 1, "b": 2})


class TestConstruction(RedisServerCase, AsyncTestCase):
    def test_blocking_client_is_refused_naming_the_option(self) -> None:
        with self.assertRaisesRegex(SessionOptionError, r"client=Redis.*redis\.asyncio"):
            RedisStore(redis.Redis())  # type: ignore[arg-type]
        with self.assertRaisesRegex(SessionOptionError, "client=str"):
            RedisStore("redis://localhost")  # type: ignore[arg-type]

    def test_client_decoding_responses_is_refused(self) -> None:
        with self.assertRaisesRegex(SessionOptionError, "decode_responses"):
            RedisStore(redis.asyncio.Redis(decode_responses=True))
        with self.assertRaisesRegex(SessionOptionError, "decode_responses"):
            RedisStore.from_url(self.redis_server.url, decode_responses=True)

    def test_bad_namespace_names_the_option(self) -> None:
        for bad in ("", None, 1, b"ns:"):
            with self.assertRaisesRegex(SessionOptionError, "namespace"):
                RedisStore(redis.asyncio.Redis(), namespace=bad)  # type: ignore[arg-type]

    def test_bad_timeout_names_the_option(self) -> None:
        for bad in (0, -1, "1", True, float("inf"), float("nan")):
            with self.assertRaisesRegex(SessionOptionError, r"timeout=.*or None"):
                RedisStore(redis.asyncio.Redis(), timeout=bad)  # type: ignore[arg-type]

    def test_timeout_is_the_stores_in_from_url_and_the_clients_otherwise(self) -> None:
        store = RedisStore.from_url(self.redis_server.url)
        self.assertEqual(store.timeout, 5.0)
        self.assertIsNone(store.client.get_connection_kwargs()["socket_timeout"])
        self.io_loop.run_sync(store.close)
        self.assertIsNone(RedisStore(redis.asyncio.Redis()).timeout)
        self.assertEqual(RedisStore(redis.asyncio.Redis(), timeout=2).timeout, 2.0)

    def test_bad_probe_interval_names_the_option(self) -> None:
        for bad in (0, -1, "1", None, True, float("inf"), float("nan")):
            with self.assertRaisesRegex(SessionOptionError, "probe_interval"):
                RedisStore(redis.asyncio.Redis(), probe_interval=bad)  # type: ignore[arg-type]

    def test_from_url_passes_client_options_and_owns_the_client(self) -> None:
        store = RedisStore.from_url(
            self.redis_server.url, namespace="x:", socket_timeout=1.5, probe_interval=0.5
        )
        self.assertEqual(store.namespace, "x:")
        self.assertEqual(store.probe_interval, 0.5)
        kwargs = store.client.get_connection_kwargs()
        self.assertEqual(kwargs["socket_timeout"], 1.5)
        self.assertEqual(kwargs["retry"].get_retries(), 1)
        self.io_loop.run_sync(store.close)

    def test_bad_url_names_the_argument_without_echoing_it(self) -> None:
        for bad in ("http://user:s3cret@host/0", "localhost:s3cret", b"redis://s3cret@x", 42):
            with self.assertRaisesRegex(SessionOptionError, r"from_url\(url=\.\.\.\)") as caught:
                RedisStore.from_url(bad)  # type: ignore[arg-type]
            self.assertNotIn("s3cret", str(caught.exception))

    def test_without_redis_installed_construction_names_the_extra(self) -> None:
        blocked = {"redis": None, "redis.asyncio": None, "redis.exceptions": None}
        hint = r'pip install "tornado-async-session\[redis\]"'
        with mock.patch.dict(sys.modules, blocked):
            with self.assertRaisesRegex(ImportError, hint):
                RedisStore(object())  # type: ignore[arg-type]
            with self.assertRaisesRegex(ImportError, hint):
                RedisStore.from_url("redis://127.0.0.1")

    def test_importing_the_package_does_not_import_redis(self) -> None:
        code = (
            "import sys, tornado_session, tornado_session.stores, tornado_session.testing\n"
            "assert 'redis' not in sys.modules, 'redis imported'\n"
            "from tornado_session.stores import RedisStore\n"
            "assert 'redis' not in sys.modules, 'redis imported by the store module'\n"
            "sys.modules['redis'] = None\n"
            "try:\n"
            "    RedisStore(None)\n"
            "except ImportError as exc:\n"
            "    print(exc)\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn('pip install "tornado-async-session[redis]"', result.stdout)


class TestClose(RedisCase):
    def clients(self) -> int:
        """Connections of clients other than the admin asking."""
        with self.redis_server.admin() as admin:
            return len(admin.client_list()) - 1

    @gen_test
    async def test_close_closes_a_client_the_store_made(self) -> None:
        await self.store.set("k", {"n": 1}, 60)
        self.assertEqual(self.clients(), 1)
        await self.store.close()
        for _ in range(50):
            if self.clients() == 0:
                break
            await asyncio.sleep(0.02)
        self.assertEqual(self.clients(), 0)
        with self.assertRaisesRegex(StoreUnavailableError, "closed"):
            await self.store.get("k")
        await self.store.close()  # a second close is harmless

    @gen_test
    async def test_close_leaves_a_client_it_was_given_open(self) -> None:
        client = redis.asyncio.Redis(port=self.redis_server.port)
        store = RedisStore(client)
        await store.set("k", {"n": 1}, 60)
        await store.close()
        try:
            self.assertTrue(await client.ping())
            self.assertEqual(self.clients(), 1)
            self.assertEqual(await client.exists(NS + "k"), 1)
        finally:
            await client.aclose()


class TestUserIndexRevocationRaces(RedisServerCase, AsyncTestCase):
    """A revocation ("log out everywhere") landing between the two calls of a login.

    On one server (and a cluster namespace with a hash tag) a login is the
    owner script, then the session's ``SET``: a revocation in between must
    neither miss the new session nor leave it without its owner.
    """

    def setUp(self) -> None:
        super().setUp()
        self.store = RedisStore.from_url(self.redis_server.url, user_key="user_id")

    def tearDown(self) -> None:
        self.io_loop.run_sync(self.store.close)
        super().tearDown()

    async def login(self, key: str, data: dict[str, Any], previous: Any = None) -> Any:
        now = time.time()
        return await self.store.set(key, data, 60, previous=previous, owner=Owner(1, now, now))

    @gen_test
    async def test_a_revocation_before_a_new_sessions_first_write_leaves_it_listed(self) -> None:
        await self.login("old", {"user_id": 1})
        own, revoked = self.store._own, []

        async def own_then_revoke(*args: Any) -> Any:
            answer = await own(*args)
            revoked.append(await self.store.destroy_user(1))
            return answer

        with mock.patch.object(self.store, "_own", own_then_revoke):
            await self.login("new", {"user_id": 1})
        self.assertEqual(revoked, [1])  # "old", not the login in progress
        self.assertIsNone(await self.store.get("old"))
        self.assertEqual([record.key for record in await self.store.user_sessions(1)], ["new"])
        self.assertEqual(await self.store.destroy_user(1), 1)  # "log out everywhere" finds it
        self.assertIsNone(await self.store.get("new"))

    @gen_test
    async def test_a_revocation_before_a_visitors_login_is_written_wins(self) -> None:
        await self.store.set("visitor", {"cart": [1]}, 60)
        own = self.store._own

        async def own_then_revoke(*args: Any) -> Any:
            answer = await own(*args)
            self.assertEqual(await self.store.destroy_user(1), 1)
            return answer

        with mock.patch.object(self.store, "_own", own_then_revoke):
            written = await self.login("visitor", {"cart": [1], "user_id": 1}, {"cart": [1]})
        self.assertIs(written, False)  # the session was revoked first: nothing is written
        self.assertIsNone(await self.store.get("visitor"))
        self.assertEqual(await self.store.user_sessions(1), [])


class TestReplicas(RedisCase):
    """``replicas``: a session write counts as saved once a replica has it too.

    A real primary (the class's server) with one real replica (``--replicaof``).
    """

    replica: ClassVar[RedisServer]

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.replica = RedisServer(replica_of=cls.redis_server)
        cls.addClassCleanup(cls.replica.remove)
        cls.replica.start()
        deadline = time.monotonic() + 10
        while True:  # the replica's first sync
            with cls.replica.admin() as admin:
                if admin.info("replication")["master_link_status"] == "up":
                    break
            assert time.monotonic() < deadline, "the replica did not sync"
            time.sleep(0.05)

    def setUp(self) -> None:
        super().setUp()
        self.plain = self.store  # RedisCase's, without replicas
        self.store = RedisStore.from_url(self.redis_server.url, replicas=1, user_key="user_id")

    def tearDown(self) -> None:
        self.io_loop.run_sync(self.plain.close)
        super().tearDown()

    def on_replica(self, key: str) -> bytes | None:
        with self.replica.admin() as admin:
            value: bytes | None = admin.get(NS + key)
            return value

    @gen_test
    async def test_each_write_is_on_the_replica_when_it_is_answered(self) -> None:
        now = time.time()

        async def log_in_change_touch_log_out(key: str) -> None:
            await self.store.set(key, {"user_id": 1}, 60, owner=Owner(1, now, now))
            self.assertEqual(self.on_replica(key), raw({"user_id": 1}))
            await self.store.set(key, {"user_id": 1, "n": 2}, 60, previous={"user_id": 1})
            self.assertEqual(self.on_replica(key), raw({"n": 2, "user_id": 1}))
            await self.store.touch(key, 60)
            self.assertTrue(await self.store.destroy(key))
            self.assertIsNone(self.on_replica(key))

        await log_in_change_touch_log_out("first")  # sends the scripts (EVAL) once
        with self.monitor() as monitor:
            await log_in_change_touch_log_out("k")
        names = [command.split(" ")[0] for command in monitor.sent()]
        # Every write is followed by a WAIT for one replica (the pipeline's: same connection).
        self.assertEqual(names, ["EVALSHA", "WAIT", "SET", "WAIT", "EVALSHA", "WAIT",
                                 "EVALSHA", "WAIT", "DEL", "WAIT"])
        waits = {command for command in monitor.sent() if command.startswith("WAIT")}
        self.assertEqual(waits, {"WAIT 1 500"})  # one replica, replica_timeout in ms
        # WAIT counts the writes of its own connection: each follows its write on that one.
        sent = [c for c in monitor.commands if c["client_type"] != "lua"
                and not c["command"].startswith("HELLO")]
        for write, wait in zip(sent[::2], sent[1::2], strict=True):
            self.assertEqual(wait["client_port"], write["client_port"], write["command"])

    @gen_test
    async def test_a_write_too_few_replicas_confirm_is_not_saved(self) -> None:
        store = RedisStore.from_url(self.redis_server.url, replicas=2, replica_timeout=0.1)
        try:
            started = time.monotonic()
            with self.assertRaisesRegex(StoreUnavailableError, "1 replica.*replicas=2"):
                await store.set("k", {"n": 1}, 60)
            self.assertGreaterEqual(time.monotonic() - started, 0.1)  # it waited for them
            self.assertTrue(store.connected)  # Redis answers: not an outage
        finally:
            await store.close()

    @gen_test
    async def test_without_replicas_no_write_waits(self) -> None:
        with self.monitor() as monitor:
            await self.plain.set("k", {"n": 1}, 60)
            await self.plain.destroy("k")
        self.assertEqual([c.split(" ")[0] for c in monitor.sent()], ["SET", "DEL"])

    def test_bad_replicas_options_are_refused_naming_them(self) -> None:
        for bad in (-1, True, 1.5, "1"):
            with self.subTest(replicas=bad), self.assertRaisesRegex(
                SessionOptionError, r"RedisStore option replicas=.*int >= 0"
            ):
                RedisStore.from_url(self.redis_server.url, replicas=bad)
        for bad_timeout in (0, -1, "1"):
            with self.subTest(replica_timeout=bad_timeout), self.assertRaisesRegex(
                SessionOptionError, r"RedisStore option replica_timeout="
            ):
                RedisStore.from_url(self.redis_server.url, replicas=1, replica_timeout=bad_timeout)
