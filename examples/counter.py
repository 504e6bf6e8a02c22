"""The koa-session view counter: ``GET /`` answers how many times this session has been here.

Run it with ``python -m examples.counter --port=8888``; it keeps sessions in a
MemoryStore (``--store=cookie`` keeps them in the signed cookie instead).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any

import tornado.options
import tornado.web

from tornado_session import SessionMixin, SessionOptions
from tornado_session.stores import MemoryStore

tornado.options.define("port", default=8888, help="port to listen on")
tornado.options.define("store", default="memory", help="memory or cookie")
tornado.options.define("cookie_secret", default="", help="cookie secret (default: random)")

log = logging.getLogger("examples.counter")


class CounterHandler(SessionMixin, tornado.web.RequestHandler):
    def get(self) -> None:
        self.session["views"] = self.session.get("views", 0) + 1
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.write(str(self.session["views"]))


def make_app(**settings: Any) -> tornado.web.Application:
    settings.setdefault("cookie_secret", secrets.token_urlsafe(32))
    settings.setdefault("session", SessionOptions(store=MemoryStore()))
    app = tornado.web.Application([(r"/", CounterHandler)], **settings)
    SessionMixin.configure_application(app)
    return app


async def main() -> None:
    tornado.options.parse_command_line()
    opts = tornado.options.options
    store = None if opts.store == "cookie" else MemoryStore()
    app = make_app(
        cookie_secret=opts.cookie_secret or secrets.token_urlsafe(32),
        session=SessionOptions(store=store),
    )
    app.listen(opts.port)
    log.info("counter example on http://localhost:%d/ (%s sessions)", opts.port, opts.store)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
