"""The koa-session view counter: ``GET /`` answers how many times this session has been here.

Run it with ``python -m examples.counter --port=8888``; it keeps sessions in a
MemoryStore (``--store=cookie`` keeps them in the signed cookie instead).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from typing import Any

import tornado.httpserver
import tornado.log
import tornado.netutil
import tornado.options
import tornado.web

from tornado_session import SessionMixin, SessionOptions
from tornado_session.stores import MemoryStore

#: This example's flags (its own parser, so that importing it next to another
#: example does not define ``--port`` twice).
options = tornado.options.OptionParser()
tornado.log.define_logging_options(options)
options.define("port", default=8888, type=int, help="port to listen on (0: any free port)")
options.define("address", default="127.0.0.1", help="address to listen on")
options.define("store", default="memory", help="memory or cookie")
options.define("cookie_secret", default="", help="cookie secret (default: random)")

log = logging.getLogger("examples.counter")


class CounterHandler(SessionMixin, tornado.web.RequestHandler):
    async def get(self) -> None:
        # Not `session["views"] = session.get("views", 0) + 1`: parallel requests
        # of one session would each write their own total, and all but one be lost.
        self.session.increment("views")
        await self.commit_session()  # now session["views"] is the store's total
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.write(str(self.session["views"]))


def make_app(**settings: Any) -> tornado.web.Application:
    settings.setdefault("cookie_secret", secrets.token_urlsafe(32))
    settings.setdefault("session", SessionOptions(store=MemoryStore()))
    app = tornado.web.Application([(r"/", CounterHandler)], **settings)
    SessionMixin.configure_application(app)
    return app


async def main() -> None:
    options.parse_command_line()
    if options.store not in ("memory", "cookie"):
        raise SystemExit(f"--store={options.store!r}: expected memory or cookie")
    store = None if options.store == "cookie" else MemoryStore()
    app = make_app(
        cookie_secret=options.cookie_secret or secrets.token_urlsafe(32),
        session=SessionOptions(store=store),
    )
    sockets = tornado.netutil.bind_sockets(options.port, options.address)
    tornado.httpserver.HTTPServer(app).add_sockets(sockets)
    port = sockets[0].getsockname()[1]
    log.info("counter example on http://%s:%d/ (%s sessions)", options.address, port,
             options.store)
    await asyncio.Event().wait()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
