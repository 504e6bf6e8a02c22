"""Store calls per request, counted (not timed) through a wrapper around each real store.

The same application as the timed server (`benchmarks.servers.tornado_session_app`)
runs in-process; a `CountingStore` in front of the real store counts each call
by name.  Also: how many store writes 100 unchanged requests of a rolling
session cause, one second apart (a fake clock), with and without ``touch_after``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPResponse
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port

from tornado_session.stores import Store

from .servers import tornado_session_app

CALLS = ("get", "set", "destroy", "touch")
WRITES = ("set", "touch")


class CountingStore(Store):
    """Passes every call to ``inner`` and counts it by name."""

    def __init__(self, inner: Store) -> None:
        super().__init__(clock=inner.clock)
        self.inner = inner
        self.calls = dict.fromkeys(CALLS, 0)

    @property
    def connected(self) -> bool:
        return self.inner.connected

    async def wait_connected(self, timeout: float) -> bool:
        return await self.inner.wait_connected(timeout)

    # The inner store's awaitables are handed on as they are: a MemoryStore's
    # Ready stays a Ready, so the lifecycle takes the same path as without us.

    def get(self, key: str) -> Awaitable[dict[str, Any] | None]:
        self.calls["get"] += 1
        return self.inner.get(key)

    def set(self, key: str, data: Mapping[str, Any], max_age: float, **kwargs: Any
            ) -> Awaitable[bool]:
        self.calls["set"] += 1
        return self.inner.set(key, data, max_age, **kwargs)

    def destroy(self, key: str) -> Awaitable[bool]:
        self.calls["destroy"] += 1
        return self.inner.destroy(key)

    def touch(self, key: str, max_age: float) -> Awaitable[bool]:
        self.calls["touch"] += 1
        return self.inner.touch(key, max_age)

    async def close(self) -> None:
        await self.inner.close()

    def take(self) -> dict[str, int]:
        """The counts since the last `take`."""
        counts, self.calls = self.calls, dict.fromkeys(CALLS, 0)
        return counts


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Client:
    """Requests to an in-process app, keeping the session cookie as a browser would."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.cookie: str | None = None
        self.http = AsyncHTTPClient()

    async def get(self, path: str, *, cookie: bool = True) -> HTTPResponse:
        headers = {"Cookie": self.cookie} if cookie and self.cookie else {}
        response = await self.http.fetch(f"http://127.0.0.1:{self.port}{path}",
                                          headers=headers, raise_error=False)
        if response.code != 200:
            raise RuntimeError(f"{path} answered {response.code}")
        for header in response.headers.get_list("Set-Cookie"):
            pair = header.split(";", 1)[0]
            if pair.startswith("tornado.sess="):
                self.cookie = pair
        return response


async def _with_app(store: Store, body: Callable[[Client], Any], **options: Any) -> Any:
    sock, port = bind_unused_port()
    server = HTTPServer(tornado_session_app(store, **options))
    server.add_sockets([sock])
    try:
        return await body(Client(port))
    finally:
        server.stop()
        await server.close_all_connections()


async def per_request(make_store: Callable[[], Store]) -> dict[str, dict[str, int]]:
    """Store calls of one request of each scenario."""
    store = CountingStore(make_store())

    async def body(client: Client) -> dict[str, dict[str, int]]:
        found = {}
        await client.get("/seed")
        store.take()
        await client.get("/unused", cookie=False)
        found["unused (no cookie)"] = store.take()
        await client.get("/unused")
        found["unused (cookie sent, lazy=False)"] = store.take()
        await client.get("/read")
        found["read"] = store.take()
        await client.get("/changed")
        found["changed"] = store.take()
        await client.get("/regenerate")
        found["regenerate"] = store.take()
        return found

    try:
        found: dict[str, dict[str, int]] = await _with_app(store, body)
    finally:
        await store.close()

    async def lazy_body(client: Client) -> dict[str, int]:
        await client.get("/seed")
        store.take()
        await client.get("/unused")
        return store.take()

    store = CountingStore(make_store())
    try:
        found["unused (cookie sent, lazy=True)"] = await _with_app(store, lazy_body, lazy=True)
    finally:
        await store.close()
    return found


async def rolling_writes(make_store: Callable[[], Store], touch_after: float | None) -> int:
    """Store writes caused by 100 unchanged requests of a rolling session, 1 s apart."""
    import time

    clock = FakeClock(time.time())
    store = CountingStore(make_store())

    async def body(client: Client) -> int:
        await client.get("/seed")
        store.take()
        writes = 0
        for _ in range(100):
            clock.now += 1
            await client.get("/read")
            counts = store.take()
            writes += sum(counts[name] for name in WRITES)
        return writes

    try:
        writes: int = await _with_app(store, body, rolling=True, touch_after=touch_after,
                                      clock=clock)
    finally:
        await store.close()
    return writes


def store_factories(
    urls: Mapping[str, str], missing: Mapping[str, str | None]
) -> dict[str, Callable[[], Store] | str]:
    """Each store to count, or why it cannot be (``missing``: the runner's reason, by store)."""
    from tornado_session.stores import MemoryStore

    found: dict[str, Callable[[], Store] | str] = {"MemoryStore": MemoryStore}
    for name, why in missing.items():
        if why is not None:
            found[name] = why
        elif name == "RedisStore":
            from tornado_session.stores import RedisStore

            found[name] = lambda: RedisStore.from_url(urls["redis"])
        else:
            from tornado_session.stores import MongoStore

            found[name] = lambda: MongoStore.from_uri(urls["mongo"])
    return found


def run(urls: Mapping[str, str], missing: Mapping[str, str | None], log: Any) -> dict[str, Any]:
    """Count every store's calls; a dict for results.json.

    ``missing`` names the server stores (``RedisStore``, ``MongoStore``) with why each cannot
    be counted, or ``None`` when its server runs.
    """
    results: dict[str, Any] = {}
    for name, factory in store_factories(urls, missing).items():
        if isinstance(factory, str):
            results[name] = {"measured": False, "why": factory}
            continue
        print(f"counting store calls: {name}", file=log, flush=True)
        results[name] = asyncio.run(_count(factory))
    return results


async def _count(factory: Callable[[], Store]) -> dict[str, Any]:
    return {
        "measured": True,
        "per_request": await per_request(factory),
        "rolling_100_writes": {
            "touch_after=None": await rolling_writes(factory, None),
            "touch_after=60": await rolling_writes(factory, 60),
        },
    }
