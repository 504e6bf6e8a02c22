"""A Redis Cluster master killed under load: 503 at most, then the promoted replica serves.

Users count in their sessions through HTTP while one master is killed
(SIGKILL).  Every answer must be a 200, or a 503 with ``Retry-After``; once
the replica is promoted (the cluster's ``cluster-node-timeout`` is 1 s here)
every user is served again, on the same session.  One master's loss is not
the store's: it never reports itself disconnected, a request for the lost
master's slots waits (retrying) up to the store's ``timeout`` for the
replica, and the others go on (`RedisStore.call_backend`).  The test measures
the window (from the kill to the last answer that was refused or held over
half a second), how many answers were refused or held on the lost master's
users and on the others (Redis answers ``CLUSTERDOWN`` for every slot between
the moment the cluster declares the master failed and the promotion), and
counts acknowledged writes the failover lost: Redis replicates
asynchronously, so a write the master acknowledged but had not yet sent to
its replica is gone, and the counter goes back by that much.  The figures go
to the reliability report (tests/load_users.py `report`).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import tornado.web
from tornado.httpclient import AsyncHTTPClient, HTTPResponse
from tornado.testing import AsyncHTTPTestCase, ExpectLog, gen_test

from tests.load_users import report
from tests.redis_cluster import RedisClusterCase
from tornado_session import SessionMixin, SessionOptions
from tornado_session.stores import RedisStore

#: A real cluster or nginx over processes: run once, on the default Python (scripts/test.sh).
pytestmark = pytest.mark.topology


SECRET = "failover-secret-" + "f" * 40
NS = "tornado_session:"


class Count(SessionMixin, tornado.web.RequestHandler):
    def get(self) -> None:
        self.session["n"] = self.session.get("n", 0) + 1
        self.write(str(self.session["n"]))


async def new_users(
    case: RedisClusterCase, fetch: Any, count: int
) -> tuple[list[str], list[int]]:
    """``count`` new sessions made through ``/count``: their cookies, and each one's master."""
    cookies, masters = [], []
    for _ in range(count):
        before = set(case.redis_cluster.keys(NS + "*"))
        response = await fetch()
        assert response.code == 200, response.code
        cookies.append(response.headers["Set-Cookie"].split(";")[0])
        (key,) = set(case.redis_cluster.keys(NS + "*")) - before
        masters.append(case.redis_cluster.master_of(key.decode()))
    return cookies, masters


class TestMasterFailover(RedisClusterCase, AsyncHTTPTestCase):
    users = 30
    reconnect_timeout = 2.0

    def get_app(self) -> tornado.web.Application:
        self.store = RedisStore.from_url(
            self.redis_cluster.url, cluster=True, timeout=3.0, probe_interval=0.1
        )
        options = SessionOptions(store=self.store, reconnect_timeout=self.reconnect_timeout)
        return tornado.web.Application(
            [(r"/count", Count)], cookie_secret=SECRET, session=options
        )

    def tearDown(self) -> None:
        self.io_loop.run_sync(self.store.close)
        super().tearDown()

    async def count(self, client: AsyncHTTPClient, cookie: str | None) -> HTTPResponse:
        headers = {"Cookie": cookie} if cookie else {}
        return await client.fetch(
            self.get_url("/count"), headers=headers, raise_error=False, request_timeout=30
        )

    @gen_test(timeout=120)
    async def test_killing_a_master_gives_at_most_503_then_every_session_continues(
        self,
    ) -> None:
        client = AsyncHTTPClient(force_instance=True, max_clients=self.users)
        cookies, masters = await new_users(self, lambda: self.count(client, None), self.users)
        # Kill the master holding the most users.
        victim = max(set(masters), key=masters.count)
        on_victim = {number for number, master in enumerate(masters) if master == victim}

        acknowledged = [1] * self.users
        #: (user, sent, answered, code, Retry-After) of every answer after the warm-up.
        answers: list[tuple[int, float, float, int, str | None]] = []
        events: list[str] = []
        for name in ("connect", "disconnect"):
            self.store.on(name, lambda _, name=name: events.append(name))
        stop = asyncio.Event()

        async def user(number: int) -> None:
            while not stop.is_set():
                sent = time.monotonic()
                response = await self.count(client, cookies[number])
                answers.append((number, sent, time.monotonic(), response.code,
                                response.headers.get("Retry-After")))
                if response.code == 200:
                    value = int(response.body)
                    if value <= acknowledged[number]:
                        lost.append(acknowledged[number] - value + 1)
                    acknowledged[number] = value
                await asyncio.sleep(0.005)

        lost: list[int] = []
        partial = "Redis Cluster: a master cannot be reached"
        with ExpectLog("tornado_session.stores.redis", partial), \
                ExpectLog("tornado_session", ".*", required=False):
            tasks = [asyncio.ensure_future(user(n)) for n in range(self.users)]
            await asyncio.sleep(1.0)
            before = sum(acknowledged)
            killed_at = time.monotonic()
            await asyncio.to_thread(self.redis_cluster.kill, victim)
            await asyncio.to_thread(self.redis_cluster.wait_ok, 30)
            promoted_at = time.monotonic()
            await asyncio.sleep(2.0)  # everyone is served again
            stop.set()
            await asyncio.gather(*tasks)
        client.close()

        self.assertGreater(sum(acknowledged), before)
        self.assertNotIn(victim, self.redis_cluster.masters())
        refused = [answer for answer in answers if answer[3] != 200]
        self.assertLessEqual({code for _, _, _, code, _ in refused}, {503}, refused[:5])
        for *_, retry_after in refused:  # the mixin's: reconnect_timeout, rounded up
            self.assertEqual(retry_after, "2")
        # One master's loss is not the store's: it never reported itself disconnected.
        self.assertEqual(events, [])
        # The window: from the kill to the last answer that was refused or held
        # (a request for the lost master's slots waits for the promoted replica).
        held = [answer for answer in answers if answer[2] - answer[1] > 0.5 or answer[3] != 200]
        window = max((answered for _, _, answered, _, _ in held), default=killed_at) - killed_at
        # Every user was served after the last failure, on the session it had.
        for number in range(self.users):
            response = await self.count(AsyncHTTPClient(), cookies[number])
            self.assertEqual(response.code, 200, number)
            self.assertGreater(int(response.body), 1, number)
        figures = dict(
            users=self.users, users_on_lost_master=len(on_victim),
            answered_503=len(refused),
            answered_503_on_lost_master=sum(1 for a in refused if a[0] in on_victim),
            answered_503_elsewhere=sum(1 for a in refused if a[0] not in on_victim),
            held_over_half_a_second=len(held) - len(refused),
            held_elsewhere=sum(1 for a in held if a[0] not in on_victim and a[3] == 200),
            window_seconds=round(window, 2),
            promotion_seconds=round(promoted_at - killed_at, 2),
            acknowledged_writes_lost=sum(lost), users_with_lost_writes=len(lost),
            store_outages=events.count("disconnect"), node_timeout_ms=1000,
            timeout=self.store.timeout, reconnect_timeout=self.reconnect_timeout,
        )
        report(type(self).__name__, **figures)


class TestOneMasterLost(RedisClusterCase, AsyncHTTPTestCase):
    """Right after one master dies, before any replica takes over.

    The store stays connected: sessions on the other masters are served at
    once, and a request whose session lives on the dead master waits its
    ``timeout`` (0.5 s here) and answers 503 with ``Retry-After``.
    """

    def get_app(self) -> tornado.web.Application:
        self.store = RedisStore.from_url(self.redis_cluster.url, cluster=True, timeout=0.5)
        options = SessionOptions(store=self.store, reconnect_timeout=2)
        return tornado.web.Application(
            [(r"/count", Count)], cookie_secret=SECRET, session=options
        )

    def tearDown(self) -> None:
        self.io_loop.run_sync(self.store.close)
        super().tearDown()

    async def count(self, cookie: str | None) -> HTTPResponse:
        headers = {"Cookie": cookie} if cookie else {}
        return await self.http_client.fetch(
            self.get_url("/count"), headers=headers, raise_error=False
        )

    @gen_test(timeout=60)
    async def test_the_other_masters_sessions_are_served_and_the_lost_ones_get_503(
        self,
    ) -> None:
        cookies, masters = await new_users(self, lambda: self.count(None), 12)
        victim = masters[0]
        await asyncio.to_thread(self.redis_cluster.kill, victim)
        disconnects: list[object] = []
        self.store.on("disconnect", disconnects.append)
        # Within the cluster's node time-out (1 s), before it declares the
        # master failed: the other masters' sessions first, then a lost one.
        others = [cookie for cookie, master in zip(cookies, masters, strict=True)
                  if master != victim]
        with ExpectLog("tornado_session.stores.redis", "Redis Cluster: a master cannot be"), \
                ExpectLog("tornado_session.mixin", "Count answered 503"):
            for cookie in others:
                response = await self.count(cookie)
                self.assertEqual((response.code, response.body), (200, b"2"))
            started = time.monotonic()
            response = await self.count(cookies[masters.index(victim)])
            took = time.monotonic() - started
        self.assertEqual(response.code, 503)
        self.assertEqual(response.headers["Retry-After"], "2")
        self.assertGreaterEqual(took, 0.5)  # it waited its timeout for a replica first
        self.assertEqual(disconnects, [])
        self.assertTrue(self.store.connected)
