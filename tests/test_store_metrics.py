"""Store calls reported as ``session:store`` events, and the guide's Prometheus and statsd wiring.

The snippets of docs/operations.md ("Metrics: store latency, errors and
outages") run here against the real client libraries: prometheus_client's
registry is read back through its own exposition format, and statsd's
datagrams are caught on a UDP socket.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import socket
import time
from pathlib import Path
from typing import Any
from unittest import mock

import prometheus_client
import tornado.web
from prometheus_client.parser import text_string_to_metric_families
from tornado.testing import ExpectLog, gen_test

from tests.base import CountingStore, SessionTestCase
from tests.redis_server import RedisServerCase
from tornado_session import SessionMixin, lifecycle
from tornado_session.stores import MemoryStore, RedisStore, Store

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "operations.md"


def guide_snippet(heading: str) -> str:
    """The Python block under ``### heading`` of the metrics section of docs/operations.md."""
    text = GUIDE.read_text(encoding="utf-8")
    section = text.split("## Metrics: store latency, errors and outages", 1)[1]
    part = section.split(f"### {heading}\n", 1)[1].split("\n#", 1)[0]
    (block,) = re.findall(r"```python\n(.*?)```", part, re.S)
    return block


class Counter(SessionMixin, tornado.web.RequestHandler):
    def get(self) -> None:
        self.session["views"] = self.session.get("views", 0) + 1
        self.write(str(self.session["views"]))


class Read(SessionMixin, tornado.web.RequestHandler):
    def get(self) -> None:
        self.write(str(self.session.get("views", 0)))


class Login(SessionMixin, tornado.web.RequestHandler):
    async def get(self) -> None:
        self.session["user"] = "ada"
        await self.regenerate_session()


class Logout(SessionMixin, tornado.web.RequestHandler):
    async def get(self) -> None:
        await self.destroy_session()


class MetricsCase(SessionTestCase):
    """An application whose options carry a listener of ``session:store`` (``self.events``)."""

    def setUp(self) -> None:
        self.events: list[dict[str, Any]] = []
        super().setUp()

    def get_handlers(self) -> list[Any]:
        return [(r"/count", Counter), (r"/read", Read), (r"/login", Login), (r"/logout", Logout)]

    def get_app(self) -> tornado.web.Application:
        app = super().get_app()
        options = SessionMixin.configure_application(app)
        options.events.on("session:store", self.events.append)
        return app

    def calls(self) -> list[tuple[str, str]]:
        """``(operation, outcome)`` of the events so far, which are then forgotten."""
        seen = [(event["operation"], event["outcome"]) for event in self.events]
        self.events.clear()
        return seen


class TestStoreEvents(MetricsCase):
    def test_each_store_call_is_one_event_with_its_operation_and_outcome(self) -> None:
        self.fetch("/count")
        self.assertEqual(self.calls(), [("save", "ok")])
        self.fetch("/read")
        self.assertEqual(self.calls(), [("load", "ok")])
        self.fetch("/count")
        self.assertEqual(self.calls(), [("load", "ok"), ("save", "ok")])
        self.fetch("/login")
        self.assertEqual(self.calls(), [("load", "ok"), ("destroy", "ok"), ("save", "ok")])
        self.fetch("/logout")
        self.assertEqual(self.calls(), [("load", "ok"), ("destroy", "ok")])

    def test_a_session_the_store_no_longer_has_is_a_miss(self) -> None:
        self.fetch("/count")
        self.io_loop.run_sync(self.store.clear)  # type: ignore[union-attr]
        self.calls()
        self.assertEqual(self.fetch("/read").body, b"0")
        self.assertEqual(self.calls(), [("load", "miss")])

    def test_the_event_says_which_store_and_cookie_and_how_long(self) -> None:
        self.fetch("/count")
        (event,) = self.events
        self.assertEqual(event["store"], "CountingStore")
        self.assertEqual(event["key"], "tornado.sess")
        self.assertIsNone(event["error"])
        self.assertIsInstance(event["handler"], Counter)
        self.assertGreater(event["seconds"], 0)
        self.assertLess(event["seconds"], 1)

    def test_a_store_that_fails_is_an_error_with_its_exception(self) -> None:
        self.fetch("/count")
        self.calls()
        assert isinstance(self.store, CountingStore)
        with mock.patch.object(self.store, "get", side_effect=RuntimeError("bug")), ExpectLog(
            "tornado.application", ".*Uncaught exception"
        ):
            self.assertEqual(self.fetch("/read").code, 500)
        (event,) = self.events
        self.assertEqual(event["outcome"], "error")
        self.assertIsInstance(event["error"], RuntimeError)

    def test_nothing_is_timed_when_nobody_listens(self) -> None:
        options = SessionMixin.configure_application(self._app)
        options.events.off("session:store", self.events.append)
        self.assertFalse(options.events.listened("session:store"))
        with mock.patch.object(lifecycle, "_Stopwatch", wraps=lifecycle._Stopwatch) as watch:
            self.assertEqual(self.fetch("/count").body, b"1")
            self.assertEqual(self.fetch("/count").body, b"2")
        watch.assert_not_called()
        self.assertEqual(self.events, [])


class TestStoreEventsOfARollingSession(MetricsCase):
    def session_options(self) -> dict[str, Any]:
        return {"rolling": True}

    def test_a_touch_is_an_event_too(self) -> None:
        self.fetch("/count")
        self.calls()
        self.assertEqual(self.fetch("/read").body, b"1")
        self.assertEqual(self.calls(), [("load", "ok"), ("touch", "ok")])


class TestStoreEventsDuringAnOutage(MetricsCase):
    def session_options(self) -> dict[str, Any]:
        return {"reconnect_timeout": 0.2}

    @gen_test
    async def test_a_store_out_of_reach_is_unavailable_after_the_wait(self) -> None:
        await self.fetch_async("/count")
        self.calls()
        assert isinstance(self.store, MemoryStore)
        await self.store.close()
        with ExpectLog("tornado_session.mixin", ".*answered 503"):
            response = await self.fetch_async("/read")
        self.assertEqual(response.code, 503)
        (event,) = self.events
        self.assertEqual((event["operation"], event["outcome"]), ("load", "unavailable"))
        self.assertGreaterEqual(event["seconds"], 0.2)


class SlowStore(MemoryStore):
    """A store that takes 50 ms to answer a read, as one across a network would."""

    async def get(self, key: str) -> Any:  # type: ignore[override]
        await asyncio.sleep(0.05)
        return await super().get(key)


class TestStoreEventsOfAStoreThatMustBeWaitedFor(MetricsCase):
    def make_store(self) -> Store:
        return SlowStore(clock=self.clock)

    def test_the_time_is_the_stores_own(self) -> None:
        self.fetch("/count")
        self.calls()
        self.fetch("/count")
        load, save = self.events
        self.assertEqual((load["operation"], save["operation"]), ("load", "save"))
        self.assertGreaterEqual(load["seconds"], 0.05)
        self.assertLess(load["seconds"], 0.5)
        self.assertLess(save["seconds"], 0.05)


class TestStoreEventsOnRedis(RedisServerCase, MetricsCase):
    """The same events from a real redis-server: the lifecycle times every store alike."""

    def make_store(self) -> Store:
        self.redis = RedisStore.from_url(self.redis_server.url)
        return self.redis

    def tearDown(self) -> None:
        self.io_loop.run_sync(self.redis.close)
        super().tearDown()

    @gen_test
    async def test_loads_and_saves_are_timed(self) -> None:
        await self.fetch_async("/count")
        await self.fetch_async("/count")
        await self.fetch_async("/logout")
        self.assertEqual(
            [(e["operation"], e["outcome"], e["store"]) for e in self.events],
            [("save", "ok", "RedisStore"), ("load", "ok", "RedisStore"),
             ("save", "ok", "RedisStore"), ("load", "ok", "RedisStore"),
             ("destroy", "ok", "RedisStore")],
        )
        self.assertTrue(all(0 < e["seconds"] < 1 for e in self.events))


# -- the guide's wiring, with the real client libraries --------------------------------


class GuideWiringCase(SessionTestCase):
    """The application is built from a snippet of the guide, run with ``store`` given."""

    heading = ""

    def get_handlers(self) -> list[Any]:
        return [(r"/count", Counter), (r"/read", Read)]

    def snippet(self) -> str:
        return guide_snippet(self.heading)

    def get_app(self) -> tornado.web.Application:
        self.guide: dict[str, Any] = {"store": self.store}
        exec(compile(self.snippet(), str(GUIDE), "exec"), self.guide)
        # The guide's options, with a short wait for a store that went away.
        options = dataclasses.replace(self.guide["options"], reconnect_timeout=0.2)
        return tornado.web.Application(
            [*self.get_handlers(), *self.more_handlers()],
            cookie_secret="metrics-test-secret-" + "x" * 32, session=options,
        )

    def more_handlers(self) -> list[Any]:
        return []


class TestPrometheusWiring(GuideWiringCase):
    heading = "Prometheus"

    def more_handlers(self) -> list[Any]:
        return [(r"/metrics", self.guide["Metrics"])]

    def tearDown(self) -> None:
        for name in ("STORE_SECONDS", "STORE_OUTAGES"):
            prometheus_client.REGISTRY.unregister(self.guide[name])
        super().tearDown()

    def scrape(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        response = self.fetch("/metrics", cookies=False)
        self.assertEqual(response.code, 200)
        self.assertTrue(response.headers["Content-Type"].startswith("text/plain"))
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.body.decode())
            for sample in family.samples
            if sample.name.startswith("tornado_session_")
        }

    def test_store_calls_become_a_histogram_by_operation_and_outcome(self) -> None:
        for _ in range(3):
            self.fetch("/count")
        self.fetch("/read")
        self.io_loop.run_sync(self.store.clear)  # type: ignore[union-attr]
        self.fetch("/read")
        metrics = self.scrape()
        count = "tornado_session_store_seconds_count"
        self.assertEqual(metrics[(count, (("operation", "save"), ("outcome", "ok")))], 3)
        self.assertEqual(metrics[(count, (("operation", "load"), ("outcome", "ok")))], 3)
        self.assertEqual(metrics[(count, (("operation", "load"), ("outcome", "miss")))], 1)
        total = metrics[("tornado_session_store_seconds_sum",
                         (("operation", "load"), ("outcome", "ok")))]
        self.assertGreater(total, 0)
        self.assertLess(total, 1)

    @gen_test
    async def test_outages_are_counted_and_unavailable_calls_labelled(self) -> None:
        await self.fetch_async("/count")
        assert isinstance(self.store, MemoryStore)
        await self.store.close()  # emits disconnect
        with ExpectLog("tornado_session.mixin", ".*answered 503"):
            self.assertEqual((await self.fetch_async("/read")).code, 503)
        await self.store.open()
        text = prometheus_client.generate_latest().decode()
        self.assertIn("tornado_session_store_disconnects_total 1.0", text)
        self.assertRegex(
            text, r'tornado_session_store_seconds_count\{operation="load",'
                  r'outcome="unavailable"\} 1.0')



class TestStatsdWiring(GuideWiringCase):
    heading = "statsd"

    def setUp(self) -> None:
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.udp.settimeout(2)
        super().setUp()

    def tearDown(self) -> None:
        super().tearDown()
        self.guide["stats"].close()
        self.udp.close()

    def snippet(self) -> str:
        text = super().snippet()
        assert 'StatsClient("localhost", 8125' in text
        port = self.udp.getsockname()[1]
        return text.replace('StatsClient("localhost", 8125', f'StatsClient("127.0.0.1", {port}')

    def received(self, count: int) -> list[str]:
        datagrams = []
        deadline = time.monotonic() + 2
        while len(datagrams) < count and time.monotonic() < deadline:
            datagrams.append(self.udp.recv(4096).decode())
        return datagrams

    def test_store_calls_are_sent_as_timings_in_milliseconds(self) -> None:
        self.fetch("/count")
        self.fetch("/count")
        datagrams = self.received(3)
        names = [line.split(":", 1)[0] for line in datagrams]
        self.assertEqual(names, ["myapp.session.store.save.ok", "myapp.session.store.load.ok",
                                 "myapp.session.store.save.ok"])
        for line in datagrams:
            value, kind = line.split(":", 1)[1].split("|")
            self.assertEqual(kind, "ms")
            self.assertLess(float(value), 1000)

    @gen_test
    async def test_an_outage_is_counted(self) -> None:
        await self.fetch_async("/count")
        assert isinstance(self.store, MemoryStore)
        await self.store.close()
        with ExpectLog("tornado_session.mixin", ".*answered 503"):
            self.assertEqual((await self.fetch_async("/read")).code, 503)
        await self.store.open()
        datagrams = self.received(3)
        self.assertEqual([line.split(":", 1)[0] for line in datagrams],
                         ["myapp.session.store.save.ok", "myapp.session.store.disconnect",
                          "myapp.session.store.load.unavailable"])
        self.assertEqual(datagrams[1], "myapp.session.store.disconnect:1|c")
