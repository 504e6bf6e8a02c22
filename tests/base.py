"""The base of the HTTP-level tests: an app with session handlers and a cookie jar."""

from __future__ import annotations

import email.utils
import http.cookies
import time
from typing import Any

import tornado.web
from tornado.httpclient import AsyncHTTPClient, HTTPResponse
from tornado.testing import AsyncHTTPTestCase

from tornado_session import SessionMixin, SessionOptions
from tornado_session.stores import MemoryStore, Ready, Store
from tornado_session.testing import FakeClock

COOKIE_SECRET = "test-secret-" + "x" * 40
COOKIE = "tornado.sess"


class CountingStore(MemoryStore):
    """A MemoryStore that counts the calls made to it, by name.

    It hands on MemoryStore's `Ready` answers, so the lifecycle's same-turn
    path for answers at hand is what the HTTP tests exercise.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.calls: dict[str, int] = {"get": 0, "set": 0, "destroy": 0, "touch": 0}

    def get(self, key: str) -> Ready[dict[str, Any] | None]:
        self.calls["get"] += 1
        return super().get(key)

    def set(self, key: str, data: Any, max_age: float, **kwargs: Any) -> Ready[bool]:
        self.calls["set"] += 1
        return super().set(key, data, max_age, **kwargs)

    def destroy(self, key: str) -> Ready[bool]:
        self.calls["destroy"] += 1
        return super().destroy(key)

    def touch(self, key: str, max_age: float) -> Ready[bool]:
        self.calls["touch"] += 1
        return super().touch(key, max_age)

    def reset_calls(self) -> None:
        for name in self.calls:
            self.calls[name] = 0


class CounterHandler(SessionMixin, tornado.web.RequestHandler):
    def get(self) -> None:
        self.session["views"] = self.session.get("views", 0) + 1
        self.write(str(self.session["views"]))


class ReadHandler(SessionMixin, tornado.web.RequestHandler):
    def get(self) -> None:
        self.write(str(self.session.get("views", 0)))


class UnusedHandler(SessionMixin, tornado.web.RequestHandler):
    def get(self) -> None:
        self.write("ok")


class SessionTestCase(AsyncHTTPTestCase):
    """An app built from `get_handlers` and `session_options`, and a cookie jar.

    `fetch` keeps cookies across requests like a browser (``jar``); pass
    ``cookies=False`` to send none.
    """

    def setUp(self) -> None:
        self.clock = FakeClock()
        self.jar: dict[str, str] = {}
        self.store = self.make_store()
        super().setUp()

    def make_store(self) -> Store | None:
        return CountingStore(clock=self.clock)

    def get_handlers(self) -> list[Any]:
        return [(r"/count", CounterHandler), (r"/read", ReadHandler), (r"/unused", UnusedHandler)]

    def session_options(self) -> dict[str, Any]:
        return {}

    def app_settings(self) -> dict[str, Any]:
        return {}

    def get_app(self) -> tornado.web.Application:
        options = {"store": self.store, "clock": self.clock, **self.session_options()}
        settings = {"cookie_secret": COOKIE_SECRET, **self.app_settings()}
        settings.setdefault("session", SessionOptions(**options))
        return tornado.web.Application(self.get_handlers(), **settings)

    def fetch(self, path: str, *, cookies: bool = True, **kwargs: Any) -> HTTPResponse:  # type: ignore[override]
        headers = dict(kwargs.pop("headers", None) or {})
        if cookies and self.jar and "Cookie" not in headers:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.jar.items())
        kwargs.setdefault("follow_redirects", False)
        response = super().fetch(path, headers=headers, **kwargs)
        self.remember_cookies(response)
        return response

    async def fetch_async(self, path: str, *, cookies: bool = True, **kwargs: Any) -> HTTPResponse:
        """`fetch` for tests running inside the loop (``gen_test``); never raises for a status."""
        headers = dict(kwargs.pop("headers", None) or {})
        if cookies and self.jar and "Cookie" not in headers:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.jar.items())
        kwargs.setdefault("follow_redirects", False)
        response = await AsyncHTTPClient().fetch(
            self.get_url(path), headers=headers, raise_error=False, **kwargs
        )
        self.remember_cookies(response)
        return response

    def remember_cookies(self, response: HTTPResponse) -> None:
        """Keep the cookies a response sets, as a browser would."""
        for name, morsel in set_cookies(response).items():
            if cookie_expired(morsel):
                self.jar.pop(name, None)
            else:
                self.jar[name] = morsel.coded_value

    def assert_cookie_expired(self, response: HTTPResponse) -> None:
        morsel = self.session_cookie(response)
        assert morsel is not None, "no session Set-Cookie in the response"
        assert cookie_expired(morsel), f"the session cookie is not expired: {morsel.OutputString()}"

    def session_cookie(self, response: HTTPResponse) -> http.cookies.Morsel[str] | None:
        return set_cookies(response).get(COOKIE)


def cookie_expired(morsel: http.cookies.Morsel[str]) -> bool:
    """Whether a Set-Cookie deletes the cookie (Max-Age=0 or an Expires in the past)."""
    if morsel["max-age"] == "0":
        return True
    if morsel["expires"]:
        expires = email.utils.parsedate_to_datetime(morsel["expires"])
        return expires.timestamp() < time.time()
    return False


def set_cookies(response: HTTPResponse) -> dict[str, http.cookies.Morsel[str]]:
    """The cookies a response sets, by name."""
    found: dict[str, http.cookies.Morsel[str]] = {}
    for header in response.headers.get_list("Set-Cookie"):
        jar: http.cookies.SimpleCookie = http.cookies.SimpleCookie()
        jar.load(header)
        found.update(jar)
    return found
