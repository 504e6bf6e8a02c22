"""Parallel requests of one session that change the same key: what is kept, what is lost.

``python -m benchmarks.parallel [--stores memory redis mongo] [--clients 8] [--requests 500]``
starts a Tornado server in-process on a free port (RedisStore: against a
redis-server of our own; MongoStore: against the tests' wire server) and
``--clients`` clients that share one session cookie, each sending
``--requests`` requests one after the other, all clients at once.  For each
path it prints how many increments were sent, how many the session kept, and
how many ``session:conflict`` events the requests raised:

``/example``     the counter example's handler (`examples.counter`), as it is on this tree
``/rmw``         ``session["views"] = session.get("views", 0) + 1``, with an ``await``
                 between the read and the end of the request, as a handler that asks a
                 database something does
``/increment``   ``session.increment("views")`` with the same ``await`` (where it exists)
``/keys``        each client increments a key of its own by read-modify-write, with the
                 same ``await``: different keys, which must all survive

Counts, not times: the machine's load changes how often requests interleave,
not whether a write is lost.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.cookies
import sys
from collections.abc import Iterator
from typing import Any

import orjson
import tornado.web
from tornado.httpclient import AsyncHTTPClient
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port

from examples import counter
from tornado_session import Session, SessionMixin, SessionOptions
from tornado_session.stores import MemoryStore, MongoStore, RedisStore, Store

COOKIE = "tornado.sess"


class ReadModifyWrite(SessionMixin, tornado.web.RequestHandler):
    async def get(self) -> None:
        views = self.session.get("views", 0)
        await asyncio.sleep(0)  # the handler asks a database something
        self.session["views"] = views + 1
        self.write("ok")


class Increment(SessionMixin, tornado.web.RequestHandler):
    async def get(self) -> None:
        self.session.increment("views")  # type: ignore[attr-defined,unused-ignore]
        await asyncio.sleep(0)
        self.write("ok")


class OwnKey(SessionMixin, tornado.web.RequestHandler):
    async def get(self, client: str) -> None:
        name = f"views-{client}"
        views = self.session.get(name, 0)
        await asyncio.sleep(0)
        self.session[name] = views + 1
        self.write("ok")


class Dump(SessionMixin, tornado.web.RequestHandler):
    def get(self) -> None:
        self.write(orjson.dumps(dict(self.session)))


class Reset(SessionMixin, tornado.web.RequestHandler):
    def get(self) -> None:
        self.session.clear()
        self.session["started"] = True


@contextlib.contextmanager
def backend(kind: str) -> Iterator[str | None]:
    """The URL of a server of our own for ``kind`` (none for memory)."""
    if kind == "memory":
        yield None
    elif kind == "redis":
        from tests.redis_server import RedisServer

        server = RedisServer()
        server.start()
        try:
            yield server.url
        finally:
            server.remove()
    else:
        from tests.mongo_server import MongoWireServer

        wire = MongoWireServer()
        wire.start()
        try:
            yield wire.uri + "/parallel"
        finally:
            wire.close()


def make_store(kind: str, url: str | None) -> Store:
    if kind == "memory":
        return MemoryStore()
    if kind == "redis":
        assert url
        return RedisStore.from_url(url)
    assert url
    return MongoStore.from_uri(url)


def cookie_of(response: Any) -> str | None:
    for header in response.headers.get_list("Set-Cookie"):
        jar: http.cookies.SimpleCookie = http.cookies.SimpleCookie()
        jar.load(header)
        if COOKIE in jar:
            return jar[COOKIE].coded_value
    return None


async def measure(kind: str, url: str | None, clients: int, requests: int) -> list[str]:
    store = make_store(kind, url)
    options = SessionOptions(store=store)
    conflicts: list[dict[str, Any]] = []
    options.events.on("session:conflict", conflicts.append)
    app = counter.make_app(session=options)
    handlers: list[Any] = [(r"/rmw", ReadModifyWrite), (r"/keys/(\d+)", OwnKey),
                           (r"/dump", Dump), (r"/reset", Reset)]
    paths = ["/example", "/rmw"]
    if hasattr(Session, "increment"):
        handlers.append((r"/increment", Increment))
        paths.append("/increment")
    paths.append("/keys")
    handlers.append((r"/example", counter.CounterHandler))
    app.add_handlers(r".*", handlers)
    sock, port = bind_unused_port()
    server = HTTPServer(app)
    server.add_sockets([sock])
    http = AsyncHTTPClient(max_clients=clients + 2)
    base = f"http://127.0.0.1:{port}"
    lines = []
    try:
        for path in paths:
            first = await http.fetch(base + "/reset")
            start = cookie_of(first)
            assert start is not None
            conflicts.clear()
            sent = [0] * clients

            async def client(number: int, path: str = path, start: str = start,
                             sent: list[int] = sent) -> None:
                cookie = start
                target = f"{base}/keys/{number}" if path == "/keys" else base + path
                for _ in range(requests):
                    answer = await http.fetch(target, headers={"Cookie": f"{COOKIE}={cookie}"},
                                              raise_error=False)
                    if answer.code == 200:
                        sent[number] += 1
                    cookie = cookie_of(answer) or cookie

            await asyncio.gather(*(client(n) for n in range(clients)))
            dump = await http.fetch(base + "/dump", headers={"Cookie": f"{COOKIE}={start}"})
            data = orjson.loads(dump.body)
            if path == "/keys":
                kept = sum(data.get(f"views-{n}", 0) for n in range(clients))
            else:
                kept = data.get("views", 0)
            total = sum(sent)
            lines.append(
                f"{kind:7} {path:11} sent {total:6,}  kept {kept:6,}  lost {total - kept:6,}"
                f"  session:conflict {len(conflicts):6,}"
            )
            print(lines[-1], flush=True)
    finally:
        http.close()
        server.stop()
        await store.close()
    return lines


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", nargs="+", default=["memory", "redis", "mongo"],
                        choices=["memory", "redis", "mongo"])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args(argv)
    for kind in args.stores:
        with backend(kind) as url:
            asyncio.run(measure(kind, url, args.clients, args.requests))


if __name__ == "__main__":
    main(sys.argv[1:])
