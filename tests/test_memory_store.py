"""MemoryStore: the contract, its bound, its eviction order, its sweep and its outage switch."""

from __future__ import annotations

from typing import Any

import tornado.web
from tornado.testing import AsyncTestCase, gen_test

from tests.base import CounterHandler, SessionTestCase
from tornado_session import SessionMixin
from tornado_session.errors import SessionOptionError, StoreUnavailableError
from tornado_session.stores import MemoryStore, Store
from tornado_session.testing import FakeClock, StoreContract

DAY = 86400.0


class TestMemoryStoreContract(StoreContract):
    def make_store(self) -> MemoryStore:
        return MemoryStore(clock=self.clock, user_key=self.user_key)

    def make_neighbour(self) -> MemoryStore:
        return MemoryStore(clock=self.clock)  # each application its own: nothing is shared


class TestMemoryStoreBounds(AsyncTestCase):
    @gen_test
    async def test_least_recently_used_session_is_evicted_past_max_entries(self) -> None:
        store = MemoryStore(max_entries=2)
        await store.set("a", {"n": 1}, 60)
        await store.set("b", {"n": 2}, 60)
        await store.get("a")  # "a" is now the most recently used
        await store.set("c", {"n": 3}, 60)
        self.assertEqual(await store.count(), 2)
        self.assertIsNone(await store.get("b"))
        self.assertEqual(await store.get("a"), {"n": 1})

    @gen_test
    async def test_sweep_drops_abandoned_sessions(self) -> None:
        clock = FakeClock()
        store = MemoryStore(sweep_interval=10, clock=clock)
        for i in range(100):
            await store.set(f"old{i}", {"n": i}, 5)
        for i in range(0, 100, 2):
            await store.get(f"old{i}")  # half of them used again: protected
        clock.advance(11)
        await store.set("fresh", {"n": 0}, 60)
        self.assertEqual(len(store._entries), 1)

    def test_bad_max_entries_names_the_option(self) -> None:
        for bad in (0, -1, "10", 1.5, True):
            with self.assertRaisesRegex(SessionOptionError, "max_entries"):
                MemoryStore(max_entries=bad)  # type: ignore[arg-type]

    def test_bad_sweep_interval_names_the_option(self) -> None:
        for bad in (0, -1, "10", None):
            with self.assertRaisesRegex(SessionOptionError, "sweep_interval"):
                MemoryStore(sweep_interval=bad)  # type: ignore[arg-type]


class TestMemoryStoreOutage(AsyncTestCase):
    @gen_test
    async def test_close_and_open_emit_events_and_keep_data(self) -> None:
        store = MemoryStore()
        events: list[tuple[str, dict[str, Any]]] = []
        store.on("disconnect", lambda p: events.append(("disconnect", p)))
        store.on("connect", lambda p: events.append(("connect", p)))
        await store.set("a", {"n": 1}, 60)
        await store.close()
        self.assertFalse(store.connected)
        with self.assertRaises(StoreUnavailableError):
            await store.get("a")
        with self.assertRaises(StoreUnavailableError):
            await store.set("a", {"n": 2}, 60)
        await store.open()
        self.assertEqual(await store.get("a"), {"n": 1})
        self.assertEqual([name for name, _ in events], ["disconnect", "connect"])
        self.assertTrue(all("key" in payload for _, payload in events))

    @gen_test
    async def test_wait_connected_is_released_by_open(self) -> None:
        import asyncio

        store = MemoryStore()
        await store.close()
        waiter = asyncio.ensure_future(store.wait_connected(5))
        await asyncio.sleep(0)
        await store.open()
        self.assertTrue(await waiter)
        self.assertEqual(store._waiters, [])

    @gen_test
    async def test_wait_connected_times_out_and_leaves_nothing_behind(self) -> None:
        store = MemoryStore()
        await store.close()
        self.assertFalse(await store.wait_connected(0.05))
        self.assertEqual(store._waiters, [])


async def flood(store: MemoryStore, count: int, start: int = 0) -> None:
    """Write ``count`` one-shot sessions: new keys, never read again."""
    for i in range(start, start + count):
        await store.set(f"flood{i}", {"visitor": i}, DAY)


class TestMemoryStoreEvictionOrder(AsyncTestCase):
    """A flood of sessions written once evicts its own kind, not the sessions in use."""

    def setUp(self) -> None:
        super().setUp()
        self.clock = FakeClock()
        self.store = MemoryStore(max_entries=1000, clock=self.clock)

    async def login(self, key: str) -> None:
        """A user's first two requests: the session is written, then read."""
        await self.store.set(key, {"user": key}, DAY)
        self.assertEqual(await self.store.get(key), {"user": key})

    @gen_test
    async def test_users_active_during_a_flood_of_twice_max_entries_keep_sessions(self) -> None:
        users = [f"user{i}" for i in range(5)]
        for user in users:
            await self.login(user)
        # Each user comes back after 1,500 one-shot writes: more than
        # max_entries, so a plain LRU would have evicted them all.
        await flood(self.store, 1500)
        for user in users:
            self.assertEqual(await self.store.get(user), {"user": user})
        await flood(self.store, 500, start=1500)
        for user in users:
            self.assertEqual(await self.store.get(user), {"user": user})
        self.assertEqual(await self.store.count(), 1000)

    @gen_test
    async def test_a_flood_evicts_only_one_shot_sessions_and_holds_the_bound(self) -> None:
        users = [f"user{i}" for i in range(300)]
        for user in users:
            await self.login(user)
        await flood(self.store, 2000)  # the users are idle meanwhile
        self.assertEqual(len(self.store._entries), 1000)
        self.assertEqual(await self.store.count(), 1000)
        for user in users:
            self.assertEqual(await self.store.get(user), {"user": user})
        held = [i for i in range(2000) if f"flood{i}" in self.store._entries]
        self.assertEqual(held, list(range(1300, 2000)))  # the newest of the flood

    @gen_test
    async def test_each_kind_of_use_protects_a_session(self) -> None:
        async def update(key: str) -> None:
            loaded = await self.store.get(key)
            await self.store.set(key, {"user": key, "n": 1}, DAY, previous=loaded)

        uses: dict[str, Any] = {
            "read": self.store.get,
            "touch": lambda key: self.store.touch(key, DAY),
            "update": update,
            "written again": lambda key: self.store.set(key, {"user": key}, DAY),
        }
        for name, use in uses.items():
            await self.store.set(name, {"user": name}, DAY)
            await use(name)
        # An update with ``previous`` protects even without the read before it.
        await self.store.set("blind update", {"n": 0}, DAY)
        await self.store.set("blind update", {"n": 1}, DAY, previous={"n": 0})
        await flood(self.store, 2000)
        for name in [*uses, "blind update"]:
            self.assertIn(name, self.store._entries, name)

    @gen_test
    async def test_regenerated_session_read_once_survives_the_flood(self) -> None:
        # Returning users fill the protected segment to its bound (800 of
        # 1000): probation is as narrow as it gets, 200 records.
        for i in range(800):
            await self.login(f"regular{i}")
        await self.login("old-key")
        # Login regenerates: the data under a new key as a new record, the
        # old record destroyed.  The store sees only a new session.
        data = await self.store.get("old-key")
        assert data is not None
        await self.store.set("new-key", {**data, "logged_in": True}, DAY, previous=None)
        await self.store.destroy("old-key")
        await flood(self.store, 150)  # the flood goes on before the user's next request
        self.assertEqual(await self.store.get("new-key"), {"user": "old-key", "logged_in": True})
        await flood(self.store, 2000, start=150)
        self.assertEqual(await self.store.get("new-key"), {"user": "old-key", "logged_in": True})
        self.assertIsNone(await self.store.get("old-key"))
        self.assertEqual(await self.store.count(), 1000)

    @gen_test
    async def test_regenerated_session_not_read_is_evicted_like_a_new_one(self) -> None:
        await self.login("old-key")
        await self.store.set("new-key", {"user": "old-key"}, DAY, previous=None)
        await self.store.destroy("old-key")
        await flood(self.store, 1000)
        self.assertIsNone(await self.store.get("new-key"))

    @gen_test
    async def test_protected_segment_is_bounded_and_demotes_its_oldest(self) -> None:
        store = MemoryStore(max_entries=10, clock=self.clock)  # 8 protected at most
        await store.set("early", {"n": 0}, DAY)
        for i in range(9):
            await store.set(f"r{i}", {"n": i}, DAY)
            await store.get(f"r{i}")
        # The ninth promotion demoted r0 to the recent end of probation,
        # behind "early", which was written before it.
        self.assertEqual(list(store._protected), [f"r{i}" for i in range(1, 9)])
        self.assertEqual(list(store._probation), ["early", "r0"])
        await store.set("n0", {}, DAY)
        self.assertNotIn("early", store._entries)
        self.assertIn("r0", store._entries)
        await store.set("n1", {}, DAY)
        self.assertNotIn("r0", store._entries)
        self.assertEqual(await store.count(), 10)
        for i in range(1, 9):
            self.assertIn(f"r{i}", store._entries)

    @gen_test
    async def test_a_flood_of_returning_sessions_still_holds_the_bound(self) -> None:
        for i in range(3000):
            await self.login(f"user{i}")
        self.assertEqual(len(self.store._protected), 800)
        self.assertEqual(await self.store.count(), 1000)
        held = sorted(int(key[4:]) for key in self.store._entries)
        self.assertEqual(held, list(range(2000, 3000)))  # still least recently used last

    @gen_test
    async def test_max_entries_of_one_keeps_the_newest_session(self) -> None:
        store = MemoryStore(max_entries=1, clock=self.clock)
        await store.set("a", {"n": 1}, DAY)
        await store.get("a")
        await store.set("b", {"n": 2}, DAY)
        self.assertEqual(list(store._entries), ["b"])
        self.assertEqual(await store.get("b"), {"n": 2})
        self.assertTrue(await store.set("b", {"n": 3}, DAY, previous={"n": 2}))
        self.assertTrue(await store.touch("b", DAY))
        self.assertEqual(await store.get("b"), {"n": 3})

    @gen_test
    async def test_protected_sessions_expire_and_are_destroyed_like_the_others(self) -> None:
        await self.store.set("short", {"n": 1}, 5)
        await self.store.get("short")
        await self.login("gone")
        await self.login("everywhere")
        await self.store.set("everywhere-too", {"user": "everywhere"}, DAY)
        await self.store.destroy("gone")
        self.assertIsNone(await self.store.get("gone"))
        self.assertEqual(await self.store.destroy_all(user="everywhere"), 2)
        self.clock.advance(6)
        self.assertIsNone(await self.store.get("short"))
        self.assertEqual(await self.store.count(), 0)


class Login(SessionMixin, tornado.web.RequestHandler):
    async def get(self) -> None:
        self.session["user"] = "ada"
        await self.regenerate_session()
        self.write("ok")


class WhoAmI(SessionMixin, tornado.web.RequestHandler):
    def get(self) -> None:
        self.write(self.session.get("user", "-"))


class TestMemoryStoreFloodOverHTTP(SessionTestCase):
    """Cookieless requests to a page that writes the session do not log users out."""

    def make_store(self) -> Store:
        return MemoryStore(max_entries=200, clock=self.clock)

    def get_handlers(self) -> list[Any]:
        return [(r"/count", CounterHandler), (r"/login", Login), (r"/whoami", WhoAmI)]

    def flood(self, requests: int) -> None:
        """``requests`` visitors without a cookie, each given a new session."""
        user_jar = dict(self.jar)
        for _ in range(requests):
            self.assertEqual(self.fetch("/count", cookies=False).body, b"1")
        self.jar = user_jar  # `fetch` kept each visitor's cookie

    def test_user_who_just_logged_in_survives_twice_max_entries_cookieless_requests(self) -> None:
        self.fetch("/count")
        self.fetch("/login")  # regenerates: the new record is a new one to the store
        self.flood(100)
        self.assertEqual(self.fetch("/whoami").body, b"ada")
        self.flood(300)  # more than max_entries since the user's last request
        self.assertEqual(self.fetch("/whoami").body, b"ada")
        assert isinstance(self.store, MemoryStore)
        self.assertEqual(len(self.store._entries), 200)

    def test_logged_in_user_idle_during_the_flood_keeps_the_session(self) -> None:
        self.fetch("/count")
        self.fetch("/login")
        self.assertEqual(self.fetch("/whoami").body, b"ada")  # a second request: protected
        self.flood(400)
        self.assertEqual(self.fetch("/whoami").body, b"ada")
