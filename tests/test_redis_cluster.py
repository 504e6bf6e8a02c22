"""RedisStore on a real Redis Cluster (3 masters, 3 replicas, on loopback).

The store contract runs against the cluster through the application's own
``redis.asyncio.RedisCluster`` and through `RedisStore.from_url` with
``cluster=True``, with the user index in one slot (a hash-tagged namespace)
and spread over the masters; then the cluster's own cases: sessions spread
over every master, no command crossing slots, the bulk operations reaching
every master, the spread index's ordering through crashes and races, and what
a user sees while the cluster is unreachable.  The failover of one
master under load is in tests/test_redis_failover.py.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any
from unittest import mock

import pytest
import redis.asyncio
import redis.cluster
from tornado.testing import AsyncTestCase, ExpectLog, gen_test

from tests.base import COOKIE, SessionTestCase
from tests.redis_cluster import RedisClusterCase
from tests.test_redis_outage import Counter, Reader, Recorder
from tornado_session.errors import SessionOptionError, StoreUnavailableError
from tornado_session.stores import Owner, RedisStore
from tornado_session.stores import redis as redis_store
from tornado_session.testing import StoreContract

#: A real cluster or nginx over processes: run once, on the default Python (scripts/test.sh).
pytestmark = pytest.mark.topology


NS = "tornado_session:"


class TestRedisClusterContractWithOwnClient(RedisClusterCase, StoreContract):
    """The contract through a ``RedisCluster`` the application made and keeps.

    Without ``user_key``: each session is a key of its own slot, spread over
    every master (the user index's two layouts: the classes below).
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

    The namespace carries a hash tag: a user's sessions, their owners and the
    user's index move together in one script, in one slot, and every session
    of this store lives on one master (docs/scaling.md).
    """

    follows_clock = False
    short_max_age = 0.3
    user_index = True
    #: The namespaces of the store and of its neighbour.
    namespace = "app:{sessions}:"
    neighbour_namespace = "other-app:{sessions}:"

    def make_store(self) -> RedisStore:
        return RedisStore.from_url(
            self.redis_cluster.url, cluster=True, namespace=self.namespace,
            user_key=self.user_key, clock=self.clock,
        )

    def make_neighbour(self) -> RedisStore:
        return RedisStore.from_url(
            self.redis_cluster.url, cluster=True, namespace=self.neighbour_namespace,
            user_key=self.user_key, clock=self.clock,
        )


class TestRedisClusterContractWithUserIndexOwnClient(TestRedisClusterContractWithUserIndex):
    """The same through a ``RedisCluster`` the application made and keeps."""

    def make_store(self) -> RedisStore:
        self.client = redis.asyncio.RedisCluster.from_url(self.redis_cluster.url)
        return RedisStore(
            self.client, namespace=self.namespace, user_key=self.user_key, timeout=5,
            clock=self.clock,
        )

    def make_neighbour(self) -> RedisStore:
        return RedisStore(
            self.client, namespace=self.neighbour_namespace, user_key=self.user_key,
            timeout=5, clock=self.clock,
        )

    async def _close_store(self) -> None:
        await super()._close_store()
        await self.client.aclose()


class TestRedisClusterContractWithSpreadUserIndex(TestRedisClusterContractWithUserIndex):
    """The whole contract with the user index spread over every master.

    No hash tag: each session and its owner on the session's slot, each
    user's set on the user's, kept in order instead of in one script.
    """

    namespace = "app:"
    neighbour_namespace = "other-app:"


class TestRedisClusterContractWithSpreadUserIndexOwnClient(
    TestRedisClusterContractWithUserIndexOwnClient
):
    """The spread layout through a ``RedisCluster`` the application made and keeps."""

    namespace = "app:"
    neighbour_namespace = "other-app:"


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


#: The namespace of the spread layout's tests: no hash tag.
SPREAD = "spread:"


class SpreadCase(RedisClusterCase, AsyncTestCase):
    """A store whose user index is spread over the masters (a namespace without a tag)."""

    def setUp(self) -> None:
        super().setUp()
        self.store = RedisStore.from_url(
            self.redis_cluster.url, cluster=True, namespace=SPREAD, user_key="user_id"
        )
        self.assertTrue(self.store.spread)

    def tearDown(self) -> None:
        self.io_loop.run_sync(self.store.close)
        super().tearDown()

    async def login(self, key: str, user: int, max_age: float = 60) -> None:
        """A new session of ``user`` under ``key``, as the lifecycle writes it."""
        now = time.time()
        owner = Owner(user, now, now, "Firefox", "192.0.2.0/24")
        await self.store.set(key, {"user_id": user}, max_age, owner=owner)

    async def listed(self, user: int) -> set[str]:
        """The keys the index lists for ``user``."""
        return {record.key for record in await self.store.user_sessions(user)}

    async def live_sessions_of(self, user: int) -> set[str]:
        """The keys of ``user``'s live sessions, found by walking every master, not the index."""
        found = set()
        for meta in self.redis_cluster.keys(SPREAD + "{*}~meta"):
            name = meta[:-len(b"~meta")]
            owner = await self.store.client.hget(meta, "user")
            if owner == str(user).encode() and await self.store.client.exists(name):
                found.add(name[len(SPREAD) + 1:-1].decode())
        return found

    async def assert_every_live_session_is_listed(self, user: int) -> None:
        """The invariant: the index misses no live session of ``user``, and lists no other."""
        self.assertEqual(await self.listed(user), await self.live_sessions_of(user))


class TestSpreadUserIndex(SpreadCase):
    @gen_test(timeout=60)
    async def test_a_users_sessions_and_the_users_sets_spread_over_the_masters(self) -> None:
        keys = [f"{n:064x}" for n in range(48)]
        for n, key in enumerate(keys):
            await self.login(key, n % 4)
        for user in range(4):
            mine = {key for n, key in enumerate(keys) if n % 4 == user}
            self.assertEqual(await self.listed(user), mine)
            masters = {self.redis_cluster.master_of(SPREAD + "{" + key + "}") for key in mine}
            self.assertGreater(len(masters), 1, user)  # one user's sessions: several masters
        for key in keys:  # a session and its owner's hash: one slot
            name = SPREAD + "{" + key + "}"
            self.assertEqual(self.redis_cluster.master_of(name),
                             self.redis_cluster.master_of(name + "~meta"))
        sets = [SPREAD + "~user:{" + str(user) + "}" for user in range(4)]
        self.assertEqual(sorted(self.redis_cluster.keys(SPREAD + "~user:*")),
                         sorted(name.encode() for name in sets))
        self.assertGreater(len({self.redis_cluster.master_of(name) for name in sets}), 1)

        self.assertEqual(await self.store.destroy_all(user_id=1), 12)
        self.assertEqual(await self.listed(1), set())
        self.assertEqual(await self.live_sessions_of(1), set())
        for user in (0, 2, 3):
            await self.assert_every_live_session_is_listed(user)
            self.assertEqual(len(await self.listed(user)), 12)

    @gen_test(timeout=30)
    async def test_count_clear_and_destroy_matching_see_spread_sessions(self) -> None:
        for n in range(30):
            await self.login(f"u{n}", n % 3)
            await self.store.set(f"a{n}", {"plan": "free" if n % 2 else "paid"}, 60)
        self.assertEqual(await self.store.count(), 60)  # sessions: not owners, not sets
        self.assertEqual(await self.store.destroy_all(plan="free"), 15)
        self.assertEqual(await self.store.count(), 45)
        self.assertEqual(await self.store.destroy_all(user_id=2, plan=None), 0)
        self.assertEqual(await self.store.destroy_all(user_id=2), 10)  # the index
        self.assertEqual(await self.store.count(), 35)
        # A match on the data reaches indexed sessions too, and takes their owner's hash.
        self.assertEqual(await self.store.destroy_matching({"user_id": 1}), 10)
        self.assertEqual(await self.listed(1), set())
        self.assertEqual(self.redis_cluster.keys(SPREAD + "{u1}~meta"), [])
        self.assertEqual(await self.store.count(), 25)
        self.assertEqual(await self.listed(0), {f"u{n}" for n in range(0, 30, 3)})
        await self.store.clear()
        self.assertEqual(await self.store.count(), 0)
        self.assertEqual(self.redis_cluster.keys(SPREAD + "*"), [])

    @gen_test(timeout=30)
    async def test_each_extra_call_of_the_spread_layout_counted(self) -> None:
        # What an indexed session costs more than in the one-slot layout, in
        # calls to Redis (each one round trip); an anonymous session nothing.
        tagged = RedisStore.from_url(
            self.redis_cluster.url, cluster=True, namespace="tagged:{s}:", user_key="user_id"
        )
        try:
            costs = {}
            for layout, store in (("tagged", tagged), ("spread", self.store)):
                self.store_under_test = store
                costs[layout] = await self.count_calls(store)
        finally:
            await tagged.close()
        self.assertEqual(costs["tagged"], {
            "login": 2, "update": 1, "touch": 1, "change user": 2,
            "anonymous update": 1, "anonymous touch": 1, "list 3": 1, "revoke 3": 1,
        })
        self.assertEqual(costs["spread"], {
            "login": 3,  # join, claim, SET
            "update": 2,  # join, update
            "touch": 3,  # touch (answers the owner), join, touch
            "change user": 3,  # join, claim, update (the old set keeps the member)
            "anonymous update": 1, "anonymous touch": 1,
            "list 3": 7,  # ZRANGE, then a PTTL and an HMGET per session, at once
            "revoke 3": 5,  # ZRANGE, a script per session at once, one ZREM
        })

    async def count_calls(self, store: RedisStore) -> dict[str, int]:
        """How many calls each indexed operation sends, scripts already loaded."""
        calls = 0
        real = store.call_backend

        async def counted(command: Any, *args: Any, **kwargs: Any) -> Any:
            nonlocal calls
            calls += 1
            return await real(command, *args, **kwargs)

        now = time.time()

        async def operations(run: int) -> dict[str, int]:
            costs = {}
            steps = {
                "login": lambda: store.set(f"k{run}", {"user_id": 1}, 60,
                                           owner=Owner(1, now, now)),
                "update": lambda: store.set(f"k{run}", {"user_id": 1, "n": 1}, 60,
                                            previous={"user_id": 1}),
                "touch": lambda: store.touch(f"k{run}", 60),
                "change user": lambda: store.set(f"k{run}", {"user_id": 2}, 60,
                                                 previous={"user_id": 1, "n": 1},
                                                 owner=Owner(2, now, now)),
                "anonymous update": lambda: store.set(f"a{run}", {"n": 2}, 60,
                                                      previous={"n": 1}),
                "anonymous touch": lambda: store.touch(f"a{run}", 60),
                "list 3": lambda: store.user_sessions(3),
                "revoke 3": lambda: store.destroy_user(3),
            }
            await store.set(f"a{run}", {"n": 1}, 60)
            for n in range(3):
                await store.set(f"t{run}-{n}", {"user_id": 3}, 60, owner=Owner(3, now, now))
            for step, call in steps.items():
                before = calls
                self.assertTrue(await call(), step)
                costs[step] = calls - before
            return costs

        # A master that lacks a script gets it with the EVAL of the first call
        # that needs it there: load them all everywhere, to count the steady state.
        for port in self.redis_cluster.masters():
            with self.redis_cluster.admin(port) as admin:
                for script in redis_store._SCRIPTS.values():
                    admin.script_load(script)
        with mock.patch.object(store, "call_backend", counted):
            await operations(0)
            return await operations(1)


class TestSpreadOrdering(SpreadCase):
    """A crash between the steps, or a revocation between them, never hides a live session."""

    @gen_test(timeout=30)
    async def test_a_login_that_dies_after_joining_the_set_leaves_no_hidden_session(
        self,
    ) -> None:
        await self.login("mine", 1)
        await self.store.set("other", {"cart": [1]}, 60)  # anonymous, about to log in
        with mock.patch.object(self.store, "_claim", side_effect=StoreUnavailableError("died")):
            for key, user in (("new", 1), ("mine", 2), ("other", 1)):
                with self.assertRaises(StoreUnavailableError):
                    await self.store.set(key, {"user_id": user}, 60,
                                         previous=None if key == "new" else {"x": 1},
                                         owner=Owner(user, time.time(), time.time()))
        # Members too many ("new" never written, "mine" still 1's, "other" no one's):
        # listed nowhere, and revocation deletes only what is live and owned.
        self.assertEqual(await self.listed(1), {"mine"})
        self.assertEqual(await self.listed(2), set())
        await self.assert_every_live_session_is_listed(1)
        self.assertEqual(await self.store.destroy_user(2), 0)
        self.assertEqual(await self.store.get("mine"), {"user_id": 1})
        self.assertEqual(await self.store.destroy_user(1), 1)
        self.assertIsNone(await self.store.get("mine"))
        self.assertEqual(await self.store.get("other"), {"cart": [1]})
        self.assertEqual(await self.live_sessions_of(1), set())

    @gen_test(timeout=30)
    async def test_a_login_that_dies_after_writing_the_owner_is_revoked_with_the_new_user(
        self,
    ) -> None:
        await self.login("mine", 1)
        claim = self.store._claim

        async def claim_then_die(*args: Any) -> None:
            await claim(*args)
            raise StoreUnavailableError("died")

        with mock.patch.object(self.store, "_claim", claim_then_die), \
                self.assertRaises(StoreUnavailableError):
            await self.store.set("mine", {"user_id": 2}, 60, previous={"user_id": 1},
                                 owner=Owner(2, time.time(), time.time()))
        # "mine" is 2's now (its data not yet written), still a member of 1's set too.
        self.assertEqual(await self.listed(1), set())
        self.assertEqual(await self.listed(2), {"mine"})
        await self.assert_every_live_session_is_listed(2)
        self.assertEqual(await self.store.destroy_user(1), 0)
        self.assertEqual(await self.store.destroy_user(2), 1)
        self.assertIsNone(await self.store.get("mine"))

    @gen_test(timeout=30)
    async def test_stray_members_leave_once_their_session_is_gone_and_their_score_passed(
        self,
    ) -> None:
        with mock.patch("tornado_session.stores.redis._GRACE_MS", 0), \
                mock.patch.object(self.store, "_claim", side_effect=StoreUnavailableError("x")), \
                self.assertRaises(StoreUnavailableError):
            await self.login("never-written", 1, max_age=0.2)
        zset = SPREAD + "~user:{1}"
        self.assertEqual(await self.store.client.zrange(zset, 0, -1), [b"spread:{never-written}"])
        self.assertEqual(await self.listed(1), set())  # a login between its steps: kept
        self.assertEqual(await self.store.client.zcard(zset), 1)
        await asyncio.sleep(0.3)
        self.assertEqual(await self.listed(1), set())
        self.assertEqual(await self.store.client.zcard(zset), 0)

    @gen_test(timeout=30)
    async def test_an_extension_that_dies_after_the_set_leaves_the_set_longer_lived(
        self,
    ) -> None:
        await self.login("k", 1, max_age=0.5)
        name, zset = SPREAD + "{k}", SPREAD + "~user:{1}"
        script = self.store._script

        async def dies_before_the_session(sha: str, *args: Any) -> Any:
            if sha == redis_store._SPREAD_TOUCH_SHA and args[-1] == b"1":
                raise StoreUnavailableError("died")
            return await script(sha, *args)

        with mock.patch.object(self.store, "_script", dies_before_the_session), \
                self.assertRaises(StoreUnavailableError):
            await self.store.touch("k", 60)
        self.assertLessEqual(await self.store.client.pttl(name), 500)  # not extended
        self.assertGreater(await self.store.client.pttl(zset), 60_000)  # extended first
        self.assertTrue(await self.store.touch("k", 60))
        session_ttl = await self.store.client.pttl(name)
        self.assertGreater(session_ttl, 50_000)
        self.assertGreater(await self.store.client.pttl(zset), session_ttl)
        await self.assert_every_live_session_is_listed(1)

    @gen_test(timeout=30)
    async def test_a_wrong_guess_at_the_owner_extends_the_real_owners_set_first(self) -> None:
        # The data says 1, but another request made the session 2's since:
        # the update script refuses to extend it until 2's set is extended.
        await self.login("s", 2, max_age=0.5)
        zset = SPREAD + "~user:{2}"
        await self.store.client.pexpire(zset, 400)  # (shorter than any extension)
        joined: list[bytes] = []
        join = self.store._join

        async def recorded(user: bytes, *args: Any) -> float:
            joined.append(user)
            return await join(user, *args)

        with mock.patch.object(self.store, "_join", recorded):
            self.assertTrue(await self.store.set("s", {"user_id": 1, "n": 1}, 60,
                                                 previous={"user_id": 1}))
        self.assertEqual(joined, [b"1", b"2"])
        self.assertGreater(await self.store.client.pttl(zset),
                           await self.store.client.pttl(SPREAD + "{s}"))
        self.assertEqual(await self.listed(2), {"s"})
        self.assertEqual(await self.listed(1), set())

    @gen_test(timeout=30)
    async def test_a_write_later_than_the_grace_after_its_join_joins_again(self) -> None:
        joined: list[bytes] = []
        join = self.store._join

        async def recorded(user: bytes, *args: Any) -> float:
            joined.append(user)
            return await join(user, *args)

        with mock.patch("tornado_session.stores.redis._GRACE_MS", 0), \
                mock.patch.object(self.store, "_join", recorded):
            await self.login("s", 1)  # every write is "late" with no grace
            self.assertTrue(await self.store.touch("s", 60))
        self.assertEqual(joined, [b"1", b"1", b"1", b"1"])
        self.assertGreaterEqual(await self.store.client.pttl(SPREAD + "~user:{1}"),
                                await self.store.client.pttl(SPREAD + "{s}"))

    @gen_test(timeout=30)
    async def test_a_change_of_user_racing_a_change_back_leaves_the_final_owner_listed(
        self,
    ) -> None:
        # 1 to 2, and meanwhile 2 to 1: the last owner written is 1, whose set
        # must still hold the session (removing it from "the previous owner's
        # set" after the first change's claim would undo the second's join).
        await self.login("s", 1)
        claim = self.store._claim
        switched: list[bool] = []

        async def claim_then_switch_back(*args: Any) -> None:
            await claim(*args)
            if not switched:
                switched.append(True)
                await self.store.set("s", {"user_id": 1}, 60, previous={"user_id": 2},
                                     owner=Owner(1, time.time(), time.time()))

        with mock.patch.object(self.store, "_claim", claim_then_switch_back):
            await self.store.set("s", {"user_id": 2}, 60, previous={"user_id": 1},
                                 owner=Owner(2, time.time(), time.time()))
        self.assertEqual(await self.listed(1), {"s"})
        self.assertEqual(await self.listed(2), set())
        await self.assert_every_live_session_is_listed(1)
        self.assertEqual(await self.store.destroy_user(1), 1)
        self.assertIsNone(await self.store.get("s"))

    @gen_test(timeout=60)
    async def test_a_revocation_between_the_steps_of_a_login_leaves_it_listed(self) -> None:
        for step in ("_join", "_claim"):
            with self.subTest(step=step):
                await self.login("old", 1)
                real = getattr(self.store, step)
                revoked = []

                async def then_revoke(
                    *args: Any, real: Any = real, revoked: list[int] = revoked
                ) -> Any:
                    answer = await real(*args)
                    revoked.append(await self.store.destroy_user(1))
                    return answer

                with mock.patch.object(self.store, step, then_revoke):
                    await self.login(f"after{step}", 1)
                self.assertEqual(revoked, [1])  # "old", not the login in progress
                self.assertIsNone(await self.store.get("old"))
                self.assertEqual(await self.store.get(f"after{step}"), {"user_id": 1})
                self.assertEqual(await self.listed(1), {f"after{step}"})
                await self.assert_every_live_session_is_listed(1)
                self.assertEqual(await self.store.destroy_user(1), 1)
                self.assertEqual(await self.live_sessions_of(1), set())

    @gen_test(timeout=60)
    async def test_a_revocation_between_the_steps_of_logging_in_a_visitor_wins(self) -> None:
        await self.store.set("visitor", {"cart": [1]}, 60)
        claim = self.store._claim

        async def claim_then_revoke(*args: Any) -> None:
            await claim(*args)
            self.assertEqual(await self.store.destroy_user(1), 1)

        with mock.patch.object(self.store, "_claim", claim_then_revoke):
            written = await self.store.set("visitor", {"cart": [1], "user_id": 1}, 60,
                                           previous={"cart": [1]},
                                           owner=Owner(1, time.time(), time.time()))
        self.assertIs(written, False)  # the revocation came first: the session is gone
        self.assertIsNone(await self.store.get("visitor"))
        self.assertEqual(await self.listed(1), set())

    @gen_test(timeout=60)
    async def test_revocations_racing_logins_leave_no_live_session_unlisted(self) -> None:
        for round_ in range(5):
            logins = [self.login(f"r{round_}-{n}", 1) for n in range(20)]
            revocations = [self.store.destroy_user(1) for _ in range(5)]
            calls = [*logins, *revocations]
            calls.insert(10, self.store.destroy_user(1))
            await asyncio.gather(*calls)
            await self.assert_every_live_session_is_listed(1)
        await self.store.destroy_user(1)
        self.assertEqual(await self.live_sessions_of(1), set())
        self.assertEqual(await self.listed(1), set())


class TestClusterClientsRefused(RedisClusterCase, AsyncTestCase):
    def test_a_blocking_cluster_client_is_refused(self) -> None:
        client = redis.cluster.RedisCluster.from_url(self.redis_cluster.url)
        try:
            with self.assertRaisesRegex(SessionOptionError, "redis.asyncio.RedisCluster"):
                RedisStore(client)  # type: ignore[arg-type]
        finally:
            client.close()

    def test_replicas_are_refused_on_a_cluster_saying_why(self) -> None:
        with self.assertRaisesRegex(SessionOptionError, r"replicas=1\) on a Redis Cluster"):
            RedisStore.from_url(self.redis_cluster.url, cluster=True, replicas=1)

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
