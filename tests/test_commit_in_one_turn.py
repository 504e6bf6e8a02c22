"""A commit whose store answers at once is over in the caller's turn; one that waits runs in a task.

`SessionContext.commit` returns `Ready` when no store call had to wait
(MemoryStore, cookie sessions): ``finish()`` then ends the response with no
task and no extra turn of the loop.  A store that answers with a coroutine is
never run in the caller's turn: the commit stops before awaiting it, and the
rest, the store's own code included, runs in the task that awaits it.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import tornado.web
from tornado.testing import AsyncTestCase, gen_test

from tests.base import COOKIE_SECRET, SessionTestCase
from tornado_session import SessionMixin, SessionOptions
from tornado_session.config import SessionConfig
from tornado_session.cookies import CookieCodec, Signer
from tornado_session.errors import SessionSerializationError
from tornado_session.lifecycle import CookieUpdate, SessionContext
from tornado_session.stores import MemoryStore, Ready, Store
from tornado_session.testing import FakeClock


class WaitingStore(MemoryStore):
    """A MemoryStore that answers through coroutines that wait, noting the task they run in."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tasks: list[asyncio.Task[Any] | None] = []

    async def set(  # type: ignore[override]
        self, key: str, data: Any, max_age: float, **kwargs: Any
    ) -> Any:
        self.tasks.append(asyncio.current_task())
        async with asyncio.timeout(5):  # bound to the task it runs in
            await asyncio.sleep(0)
            return await super().set(key, data, max_age, **kwargs)


def context(store: Store | None, clock: FakeClock) -> SessionContext:
    options = SessionOptions(store=store, clock=clock)
    codec = CookieCodec(options.key, sign=Signer(COOKIE_SECRET, clock=clock).sign)
    return SessionContext(SessionConfig(options, codec))


def commit(ctx: SessionContext) -> Any:
    return ctx.commit(status=200, save=None, headers_sent=False)


class TestCommitInOneTurn(AsyncTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.clock = FakeClock()

    @gen_test
    async def test_a_memory_store_commit_is_over_when_commit_returns(self) -> None:
        store = MemoryStore(clock=self.clock)
        ctx = context(store, self.clock)
        ctx.start_new()["views"] = 1
        result = commit(ctx)
        self.assertIsInstance(result, Ready)
        self.assertIsInstance(result.value, CookieUpdate)
        self.assertEqual(await store.count(), 1)

    @gen_test
    async def test_a_cookie_session_commit_is_over_when_commit_returns(self) -> None:
        ctx = context(None, self.clock)
        ctx.start_new()["views"] = 1
        result = commit(ctx)
        self.assertIsInstance(result, Ready)
        self.assertIsInstance(result.value, CookieUpdate)

    @gen_test
    async def test_a_store_call_that_waits_runs_in_the_task_that_awaits_the_rest(self) -> None:
        store = WaitingStore(clock=self.clock)
        ctx = context(store, self.clock)
        ctx.start_new()["views"] = 1
        rest = commit(ctx)
        self.assertNotIsInstance(rest, Ready)
        self.assertEqual(store.tasks, [])  # the store's coroutine has not started
        self.assertEqual(await store.count(), 0)

        async def finish() -> Any:
            return await rest

        task = asyncio.ensure_future(finish())
        cookie = await task
        self.assertIsInstance(cookie, CookieUpdate)
        self.assertEqual(store.tasks, [task])
        self.assertEqual(await store.count(), 1)

    @gen_test
    async def test_an_error_before_the_first_wait_is_raised_by_commit_itself(self) -> None:
        for store in (MemoryStore(clock=self.clock), WaitingStore(clock=self.clock), None):
            ctx = context(store, self.clock)
            ctx.start_new()["bad"] = object()
            with self.assertRaises(SessionSerializationError):
                commit(ctx)


class Finisher(SessionMixin, tornado.web.RequestHandler):
    """Changes the session and finishes itself, noting the tasks that finish() started."""

    started: ClassVar[list[set[asyncio.Task[Any]]]] = []

    def get(self) -> None:
        self.session["views"] = self.session.get("views", 0) + 1
        before = asyncio.all_tasks()
        self.finish(str(self.session["views"]))
        self.started.append(asyncio.all_tasks() - before)


class TestFinishWithoutATask(SessionTestCase):
    def make_store(self) -> Store | None:
        return MemoryStore(clock=self.clock)

    def get_handlers(self) -> list[Any]:
        return [(r"/finish", Finisher)]

    def test_finish_of_a_memory_store_request_starts_no_task(self) -> None:
        Finisher.started.clear()
        self.assertEqual(self.fetch("/finish").body, b"1")
        self.assertEqual(self.fetch("/finish").body, b"2")
        self.assertEqual(Finisher.started, [set(), set()])


class TestFinishWithATask(SessionTestCase):
    def make_store(self) -> Store | None:
        return WaitingStore(clock=self.clock)

    def get_handlers(self) -> list[Any]:
        return [(r"/finish", Finisher)]

    def test_finish_of_a_request_whose_store_waits_starts_one_task(self) -> None:
        Finisher.started.clear()
        self.assertEqual(self.fetch("/finish").body, b"1")
        self.assertEqual(self.fetch("/finish").body, b"2")
        self.assertEqual([len(tasks) for tasks in Finisher.started], [1, 1])
