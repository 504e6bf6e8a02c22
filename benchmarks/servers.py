"""The benchmarked servers: one process per library and store, on one loopback port.

``python -m benchmarks.servers KIND --port PORT [--redis-url URL] [--mongo-uri URI]``
prints ``READY`` once it listens.  Every kind answers the same paths, so the
runner drives them alike:

``/bare``        a plain handler (only the ``*-bare`` kinds: no session library loaded)
``/unused``      the session layer is installed, the handler never touches the session
``/read``        reads the seeded session and answers its ``name``
``/changed``     increments ``views`` (a write every request)
``/regenerate``  new id, same data, old record destroyed (tornado-session only)
``/seed``        stores `benchmarks.data.SEED` in a new session and sets its cookie

Each handler does the least its library allows: the difference to ``/bare``
is what the session layer costs.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from .data import COOKIE_SECRET, ENCRYPTION_KEY, FERNET_KEY, SEED

Starter = Callable[[argparse.Namespace], Awaitable[None]]


# -- Tornado: bare, tornado-session, torndsession, pycket -----------------------


def _tornado_listen(handlers: list[Any], port: int, **settings: Any) -> None:
    import tornado.web

    app = tornado.web.Application(handlers, **settings)
    app.listen(port, address="127.0.0.1")


async def tornado_bare(args: argparse.Namespace) -> None:
    import tornado.web

    class Bare(tornado.web.RequestHandler):
        def get(self) -> None:
            self.write("ok")

    _tornado_listen([(r"/bare", Bare)], args.port)


def tornado_session_app(store: Any, **options: Any) -> Any:
    """The tornado-session application (also driven in-process by `benchmarks.counting`)."""
    import tornado.web

    from tornado_session import SessionMixin, SessionOptions

    class Unused(SessionMixin, tornado.web.RequestHandler):
        def get(self) -> None:
            self.write("ok")

    class Read(SessionMixin, tornado.web.RequestHandler):
        def get(self) -> None:
            self.write(self.session.get("name", "anonymous"))

    class Changed(SessionMixin, tornado.web.RequestHandler):
        def get(self) -> None:
            self.session["views"] = self.session.get("views", 0) + 1
            self.write("ok")

    class Regenerate(SessionMixin, tornado.web.RequestHandler):
        async def get(self) -> None:
            await self.regenerate_session()
            self.write("ok")

    class Seed(SessionMixin, tornado.web.RequestHandler):
        async def get(self) -> None:
            await self.load_session()  # a no-op unless lazy=True
            self.session.update(SEED)
            self.write("ok")

    return tornado.web.Application(
        [(r"/unused", Unused), (r"/read", Read), (r"/changed", Changed),
         (r"/regenerate", Regenerate), (r"/seed", Seed)],
        cookie_secret=COOKIE_SECRET, session=SessionOptions(store=store, **options),
    )


async def _tornado_session(args: argparse.Namespace, store: Any, **options: Any) -> None:
    tornado_session_app(store, **options).listen(args.port, address="127.0.0.1")


def _encrypted(store: Any) -> Any:
    """``store`` with its data encrypted at rest (`EncryptedStore`, the key of `ENCRYPTION_KEY`)."""
    from tornado_session.stores import EncryptedStore

    return EncryptedStore(store, keys={1: ENCRYPTION_KEY}, readable=("user_id",))


async def ts_cookie(args: argparse.Namespace) -> None:
    await _tornado_session(args, None)


async def ts_encrypted(args: argparse.Namespace) -> None:
    await _tornado_session(args, None, encryption_keys={1: ENCRYPTION_KEY})


async def ts_memory_enc(args: argparse.Namespace) -> None:
    from tornado_session.stores import MemoryStore

    await _tornado_session(args, _encrypted(MemoryStore()))


async def ts_redis_enc(args: argparse.Namespace) -> None:
    from tornado_session.stores import RedisStore

    await _tornado_session(args, _encrypted(RedisStore.from_url(args.redis_url)))


async def ts_mongo_enc(args: argparse.Namespace) -> None:
    from tornado_session.stores import MongoStore

    await _tornado_session(args, _encrypted(MongoStore.from_uri(args.mongo_uri)))


async def ts_memory(args: argparse.Namespace) -> None:
    from tornado_session.stores import MemoryStore

    await _tornado_session(args, MemoryStore())


async def ts_redis(args: argparse.Namespace) -> None:
    from tornado_session.stores import RedisStore

    await _tornado_session(args, RedisStore.from_url(args.redis_url))


async def ts_mongo(args: argparse.Namespace) -> None:
    from tornado_session.stores import MongoStore

    await _tornado_session(args, MongoStore.from_uri(args.mongo_uri))


def _torndsession(args: argparse.Namespace, driver: str, driver_settings: dict[str, Any]) -> None:
    import tornado.web
    from torndsession.sessionhandler import SessionBaseHandler

    # SessionBaseHandler saves a dirty session in on_finish (its documented way).
    class Unused(SessionBaseHandler):  # type: ignore[misc]
        def get(self) -> None:
            self.write("ok")

    class Read(SessionBaseHandler):  # type: ignore[misc]
        def get(self) -> None:
            self.write(self.session.get("name", "anonymous"))

    class Changed(SessionBaseHandler):  # type: ignore[misc]
        def get(self) -> None:
            self.session["views"] = (self.session.get("views") or 0) + 1
            self.write("ok")

    class Seed(SessionBaseHandler):  # type: ignore[misc]
        def get(self) -> None:
            for key, value in SEED.items():
                self.session[key] = value
            self.write("ok")

    app = tornado.web.Application(
        [(r"/unused", Unused), (r"/read", Read), (r"/changed", Changed), (r"/seed", Seed)],
        cookie_secret=COOKIE_SECRET,
        session={"driver": driver, "driver_settings": driver_settings,
                 "force_persistence": False, "cache_driver": True},
    )
    if driver == "memory":
        driver_settings["host"] = app  # the memory driver keeps sessions on the application
    app.listen(args.port, address="127.0.0.1")


async def torndsession_memory(args: argparse.Namespace) -> None:
    _torndsession(args, "memory", {"host": None})


async def torndsession_redis(args: argparse.Namespace) -> None:
    host, port = _host_port(args.redis_url)
    _torndsession(args, "redis", {"host": host, "port": port, "db": 0})


async def pycket_redis(args: argparse.Namespace) -> None:
    import tornado.web
    from pycket.session import SessionMixin as PycketMixin

    class Unused(PycketMixin, tornado.web.RequestHandler):  # type: ignore[misc]
        def get(self) -> None:
            self.write("ok")

    class Read(PycketMixin, tornado.web.RequestHandler):  # type: ignore[misc]
        def get(self) -> None:
            self.write(self.session.get("name", "anonymous"))

    class Changed(PycketMixin, tornado.web.RequestHandler):  # type: ignore[misc]
        def get(self) -> None:
            self.session["views"] = (self.session.get("views") or 0) + 1
            self.write("ok")

    class Seed(PycketMixin, tornado.web.RequestHandler):  # type: ignore[misc]
        def get(self) -> None:
            for key, value in SEED.items():
                self.session[key] = value
            self.write("ok")

    host, port = _host_port(args.redis_url)
    _tornado_listen(
        [(r"/unused", Unused), (r"/read", Read), (r"/changed", Changed), (r"/seed", Seed)],
        args.port, cookie_secret=COOKIE_SECRET,
        pycket={"engine": "redis", "storage": {"host": host, "port": port, "db_sessions": 2}},
    )


# -- aiohttp: bare, aiohttp-session ------------------------------------------------


async def _aiohttp_listen(app: Any, port: int) -> None:
    from aiohttp import web

    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()


async def aiohttp_bare(args: argparse.Namespace) -> None:
    from aiohttp import web

    async def bare(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/bare", bare)
    await _aiohttp_listen(app, args.port)


async def _aiohttp_session(args: argparse.Namespace, storage: Any) -> None:
    import aiohttp_session
    from aiohttp import web

    async def unused(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def read(request: web.Request) -> web.Response:
        session = await aiohttp_session.get_session(request)
        return web.Response(text=session.get("name", "anonymous"))

    async def changed(request: web.Request) -> web.Response:
        session = await aiohttp_session.get_session(request)
        session["views"] = session.get("views", 0) + 1
        return web.Response(text="ok")

    async def seed(request: web.Request) -> web.Response:
        session = await aiohttp_session.new_session(request)
        session.update(SEED)
        return web.Response(text="ok")

    app = web.Application()
    aiohttp_session.setup(app, storage)
    for path, handler in (("/unused", unused), ("/read", read), ("/changed", changed),
                          ("/seed", seed)):
        app.router.add_get(path, handler)
    await _aiohttp_listen(app, args.port)


async def aiohttp_simple(args: argparse.Namespace) -> None:
    from aiohttp_session import SimpleCookieStorage

    await _aiohttp_session(args, SimpleCookieStorage())


async def aiohttp_fernet(args: argparse.Namespace) -> None:
    from aiohttp_session.cookie_storage import EncryptedCookieStorage

    await _aiohttp_session(args, EncryptedCookieStorage(FERNET_KEY.decode()))


async def aiohttp_redis(args: argparse.Namespace) -> None:
    import redis.asyncio
    from aiohttp_session.redis_storage import RedisStorage

    await _aiohttp_session(args, RedisStorage(redis.asyncio.Redis.from_url(args.redis_url)))


def _host_port(url: str) -> tuple[str, int]:
    netloc = url.split("://", 1)[1].split("/", 1)[0]
    host, _, port = netloc.rpartition(":")
    return host, int(port)


KINDS: dict[str, Starter] = {
    "tornado-bare": tornado_bare,
    "ts-cookie": ts_cookie,
    "ts-memory": ts_memory,
    "ts-redis": ts_redis,
    "ts-mongo": ts_mongo,
    "ts-encrypted": ts_encrypted,
    "ts-memory-enc": ts_memory_enc,
    "ts-redis-enc": ts_redis_enc,
    "ts-mongo-enc": ts_mongo_enc,
    "torndsession-memory": torndsession_memory,
    "torndsession-redis": torndsession_redis,
    "pycket-redis": pycket_redis,
    "aiohttp-bare": aiohttp_bare,
    "aiohttp-simple": aiohttp_simple,
    "aiohttp-fernet": aiohttp_fernet,
    "aiohttp-redis": aiohttp_redis,
}


async def serve(args: argparse.Namespace) -> None:
    await KINDS[args.kind](args)
    print("READY", flush=True)
    if args.exit_after:
        await asyncio.sleep(args.exit_after)
    else:
        await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("kind", choices=sorted(KINDS))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--mongo-uri", default="mongodb://127.0.0.1:27017/bench")
    parser.add_argument("--exit-after", type=float, default=0.0,
                        help="stop after this many seconds (for profiling runs)")
    args = parser.parse_args(argv)
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
