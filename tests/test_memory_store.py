"""MemoryStore: the store contract, plus its bound, its sweep and its outage switch."""

from __future__ import annotations

from typing import Any

from tornado.testing import AsyncTestCase, gen_test

from tornado_session.errors import SessionOptionError, StoreUnavailableError
from tornado_session.stores import MemoryStore
from tornado_session.testing import FakeClock, StoreContract


class TestMemoryStoreContract(StoreContract):
    def make_store(self) -> MemoryStore:
        return MemoryStore(clock=self.clock)


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
