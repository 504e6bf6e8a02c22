"""A Redis Cluster master killed under load: 503 at most, then the promoted replica serves.

Users count in their sessions through HTTP while one master is killed
(SIGKILL).  Every answer must be a 200, or a 503 with ``Retry-After`` (a
request held for ``reconnect_timeout`` while the store was disconnected); once
the replica is promoted (the cluster's ``cluster-node-timeout`` is 1 s here)
every user is served again, on the same session.  The test measures the
window (from the kill to the store's ``connect`` event: while it lasts,
requests that need a session are held, and answered 503 past
``reconnect_timeout``) and counts acknowledged writes the failover lost: Redis replicates
asynchronously, so a write the master acknowledged but had not yet sent to its
replica is gone, and the counter goes back by that much.  The figures go to
the reliability report (tests/load_users.py `report`).
"""

from __future__ import annotations

import asyncio
import time

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


class TestMasterFailover(RedisClusterCase, AsyncHTTPTestCase):
    users = 30
    reconnect_timeout = 2.0

    def get_app(self) -> tornado.web.Application:
        self.store = RedisStore.from_url(
            self.redis_cluster.url, cluster=True, timeout=1.0, probe_interval=0.1
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
        cookies: list[str] = []
        for _ in range(self.users):
            response = await self.count(client, None)
            self.assertEqual(response.code, 200)
            cookies.append(response.headers["Set-Cookie"].split(";")[0])
        # Which users live on which master: kill the one holding the most.
        keys = self.redis_cluster.keys(NS + "*")
        masters = [self.redis_cluster.master_of(key.decode()) for key in keys]
        victim = max(set(masters), key=masters.count)

        acknowledged = [1] * self.users
        failures: list[tuple[float, int, str | None]] = []
        events: list[tuple[str, float]] = []
        for name in ("connect", "disconnect"):
            self.store.on(name, lambda _, name=name: events.append((name, time.monotonic())))
        stop = asyncio.Event()

        async def user(number: int) -> None:
            while not stop.is_set():
                response = await self.count(client, cookies[number])
                now = time.monotonic()
                if response.code == 200:
                    value = int(response.body)
                    if value <= acknowledged[number]:
                        lost.append(acknowledged[number] - value + 1)
                    acknowledged[number] = value
                else:
                    failures.append((now, response.code, response.headers.get("Retry-After")))
                await asyncio.sleep(0.005)

        lost: list[int] = []
        with ExpectLog("tornado_session.stores.redis", "Redis cannot be reached"), \
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
        codes = {code for _, code, _ in failures}
        self.assertLessEqual(codes, {503}, failures[:5])
        for _, _, retry_after in failures:  # the mixin's: reconnect_timeout, rounded up
            self.assertEqual(retry_after, "2")
        # The kill was noticed, and the store came back once the replica took over.
        names = [name for name, _ in events]
        self.assertEqual((names[0], names[-1]), ("disconnect", "connect"), names)
        window = events[-1][1] - killed_at
        # Every user was served after the last failure, on the session it had.
        for number in range(self.users):
            response = await self.count(AsyncHTTPClient(), cookies[number])
            self.assertEqual(response.code, 200, number)
            self.assertGreater(int(response.body), 1, number)
        figures = dict(
            users=self.users, answered_503=len(failures),
            window_seconds=round(window, 2),
            promotion_seconds=round(promoted_at - killed_at, 2),
            acknowledged_writes_lost=sum(lost), users_with_lost_writes=len(lost),
            store_outages=names.count("disconnect"), node_timeout_ms=1000,
            reconnect_timeout=self.reconnect_timeout,
        )
        report(type(self).__name__, **figures)
