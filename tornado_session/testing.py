"""The store contract suite, for our stores and yours.

Every store, ours and any a user writes, must behave the same way through the
protocol of `tornado_session.stores.Store`.  `StoreContract` says how, in
tests: MemoryStore, RedisStore and MongoStore each run it in this project's own
test suite, and a store of yours runs it the same way.  Subclass it and build
the store in `make_store`::

    from tornado_session.testing import StoreContract

    class TestMyStore(StoreContract):
        def make_store(self):
            return MyStore(clock=self.clock)

It is a `tornado.testing.AsyncTestCase`, so pytest and unittest both run it
(``python -m pytest tests/test_my_store.py`` or ``python -m unittest``).  The
contract class itself is not collected; each subclass is.  See the guide's
"Writing your own store" page for a whole example.

For testing an application: `SessionClient`, a client that keeps cookies
across requests as a browser does, and `SessionClient.session_transaction`,
which sets or reads the client's session from a test, on every store and on
cookie sessions, without knowing the cookie's payload or the store's keys::

    from tornado_session.testing import SessionClient

    class TestProfile(AsyncHTTPTestCase):
        def get_app(self):
            self.app = make_app()
            return self.app

        def test_profile_shows_the_user(self):
            client = SessionClient(self)
            with client.session_transaction(self.app) as session:
                session["username"] = "ada"
            self.assertIn(b"ada", client.fetch("/profile").body)

The guide's "Testing your application" page has the whole story.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import http.cookies
import time
import types
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tornado.httpclient import HTTPResponse
from tornado.httputil import HTTPHeaders
from tornado.testing import AsyncTestCase, gen_test, get_async_test_timeout

from . import serializers
from .errors import SessionError, SessionSerializationError
from .lifecycle import SessionContext
from .serializers import Append, Increment
from .session import Session
from .stores.base import Owner, Store, UserId, Written

if TYPE_CHECKING:
    import tornado.web
    from tornado.testing import AsyncHTTPTestCase

__all__ = ["FakeClock", "SessionClient", "SessionTransaction", "StoreContract"]


class FakeClock:
    """A clock for tests: starts at the real time and moves only when told.

    Pass it as ``clock=`` to a store or to `SessionOptions` and call `advance`
    instead of sleeping.
    """

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds``."""
        self.now += seconds


class StoreContract(AsyncTestCase):
    """What every store must do, as tests.  Subclass it and define `make_store`.

    `make_store` is called before each test and must return a new store with
    no sessions in it (or none the tests can see: a fresh namespace, a fresh
    collection).  After each test the suite calls ``clear()`` (when the store
    has it) and ``close()``.  The tests cover:

    * ``get`` / ``set`` / ``destroy``: copies in and out, a whole replacement
      when ``previous`` is ``None``, JSON types, unicode, keys such as
      ``"a.b"`` or ``"$x"``, big values and sessions with thousands of keys;
    * updates with ``previous`` (a plain dict, or a `serializers.Loaded` as
      the lifecycle passes): only the changed keys are applied, so concurrent
      requests of one session keep each other's writes (50 at once), and a
      session destroyed or expired meanwhile is not brought back (the update
      returns ``False``): a logout wins;
    * parallel writes of one key: a key changed since the request loaded it
      is reported as a conflict (`Written.conflicts`) and settled by
      ``on_conflict`` (the last write, the first, or nothing written at all);
      different keys never conflict; increments and capped appends (``ops``)
      are applied to the stored value, so parallel ones all count, and their
      new values are reported (`Written.values`); an op the stored value
      cannot take is a conflict;
    * expiry: each record's own ``max_age``; `touch` of a live record (extends
      it, keeps the data) and of a missing one (``False``, creates nothing);
      an update that changes nothing still extends the expiry;
    * ``destroy_all(**match)``, ``count()`` and ``clear()``;
    * a value that is not JSON raises `SessionSerializationError` naming its key
      and writes nothing.

    Class attributes to set in a subclass:

    ``follows_clock``
        ``True`` (default) when the store reads the time from the ``clock`` it
        is given: `make_store` passes ``clock=self.clock`` (a `FakeClock`) and
        the expiry tests advance it.  Set ``False`` when the backend expires
        records on its own real-time clock (Redis TTLs): those tests then sleep
        for a few multiples of ``short_max_age``.
    ``short_max_age``
        The ``max_age`` in seconds of the expiry tests (0.5).
    ``bulk_operations``
        ``True`` (default) when the store has ``destroy_all``, ``count`` and
        ``clear`` (every store of this package does).  A store without them sets
        ``False``: the tests of those calls are then skipped, and say why.
    ``user_index``
        ``True`` (default) when the store keeps a user index (``user_key``,
        `Store.user_sessions`, `Store.destroy_user`): `make_store` then builds
        it with ``user_key=self.user_key`` (``"user_id"``).  A store without
        one sets ``False``: the index tests are skipped, and say why.
    """

    __test__ = False
    #: Whether the store reads the time from ``self.clock`` (a `FakeClock`).
    follows_clock = True
    #: A short ``max_age`` for the expiry tests, in seconds.
    short_max_age = 0.5
    #: Whether the store has ``destroy_all``, ``count`` and ``clear``.
    bulk_operations = True
    #: Whether the store keeps a user index (built with ``user_key=self.user_key``).
    user_index = True
    #: The ``user_key`` that `make_store` gives a store with a user index.
    user_key = "user_id"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.__test__ = True

    def make_store(self) -> Store:
        """Return a new, empty store that uses ``self.clock`` if it can."""
        raise NotImplementedError("subclass StoreContract and define make_store()")

    def setUp(self) -> None:
        super().setUp()
        self.clock = FakeClock()
        self.store = self.make_store()

    def tearDown(self) -> None:
        self.io_loop.run_sync(self._close_store)
        super().tearDown()

    async def _close_store(self) -> None:
        with contextlib.suppress(NotImplementedError):
            await self.store.clear()
        await self.store.close()

    async def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass for the store."""
        if self.follows_clock:
            self.clock.advance(seconds)
        else:
            await asyncio.sleep(seconds)

    def make_neighbour(self) -> Store | None:
        """Return the store of another application on the same backend, or ``None``.

        Applications that share a backend (one Redis database, one MongoDB
        collection) give their stores different namespaces, and then neither
        sees the other's sessions, `destroy_all`, `count` and `clear` included:
        `test_a_neighbour_application_sees_none_of_these_sessions` holds the
        store to it.  A `MemoryStore` is its own backend: a new one is a
        neighbour.  ``None`` (the default) skips that test, saying why.
        """
        return None

    def needs_bulk_operations(self) -> None:
        """Skip the calling test when the store has no bulk operations."""
        if not self.bulk_operations:
            self.skipTest(f"{type(self).__name__}.bulk_operations is False")

    # -- get / set / destroy ----------------------------------------------

    @gen_test
    async def test_get_unknown_key_returns_none(self) -> None:
        self.assertIsNone(await self.store.get("no-such-key"))

    @gen_test
    async def test_set_then_get_returns_equal_data(self) -> None:
        data = {"n": 1, "name": "Zoë", "cart": [1, 2, {"x": None}], "ok": True, "f": 1.5}
        self.assertTrue(await self.store.set("k1", data, 60))
        self.assertEqual(await self.store.get("k1"), data)

    @gen_test
    async def test_get_returns_a_copy(self) -> None:
        await self.store.set("k1", {"cart": [1]}, 60)
        first = await self.store.get("k1")
        assert first is not None
        first["cart"].append(2)
        first["new"] = True
        self.assertEqual(await self.store.get("k1"), {"cart": [1]})

    @gen_test
    async def test_set_keeps_a_copy(self) -> None:
        data: dict[str, Any] = {"cart": [1]}
        await self.store.set("k1", data, 60)
        data["cart"].append(2)
        self.assertEqual(await self.store.get("k1"), {"cart": [1]})

    @gen_test
    async def test_keys_with_dots_and_dollars_round_trip(self) -> None:
        data = {"a.b": 1, "$where": 2, "c": {"d.e": 3, "$f": 4}, "": 5}
        await self.store.set("k1", data, 60)
        self.assertEqual(await self.store.get("k1"), data)

    @gen_test
    async def test_destroy_removes_the_record(self) -> None:
        await self.store.set("k1", {"n": 1}, 60)
        await self.store.set("k2", {"n": 2}, 60)
        self.assertIs(await self.store.destroy("k1"), True)
        self.assertIsNone(await self.store.get("k1"))
        self.assertEqual(await self.store.get("k2"), {"n": 2})

    @gen_test
    async def test_destroy_of_missing_key_is_not_an_error(self) -> None:
        self.assertIs(await self.store.destroy("no-such-key"), False)
        await self.store.set("k1", {"n": 1}, 60)
        await self.store.destroy("k1")
        self.assertIs(await self.store.destroy("k1"), False)  # a second logout

    @gen_test(timeout=10)
    async def test_destroy_of_an_expired_record_says_it_was_not_live(self) -> None:
        await self.store.set("k1", {"n": 1}, self.short_max_age)
        await self.advance(self.short_max_age * 2.5)
        self.assertIs(await self.store.destroy("k1"), False)

    # -- updates of an existing session ------------------------------------

    @gen_test
    async def test_update_does_not_resurrect_a_destroyed_session(self) -> None:
        await self.store.set("k1", {"n": 1}, 60)
        await self.store.destroy("k1")  # a concurrent logout
        written = await self.store.set("k1", {"n": 2}, 60, previous={"n": 1})
        self.assertFalse(written)
        self.assertIsNone(await self.store.get("k1"))

    @gen_test
    async def test_new_session_write_creates_the_record(self) -> None:
        self.assertTrue(await self.store.set("k1", {"n": 1}, 60, previous=None))
        self.assertEqual(await self.store.get("k1"), {"n": 1})

    @gen_test
    async def test_concurrent_updates_of_different_keys_both_survive(self) -> None:
        await self.store.set("k1", {"base": 0}, 60)
        loaded = {"base": 0}
        self.assertTrue(await self.store.set("k1", {"base": 0, "a": 1}, 60, previous=loaded))
        self.assertTrue(await self.store.set("k1", {"base": 0, "b": 2}, 60, previous=loaded))
        self.assertEqual(await self.store.get("k1"), {"base": 0, "a": 1, "b": 2})

    @gen_test
    async def test_update_removes_deleted_keys(self) -> None:
        await self.store.set("k1", {"a": 1, "b": 2}, 60)
        await self.store.set("k1", {"a": 1}, 60, previous={"a": 1, "b": 2})
        self.assertEqual(await self.store.get("k1"), {"a": 1})

    @gen_test
    async def test_update_replaces_changed_nested_values(self) -> None:
        await self.store.set("k1", {"cart": [1], "user": {"id": 1}}, 60)
        await self.store.set(
            "k1",
            {"cart": [1, 2], "user": {"id": 1}},
            60,
            previous={"cart": [1], "user": {"id": 1}},
        )
        self.assertEqual(await self.store.get("k1"), {"cart": [1, 2], "user": {"id": 1}})

    @gen_test
    async def test_update_with_previous_as_loaded_applies_the_changes(self) -> None:
        await self.store.set("k1", {"a": 1, "b": 1, "c": 1}, 60)
        stored = await self.store.get("k1")
        assert stored is not None
        written = await self.store.set(
            "k1", {"a": 2, "b": 1, "d": 1}, 60, previous=as_loaded(stored)
        )
        self.assertTrue(written)
        self.assertEqual(await self.store.get("k1"), {"a": 2, "b": 1, "d": 1})

    @gen_test
    async def test_concurrent_write_after_the_load_is_merged_key_by_key_with_loaded(
        self,
    ) -> None:
        # Two requests load the same record; the first writes, then the second,
        # whose ``previous`` (a Loaded, as the lifecycle passes) is now stale.
        await self.store.set("k1", {"x": 1, "y": 1, "z": 1}, 60)
        first = as_loaded({"x": 1, "y": 1, "z": 1})
        second = as_loaded({"x": 1, "y": 1, "z": 1})
        self.assertTrue(await self.store.set("k1", {"x": 2, "y": 1, "z": 1}, 60, previous=first))
        self.assertTrue(await self.store.set("k1", {"x": 1, "z": 3}, 60, previous=second))
        self.assertEqual(await self.store.get("k1"), {"x": 2, "z": 3})

    @gen_test
    async def test_update_with_loaded_does_not_resurrect_a_destroyed_session(self) -> None:
        await self.store.set("k1", {"n": 1}, 60)
        await self.store.destroy("k1")
        self.assertFalse(await self.store.set("k1", {"n": 2}, 60, previous=as_loaded({"n": 1})))
        self.assertIsNone(await self.store.get("k1"))

    @gen_test
    async def test_fifty_concurrent_updates_of_one_session_all_survive(self) -> None:
        await self.store.set("k1", {}, 60)
        await asyncio.gather(
            *(self.store.set("k1", {f"key{i}": i}, 60, previous={}) for i in range(50))
        )
        self.assertEqual(await self.store.get("k1"), {f"key{i}": i for i in range(50)})

    # -- parallel writes of one key: conflicts, increments, appends -----------

    async def race(self, start: dict[str, Any], first: dict[str, Any]) -> serializers.Loaded:
        """Store ``start``; another request writes ``first`` over it; return what both loaded."""
        await self.store.set("k1", start, 60)
        loaded = as_loaded(start)
        self.assertTrue(await self.store.set("k1", first, 60, previous=as_loaded(start)))
        return loaded

    @gen_test
    async def test_a_key_changed_since_the_load_is_a_conflict_and_the_last_write_wins(
        self,
    ) -> None:
        loaded = await self.race({"n": 1, "other": 1}, {"n": 2, "other": 1})
        written = await self.store.set("k1", {"n": 3, "other": 1}, 60, previous=loaded)
        self.assertTrue(written)
        self.assertEqual(conflicts_of(written), ("n",))
        self.assertEqual(await self.store.get("k1"), {"n": 3, "other": 1})

    @gen_test
    async def test_first_write_wins_keeps_the_stored_value_and_writes_the_other_keys(
        self,
    ) -> None:
        loaded = await self.race({"n": 1, "a": 1}, {"n": 2, "a": 1})
        written = await self.store.set(
            "k1", {"n": 3, "a": 2}, 60, previous=loaded, on_conflict="first_write_wins"
        )
        self.assertTrue(written)
        self.assertEqual(conflicts_of(written), ("n",))
        self.assertEqual(await self.store.get("k1"), {"n": 2, "a": 2})

    @gen_test
    async def test_fail_writes_nothing_of_a_write_in_conflict(self) -> None:
        loaded = await self.race({"n": 1, "a": 1}, {"n": 2, "a": 1})
        written = await self.store.set(
            "k1", {"n": 3, "a": 2, "b": 1}, 60, previous=loaded, on_conflict="fail"
        )
        self.assertFalse(written)
        self.assertEqual(conflicts_of(written), ("n",))
        self.assertEqual(await self.store.get("k1"), {"n": 2, "a": 1})

    @gen_test
    async def test_fail_writes_a_write_without_conflict(self) -> None:
        loaded = await self.race({"n": 1, "a": 1}, {"n": 1, "a": 1, "b": 1})
        written = await self.store.set("k1", {"n": 2, "a": 1}, 60, previous=loaded,
                                       on_conflict="fail")
        self.assertTrue(written)
        self.assertEqual(conflicts_of(written), ())
        self.assertEqual(await self.store.get("k1"), {"n": 2, "a": 1, "b": 1})

    @gen_test
    async def test_different_keys_changed_in_parallel_are_not_a_conflict(self) -> None:
        for policy in serializers.ON_CONFLICT:
            loaded = await self.race({"a": 0, "b": 0}, {"a": 1, "b": 0})
            written = await self.store.set("k1", {"a": 0, "b": 1}, 60, previous=loaded,
                                           on_conflict=policy)
            self.assertTrue(written, policy)
            self.assertEqual(conflicts_of(written), (), policy)
            self.assertEqual(await self.store.get("k1"), {"a": 1, "b": 1}, policy)

    @gen_test
    async def test_a_key_added_removed_or_removed_and_changed_in_parallel_is_a_conflict(
        self,
    ) -> None:
        loaded = await self.race({"a": 1, "b": 1}, {"b": 2, "x": 1})  # removed a, added x
        written = await self.store.set("k1", {"a": 2, "x": 2}, 60, previous=loaded,
                                       on_conflict="first_write_wins")
        self.assertEqual(sorted(conflicts_of(written)), ["a", "b", "x"])
        self.assertEqual(await self.store.get("k1"), {"b": 2, "x": 1})

    @gen_test
    async def test_a_write_with_nothing_written_since_the_load_has_no_conflict(self) -> None:
        await self.store.set("k1", {"n": 1}, 60)
        written = await self.store.set("k1", {"n": 2}, 60, previous=as_loaded({"n": 1}),
                                       on_conflict="fail")
        self.assertTrue(written)
        self.assertEqual(conflicts_of(written), ())
        self.assertEqual(await self.store.get("k1"), {"n": 2})

    @gen_test(timeout=30)  # parallel writes: a loaded machine takes seconds
    async def test_parallel_increments_all_count(self) -> None:
        await self.store.set("k1", {"views": 0, "name": "x"}, 60)
        loaded = as_loaded({"views": 0, "name": "x"})
        answers = await asyncio.gather(*(
            self.store.set("k1", {"views": 1, "name": "x"}, 60, previous=loaded,
                           ops={"views": Increment(1)}, on_conflict=policy)
            for policy in serializers.ON_CONFLICT * 10
        ))
        self.assertTrue(all(answers))
        self.assertEqual(await self.store.get("k1"), {"views": 30, "name": "x"})
        self.assertTrue(all(conflicts_of(answer) == () for answer in answers))
        reported = sorted(answer.values["views"] for answer in answers
                          if isinstance(answer, Written) and "views" in answer.values)
        self.assertEqual(reported, list(range(31 - len(reported), 31)))

    @gen_test
    async def test_an_increment_after_a_parallel_write_adds_to_the_stored_value(self) -> None:
        loaded = await self.race({"views": 5}, {"views": 7})
        written = await self.store.set("k1", {"views": 3}, 60, previous=loaded,
                                       ops={"views": Increment(-2)})
        self.assertEqual(conflicts_of(written), ())
        self.assertEqual(values_of(written), {"views": 5})
        self.assertEqual(await self.store.get("k1"), {"views": 5})

    @gen_test
    async def test_an_increment_of_a_missing_key_starts_from_zero(self) -> None:
        loaded = await self.race({"a": 1}, {"a": 2})
        written = await self.store.set("k1", {"a": 1, "n": 4}, 60, previous=loaded,
                                       ops={"n": Increment(4)})
        self.assertEqual(await self.store.get("k1"), {"a": 2, "n": 4})
        self.assertEqual(conflicts_of(written), ())

    @gen_test
    async def test_an_increment_of_a_big_integer_stays_exact(self) -> None:
        big = 2**62
        loaded = await self.race({"n": big, "a": 1}, {"n": big + 10, "a": 1})
        await self.store.set("k1", {"n": big + 1, "a": 1}, 60, previous=loaded,
                             ops={"n": Increment(1)})
        self.assertEqual(await self.store.get("k1"), {"n": big + 11, "a": 1})

    @gen_test
    async def test_an_increment_of_a_value_that_is_no_longer_an_int_is_a_conflict(
        self,
    ) -> None:
        for policy, kept in (("last_write_wins", 2), ("first_write_wins", "x"), ("fail", "x")):
            loaded = await self.race({"n": 1}, {"n": "x"})
            written = await self.store.set("k1", {"n": 2}, 60, previous=loaded,
                                           ops={"n": Increment(1)}, on_conflict=policy)
            self.assertEqual(conflicts_of(written), ("n",), policy)
            self.assertEqual(bool(written), policy != "fail", policy)
            self.assertEqual(await self.store.get("k1"), {"n": kept}, policy)

    @gen_test(timeout=30)  # parallel writes: a loaded machine takes seconds
    async def test_parallel_appends_all_stay_within_the_limit(self) -> None:
        await self.store.set("k1", {"log": ["a"]}, 60)
        loaded = as_loaded({"log": ["a"]})
        await asyncio.gather(*(
            self.store.set("k1", {"log": ["a", {"n": i, "a.b": "$x"}]}, 60, previous=loaded,
                           ops={"log": Append(({"n": i, "a.b": "$x"},), 100)})
            for i in range(8)
        ))
        stored = await self.store.get("k1")
        assert stored is not None
        self.assertEqual(stored["log"][0], "a")
        self.assertEqual(sorted(item["n"] for item in stored["log"][1:]), list(range(8)))
        self.assertTrue(all(item["a.b"] == "$x" for item in stored["log"][1:]))

    @gen_test
    async def test_an_append_after_a_parallel_write_keeps_the_newest_items(self) -> None:
        loaded = await self.race({"log": [1, 2]}, {"log": [1, 2, 3]})
        written = await self.store.set("k1", {"log": [2, 4, 5]}, 60, previous=loaded,
                                       ops={"log": Append((4, 5), 3)})
        self.assertEqual(conflicts_of(written), ())
        self.assertEqual(values_of(written), {"log": [3, 4, 5]})
        self.assertEqual(await self.store.get("k1"), {"log": [3, 4, 5]})

    @gen_test
    async def test_an_append_to_a_missing_key_starts_a_list(self) -> None:
        loaded = await self.race({"a": 1}, {"a": 2})
        await self.store.set("k1", {"a": 1, "log": ["m"]}, 60, previous=loaded,
                             ops={"log": Append(("m",), 5)})
        self.assertEqual(await self.store.get("k1"), {"a": 2, "log": ["m"]})

    @gen_test
    async def test_an_append_to_a_value_that_is_no_longer_a_list_is_a_conflict(self) -> None:
        loaded = await self.race({"log": [1]}, {"log": {"not": "a list"}})
        written = await self.store.set("k1", {"log": [1, 2]}, 60, previous=loaded,
                                       ops={"log": Append((2,), 5)},
                                       on_conflict="first_write_wins")
        self.assertEqual(conflicts_of(written), ("log",))
        self.assertEqual(await self.store.get("k1"), {"log": {"not": "a list"}})

    @gen_test
    async def test_ops_with_nothing_written_since_the_load_write_the_data(self) -> None:
        await self.store.set("k1", {"n": 1, "log": [1]}, 60)
        written = await self.store.set(
            "k1", {"n": 2, "log": [1, 2]}, 60, previous=as_loaded({"n": 1, "log": [1]}),
            ops={"n": Increment(1), "log": Append((2,), 5)}, on_conflict="fail",
        )
        self.assertTrue(written)
        self.assertEqual(await self.store.get("k1"), {"n": 2, "log": [1, 2]})

    # -- expiry ------------------------------------------------------------

    @gen_test(timeout=10)
    async def test_expired_record_reads_as_none(self) -> None:
        await self.store.set("k1", {"n": 1}, self.short_max_age)
        self.assertEqual(await self.store.get("k1"), {"n": 1})
        await self.advance(self.short_max_age * 2.5)
        self.assertIsNone(await self.store.get("k1"))

    @gen_test(timeout=10)
    async def test_touch_extends_expiry(self) -> None:
        short = self.short_max_age
        await self.store.set("k1", {"n": 1}, short)
        await self.advance(short * 0.5)
        self.assertTrue(await self.store.touch("k1", short * 4))
        await self.advance(short * 1.5)
        self.assertEqual(await self.store.get("k1"), {"n": 1})

    @gen_test(timeout=10)
    async def test_touch_of_a_live_record_returns_true_and_keeps_the_data(self) -> None:
        short = self.short_max_age
        await self.store.set("k1", {"n": 1, "cart": [1, {"x": None}]}, short)
        self.assertTrue(await self.store.touch("k1", short * 4))
        await self.advance(short * 2)
        self.assertEqual(await self.store.get("k1"), {"n": 1, "cart": [1, {"x": None}]})
        self.assertTrue(await self.store.touch("k1", short * 4))

    @gen_test(timeout=10)
    async def test_update_with_nothing_changed_extends_expiry_and_keeps_data(self) -> None:
        short = self.short_max_age
        await self.store.set("k1", {"n": 1}, short)
        await self.advance(short * 0.5)
        written = await self.store.set("k1", {"n": 1}, short * 4, previous=as_loaded({"n": 1}))
        self.assertTrue(written)
        await self.advance(short * 1.5)
        self.assertEqual(await self.store.get("k1"), {"n": 1})

    @gen_test
    async def test_touch_of_a_missing_record_returns_false_and_creates_nothing(self) -> None:
        self.assertFalse(await self.store.touch("no-such-key", 60))
        self.assertIsNone(await self.store.get("no-such-key"))
        if self.bulk_operations:
            self.assertEqual(await self.store.count(), 0)

    # -- bulk operations -----------------------------------------------------

    @gen_test
    async def test_destroy_all_destroys_only_matching_sessions(self) -> None:
        self.needs_bulk_operations()
        await self.store.set("a1", {"account": 42, "n": 1}, 60)
        await self.store.set("a2", {"account": 42, "n": 2}, 60)
        await self.store.set("b1", {"account": 7}, 60)
        await self.store.set("c1", {"n": 3}, 60)
        self.assertEqual(await self.store.destroy_all(account=42), 2)
        self.assertIsNone(await self.store.get("a1"))
        self.assertIsNone(await self.store.get("a2"))
        self.assertEqual(await self.store.get("b1"), {"account": 7})
        self.assertEqual(await self.store.get("c1"), {"n": 3})

    @gen_test
    async def test_count_and_clear(self) -> None:
        self.needs_bulk_operations()
        self.assertEqual(await self.store.count(), 0)
        await self.store.set("a1", {"n": 1}, 60)
        await self.store.set("a2", {"n": 2}, 60)
        self.assertEqual(await self.store.count(), 2)
        await self.store.clear()
        self.assertEqual(await self.store.count(), 0)
        self.assertIsNone(await self.store.get("a1"))

    @gen_test(timeout=30)  # 300 writes: the Mongo wire server takes seconds on a busy machine
    async def test_count_and_clear_walk_many_sessions(self) -> None:
        self.needs_bulk_operations()
        for i in range(300):
            await self.store.set(f"many{i}", {"n": i}, 60)
        self.assertEqual(await self.store.count(), 300)
        self.assertEqual(await self.store.destroy_all(), 300)
        self.assertEqual(await self.store.count(), 0)

    @gen_test
    async def test_destroy_all_needs_every_value_to_match(self) -> None:
        self.needs_bulk_operations()
        await self.store.set("a1", {"account": 42, "role": "admin"}, 60)
        await self.store.set("a2", {"account": 42, "role": "user"}, 60)
        await self.store.set("a3", {"account": "42", "role": "admin"}, 60)
        self.assertEqual(await self.store.destroy_all(account=42, role="admin"), 1)
        self.assertIsNone(await self.store.get("a1"))
        self.assertEqual(await self.store.get("a2"), {"account": 42, "role": "user"})
        self.assertEqual(await self.store.get("a3"), {"account": "42", "role": "admin"})

    @gen_test
    async def test_destroy_all_compares_whole_values(self) -> None:
        self.needs_bulk_operations()
        await self.store.set("a1", {"user": {"id": 1, "name": "a"}}, 60)
        await self.store.set("a2", {"user": {"id": 1}}, 60)
        self.assertEqual(await self.store.destroy_all(user={"id": 1}), 1)
        self.assertIsNone(await self.store.get("a2"))
        self.assertEqual(await self.store.get("a1"), {"user": {"id": 1, "name": "a"}})

    @gen_test
    async def test_destroy_all_without_a_match_destroys_nothing(self) -> None:
        self.needs_bulk_operations()
        await self.store.set("a1", {"account": 1}, 60)
        self.assertEqual(await self.store.destroy_all(account=2), 0)
        self.assertEqual(await self.store.destroy_all(missing=None), 0)
        self.assertEqual(await self.store.count(), 1)

    @gen_test
    async def test_keys_with_pattern_characters_are_counted_and_cleared(self) -> None:
        self.needs_bulk_operations()
        keys = ["a*", "b?", "[c]", "d\\e", "f:g", "h%_"]
        for key in keys:
            await self.store.set(key, {"key": key}, 60)
        self.assertEqual(await self.store.count(), len(keys))
        self.assertEqual(await self.store.destroy_all(key="a*"), 1)
        self.assertEqual(await self.store.get("b?"), {"key": "b?"})
        await self.store.clear()
        self.assertEqual(await self.store.count(), 0)

    @gen_test
    async def test_a_neighbour_application_sees_none_of_these_sessions(self) -> None:
        self.needs_bulk_operations()
        neighbour = self.make_neighbour()
        if neighbour is None:
            self.skipTest(f"{type(self).__name__}.make_neighbour() gives no neighbour store")
        try:
            for store, app in ((self.store, "ours"), (neighbour, "theirs")):
                await store.set("same-key", {"account": 1, "app": app}, 60)
                await store.set(f"{app}-only", {"account": 1, "app": app}, 60)
            self.assertEqual(await self.store.get("same-key"), {"account": 1, "app": "ours"})
            self.assertEqual(await neighbour.get("same-key"), {"account": 1, "app": "theirs"})
            self.assertIsNone(await self.store.get("theirs-only"))
            self.assertEqual(await self.store.count(), 2)
            self.assertEqual(await self.store.destroy_all(account=1), 2)  # log out everywhere
            self.assertEqual(await neighbour.count(), 2)
            self.assertEqual(await neighbour.get("same-key"), {"account": 1, "app": "theirs"})
            await self.store.set("ours-again", {"n": 1}, 60)
            await self.store.clear()
            self.assertEqual(await neighbour.count(), 2)
            self.assertIs(await self.store.destroy("theirs-only"), False)
            self.assertEqual(await neighbour.get("theirs-only"), {"account": 1, "app": "theirs"})
        finally:
            await neighbour.clear()
            await neighbour.close()

    # -- the user index -----------------------------------------------------------

    def needs_user_index(self) -> None:
        """Skip the calling test when the store keeps no user index."""
        if not self.user_index:
            self.skipTest(f"{type(self).__name__}.user_index is False")
        self.assertEqual(self.store.user_key, self.user_key,
                         "make_store() must pass user_key=self.user_key")

    def owner(self, user: UserId | None, agent: str = "Firefox", address: str = "192.0.2.0/24"
              ) -> Owner:
        """An `Owner` of ``user``, created now."""
        now = self.clock()
        return Owner(user, now, now, agent, address)

    async def listed(self, user: UserId) -> list[str]:
        """The keys of ``user``'s sessions, as the index lists them."""
        return [record.key for record in await self.store.user_sessions(user)]

    @gen_test
    async def test_user_sessions_lists_each_session_of_the_user_with_its_device(self) -> None:
        self.needs_user_index()
        await self.store.set("a1", {"user_id": 42}, 60, owner=self.owner(42, "Firefox"))
        await self.advance(0.01)
        await self.store.set("a2", {"user_id": 42}, 60,
                             owner=self.owner(42, "Safari", "2001:db8:1::/48"))
        await self.store.set("b1", {"user_id": 7}, 60, owner=self.owner(7))
        await self.store.set("c1", {"n": 1}, 60)
        records = await self.store.user_sessions(42)
        self.assertEqual([record.key for record in records], ["a1", "a2"])
        self.assertEqual([(r.owner.user, r.owner.agent, r.owner.address) for r in records],
                         [(42, "Firefox", "192.0.2.0/24"), (42, "Safari", "2001:db8:1::/48")])
        for record in records:
            self.assertAlmostEqual(record.owner.created, self.clock(), delta=5)
            self.assertAlmostEqual(record.owner.seen, self.clock(), delta=5)
            self.assertAlmostEqual(record.expires, self.clock() + 60, delta=5)
        self.assertEqual(await self.listed(7), ["b1"])
        self.assertEqual(await self.listed("42"), [])  # 42 and "42" are two users
        self.assertEqual(await self.listed(1), [])

    @gen_test
    async def test_a_destroyed_session_leaves_the_index(self) -> None:
        self.needs_user_index()
        await self.store.set("a1", {"user_id": 42}, 60, owner=self.owner(42))
        await self.store.set("a2", {"user_id": 42}, 60, owner=self.owner(42))
        self.assertTrue(await self.store.destroy("a1"))  # a revocation
        self.assertEqual(await self.listed(42), ["a2"])
        self.assertIsNone(await self.store.get("a1"))

    @gen_test(timeout=10)
    async def test_an_expired_session_drops_out_of_the_index(self) -> None:
        self.needs_user_index()
        short = self.short_max_age
        await self.store.set("a1", {"user_id": 42}, short, owner=self.owner(42))
        await self.store.set("a2", {"user_id": 42}, short * 20, owner=self.owner(42))
        await self.advance(short * 2.5)
        self.assertEqual(await self.listed(42), ["a2"])
        self.assertEqual(await self.store.destroy_user(42), 1)

    @gen_test(timeout=10)
    async def test_writes_and_touches_keep_an_indexed_session_in_the_index(self) -> None:
        self.needs_user_index()
        short = self.short_max_age
        await self.store.set("a1", {"user_id": 42, "n": 1}, short, owner=self.owner(42))
        await self.store.set("a2", {"user_id": 42}, short, owner=self.owner(42))
        (before,) = [r for r in await self.store.user_sessions(42) if r.key == "a1"]
        await self.advance(short * 0.6)
        # An update that leaves the user alone passes no owner: the entry follows anyway.
        self.assertTrue(await self.store.set("a1", {"user_id": 42, "n": 2}, short * 10,
                                             previous={"user_id": 42, "n": 1}))
        self.assertTrue(await self.store.touch("a2", short * 10))
        await self.advance(short * 0.6)
        records = await self.store.user_sessions(42)
        self.assertEqual([record.key for record in records], ["a1", "a2"])
        self.assertGreater(records[0].owner.seen, before.owner.seen)
        self.assertEqual(records[0].owner.created, before.owner.created)
        self.assertEqual(records[0].owner.agent, "Firefox")

    @gen_test
    async def test_regenerate_moves_the_entry_to_the_new_key(self) -> None:
        self.needs_user_index()
        await self.store.set("old", {"user_id": 42}, 60, owner=self.owner(42))
        # The lifecycle's regeneration: destroy the old record, write the new one.
        self.assertTrue(await self.store.destroy("old"))
        await self.store.set("new", {"user_id": 42}, 60, owner=self.owner(42))
        self.assertEqual(await self.listed(42), ["new"])

    @gen_test
    async def test_an_update_that_changes_the_user_moves_the_entry(self) -> None:
        self.needs_user_index()
        await self.store.set("k1", {"cart": [1]}, 60)  # anonymous
        self.assertTrue(await self.store.set("k1", {"cart": [1], "user_id": 42}, 60,
                                             previous={"cart": [1]}, owner=self.owner(42)))
        self.assertEqual(await self.listed(42), ["k1"])
        self.assertTrue(await self.store.set("k1", {"user_id": 7}, 60,
                                             previous={"cart": [1], "user_id": 42},
                                             owner=self.owner(7)))
        self.assertEqual(await self.listed(42), [])
        self.assertEqual(await self.listed(7), ["k1"])
        self.assertTrue(await self.store.set("k1", {}, 60, previous={"user_id": 7},
                                             owner=self.owner(None)))  # logged out
        self.assertEqual(await self.listed(7), [])
        self.assertEqual(await self.store.get("k1"), {})
        self.assertEqual(await self.store.destroy_all(user_id=7), 0)

    @gen_test
    async def test_destroy_all_by_the_user_key_destroys_only_that_users_sessions(self) -> None:
        self.needs_user_index()
        for key, user in (("a1", 42), ("a2", 42), ("b1", 7), ("s1", "42")):
            await self.store.set(key, {"user_id": user}, 60, owner=self.owner(user))
        await self.store.set("c1", {"n": 1}, 60)
        self.assertEqual(await self.store.destroy_all(user_id=42), 2)
        self.assertIsNone(await self.store.get("a1"))
        self.assertIsNone(await self.store.get("a2"))
        self.assertEqual(await self.listed(42), [])
        self.assertEqual(await self.listed(7), ["b1"])
        self.assertEqual(await self.listed("42"), ["s1"])
        self.assertEqual(await self.store.get("c1"), {"n": 1})
        self.assertEqual(await self.store.destroy_user("42"), 1)
        self.assertEqual(await self.store.destroy_all(user_id=42), 0)
        if self.bulk_operations:
            self.assertEqual(await self.store.count(), 2)

    @gen_test(timeout=30)  # (40 calls at once: give a loaded machine time)
    async def test_concurrent_logins_of_one_user_are_all_indexed(self) -> None:
        self.needs_user_index()
        await asyncio.gather(*(
            self.store.set(f"k{i}", {"user_id": 42}, 60, owner=self.owner(42, f"agent {i}"))
            for i in range(20)
        ))
        records = await self.store.user_sessions(42)
        self.assertEqual(sorted(r.key for r in records), sorted(f"k{i}" for i in range(20)))
        self.assertEqual({r.owner.agent for r in records}, {f"agent {i}" for i in range(20)})
        self.assertEqual(await self.store.destroy_all(user_id=42), 20)
        self.assertEqual(await self.listed(42), [])

    @gen_test
    async def test_a_user_that_is_not_a_str_or_int_is_refused(self) -> None:
        self.needs_user_index()
        for user in (True, 1.5, [1], {"id": 1}):
            with self.assertRaises(SessionError):
                Owner(user, 0.0, 0.0)  # type: ignore[arg-type]
            with self.assertRaises(SessionError):
                await self.store.destroy_all(user_id=user)

    # -- data that must survive the round trip ---------------------------------

    @gen_test
    async def test_empty_session_is_a_record(self) -> None:
        self.assertTrue(await self.store.set("k1", {}, 60))
        self.assertEqual(await self.store.get("k1"), {})
        if self.bulk_operations:
            self.assertEqual(await self.store.count(), 1)
        self.assertTrue(await self.store.touch("k1", 60))

    @gen_test
    async def test_update_to_an_empty_session_keeps_the_record(self) -> None:
        await self.store.set("k1", {"a": 1}, 60)
        self.assertTrue(await self.store.set("k1", {}, 60, previous={"a": 1}))
        self.assertEqual(await self.store.get("k1"), {})

    @gen_test
    async def test_write_without_previous_replaces_the_whole_record(self) -> None:
        await self.store.set("k1", {"a": 1, "b": 2}, 60)
        self.assertTrue(await self.store.set("k1", {"c": 3}, 60))
        self.assertEqual(await self.store.get("k1"), {"c": 3})

    @gen_test
    async def test_destroyed_key_can_be_written_again_as_new(self) -> None:
        await self.store.set("k1", {"n": 1}, 60)
        await self.store.destroy("k1")
        self.assertTrue(await self.store.set("k1", {"n": 2}, 60, previous=None))
        self.assertEqual(await self.store.get("k1"), {"n": 2})

    @gen_test
    async def test_update_with_nothing_changed_keeps_the_data(self) -> None:
        await self.store.set("k1", {"n": 1}, 60)
        self.assertTrue(await self.store.set("k1", {"n": 1}, 60, previous={"n": 1}))
        self.assertEqual(await self.store.get("k1"), {"n": 1})

    @gen_test
    async def test_value_that_changes_type_is_replaced(self) -> None:
        await self.store.set("k1", {"a": 1, "b": [1]}, 60)
        await self.store.set("k1", {"a": {"x": [1]}, "b": None}, 60, previous={"a": 1, "b": [1]})
        self.assertEqual(await self.store.get("k1"), {"a": {"x": [1]}, "b": None})

    @gen_test
    async def test_unicode_keys_and_values_round_trip(self) -> None:
        data = {
            "ключ": "значение", "键": ["值", "🎉"], "emoji 🎉": {"ü": "ß"}, "\u0000nul": "\u0000",
        }
        await self.store.set("k1", data, 60)
        self.assertEqual(await self.store.get("k1"), data)
        update = {**data, "ключ": "новое"}
        await self.store.set("k1", update, 60, previous=data)
        self.assertEqual(await self.store.get("k1"), update)

    @gen_test
    async def test_json_types_keep_their_values(self) -> None:
        data: dict[str, Any] = {
            "int": 2**53 + 1, "neg": -(2**62), "float": 0.1, "tiny": 1e-300, "zero": 0.0,
            "true": True, "false": False, "null": None, "str": "", "list": [],
            "dict": {}, "nested": [[{"a": [1.5, "x", None]}]],
        }
        await self.store.set("k1", data, 60)
        loaded = await self.store.get("k1")
        self.assertEqual(loaded, data)
        assert loaded is not None
        self.assertIs(type(loaded["int"]), int)
        self.assertIs(type(loaded["zero"]), float)
        self.assertIs(loaded["true"], True)

    @gen_test(timeout=30)
    async def test_big_values_round_trip(self) -> None:
        data = {"text": "é" * 500_000, "list": list(range(20_000)), "small": 1}
        await self.store.set("k1", data, 60)
        self.assertEqual(await self.store.get("k1"), data)
        update = {**data, "small": 2}
        self.assertTrue(await self.store.set("k1", update, 60, previous=data))
        self.assertEqual(await self.store.get("k1"), update)

    @gen_test(timeout=30)
    async def test_session_with_thousands_of_keys_round_trips_and_updates(self) -> None:
        data = {f"key{i}": i for i in range(5000)}
        await self.store.set("k1", data, 60)
        self.assertEqual(await self.store.get("k1"), data)
        update = {f"key{i}": -i for i in range(0, 5000, 2)}  # half changed, half removed
        self.assertTrue(await self.store.set("k1", update, 60, previous=data))
        self.assertEqual(await self.store.get("k1"), update)

    @gen_test
    async def test_value_that_is_not_json_names_its_key_and_writes_nothing(self) -> None:
        await self.store.set("k1", {"n": 1}, 60)
        with self.assertRaises(SessionSerializationError) as caught:
            await self.store.set("k1", {"n": 1, "bad": object()}, 60)
        self.assertEqual(caught.exception.key, "bad")
        with self.assertRaises(SessionSerializationError) as caught:
            await self.store.set("k1", {"n": 1, "bad": {1, 2}}, 60, previous={"n": 1})
        self.assertEqual(caught.exception.key, "bad")
        with self.assertRaises(SessionSerializationError):
            await self.store.set("k2", {"n": 1, "bad": object()}, 60)
        self.assertEqual(await self.store.get("k1"), {"n": 1})
        self.assertIsNone(await self.store.get("k2"))

    # -- expiry of each record -------------------------------------------------

    @gen_test(timeout=10)
    async def test_each_record_keeps_its_own_max_age(self) -> None:
        short = self.short_max_age
        await self.store.set("short", {"n": 1}, short)
        await self.store.set("long", {"n": 2}, short * 20)
        await self.advance(short * 2.5)
        self.assertIsNone(await self.store.get("short"))
        self.assertEqual(await self.store.get("long"), {"n": 2})
        if self.bulk_operations:
            self.assertEqual(await self.store.count(), 1)

    @gen_test(timeout=10)
    async def test_update_of_an_expired_session_is_not_written(self) -> None:
        short = self.short_max_age
        await self.store.set("k1", {"n": 1}, short)
        await self.advance(short * 2.5)
        self.assertFalse(await self.store.set("k1", {"n": 2}, 60, previous={"n": 1}))
        self.assertFalse(await self.store.set("k1", {"n": 1}, 60, previous=as_loaded({"n": 1})))
        self.assertFalse(await self.store.touch("k1", 60))
        self.assertIsNone(await self.store.get("k1"))
        if self.bulk_operations:
            self.assertEqual(await self.store.destroy_all(n=1), 0)

    # -- events --------------------------------------------------------------

    @gen_test
    async def test_listeners_can_be_added_and_removed(self) -> None:
        seen: list[dict[str, Any]] = []
        self.store.on("connect", seen.append)
        self.store.off("connect", seen.append)
        self.assertEqual(self.store.events.listeners("connect"), [])
        self.assertTrue(self.store.connected)


def conflicts_of(written: object) -> tuple[str, ...]:
    """The keys in conflict that a `Store.set` answer reports (none for ``True``/``False``)."""
    return written.conflicts if isinstance(written, Written) else ()


def values_of(written: object) -> dict[str, Any]:
    """The values of increments and appends that a `Store.set` answer reports."""
    return dict(written.values) if isinstance(written, Written) else {}


def as_loaded(data: dict[str, Any]) -> serializers.Loaded:
    """``data`` as the lifecycle passes it as ``previous``: with its canonical JSON."""
    return serializers.Loaded.decode(serializers.dumps(data))


# -- testing an application ------------------------------------------------------------

#: The statuses after which `SessionClient` follows a ``Location`` (with ``follow_redirects``).
_REDIRECTS = {301, 302, 303, 307, 308}

#: Methods that Tornado's ``xsrf_cookies`` check leaves alone.
_SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


@dataclass(slots=True)
class _Cookie:
    """A cookie the client holds: its value as sent back, and when it goes."""

    #: The value as the server wrote it (quotes included): what a browser sends back.
    coded: str
    #: The value without quotes (what ``get_cookie`` gives the application).
    value: str
    #: When the browser forgets it (epoch seconds), or ``None`` at the browser's close.
    expires: float | None


class SessionClient:
    """A client for `~tornado.testing.AsyncHTTPTestCase` tests that keeps cookies like a browser.

    ``client = SessionClient(self)`` in a test.  Each response's
    ``Set-Cookie`` headers are kept by name and path, and sent back to the
    paths they match; a cookie set with ``Max-Age=0`` or an ``expires`` in
    the past is deleted, and one whose time has come is no longer sent, as
    a browser does.  `fetch` is for plain test methods, `fetch_async` for
    ``@gen_test`` coroutines; neither follows redirects unless asked
    (``follow_redirects=True`` follows them here, keeping the cookies each
    step sets) nor raises for an HTTP error status: the test reads the
    status.  For applications with ``xsrf_cookies=True``, a request other
    than GET, HEAD or OPTIONS carries the ``_xsrf`` cookie's value in an
    ``X-XSRFToken`` header, as a page's script would (``xsrf=False`` sends
    none, to test the refusal).

    `session_transaction` reads and changes the client's session from the
    test.  Cookies are kept for one host (the test server's); their
    ``Domain`` and ``Secure`` attributes are not checked.
    """

    def __init__(self, case: AsyncHTTPTestCase) -> None:
        #: The test case whose server the client talks to.
        self.case = case
        self._jar: dict[tuple[str, str], _Cookie] = {}

    # -- cookies ------------------------------------------------------------------

    @property
    def cookies(self) -> dict[str, str]:
        """The cookies the client holds, by name (a copy; values as the server wrote them).

        A name held for several paths gives the value of the longest path.
        """
        self._forget_expired()
        held: dict[str, str] = {}
        for (name, _path), cookie in sorted(self._jar.items(), key=lambda item: len(item[0][1])):
            held[name] = cookie.coded
        return held

    def set_cookie(self, name: str, value: str, *, path: str = "/") -> None:
        """Hold the cookie ``name=value`` for ``path``, as if a response had set it."""
        self._jar[(name, path)] = _Cookie(value, value.strip('"'), None)

    def delete_cookie(self, name: str, *, path: str | None = None) -> None:
        """Forget the cookie ``name`` for ``path`` (``None``: for every path)."""
        for key in [key for key in self._jar if key[0] == name and path in (None, key[1])]:
            del self._jar[key]

    def clear_cookies(self) -> None:
        """Forget every cookie, as a new browser would start."""
        self._jar.clear()

    def cookie_header(self, path: str = "/") -> str | None:
        """The ``Cookie`` header a request to ``path`` carries, or ``None`` when it has none.

        The cookies whose path matches ``path``, longest path first, as
        browsers send them.
        """
        pairs = [f"{name}={cookie.coded}" for name, cookie in self._matching(path)]
        return "; ".join(pairs) if pairs else None

    def _matching(self, path: str) -> list[tuple[str, _Cookie]]:
        self._forget_expired()
        found = [(len(cookie_path), name, cookie)
                 for (name, cookie_path), cookie in self._jar.items()
                 if _path_matches(path, cookie_path)]
        found.sort(key=lambda item: -item[0])
        return [(name, cookie) for _, name, cookie in found]

    def _forget_expired(self) -> None:
        now = time.time()
        for key in [k for k, cookie in self._jar.items()
                    if cookie.expires is not None and cookie.expires <= now]:
            del self._jar[key]

    def remember(self, response: HTTPResponse) -> None:
        """Keep (or delete) the cookies ``response`` sets, as a browser would."""
        request_path = urllib.parse.urlsplit(response.effective_url).path or "/"
        for line in response.headers.get_list("Set-Cookie"):
            self._remember_line(line, request_path)

    def _remember_line(self, line: str, request_path: str) -> None:
        parsed: http.cookies.SimpleCookie = http.cookies.SimpleCookie()
        parsed.load(line)
        for name, morsel in parsed.items():
            path = morsel["path"] or _default_path(request_path)
            expires = _expiry(morsel)
            if expires is not None and expires <= time.time():
                self._jar.pop((name, path), None)
            else:
                self._jar[(name, path)] = _Cookie(morsel.coded_value, morsel.value, expires)

    # -- requests -----------------------------------------------------------------

    def fetch(self, path: str, **kwargs: Any) -> HTTPResponse:
        """`fetch_async` for a plain test method: runs the IOLoop until the response.

        Inside a ``@gen_test`` coroutine use ``await client.fetch_async(...)``.
        """
        _outside_the_loop("client.fetch()", "await client.fetch_async(...)")
        response: HTTPResponse = self.case.io_loop.run_sync(
            lambda: self.fetch_async(path, **kwargs), timeout=get_async_test_timeout()
        )
        return response

    async def fetch_async(
        self, path: str, *, follow_redirects: bool = False, xsrf: bool = True,
        max_redirects: int = 5, cookies: Mapping[str, str] | None = None, **kwargs: Any,
    ) -> HTTPResponse:
        """Send a request to the test server with the client's cookies; keep what it sets.

        ``path`` is a path of the test server (or a whole URL).  Other
        arguments are those of `tornado.httpclient.HTTPRequest` (``method``,
        ``body``, ``headers``...).  Returns the response whatever its status.
        With ``follow_redirects=True``, up to ``max_redirects`` redirects are
        followed (a 301, 302 or 303 as a GET without a body), each carrying
        the cookies the step before set.

        ``cookies`` sends exactly these cookies (``{}``: none) instead of the
        client's, and keeps none of the response's: a request from somewhere
        else, such as an old cookie replayed after a logout.
        """
        if cookies is not None:
            other = SessionClient(self.case)
            for name, value in cookies.items():
                other.set_cookie(name, value)
            return await other.fetch_async(path, follow_redirects=follow_redirects, xsrf=xsrf,
                                           max_redirects=max_redirects, **kwargs)
        response = await self._send(path, xsrf=xsrf, **kwargs)
        for _ in range(max_redirects if follow_redirects else 0):
            if response.code not in _REDIRECTS or "Location" not in response.headers:
                break
            url = urllib.parse.urljoin(response.effective_url, response.headers["Location"])
            if response.code in (307, 308):
                response = await self._send(url, xsrf=xsrf, **kwargs)
            else:
                plain = {k: v for k, v in kwargs.items() if k not in ("method", "body")}
                response = await self._send(url, xsrf=xsrf, **plain)
        return response

    async def _send(self, path: str, *, xsrf: bool, **kwargs: Any) -> HTTPResponse:
        url = path if "://" in path else self.case.get_url(path)
        request_path = urllib.parse.urlsplit(url).path or "/"
        headers = HTTPHeaders(kwargs.pop("headers", None) or {})
        if "Cookie" not in headers:
            header = self.cookie_header(request_path)
            if header is not None:
                headers["Cookie"] = header
        method = str(kwargs.get("method", "GET")).upper()
        if xsrf and method not in _SAFE_METHODS and "X-Xsrftoken" not in headers:
            token = next((c.value for name, c in self._matching(request_path) if name == "_xsrf"),
                         None)
            if token is not None:
                headers["X-Xsrftoken"] = token
        kwargs.setdefault("raise_error", False)
        response = await self.case.http_client.fetch(
            url, headers=headers, follow_redirects=False, **kwargs
        )
        self.remember(response)
        return response

    # -- the session --------------------------------------------------------------

    def session_transaction(self, app: tornado.web.Application) -> SessionTransaction:
        """Read or change the client's session in ``app``, from the test; see `SessionTransaction`.

        ``with client.session_transaction(app) as session:`` in a plain test
        method, ``async with`` in a ``@gen_test`` coroutine.
        """
        return SessionTransaction(self, app)


class SessionTransaction:
    """The client's session, loaded and committed as a request of its own would do it.

    Flask's ``session_transaction`` and Django's ``client.session``, for any
    store and for cookie sessions.  Entering loads the session the client's
    cookie names (a fresh, empty one when it has none, or one that is no
    longer valid) through the application's own lifecycle: its options,
    store, signing keys and hooks.  The block reads or changes it like
    ``self.session`` in a handler::

        with client.session_transaction(self.app) as session:
            session["user_id"] = 42          # a logged-in client, without the login form

    Leaving the block commits it as the end of a request does, and the
    client takes the cookie that commit sets: a new session's, a cookie
    session's new data, or none when nothing changed.  A block that raises
    commits nothing.  The hooks (``genid``, ``valid``, ``before_save``) are
    called with ``None`` for the handler: there is no request.
    """

    def __init__(self, client: SessionClient, app: tornado.web.Application) -> None:
        self.client = client
        self.app = app
        self._context: SessionContext | None = None

    async def __aenter__(self) -> Session:
        from .mixin import _current_config  # (the mixin imports tornado.web; this module need not)

        config = _current_config(self.app)
        options = config.options
        values = [cookie.value for name, cookie in self.client._matching(options.path)
                  if name == options.key]
        self._context = SessionContext(config, values, handler=None, name="session_transaction")
        return await self._context.load()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        context, self._context = self._context, None
        if exc_type is not None or context is None:
            return
        update = await context.commit(status=200, save=None, headers_sent=False)
        if update is None:
            return
        options = context.config.options
        line = context.config.cookie_line.format(
            update.value, expires=86400.0 if update.max_age == 0 else update.expires,
            max_age=update.max_age, secure=bool(options.secure),
        )
        self.client._remember_line(line, options.path)

    def __enter__(self) -> Session:
        _outside_the_loop("with client.session_transaction()",
                          "async with client.session_transaction(...)")
        session: Session = self.client.case.io_loop.run_sync(self.__aenter__)
        return session

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self.client.case.io_loop.run_sync(lambda: self.__aexit__(exc_type, exc, tb))


def _outside_the_loop(what: str, instead: str) -> None:
    """Refuse to run the IOLoop from inside it (a ``@gen_test`` coroutine), saying what to use."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError(f"{what} runs the IOLoop, which is already running here "
                       f"(a @gen_test coroutine): use `{instead}`")


def _path_matches(request_path: str, cookie_path: str) -> bool:
    """RFC 6265's path-match: whether a cookie for ``cookie_path`` goes to ``request_path``."""
    if request_path == cookie_path:
        return True
    if not request_path.startswith(cookie_path):
        return False
    return cookie_path.endswith("/") or request_path[len(cookie_path)] == "/"


def _default_path(request_path: str) -> str:
    """RFC 6265's default-path: the request path up to its last ``/`` (``/`` at least)."""
    if not request_path.startswith("/") or request_path.count("/") == 1:
        return "/"
    return request_path[: request_path.rindex("/")]


def _expiry(morsel: http.cookies.Morsel[str]) -> float | None:
    """When a cookie goes (epoch seconds); ``Max-Age`` before ``expires``, as browsers read them."""
    max_age = morsel["max-age"]
    if max_age:
        try:
            return time.time() + int(max_age)
        except ValueError:
            pass
    if morsel["expires"]:
        try:
            return email.utils.parsedate_to_datetime(morsel["expires"]).timestamp()
        except (TypeError, ValueError):
            return None
    return None
