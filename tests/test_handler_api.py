"""The handler's session API: lazy loading, manual commits, hooks, concurrency."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import tornado.web
from tornado.testing import ExpectLog, gen_test

from tests.base import COOKIE, CountingStore, SessionTestCase
from tornado_session import SessionMixin, SessionNotLoadedError


class LazyReader(SessionMixin, tornado.web.RequestHandler):
    async def get(self) -> None:
        if self.get_argument("touch_first", None):
            try:
                self.session.get("views")
            except SessionNotLoadedError as exc:
                self.write("error: " + str(exc))
                return
        if self.get_argument("load", None):
            await self.load_session()
            self.session["views"] = self.session.get("views", 0) + 1
            self.write(str(self.session["views"]))
        else:
            self.write("skipped")


class ManualCommit(SessionMixin, tornado.web.RequestHandler):
    async def get(self) -> None:
        self.session["views"] = self.session.get("views", 0) + 1
        if self.get_argument("commit", None):
            await self.commit_session()
        self.write(str(self.session["views"]))


class CommitTwice(SessionMixin, tornado.web.RequestHandler):
    async def get(self) -> None:
        self.session["a"] = 1
        await self.commit_session()
        self.session["b"] = 2
        self.write("ok")


class FinishTwice(SessionMixin, tornado.web.RequestHandler):
    async def get(self) -> None:
        self.session["views"] = 1
        first = self.finish("once")
        second = self.finish()
        self.same_future = first is second
        await first


class ForgetsSuperPrepare(SessionMixin, tornado.web.RequestHandler):
    def prepare(self) -> None:
        pass

    def get(self) -> None:
        try:
            self.write(str(self.session.get("views", 0)))
        except SessionNotLoadedError as exc:
            self.write("error: " + str(exc))


class SlowCounter(SessionMixin, tornado.web.RequestHandler):
    async def get(self, key: str) -> None:
        await asyncio.sleep(0.01)
        self.session[key] = self.session.get(key, 0) + 1
        self.write("ok")


class TestLazy(SessionTestCase):
    def session_options(self) -> dict[str, Any]:
        return {"lazy": True}

    def get_handlers(self) -> list[Any]:
        return [(r"/lazy", LazyReader)]

    def test_no_store_call_for_a_lazy_request_that_never_loads(self) -> None:
        self.fetch("/lazy?load=1")
        assert isinstance(self.store, CountingStore)
        self.store.reset_calls()
        self.assertEqual(self.fetch("/lazy").body, b"skipped")
        self.assertEqual(self.store.calls["get"], 0)
        self.assertEqual(self.fetch("/lazy?load=1").body, b"2")
        self.assertEqual(self.store.calls["get"], 1)

    def test_touching_the_session_before_loading_says_what_to_call(self) -> None:
        body = self.fetch("/lazy?touch_first=1").body.decode()
        self.assertIn("await self.load_session()", body)
        self.assertIn("LazyReader", body)


class TestManualCommit(SessionTestCase):
    def session_options(self) -> dict[str, Any]:
        return {"auto_commit": False}

    def get_handlers(self) -> list[Any]:
        return [(r"/manual", ManualCommit)]

    def test_without_commit_session_nothing_is_saved(self) -> None:
        response = self.fetch("/manual")
        self.assertIsNone(self.session_cookie(response))
        self.assertEqual(self.fetch("/manual").body, b"1")

    def test_commit_session_saves(self) -> None:
        response = self.fetch("/manual?commit=1")
        self.assertIsNotNone(self.session_cookie(response))
        self.assertEqual(self.fetch("/manual?commit=1").body, b"2")


class TestFinishing(SessionTestCase):
    def get_handlers(self) -> list[Any]:
        return [
            (r"/twice", FinishTwice),
            (r"/commit-twice", CommitTwice),
            (r"/forgets", ForgetsSuperPrepare),
            (r"/count", SlowCounter, {}),
            (r"/slow/(\w+)", SlowCounter),
        ]

    def test_second_finish_call_returns_the_same_future(self) -> None:
        response = self.fetch("/twice")
        self.assertEqual((response.code, response.body), (200, b"once"))
        self.assertIsNotNone(self.session_cookie(response))

    def test_changes_after_an_explicit_commit_are_committed_at_finish(self) -> None:
        self.fetch("/commit-twice")
        assert isinstance(self.store, CountingStore)
        (raw,) = [entry[1] for entry in self.store._entries.values()]
        self.assertEqual(raw, b'{"a":1,"b":2}')

    def test_prepare_override_without_super_names_the_fix(self) -> None:
        self.jar[COOKIE] = "anything"
        body = self.fetch("/forgets").body.decode()
        self.assertIn("await super().prepare()", body)


class TestConcurrency(SessionTestCase):
    def get_handlers(self) -> list[Any]:
        return [(r"/slow/(\w+)", SlowCounter)]

    @gen_test
    async def test_fifty_concurrent_requests_each_changing_its_own_key_all_survive(self) -> None:
        await self.fetch_async("/slow/start")
        responses = await asyncio.gather(
            *(self.fetch_async(f"/slow/k{i}") for i in range(50))
        )
        self.assertTrue(all(r.code == 200 for r in responses))
        assert isinstance(self.store, CountingStore)
        (key,) = self.store._entries
        data = await self.store.get(key)
        assert data is not None
        self.assertEqual({k: v for k, v in data.items() if k != "start"},
                         {f"k{i}": 1 for i in range(50)})


class Hooks(SessionMixin, tornado.web.RequestHandler):
    def get(self) -> None:
        self.session["views"] = self.session.get("views", 0) + 1
        self.write(str(self.session["views"]))


class TestHooks(SessionTestCase):
    def get_handlers(self) -> list[Any]:
        return [(r"/hooks", Hooks)]

    def session_options(self) -> dict[str, Any]:
        def before_save(handler: Any, session: Any) -> None:
            session["saved_by"] = type(handler).__name__

        return {"before_save": before_save, "genid": lambda handler: "custom-" + "x" * 40}

    def test_before_save_runs_before_every_save_and_its_changes_are_kept(self) -> None:
        self.fetch("/hooks")
        assert isinstance(self.store, CountingStore)
        (entry,) = self.store._entries.values()
        self.assertEqual(entry[1], b'{"saved_by":"Hooks","views":1}')

    def test_genid_makes_the_id_and_the_store_key_is_its_hash(self) -> None:
        import hashlib

        self.fetch("/hooks")
        assert isinstance(self.store, CountingStore)
        expected = hashlib.sha256(("custom-" + "x" * 40).encode()).hexdigest()
        self.assertEqual(list(self.store._entries), [expected])


class SlowStore(CountingStore):
    """A store whose writes take a while, to let a client hang up during a commit."""

    async def set(self, key: str, data: Any, max_age: float, **kwargs: Any) -> bool:
        await asyncio.sleep(0.2)
        return await super().set(key, data, max_age, **kwargs)


class TestClientGoesAway(SessionTestCase):
    def make_store(self) -> CountingStore:
        return SlowStore(clock=self.clock)

    def get_handlers(self) -> list[Any]:
        return [(r"/slow/(\w+)", SlowCounter)]

    @gen_test
    async def test_client_disconnecting_during_the_commit_logs_no_traceback(self) -> None:
        with ExpectLog("tornado.application", ".*", required=False) as app_log, ExpectLog(
            "asyncio", ".*", required=False
        ) as asyncio_log:
            sock = socket.create_connection(("127.0.0.1", self.get_http_port()))
            sock.sendall(b"GET /slow/k HTTP/1.1\r\nHost: localhost\r\n\r\n")
            await asyncio.sleep(0.1)  # the handler is committing now
            sock.close()
            await asyncio.sleep(0.3)
        self.assertFalse(app_log.logged_stack)
        self.assertFalse(asyncio_log.logged_stack)
        assert isinstance(self.store, CountingStore)
        self.assertEqual(self.store.calls["set"], 1)
