"""``Vary: Cookie`` on every response whose handler used the session, however it got it."""

from __future__ import annotations

from typing import Any

import tornado.web

from tests.base import SessionTestCase
from tornado_session import SessionMixin


class ReadsLoadedSession(SessionMixin, tornado.web.RequestHandler):
    """Uses the session that ``load_session()`` returns, never ``self.session``."""

    async def get(self) -> None:
        session = await self.load_session()
        self.write(str(session.get("views", 0)))


class Counter(SessionMixin, tornado.web.RequestHandler):
    def get(self) -> None:
        self.session["views"] = self.session.get("views", 0) + 1
        self.write(str(self.session["views"]))


class TestVaryWithLoadSession(SessionTestCase):
    def get_handlers(self) -> list[Any]:
        return [(r"/loaded", ReadsLoadedSession), (r"/count", Counter)]

    def test_a_response_built_from_load_session_varies_on_cookie(self) -> None:
        self.fetch("/count")
        response = self.fetch("/loaded")
        self.assertEqual(response.body, b"1")
        self.assertIn("Cookie", response.headers.get("Vary", ""))

    def test_a_new_visitor_read_through_load_session_varies_on_cookie_too(self) -> None:
        response = self.fetch("/loaded", cookies=False)
        self.assertEqual(response.body, b"0")
        self.assertIn("Cookie", response.headers.get("Vary", ""))


class TestVaryWithLazyLoadSession(TestVaryWithLoadSession):
    def session_options(self) -> dict[str, Any]:
        return {"lazy": True}

    def get_handlers(self) -> list[Any]:
        return [(r"/loaded", ReadsLoadedSession), (r"/count", LazyCounter)]


class LazyCounter(SessionMixin, tornado.web.RequestHandler):
    async def get(self) -> None:
        await self.load_session()
        self.session["views"] = self.session.get("views", 0) + 1
        self.write(str(self.session["views"]))
