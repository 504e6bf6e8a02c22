"""Parallel requests of one session: increments that all count, conflicts reported, 409.

Against every store, through whole HTTP requests: MemoryStore, RedisStore on the
redis-server these tests start, MongoStore on the MongoDB wire server.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any, ClassVar

import pytest
import tornado.web
from tornado.httpclient import AsyncHTTPClient
from tornado.testing import gen_test

from examples import counter
from tests.base import COOKIE, COOKIE_SECRET, SessionTestCase, set_cookies
from tests.mongo_server import MongoWireServer
from tests.redis_server import RedisServerCase
from tornado_session import SessionMixin, SessionOptions
from tornado_session.stores import MemoryStore, MongoStore, RedisStore, Store

#: The issue's figure: 8 parallel clients of one session, 500 increments each.
#: (``PARALLEL_REQUESTS`` overrides the 500, for a quick run.)
CLIENTS = 8
REQUESTS = int(os.environ.get("PARALLEL_REQUESTS", "500"))


class Gate:
    """Holds requests until ``parties`` of them wait: they all loaded before any commits."""

    def __init__(self, parties: int) -> None:
        self.parties = parties
        self.waiting = 0
        self.opened = asyncio.Event()

    async def wait(self) -> None:
        self.waiting += 1
        if self.waiting >= self.parties:
            self.opened.set()
        await asyncio.wait_for(self.opened.wait(), 10)


class ReadModifyWrite(SessionMixin, tornado.web.RequestHandler):
    """``n`` by read-modify-write, plus a key of this request's own."""

    async def get(self, who: str) -> None:
        views = self.session.get("n", 0)
        await self.settings["gate"].wait()
        self.session["n"] = views + 1
        self.session[f"seen-{who}"] = True
        self.write(f"written by {who}")


class OwnKey(SessionMixin, tornado.web.RequestHandler):
    """A read-modify-write of a key that no other request changes."""

    async def get(self, who: str) -> None:
        views = self.session.get(who, 0)
        await self.settings["gate"].wait()
        self.session[who] = views + 1


class Start(SessionMixin, tornado.web.RequestHandler):
    def get(self) -> None:
        self.session["started"] = True


class Dump(SessionMixin, tornado.web.RequestHandler):
    def get(self) -> None:
        self.write(dict(self.session))


class ParallelCase(SessionTestCase):
    """The counter example plus racing handlers, on the store of `make_store`."""

    __test__ = False
    on_conflict = "last_write_wins"
    #: Increments per client in the default run.
    parallel_requests = REQUESTS

    def make_store(self) -> Store:
        return MemoryStore()

    def get_app(self) -> tornado.web.Application:
        self.conflicts: list[dict[str, Any]] = []
        options = SessionOptions(store=self.store, on_conflict=self.on_conflict)
        options.events.on("session:conflict", self.conflicts.append)
        self.store_events: list[dict[str, Any]] = []
        options.events.on("session:store", self.store_events.append)
        app = counter.make_app(cookie_secret=COOKIE_SECRET, session=options, gate=Gate(2))
        app.add_handlers(r".*", [
            (r"/rmw/(\w+)", ReadModifyWrite), (r"/own/(\w+)", OwnKey),
            (r"/start", Start), (r"/dump", Dump),
        ])
        return app

    def tearDown(self) -> None:
        assert self.store is not None
        self.io_loop.run_sync(self.store.clear)
        self.io_loop.run_sync(self.store.close)
        super().tearDown()

    async def stored(self) -> dict[str, Any]:
        response = await self.fetch_async("/dump")
        data: dict[str, Any] = tornado.escape.json_decode(response.body)
        return data

    @gen_test(timeout=30)
    async def test_parallel_changes_of_different_keys_are_no_conflict(self) -> None:
        await self.fetch_async("/start")
        responses = await asyncio.gather(self.fetch_async("/own/a"), self.fetch_async("/own/b"))
        self.assertEqual([r.code for r in responses], [200, 200])
        stored = await self.stored()
        self.assertEqual((stored["a"], stored["b"]), (1, 1))
        self.assertEqual(self.conflicts, [])


class LastWriteWinsCase(ParallelCase):
    __test__ = False

    @pytest.mark.timeout(900)
    @gen_test(timeout=900)
    async def test_parallel_clients_of_one_session_lose_no_increment(self) -> None:
        await self.lose_no_increment(self.parallel_requests)

    async def lose_no_increment(self, requests: int) -> None:
        """``CLIENTS`` clients of one session each send ``requests`` to the counter example."""
        await self.fetch_async("/start")
        start = self.jar[COOKIE]
        http = AsyncHTTPClient()
        began = time.perf_counter()

        async def client() -> list[int]:
            cookie, seen = start, []
            for _ in range(requests):
                response = await http.fetch(self.get_url("/"),
                                            headers={"Cookie": f"{COOKIE}={cookie}"})
                seen.append(int(response.body))
                if COOKIE in set_cookies(response):
                    cookie = set_cookies(response)[COOKIE].coded_value
            return seen

        answers = await asyncio.gather(*(client() for _ in range(CLIENTS)))
        took = time.perf_counter() - began
        total = CLIENTS * requests
        # Each request saw the store's total just after its own increment: every
        # number from 1 to the total once, and the session holds the total.
        self.assertEqual(sorted(n for seen in answers for n in seen), list(range(1, total + 1)))
        self.assertEqual((await self.stored())["views"], total)
        self.assertEqual(self.conflicts, [])
        print(f"\n{type(self).__name__}: {CLIENTS} clients x {requests} increments, "
              f"{total} kept, in {took:.1f} s")

    @gen_test(timeout=30)
    async def test_a_read_modify_write_race_emits_session_conflict_naming_the_key(self) -> None:
        await self.fetch_async("/start")
        responses = await asyncio.gather(self.fetch_async("/rmw/a"), self.fetch_async("/rmw/b"))
        self.assertEqual([r.code for r in responses], [200, 200])
        stored = await self.stored()
        self.assertEqual(stored["n"], 1)  # last write wins: one increment is lost, and said so
        self.assertEqual(stored["seen-a"], stored["seen-b"])  # different keys: both kept
        (event,) = self.conflicts
        self.assertEqual(event["names"], ["n"])
        self.assertEqual(event["key"], COOKIE)
        self.assertEqual(event["on_conflict"], "last_write_wins")
        self.assertIs(event["written"], True)
        self.assertEqual(set(event), {"key", "names", "on_conflict", "written", "handler"})


class FailCase(ParallelCase):
    __test__ = False
    on_conflict = "fail"

    @gen_test(timeout=30)
    async def test_the_request_in_conflict_gets_409_and_writes_nothing(self) -> None:
        await self.fetch_async("/start")
        responses = await asyncio.gather(self.fetch_async("/rmw/a"), self.fetch_async("/rmw/b"))
        by_code = {r.code: r for r in responses}
        self.assertEqual(sorted(by_code), [200, 409])
        winner = by_code[200].body.decode().split()[-1]
        stored = await self.stored()
        self.assertEqual(stored, {"started": True, "n": 1, f"seen-{winner}": True})
        self.assertNotIn(COOKIE, set_cookies(by_code[409]))
        self.assertNotIn(b"written by", by_code[409].body)
        (event,) = self.conflicts
        self.assertEqual((event["names"], event["written"]), (["n"], False))
        saves = [e["outcome"] for e in self.store_events if e["operation"] == "save"]
        self.assertEqual(saves.count("conflict"), 1)  # the session:store event says so too


class FirstWriteWinsCase(ParallelCase):
    __test__ = False
    on_conflict = "first_write_wins"

    @gen_test(timeout=30)
    async def test_the_first_write_of_a_key_stays_and_the_other_keys_are_written(self) -> None:
        await self.fetch_async("/start")
        responses = await asyncio.gather(self.fetch_async("/rmw/a"), self.fetch_async("/rmw/b"))
        self.assertEqual([r.code for r in responses], [200, 200])
        stored = await self.stored()
        self.assertEqual(stored["n"], 1)
        self.assertEqual((stored["seen-a"], stored["seen-b"]), (True, True))
        (event,) = self.conflicts
        self.assertEqual((event["names"], event["on_conflict"]), (["n"], "first_write_wins"))


# -- the stores ---------------------------------------------------------------------


class TestMemoryStore(LastWriteWinsCase):
    __test__ = True


class TestMemoryStoreFail(FailCase):
    __test__ = True


class TestMemoryStoreFirstWriteWins(FirstWriteWinsCase):
    __test__ = True


class RedisCase(RedisServerCase):
    def make_store(self) -> Store:
        return RedisStore.from_url(self.redis_server.url)


class TestRedisStore(RedisCase, LastWriteWinsCase):
    __test__ = True


class TestRedisStoreFail(RedisCase, FailCase):
    __test__ = True


class TestRedisStoreFirstWriteWins(RedisCase, FirstWriteWinsCase):
    __test__ = True


class MongoCase:
    """A wire server for the whole class; a collection of its own per test."""

    mongo_server: ClassVar[MongoWireServer]

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()  # type: ignore[misc]
        server = MongoWireServer()
        cls.addClassCleanup(server.close)  # type: ignore[attr-defined]
        server.start()
        cls.mongo_server = server

    def make_store(self) -> Store:
        collection = f"sessions_{id(self)}"
        return MongoStore.from_uri(self.mongo_server.uri, "parallel", collection)


class TestMongoStore(MongoCase, LastWriteWinsCase):
    """8 x 100 in the default run: 8 x 500 took 200 to over 600 s on the shared 2-core
    machine (the wire server is mongoeco, in Python), past the suite's time-outs."""

    __test__ = True
    parallel_requests = min(REQUESTS, 100)

    @pytest.mark.slow
    @pytest.mark.timeout(1800)
    @gen_test(timeout=1800)
    async def test_the_issues_8_clients_by_500_lose_no_increment(self) -> None:
        await self.lose_no_increment(REQUESTS)


class TestMongoStoreFail(MongoCase, FailCase):
    __test__ = True


class TestMongoStoreFirstWriteWins(MongoCase, FirstWriteWinsCase):
    __test__ = True
