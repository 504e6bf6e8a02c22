"""One Tornado process of the multi-process tests: the load app on a shared store.

Run by tests/nginx.py's `TornadoProcesses` as ``python -m tests.multiprocess_app
--port P --store redis|cluster|mongo --url URL --users N``: the login example
with ``N`` accounts (tests/load_users.py `load_app`), its store built from the
URL, served with ``xheaders=True`` as behind nginx.  Added routes:

* ``GET /regenerate``: a logged-in session gets a new id, same data;
* ``GET /served``: how many requests this process has answered, so the test can
  tell that the balancer spread them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any

import tornado.web

from examples import login
from tests.load_users import load_app
from tornado_session.stores import MongoStore, RedisStore, Store

SERVED = [0]


class Regenerate(login.BaseHandler):
    async def get(self) -> None:
        if not self.current_user:
            raise tornado.web.HTTPError(403)
        await self.regenerate_session()
        self.write(str(self.session.get("n", 0)))


class Served(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write({"pid": os.getpid(), "served": SERVED[0]})


class CountServed(tornado.web.OutputTransform):
    """Counts every answer this process gives (for `Served`)."""

    def transform_first_chunk(self, status_code: int, headers: Any, chunk: bytes,
                              finishing: bool) -> tuple[int, Any, bytes]:
        SERVED[0] += 1
        return status_code, headers, chunk


def make_store(kind: str, url: str) -> Store:
    if kind == "redis":
        return RedisStore.from_url(url)
    if kind == "cluster":
        return RedisStore.from_url(url, cluster=True)
    if kind == "mongo":
        return MongoStore.from_uri(url)
    raise SystemExit(f"--store {kind!r}: expected redis, cluster or mongo")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--store", required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--users", type=int, default=10)
    args = parser.parse_args()
    app = await load_app(make_store(args.store, args.url), args.users)
    app.wildcard_router.add_rules(
        [(r"/regenerate", Regenerate), (r"/served", Served)]
    )
    app.transforms.append(CountServed)
    app.listen(args.port, address="127.0.0.1", xheaders=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
