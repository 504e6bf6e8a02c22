"""The session layer's own cost, in-process: the handler path without sockets or HTTP parsing.

A request object with an in-memory connection goes through Tornado's routing and
``RequestHandler._execute`` (prepare, the handler, finish, the commit), as over
HTTP, ``N`` times in a row; the best of several rounds is kept, so other work on
the machine has little effect.  This is how the hot path was tuned: a change of
a microsecond shows here, where wrk's numbers move by more than that from run
to run.  ``python -m benchmarks.inprocess`` prints a table; `run` returns it
for results.json.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from typing import Any

import tornado.web
from tornado.concurrent import Future
from tornado.httputil import HTTPConnection, HTTPHeaders, HTTPServerRequest, RequestStartLine

from tornado_session.stores import MemoryStore

from .data import ENCRYPTION_KEY, READ_ANSWER
from .servers import tornado_session_app

ROUNDS = 9
N = 1000


class Connection(HTTPConnection):
    """Swallows the response; remembers the last Set-Cookie and status."""

    def __init__(self) -> None:
        self.cookie: str | None = None
        self.status = 0
        self.body = b""
        self.context = _Context()
        self.finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def set_close_callback(self, callback: Callable[[], None] | None) -> None:
        pass

    def write_headers(self, start_line: Any, headers: HTTPHeaders,
                      chunk: bytes | None = None) -> Future[None]:
        self.status = start_line.code
        cookie = headers.get("Set-Cookie")
        if cookie:
            self.cookie = cookie.split(";", 1)[0]
        self.body = chunk or b""
        return _done()

    def write(self, chunk: bytes) -> Future[None]:
        self.body += chunk
        return _done()

    def finish(self) -> None:
        self.finished.set_result(None)


class _Context:
    remote_ip = "127.0.0.1"
    protocol = "http"
    address = ("127.0.0.1", 1)
    trusted_downstream: set[str] = set()


def _done() -> Future[None]:
    future: Future[None] = Future()
    future.set_result(None)
    return future


async def fetch(app: tornado.web.Application, path: str, cookie: str | None) -> Connection:
    """One request through the application's routing and handler."""
    connection = Connection()
    headers = HTTPHeaders({"Host": "localhost"})
    if cookie:
        headers["Cookie"] = cookie
    start_line = RequestStartLine("GET", path, "HTTP/1.1")
    req = HTTPServerRequest(start_line=start_line, headers=headers, connection=connection)
    app.find_handler(req).execute()
    await connection.finished
    return connection


class Bare(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write("ok")


class Target:
    """One path of one application; `round` times ``N`` requests to it."""

    def __init__(self, app: tornado.web.Application, path: str, cookie: str | None,
                 chain: bool = False) -> None:
        self.app, self.path, self.cookie, self.chain = app, path, cookie, chain
        self.best = float("inf")

    async def round(self) -> None:
        gc.collect()
        started = time.thread_time()
        for _ in range(N):
            connection = await fetch(self.app, self.path, self.cookie)
            if self.chain:  # a regenerated session's old cookie is dead: use the new one
                self.cookie = connection.cookie
        self.best = min(self.best, (time.thread_time() - started) / N * 1e6)


def _setups() -> list[tuple[str, Any, dict[str, Any]]]:
    """The applications measured: name, store, options."""
    setups: list[tuple[str, Any, dict[str, Any]]] = [
        ("signed cookie", None, {}), ("MemoryStore", MemoryStore(), {}),
    ]
    try:
        from tornado_session.stores import EncryptedStore

        setups += [
            ("encrypted cookie", None, {"encryption_keys": {1: ENCRYPTION_KEY}}),
            ("MemoryStore, encrypted", EncryptedStore(
                MemoryStore(), keys={1: ENCRYPTION_KEY}, readable=("user_id",)), {}),
        ]
    except Exception as exc:  # no [crypto] extra: the plain rows only
        print(f"encrypted rows skipped: {exc}")
    return setups


async def measure_all() -> dict[str, Any]:
    """Best µs per request of each target over ``ROUNDS`` rounds, the rounds interleaved."""
    targets: dict[tuple[str, str], Target] = {
        ("bare", ""): Target(tornado.web.Application([(r"/bare", Bare)]), "/bare", None),
    }
    for name, store, options in _setups():
        app = tornado_session_app(store, **options)
        cookie = (await fetch(app, "/seed", None)).cookie
        check = await fetch(app, "/read", cookie)
        if check.body.decode() != READ_ANSWER:
            raise RuntimeError(f"{name}: /read answered {check.body!r}")
        for scenario in ("unused", "read", "changed"):
            sent = None if scenario == "unused" else cookie
            targets[(name, scenario)] = Target(app, f"/{scenario}", sent)
        fresh = (await fetch(app, "/seed", None)).cookie
        targets[(name, "regenerate")] = Target(app, "/regenerate", fresh, chain=True)
    for _ in range(ROUNDS):
        for target in targets.values():
            await target.round()
    results: dict[str, Any] = {"bare": round(targets.pop(("bare", "")).best, 2)}
    for (name, scenario), target in targets.items():
        results.setdefault(name, {})[scenario] = round(target.best, 2)
    return results


def run() -> dict[str, Any]:
    return asyncio.run(measure_all())


if __name__ == "__main__":
    found = run()
    bare = found.pop("bare")
    print(f"bare handler: {bare:.2f} µs per request (in-process, best of {ROUNDS} x {N})")
    for store, row in found.items():
        for scenario, us in row.items():
            print(f"{store:14} {scenario:11} {us:7.2f} µs  +{us - bare:6.2f} µs over bare")
