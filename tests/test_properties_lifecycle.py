"""The session lifecycle against a small reference model, over random sequences of requests.

A Hypothesis state machine plays one browser against a real server (MemoryStore
with a call counter, a `FakeClock`), with ``rolling``, ``renew`` and
``touch_after`` drawn per run.  Each step is one request (read, write a key,
delete a key, a request that never touches the session, regenerate, destroy),
a clock advance, or a replay of a cookie that must be dead.  After each request
the model says what the answer must show:

* the data the request read (what the previous requests left, or nothing once
  the session expired or was destroyed);
* how many store reads, writes and deletes it made, where the design fixes
  them: no read without a live cookie, one write per change, regenerate or
  rolling touch that is due, none for an unchanged session otherwise;
* whether a cookie is set, expired or left alone;
* that the cookie a regenerate or destroy retired reads as a fresh, empty
  session, then and at any later step.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import orjson
import tornado.web
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from tornado.httpclient import HTTPResponse
from tornado.testing import AsyncHTTPTestCase

from tests.base import COOKIE, COOKIE_SECRET, CountingStore, cookie_expired, set_cookies
from tests.load_users import report
from tornado_session import SessionMixin, SessionOptions
from tornado_session.testing import FakeClock

MAX_AGE = 100
KEYS = ("a", "b", "c")


class Op(SessionMixin, tornado.web.RequestHandler):
    """One handler for every operation: ``/op/<name>?k=..&v=..``; answers the data it read."""

    async def get(self, name: str) -> None:
        if name == "unused":
            self.write("-")
            return
        read = orjson.dumps(dict(self.session))
        if name == "write":
            self.session[self.get_argument("k")] = int(self.get_argument("v"))
        elif name == "delete":
            self.session.pop(self.get_argument("k"), None)
        elif name == "regenerate":
            await self.regenerate_session()
        elif name == "destroy":
            await self.destroy_session()
        self.write(read)


class LifecycleMachine(RuleBasedStateMachine):
    """One browser and the model of its session."""

    #: Totals over every run, for the figures in docs/reliability.md.
    totals: ClassVar[dict[str, int]] = {"runs": 0, "steps": 0, "requests": 0}

    def __init__(self, case: AsyncHTTPTestCase) -> None:
        super().__init__()
        self.totals["runs"] += 1
        self.case = case
        self.clock = FakeClock(float(int(time.time())))  # whole seconds: no rounding at edges
        self.store = CountingStore(clock=self.clock)
        self.cookie: str | None = None  # the browser's session cookie
        # The model: the live session's data and server-side expiry (None: no session).
        self.data: dict[str, int] | None = None
        self.expires = 0.0
        self.written_at = 0.0
        self.dead: list[str] = []  # cookies retired by regenerate or destroy

    @initialize(
        rolling=st.booleans(), renew=st.booleans(), touch_after=st.sampled_from([None, 0, 30])
    )
    def start(self, rolling: bool, renew: bool, touch_after: int | None) -> None:
        self.rolling, self.renew = rolling, renew
        self.touch_after = touch_after if rolling else None
        options = SessionOptions(store=self.store, clock=self.clock, max_age=MAX_AGE,
                                 rolling=rolling, renew=renew, touch_after=self.touch_after)
        app = tornado.web.Application([(r"/op/(\w+)", Op)], cookie_secret=COOKIE_SECRET,
                                      session=options)
        self.case.http_server.request_callback = app  # type: ignore[attr-defined]

    # -- the browser -----------------------------------------------------------------

    def send(self, name: str, cookie: str | None, **args: Any) -> HTTPResponse:
        query = "&".join(f"{k}={v}" for k, v in args.items())
        headers = {"Cookie": f"{COOKIE}={cookie}"} if cookie else {}
        self.store.reset_calls()
        self.totals["requests"] += 1
        response = AsyncHTTPTestCase.fetch(self.case, f"/op/{name}?{query}", headers=headers)
        assert response.code == 200, (name, response.code, response.body)
        return response

    def request(self, name: str, **args: Any) -> tuple[HTTPResponse, str]:
        """Send with the browser's cookie and keep what it sets; says what happened to it."""
        response = self.send(name, self.cookie, **args)
        morsel = set_cookies(response).get(COOKIE)
        if morsel is None:
            return response, "kept"
        if cookie_expired(morsel):
            self.cookie = None
            return response, "expired"
        self.cookie = morsel.coded_value
        return response, "set"

    def assert_calls(self, get: int, set: int = 0, destroy: int = 0) -> None:
        """Store calls of the last request; ``set`` counts every write (``set`` and ``touch``)."""
        calls = self.store.calls
        writes = calls["set"] + calls["touch"]
        assert (calls["get"], writes, calls["destroy"]) == (get, set, destroy), (
            f"store calls {calls}, expected get={get} writes={set} destroy={destroy}"
        )

    # -- the model -------------------------------------------------------------------

    def now(self) -> float:
        return self.clock()

    def load(self) -> tuple[bool, bool]:
        """What loading does: (loaded a live session, refused a cookie that had expired)."""
        if self.cookie is None:
            return False, False
        assert self.data is not None, "the browser holds a cookie of no session"
        if self.now() >= self.expires:
            self.data = None
            return False, True
        return True, False

    def saved(self, data: dict[str, int]) -> None:
        self.data = data
        self.expires = self.now() + MAX_AGE
        self.written_at = self.now()

    def unchanged(self, loaded: bool, refused: bool) -> tuple[int, str]:
        """Store writes and cookie fate of a request that changed nothing."""
        if not loaded:
            return 0, "expired" if refused else "kept"
        assert self.data is not None
        if self.rolling:
            due = self.touch_after is None or self.now() - self.written_at >= self.touch_after
            if due:
                self.saved(self.data)
            return int(due), "set"
        if self.renew and self.expires - self.now() < MAX_AGE / 2:
            self.saved(self.data)
            return 1, "set"
        return 0, "kept"

    def check(self, response: HTTPResponse, read: dict[str, int] | None) -> None:
        if read is not None:
            assert orjson.loads(response.body) == read, (response.body, read)

    # -- the rules -------------------------------------------------------------------

    @rule()
    def read(self) -> None:
        loaded, refused = self.load()
        read = dict(self.data) if loaded and self.data is not None else {}
        writes, fate = self.unchanged(loaded, refused)
        response, happened = self.request("read")
        self.check(response, read)
        self.assert_calls(get=int(loaded), set=writes)
        assert happened == fate, (happened, fate)

    @rule()
    def unused(self) -> None:
        loaded, refused = self.load()
        writes, fate = self.unchanged(loaded, refused)
        _, happened = self.request("unused")
        self.assert_calls(get=int(loaded), set=writes)
        assert happened == fate, (happened, fate)

    @rule(key=st.sampled_from(KEYS), value=st.integers(0, 3))
    def write(self, key: str, value: int) -> None:
        loaded, refused = self.load()
        read = dict(self.data) if loaded and self.data is not None else {}
        if loaded and read.get(key) == value:
            writes, fate = self.unchanged(loaded, refused)
        else:
            self.saved({**read, key: value})
            writes, fate = 1, "set"
        response, happened = self.request("write", k=key, v=value)
        self.check(response, read)
        self.assert_calls(get=int(loaded), set=writes)
        assert happened == fate, (happened, fate)

    @rule(key=st.sampled_from(KEYS))
    def delete(self, key: str) -> None:
        loaded, refused = self.load()
        read = dict(self.data) if loaded and self.data is not None else {}
        if loaded and key in read:
            del read[key]
            self.saved(read)
            writes, fate = 1, "set"
        else:
            writes, fate = self.unchanged(loaded, refused)
        _, happened = self.request("delete", k=key)
        self.assert_calls(get=int(loaded), set=writes)
        assert happened == fate, (happened, fate)

    @rule()
    def regenerate(self) -> None:
        loaded, _ = self.load()
        old = self.cookie if loaded else None
        read = dict(self.data) if loaded and self.data is not None else {}
        response, happened = self.request("regenerate")
        self.check(response, read)
        self.assert_calls(get=int(loaded), set=1, destroy=int(loaded))
        assert happened == "set"
        assert self.cookie != old
        self.saved(read)
        if old is not None:
            self.retire(old)

    @rule()
    def destroy(self) -> None:
        loaded, _ = self.load()
        old = self.cookie
        _, happened = self.request("destroy")
        self.assert_calls(get=int(loaded), destroy=int(loaded))
        assert happened == ("expired" if old is not None else "kept"), happened
        self.data = None
        if loaded and old is not None:
            self.retire(old)

    @rule(seconds=st.sampled_from([1, 20, 29, 30, 49, 50, 51, 99, 100, 101, 250]))
    def advance(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @precondition(lambda self: bool(self.dead))
    @rule(index=st.integers(min_value=0))
    def replay_dead_cookie(self, index: int) -> None:
        self.assert_dead(self.dead[index % len(self.dead)])

    def retire(self, cookie: str) -> None:
        """A cookie regenerate or destroy retired: dead now, and kept for later replays."""
        self.assert_dead(cookie)
        self.dead.append(cookie)

    def assert_dead(self, cookie: str) -> None:
        response = self.send("read", cookie)
        assert orjson.loads(response.body) == {}, f"a retired cookie read {response.body!r}"
        assert self.store.calls["set"] == 0 and self.store.calls["destroy"] == 0
        morsel = set_cookies(response).get(COOKIE)
        assert morsel is not None and cookie_expired(morsel), "the dead cookie was not expired"

    @invariant()
    def store_holds_at_most_the_live_session(self) -> None:
        self.totals["steps"] += 1
        # The browser's one session (if live) is the only record: nothing retired lingers.
        live = [raw for expires, raw in self.store._entries.values() if expires > self.clock()]
        expected = [] if self.data is None or self.clock() >= self.expires else [self.data]
        assert [orjson.loads(raw) for raw in live] == expected, (live, expected)


class TestLifecycleModel(AsyncHTTPTestCase):
    def get_app(self) -> tornado.web.Application:
        return tornado.web.Application()  # each run of the machine installs its own

    def test_random_request_sequences_match_the_model(self) -> None:
        LifecycleMachine.totals.update(runs=0, steps=0, requests=0)
        run_state_machine_as_test(lambda: LifecycleMachine(self))
        report("lifecycle_model", **LifecycleMachine.totals)
