"""Simulated users of the login example, for the load, soak and fault tests.

`load_app` is `examples.login.make_app` with the accounts made in advance (one
scrypt hash shared by all, computed once and at a low cost: the load is on the
sessions, not on scrypt) and three routes added for measuring:

* ``GET /count``: a logged-in user's counter, kept in the session, plus one;
  403 when the session is not logged in (a lost session shows as 403);
* ``GET /count-read``: the counter, without changing it;
* ``GET /ping``: a handler that never touches the session.

`User` is one browser (its own cookie jar, ``_xsrf`` from the cookie) driven
over real HTTP: it logs in through the example's form, then counts.
"""

from __future__ import annotations

import functools
import http.cookies
import os
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from typing import Any, ClassVar

import orjson
import tornado.web
from tornado.httpclient import AsyncHTTPClient, HTTPResponse

from examples import login
from tests.base import cookie_expired
from tests.mongo_server import MongoWireServer
from tornado_session import SessionMixin, SessionOptions
from tornado_session.stores import Store

PASSWORD = "load-test password"
SECRET = "load-test-secret-" + "l" * 40
SESSION = "tornado.sess"


#: scrypt's cost for the simulated accounts: each login still verifies a real
#: hash, but at a cost that leaves the load on the sessions.
LOAD_COST = login.ScryptCost(n=2**10, r=8, p=1)


@functools.cache
def password_hash() -> str:
    """One scrypt hash for every simulated account (scrypt is made to be slow)."""
    return login.hash_password(PASSWORD, cost=LOAD_COST)


class Count(login.BaseHandler):
    def get(self) -> None:
        if not self.current_user:
            raise tornado.web.HTTPError(403)
        self.session["n"] = self.session.get("n", 0) + 1
        self.write(str(self.session["n"]))


class CountRead(login.BaseHandler):
    def get(self) -> None:
        if not self.current_user:
            raise tornado.web.HTTPError(403)
        self.write(str(self.session.get("n", 0)))


class Ping(SessionMixin, tornado.web.RequestHandler):
    def get(self) -> None:
        self.write("pong")


async def load_app(store: Store, users: int, **options: Any) -> tornado.web.Application:
    """The login example on ``store``, with ``users`` accounts ``user0``... made."""
    accounts = login.MemoryUsers()
    for number in range(users):
        await accounts.add(f"user{number}", password_hash())
    app = login.make_app(
        cookie_secret=SECRET, session=SessionOptions(store=store, **options), users=accounts
    )
    app.wildcard_router.add_rules(
        [(r"/count", Count), (r"/count-read", CountRead), (r"/ping", Ping)]
    )
    return app


@dataclass
class Outcome:
    """What one request got: when (monotonic, at the answer), the path, status and body."""

    at: float
    path: str
    code: int
    body: bytes
    retry_after: str | None
    seconds: float  # how long it took


@dataclass
class User:
    """One browser: a cookie jar, driven over HTTP against ``base_url``."""

    base_url: str
    name: str
    client: AsyncHTTPClient
    jar: dict[str, str] = field(default_factory=dict)
    outcomes: list[Outcome] = field(default_factory=list)
    counted: int = 0  # the counter the session must hold, as the last 200 said
    #: 503s since the last 200: a server that dies between applying a write and
    #: answering it leaves the write done though the request failed.
    unsure: int = 0
    landed_503: int = 0  # 503s whose write turned out to have landed
    #: When the first 503 of each run of 503s that had a write land was answered.
    landed_at: list[float] = field(default_factory=list)
    #: Every session cookie value the server gave this browser.
    session_cookies: set[str] = field(default_factory=set)

    async def request(self, method: str, path: str, form: dict[str, str] | None = None,
                      *, cookies: bool = True, timeout: float = 30) -> HTTPResponse:
        headers = {}
        if cookies and self.jar:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.jar.items())
        body = None
        if method == "POST":
            fields = {**(form or {}), "_xsrf": self.jar.get("_xsrf", "")}
            body = urllib.parse.urlencode(fields)
        sent = time.monotonic()
        response = await self.client.fetch(
            self.base_url + path, method=method, headers=headers, body=body,
            follow_redirects=False, raise_error=False, request_timeout=timeout,
        )
        now = time.monotonic()
        self.outcomes.append(Outcome(now, path, response.code, response.body,
                                     response.headers.get("Retry-After"), now - sent))
        if cookies:
            for header in response.headers.get_list("Set-Cookie"):
                jar: http.cookies.SimpleCookie = http.cookies.SimpleCookie()
                jar.load(header)
                for name, morsel in jar.items():
                    if name == SESSION and morsel.value:
                        self.session_cookies.add(morsel.value)
                    if cookie_expired(morsel):
                        self.jar.pop(name, None)
                    else:
                        self.jar[name] = morsel.coded_value
        return response

    async def log_in(self) -> None:
        """Through the example's own pages: the form, then the POST (302 to /profile)."""
        page = await self.request("GET", "/login")
        assert page.code == 200, page.code
        done = await self.request("POST", "/login", {"username": self.name,
                                                     "password": PASSWORD})
        assert done.code == 302 and done.headers["Location"] == "/profile", done.code
        profile = await self.request("GET", "/profile")
        assert profile.code == 200 and self.name.encode() in profile.body, profile.code

    async def count(self) -> int:
        """One ``/count``; returns the status.

        A 200 must be exactly one more than the last 200, or, after 503s, at
        most one more per 503 (a write the server applied just as it went down).
        """
        response = await self.request("GET", "/count")
        if response.code == 200:
            value = int(response.body)
            assert self.counted < value <= self.counted + 1 + self.unsure, (
                self.name, value, self.counted, self.unsure
            )
            if value > self.counted + 1:
                self.landed_503 += value - self.counted - 1
                self.landed_at.append(self.outcomes[-1 - self.unsure].at)
            self.counted, self.unsure = value, 0
        elif response.code == 503:
            self.unsure += 1
        return response.code

    async def counter(self) -> int:
        response = await self.request("GET", "/count-read")
        assert response.code == 200, (self.name, response.code)
        return int(response.body)


class MongoServerCase:
    """Mixin: ``cls.mongo_server`` (tests/mongo_server.py's wire server) runs for the class.

    ``persistent = True`` keeps its data in SQLite, so it survives a restart.
    `mongo_uri` names a database of its own for each test.
    """

    mongo_server: ClassVar[MongoWireServer]
    persistent: ClassVar[bool] = False

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()  # type: ignore[misc]
        server = MongoWireServer(persistent=cls.persistent)
        cls.addClassCleanup(server.close)  # type: ignore[attr-defined]
        server.start()
        cls.mongo_server = server

    def setUp(self) -> None:
        if self.mongo_server.process is None:  # a test stopped it
            self.mongo_server.start()
        self.mongo_uri = f"{self.mongo_server.uri}/t_{uuid.uuid4().hex[:12]}"
        super().setUp()  # type: ignore[misc]


def report(name: str, **figures: Any) -> None:
    """Append one JSON line of figures to ``$RELIABILITY_REPORT`` (scripts/soak.sh sets it)."""
    path = os.environ.get("RELIABILITY_REPORT")
    if path:
        with open(path, "ab") as out:
            out.write(orjson.dumps({"test": name, **figures}) + b"\n")


def server_errors(users: list[User]) -> list[Outcome]:
    """Every answer of 500 or more."""
    return [o for user in users for o in user.outcomes if o.code >= 500]
