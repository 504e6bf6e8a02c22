"""The session carried in a header instead of a cookie (koa-session's ``externalKey``).

A handler overrides `SessionMixin.get_session_cookie` and
`SessionMixin.set_session_cookie`; everything else (signature, expiry,
store, regeneration, destroy) works as with the cookie.
"""

from __future__ import annotations

from typing import Any

import tornado.web
from tornado.httpclient import HTTPResponse

from tests.base import COOKIE, SessionTestCase
from tornado_session import SessionMixin
from tornado_session.stores import Store

HEADER = "X-Session"


class HeaderSession(SessionMixin, tornado.web.RequestHandler):
    """API clients send the session back in ``X-Session``; no cookie is set."""

    def get_session_cookie(self) -> tuple[str, ...]:
        return (self.request.headers.get(HEADER, ""),)

    def set_session_cookie(self, value: str, *, max_age: float | None,
                           expires: float | None) -> None:
        self.set_header(HEADER, value)
        self.set_header(HEADER + "-Max-Age", "session" if max_age is None else str(int(max_age)))


class Count(HeaderSession):
    def get(self) -> None:
        self.session["views"] = self.session.get("views", 0) + 1
        self.write(str(self.session["views"]))


class Login(HeaderSession):
    async def post(self) -> None:
        await self.regenerate_session()
        self.session["user"] = "ada"
        self.write("ok")


class Logout(HeaderSession):
    async def post(self) -> None:
        await self.destroy_session()
        self.write("ok")


class HeaderTransportCase(SessionTestCase):
    """A client that keeps the last ``X-Session`` it was given, as a browser keeps a cookie."""

    __test__ = False
    token: str | None = None

    def get_handlers(self) -> list[Any]:
        return [(r"/count", Count), (r"/login", Login), (r"/logout", Logout)]

    def call(self, path: str, method: str = "GET", token: str | None = None) -> HTTPResponse:
        token = self.token if token is None else token
        headers = {} if token is None else {HEADER: token}
        body = "" if method == "POST" else None
        response = self.fetch(path, method=method, body=body, headers=headers, cookies=False)
        if HEADER in response.headers:
            self.token = response.headers[HEADER]
        return response

    def test_the_session_travels_in_the_header_and_no_cookie_is_set(self) -> None:
        first = self.call("/count")
        self.assertEqual(first.body, b"1")
        self.assertTrue(self.token)
        self.assertEqual(first.headers[HEADER + "-Max-Age"], "86400")
        self.assertNotIn("Set-Cookie", first.headers)
        self.assertEqual(self.call("/count").body, b"2")
        self.assertEqual(self.call("/count").body, b"3")

    def test_a_cookie_is_not_read_when_the_header_carries_the_session(self) -> None:
        self.call("/count")
        response = self.fetch("/count", headers={"Cookie": f"{COOKIE}={self.token}"},
                              cookies=False)
        self.assertEqual(response.body, b"1")

    def test_a_tampered_header_value_gives_a_fresh_session(self) -> None:
        self.call("/count")
        self.assertEqual(self.call("/count").body, b"2")
        assert self.token is not None
        tampered = self.token[:-4] + ("AAAA" if not self.token.endswith("AAAA") else "BBBB")
        self.assertEqual(self.call("/count", token=tampered).body, b"1")

    def test_login_regenerates_and_logout_clears_the_header(self) -> None:
        self.call("/count")
        anonymous = self.token
        self.call("/login", method="POST")
        self.assertNotEqual(self.token, anonymous)
        self.assertEqual(self.call("/count").body, b"2")
        logout = self.call("/logout", method="POST")
        self.assertEqual(logout.headers[HEADER], "")
        self.assertEqual(logout.headers[HEADER + "-Max-Age"], "0")
        self.assertEqual(self.call("/count").body, b"1")


class TestHeaderTransportMemoryStore(HeaderTransportCase):
    __test__ = True

    def test_the_old_id_is_dead_after_login(self) -> None:
        self.call("/count")
        anonymous = self.token
        assert anonymous is not None
        self.call("/login", method="POST")
        assert self.store is not None
        self.assertEqual(self.io_loop.run_sync(self.store.count), 1)
        self.assertEqual(self.call("/count", token=anonymous).body, b"1")


class TestHeaderTransportSignedCookie(HeaderTransportCase):
    __test__ = True

    def make_store(self) -> Store | None:
        return None
