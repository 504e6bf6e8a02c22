"""RedisStore on a real Redis Cluster (3 masters, 3 replicas, on loopback).

The store contract runs against the cluster through the application's own
``redis.asyncio.RedisCluster`` and through `RedisStore.from_url` with
``cluster=True``; then the cluster's own cases: sessions spread over every
master, no command crossing slots, the bulk operations reaching every master,
and what a user sees while the cluster is unreachable.  The failover of one
master under load is in tests/test_redis_failover.py.
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import pytest
import redis.asyncio
import redis.cluster
from tornado.testing import AsyncTestCase, ExpectLog, gen_test

from tests.base import COOKIE, SessionTestCase
from tests.redis_cluster import RedisClusterCase
from tests.test_redis_outage import Counter, Reader, Recorder
from tornado_session.errors import SessionOptionError, StoreUnavailableError
from tornado_session.stores import RedisStore
from tornado_session.testing import StoreContract

#: A real cluster or nginx over processes: run once, on the default Python (scripts/test.sh).
pytestmark = pytest.mark.topology


NS = "tornado_session:"


class TestRedisClusterContractWithOwnClient(RedisClusterCase, StoreContract):
    """The contract through a ``RedisCluster`` the application made and keeps.

    Without ``user_key``: each session is a key of its own slot, spread over
    every master (the user index needs a hash-tagged namespace: the classes
    below).
    """

    follows_clock = False
    short_max_age = 0.3
    user_index = False

    def make_store(self) -> RedisStore:
        self.client = redis.asyncio.RedisCluster.from_url(self.redis_cluster.url)
        return RedisStore(self.client, timeout=5, clock=self.clock)

    def make_neighbour(self) -> RedisStore:
        return RedisStore(self.client, namespace="other-app:", timeout=5, clock=self.clock)

    async def _close_store(self) -> None:
        await super()._close_store()
        await self.client.aclose()


class TestRedisClusterContractFromUrl(RedisClusterCase, StoreContract):
    """The contract through `RedisStore.from_url` with ``cluster=True``, without ``user_key``."""

    follows_clock = False
    short_max_age = 0.3
    user_index = False

    def make_store(self) -> RedisStore:
        return RedisStore.from_url(self.redis_cluster.url, cluster=True, clock=self.clock)

    def make_neighbour(self) -> RedisStore:
        return RedisStore.from_url(
            self.redis_cluster.url, cluster=True, namespace="other-app:", clock=self.clock
        )


class TestRedisClusterContractWithUserIndex(RedisClusterCase, StoreContract):
    """The whole contract, the user index's part included, on a cluster.

    A user's sessions, their owners and the user's index must move together
    in one script, so they share a slot: the namespace carries a hash tag,
    and every session of this store lives on one master (docs/scaling.md).
    """

    follows_clock = False
    short_max_age = 0.3
    user_index = True

    def make_store(self) -> RedisStore:
        return RedisStore.from_url(
            self.redis_cluster.url, cluster=True, namespace="app:{sessions}:",
            user_key=self.user_key, clock=self.clock,
        )

    def make_neighbour(self) -> RedisStore:
        return RedisStore.from_url(
            self.redis_cluster.url, cluster=True, namespace="other-app:{sessions}:",
            user_key=self.user_key, clock=self.clock,
        )


class TestRedisClusterContractWithUserIndexOwnClient(TestRedisClusterContractWithUserIndex):
    """The same through a ``RedisCluster`` the application made and keeps."""

    def make_store(self) -> RedisStore:
        self.client = redis.asyncio.RedisCluster.from_url(self.redis_cluster.url)
        return RedisStore(
            self.client, namespace="app:{sessions}:", user_key=self.user_key, timeout=5,
            clock=self.clock,
        )

    def make_neighbour(self) -> RedisStore:
        return RedisStore(
            self.client, namespace="other-app:{sessions}:", user_key=self.user_key, timeout=5,
            clock=self.clock,
        )

    async def _close_store(self) -> None:
        await super()._close_store()
        await self.client.aclose()


class ClusterStoreCase(RedisClusterCase, AsyncTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.store = RedisStore.from_url(self.redis_cluster.url, cluster=True, probe_interval=0.1)

    def tearDown(self) -> None:
        self.io_loop.run_sync(self.store.close)
        super().tearDown()


class TestAcrossMasters(ClusterStoreCase):
    @gen_test(timeout=30)
    async def test_sessions_spread_over_every_master_and_bulk_operations_see_them_all(
        self,
    ) -> None:
        keys = [f"{n:064x}" for n in range(60)]
        for n, key in enumerate(keys):
            await self.store.set(key, {"user": n % 3, "n": n}, 60)
        masters = {self.redis_cluster.master_of(NS + key) for key in keys}
        self.assertEqual(masters, set(self.redis_cluster.masters()))  # all three hold some
        self.assertEqual(await self.store.count(), 60)

        destroyed = await self.store.destroy_all(user=1)
        self.assertEqual(destroyed, 20)
        self.assertEqual(await self.store.count(), 40)
        for n, key in enumerate(keys):
            self.assertEqual(await self.store.get(key) is None, n % 3 == 1, n)

        await self.store.clear()
        self.assertEqual(await self.store.count(), 0)
        self.assertEqual(self.redis_cluster.keys(NS + "*"), [])

    @gen_test(timeout=30)
    async def test_concurrent_updates_of_one_session_on_a_cluster_all_survive(self) -> None:
        await self.store.set("k", {"start": 1}, 60)
        loaded = await self.store.get("k")
        assert loaded is not None
        results = await asyncio.gather(*(
            self.store.set("k", {**loaded, f"k{i}": i}, 60, previous=loaded)
            for i in range(30)
        ))
        self.assertEqual(results, [True] * 30)
        self.assertEqual(await self.store.get("k"), {"start": 1, **{f"k{i}": i for i in range(30)}})

    @gen_test(timeout=30)
    async def test_more_concurrent_calls_than_redis_py_pools_by_default_all_succeed(
        self,
    ) -> None:
        # redis-py's cluster client allows 100 connections per node by default;
        # the 101st concurrent command must not make the store report an outage.
        await self.store.set("burst", {"n": 1}, 60)
        results = await asyncio.gather(*(self.store.get("burst") for _ in range(250)))
        self.assertEqual(results, [{"n": 1}] * 250)
        self.assertTrue(self.store.connected)

    @gen_test(timeout=60)
    async def test_many_first_calls_on_a_new_cluster_client_all_succeed(self) -> None:
        # redis-py 8.1 routes the first commands of a client that has not
        # learned the slots to any node; the MOVED answers then make it close
        # connections in use, and up to 16 of 20 failed.  On every new client,
        # the store's own and the application's, all must succeed.
        for attempt in range(10):
            own = redis.asyncio.RedisCluster.from_url(self.redis_cluster.url)
            stores = [
                RedisStore.from_url(self.redis_cluster.url, cluster=True, namespace="a:{t}:"),
                RedisStore(own, namespace="b:{t}:"),
            ]
            try:
                for store in stores:
                    results = await asyncio.gather(
                        *(store.set(f"{n:064x}", {"n": n}, 60) for n in range(20)),
                        return_exceptions=True,
                    )
                    self.assertEqual(results, [True] * 20, (attempt, store.namespace))
                    self.assertTrue(store.connected)
                    self.assertEqual(await store.count(), 20)
                    await store.clear()
            finally:
                for store in stores:
                    await store.close()
                await own.aclose()

    @gen_test(timeout=30)
    async def test_the_update_script_is_loaded_again_on_a_master_that_lost_it(self) -> None:
        await self.store.set("k", {"n": 1}, 60)
        loaded = await self.store.get("k")
        assert loaded is not None
        for port in self.redis_cluster.masters():
            with self.redis_cluster.admin(port) as admin:
                admin.script_flush()
        self.assertTrue(await self.store.set("k", {"n": 2}, 60, previous=loaded))
        self.assertEqual(await self.store.get("k"), {"n": 2})


class TestClusterClientsRefused(RedisClusterCase, AsyncTestCase):
    def test_a_blocking_cluster_client_is_refused(self) -> None:
        client = redis.cluster.RedisCluster.from_url(self.redis_cluster.url)
        try:
            with self.assertRaisesRegex(SessionOptionError, "redis.asyncio.RedisCluster"):
                RedisStore(client)  # type: ignore[arg-type]
        finally:
            client.close()

    def test_a_cluster_client_decoding_responses_is_refused(self) -> None:
        client = redis.asyncio.RedisCluster.from_url(
            self.redis_cluster.url, decode_responses=True
        )
        with self.assertRaisesRegex(SessionOptionError, "decode_responses=True"):
            RedisStore(client)
        self.io_loop.run_sync(client.aclose)


class TestFromUrlCluster(AsyncTestCase):
    def test_cluster_must_be_a_bool(self) -> None:
        for value in ("yes", 1, None):
            with self.subTest(value=value), self.assertRaisesRegex(
                SessionOptionError, r"from_url\(cluster=.*expected True"
            ):
                RedisStore.from_url("redis://127.0.0.1:1", cluster=value)  # type: ignore[arg-type]

    def test_cluster_true_builds_a_cluster_client_that_the_store_owns(self) -> None:
        store = RedisStore.from_url("redis://127.0.0.1:1", cluster=True)
        self.assertIsInstance(store.client, redis.asyncio.RedisCluster)
        self.assertTrue(store.cluster)
        self.io_loop.run_sync(store.close)

    def test_a_bad_url_for_a_cluster_names_the_call(self) -> None:
        with self.assertRaisesRegex(SessionOptionError, r"RedisStore.from_url\(url=\.\.\.\)"):
            RedisStore.from_url("http://nowhere", cluster=True)


class ClusterHTTPCase(RedisClusterCase, SessionTestCase):
    reconnect_timeout = 0.5

    def make_store(self) -> RedisStore:
        self.redis = RedisStore.from_url(
            self.redis_cluster.url, cluster=True, timeout=1.0, probe_interval=0.1
        )
        self.recorder = Recorder(self.redis)
        return self.redis

    def session_options(self) -> dict[str, Any]:
        return {"reconnect_timeout": self.reconnect_timeout}

    def get_handlers(self) -> list[Any]:
        return [(r"/count", Counter), (r"/read", Reader)]

    def tearDown(self) -> None:
        self.io_loop.run_sync(self.redis.close)
        super().tearDown()


class TestClusterUnreachable(ClusterHTTPCase):
    @gen_test(timeout=60)
    async def test_a_frozen_cluster_gives_503_then_serves_the_same_session(self) -> None:
        self.assertEqual((await self.fetch_async("/count")).body, b"1")
        cookie = self.jar[COOKIE]
        pids = [process.pid for process in self.redis_cluster.processes.values()]
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        try:
            with ExpectLog("tornado_session.mixin", ".*answered 503"), \
                    ExpectLog("tornado_session.stores.redis", "Redis cannot be reached"):
                response = await self.fetch_async("/count")
            self.assertEqual(response.code, 503)
            self.assertEqual(response.headers["Retry-After"], "1")
            self.assertNotIn("Set-Cookie", response.headers)
            fresh = await self.fetch_async("/read", cookies=False)  # needs no store
            self.assertEqual((fresh.code, fresh.body), (200, b"0"))
        finally:
            for pid in pids:
                os.kill(pid, signal.SIGCONT)
        await self.recorder.wait_for("connect", timeout=10)
        response = await self.fetch_async("/count")
        self.assertEqual((response.code, response.body), (200, b"2"))
        self.assertEqual(self.jar[COOKIE], cookie)


class TestUnavailableErrors(ClusterStoreCase):
    @gen_test(timeout=30)
    async def test_a_slot_without_a_master_is_an_outage_not_an_error(self) -> None:
        from redis.exceptions import ClusterDownError, SlotNotCoveredError, TryAgainError

        for error in (ClusterDownError("CLUSTERDOWN The cluster is down"),
                      TryAgainError("TRYAGAIN"), SlotNotCoveredError("slot 1")):
            with self.subTest(error=type(error).__name__):
                self.assertIsInstance(self.store.translate_error(error), StoreUnavailableError)
