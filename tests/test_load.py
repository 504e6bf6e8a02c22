"""The login example under concurrent users, on each store: no 5xx, no session lost.

Every simulated user logs in through the example's form (xsrf, scrypt,
``regenerate_session``), then counts ``GET /count`` again and again; each 200
must be exactly one more than the last, and at the end each user's counter must
equal its number of requests and its profile must still show it logged in.

The default run keeps this short (20 users x 25 requests per store).  The long
runs are marked ``slow``; sizes come from ``LOAD_USERS`` / ``LOAD_REQUESTS``::

    .venv/bin/python -m pytest -m slow tests/test_load.py     # or scripts/soak.sh
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import pytest
import tornado.web
from tornado.httpclient import AsyncHTTPClient
from tornado.testing import AsyncHTTPTestCase, gen_test

from tests.load_users import MongoServerCase, User, load_app, report, server_errors
from tests.redis_server import RedisServerCase
from tornado_session.stores import MemoryStore, MongoStore, RedisStore, Store


def soak_users() -> int:
    return int(os.environ.get("LOAD_USERS", "200"))


class LoadCase(AsyncHTTPTestCase):
    """Users log in, then count; every store's subclass runs the same."""

    __test__ = False
    users = 20
    requests = 25

    def make_store(self) -> Store:
        raise NotImplementedError

    def get_app(self) -> tornado.web.Application:
        self.store = self.make_store()
        accounts = max(self.users, soak_users())
        return self.io_loop.run_sync(lambda: load_app(self.store, accounts))

    def tearDown(self) -> None:
        self.io_loop.run_sync(self.store.close)
        super().tearDown()

    async def run_users(self, users: int, requests: int) -> dict[str, Any]:
        client = AsyncHTTPClient(force_instance=True, max_clients=users)
        people = [User(self.get_url(""), f"user{n}", client) for n in range(users)]
        try:
            started = time.monotonic()
            await asyncio.gather(*(person.log_in() for person in people))
            logged_in = time.monotonic()

            async def count(person: User) -> None:
                for _ in range(requests):
                    code = await person.count()
                    assert code == 200, (person.name, code)

            await asyncio.gather(*(count(person) for person in people))
            counted = time.monotonic()
            for person in people:
                self.assertEqual(await person.counter(), requests, person.name)
                profile = await person.request("GET", "/profile")
                self.assertEqual(profile.code, 200, person.name)
        finally:
            client.close()
        self.assertEqual(server_errors(people), [])
        total = sum(len(person.outcomes) for person in people)
        figures = {
            "store": type(self.store).__name__, "users": users, "requests_per_user": requests,
            "http_requests": total, "login_seconds": round(logged_in - started, 2),
            "count_seconds": round(counted - logged_in, 2),
            "count_rps": round(users * requests / (counted - logged_in)),
            "server_errors": 0, "sessions_lost": 0,
        }
        report(type(self).__name__, **figures)
        return figures

    @gen_test(timeout=60)
    async def test_concurrent_users_get_no_5xx_and_lose_no_session(self) -> None:
        await self.run_users(self.users, self.requests)

    @pytest.mark.slow
    @pytest.mark.timeout(1800)
    @gen_test(timeout=1800)
    async def test_soak_many_users_get_no_5xx_and_lose_no_session(self) -> None:
        users = soak_users()
        requests = int(os.environ.get("LOAD_REQUESTS", "200"))
        await self.run_users(users, requests)


class TestLoadMemoryStore(LoadCase):
    __test__ = True

    def make_store(self) -> Store:
        return MemoryStore()


class TestLoadRedisStore(RedisServerCase, LoadCase):
    __test__ = True

    def make_store(self) -> Store:
        return RedisStore.from_url(self.redis_server.url)

    @gen_test(timeout=30)
    async def test_more_concurrent_calls_than_pooled_connections_wait_and_succeed(self) -> None:
        # redis-py's pool holds 100 connections by default; the 101st concurrent
        # command must wait for one, not make the store report an outage.
        await self.store.set("burst", {"n": 1}, 60)
        results = await asyncio.gather(*(self.store.get("burst") for _ in range(250)))
        self.assertEqual(results, [{"n": 1}] * 250)
        self.assertTrue(self.store.connected)


class TestLoadMongoStore(MongoServerCase, LoadCase):
    """On the MongoDB wire server (mongoeco: correct, but far slower than mongod)."""

    __test__ = True
    users = 10
    requests = 20

    def make_store(self) -> Store:
        return MongoStore.from_uri(self.mongo_uri)
