"""What "log out everywhere" costs with 100,000 sessions in the store: scan against user index.

``python -m benchmarks.users [--sessions 100000] [--repeats 5] [--only memory redis mongo]``

Two stores of each kind get ``--sessions`` sessions each: ten belong to user 42, the rest to
other users (one each).

* **scan** is a store as it was before the user index (no ``user_key``; sessions written without
  an owner): ``destroy_all(user_id=42)`` reads every session of the store and compares;
* **index** is a store built with ``user_key="user_id"`` whose sessions were written the way the
  lifecycle writes a user's session, with its `Owner`: ``destroy_all(user_id=42)`` asks the index.

Each repeat puts user 42's ten sessions back first.  The figure is the wall-clock time of the call
(the server's work included for Redis and MongoDB), median of the repeats.  Redis is our own
``redis-server`` on a free port (tests/redis_server.py); MongoDB is the wire server of the tests
(mongoeco in ``.venv-mongo``, in-memory and in Python: its figures say how the two ways scale, not
what a real ``mongod`` takes).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from tornado_session.stores import MemoryStore, Owner, Store

USER = 42
OWN_SESSIONS = 10
#: How many writes of the seeding run at once (--batch).
BATCH = 500


def owner(store: Store, user: int) -> dict[str, Owner]:
    """The ``owner`` argument of a write of ``user``'s session (none without an index)."""
    if store.user_key is None:
        return {}
    now = time.time()
    return {"owner": Owner(user, now, now, "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0",
                           "203.0.113.0/24")}


async def seed(store: Store, sessions: int, batch: int) -> None:
    """``sessions`` sessions: user 42's ten, and one each for users 1000, 1001, ..."""
    others = sessions - OWN_SESSIONS
    for start in range(0, others, batch):
        await asyncio.gather(*(
            store.set(f"other-{i}", {"user_id": 1000 + i, "cart": [1, 2, 3]}, 3600,
                      **owner(store, 1000 + i))
            for i in range(start, min(start + batch, others))
        ))
    await seed_user(store)


async def seed_user(store: Store) -> None:
    await asyncio.gather(*(
        store.set(f"user-{i}", {"user_id": USER, "cart": []}, 3600, **owner(store, USER))
        for i in range(OWN_SESSIONS)
    ))


async def measure(
    stores: dict[str, Store], sessions: int, repeats: int, batch: int = BATCH
) -> dict[str, float]:
    """The median time of ``destroy_all(user_id=42)`` on each store, by name."""
    for store in stores.values():
        await store.clear()
        await seed(store, sessions, batch)
        assert await store.count() == sessions, await store.count()
    figures: dict[str, list[float]] = {way: [] for way in stores}
    for _ in range(repeats):
        for way, store in stores.items():
            await seed_user(store)
            started = time.perf_counter()
            destroyed = await store.destroy_all(user_id=USER)
            figures[way].append(time.perf_counter() - started)
            assert destroyed == OWN_SESSIONS, (way, destroyed)
    for store in stores.values():
        await store.clear()
    return {way: statistics.median(values) for way, values in figures.items()}


@asynccontextmanager
async def memory_store() -> AsyncIterator[dict[str, Store]]:
    yield {"scan": MemoryStore(max_entries=None),
           "index": MemoryStore(max_entries=None, user_key="user_id")}


@asynccontextmanager
async def redis_store() -> AsyncIterator[dict[str, Store]]:
    from tests.redis_server import RedisServer
    from tornado_session.stores import RedisStore

    server = RedisServer()
    server.start()
    stores: dict[str, Store] = {
        "scan": RedisStore.from_url(server.url, namespace="scan:", timeout=60),
        "index": RedisStore.from_url(server.url, namespace="index:", user_key="user_id",
                                     timeout=60),
    }
    try:
        yield stores
    finally:
        for store in stores.values():
            await store.close()
        server.remove()


@asynccontextmanager
async def mongo_store() -> AsyncIterator[dict[str, Store]]:
    from tests.mongo_server import MongoWireServer
    from tornado_session.stores import MongoStore

    server = MongoWireServer()
    server.start()
    stores: dict[str, Store] = {
        "scan": MongoStore.from_uri(server.uri, collection="scan"),
        "index": MongoStore.from_uri(server.uri, collection="index", user_key="user_id"),
    }
    try:
        yield stores
    finally:
        for store in stores.values():
            await store.close()
        server.close()


STORES = {"memory": memory_store, "redis": redis_store, "mongo": mongo_store}


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", nargs="*", choices=list(STORES), default=list(STORES))
    parser.add_argument("--batch", type=int, default=BATCH, help="concurrent writes when seeding")
    args = parser.parse_args(argv)
    print(f"destroy_all(user_id=42): {OWN_SESSIONS} of {args.sessions:,} sessions, "
          f"median of {args.repeats}")
    print(f"{'store':8} {'scan':>10} {'index':>10} {'ratio':>8}")
    for name in args.only:
        async with STORES[name]() as stores:
            result = await measure(stores, args.sessions, args.repeats, args.batch)
        scan, index = result["scan"], result["index"]
        print(f"{name:8} {scan * 1000:>8.1f}ms {index * 1000:>8.2f}ms {scan / index:>7.0f}x",
              flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
