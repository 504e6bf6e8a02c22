"""Any Cookie header gives 200 and either the real session or a fresh one: never an error.

Hypothesis writes the header byte for byte on a raw connection to a real
server (tests/test_bad_input.py's `BadInputCase`): random bytes, random bytes
after ``tornado.sess=``, and edits of a real, valid cookie, alone or among
other cookies.  The server holds one real session (``views`` = 7).  Each answer
must be 200 and read either that session (``7``) or a fresh one (``0``); a
fresh one must come with a new cookie that reads back as the new session, and
for store sessions it must be stored under a new id, one record per request.

Tornado itself answers 400 before any handler runs for a header value with
control characters (RFC 9110); that is checked too, so the split is exact.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
import tornado.web
from hypothesis import given
from hypothesis import strategies as st

from tests.base import COOKIE, CountingStore
from tests.load_users import report
from tests.test_bad_input import BadInputCase, RawResponse
from tornado_session import SessionMixin

#: The bytes Tornado lets through in a header value: HTAB, SP, VCHAR, obs-text.
ALLOWED = bytes([0x09, 0x20, *range(0x21, 0x7F), *range(0x80, 0x100)])
#: What makes Tornado refuse the header line with 400 (CR and LF end the line).
FORBIDDEN = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
VIEWS = 7

allowed_bytes = st.lists(st.sampled_from(ALLOWED), max_size=300).map(bytes)
any_bytes_but_crlf = st.binary(max_size=300).map(
    lambda raw: raw.replace(b"\r", b"").replace(b"\n", b"")
)
#: Edits of the real cookie: (kind, position, bytes), applied in order.
edits = st.lists(
    st.tuples(
        st.sampled_from(["replace", "insert", "delete", "truncate", "duplicate"]),
        st.integers(min_value=0, max_value=10_000),
        st.lists(st.sampled_from(ALLOWED), min_size=1, max_size=8).map(bytes),
    ),
    min_size=1,
    max_size=4,
)
token = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_.-", min_size=1, max_size=12)


def apply_edits(value: bytes, changes: list[tuple[str, int, bytes]]) -> bytes:
    """``value`` with each edit applied at its position (modulo the length)."""
    for kind, position, chunk in changes:
        at = position % (len(value) + 1)
        if kind == "replace":
            value = value[:at] + chunk + value[at + len(chunk):]
        elif kind == "insert":
            value = value[:at] + chunk + value[at:]
        elif kind == "delete":
            value = value[:at] + value[at + len(chunk):]
        elif kind == "truncate":
            value = value[:at]
        else:
            value = value + value[at:]
    return value


class Probe(SessionMixin, tornado.web.RequestHandler):
    """Answers the views of the session it got, and records one more hit in it."""

    def get(self) -> None:
        self.write(str(self.session.get("views", 0)))
        self.session["hits"] = self.session.get("hits", 0) + 1


class SetViews(SessionMixin, tornado.web.RequestHandler):
    def get(self) -> None:
        self.session["views"] = VIEWS
        self.write("ok")


class Dump(SessionMixin, tornado.web.RequestHandler):
    def get(self) -> None:
        self.write(orjson.dumps(dict(self.session)))


class CookieFuzzCase(BadInputCase):
    """A real session with views=7, and the checks every answer must pass."""

    __test__ = False

    def get_handlers(self) -> list[Any]:
        return [(r"/probe", Probe), (r"/set", SetViews), (r"/dump", Dump)]

    def setUp(self) -> None:
        super().setUp()
        response = self.fetch("/set", cookies=False)
        self.assertEqual(response.code, 200)
        self.valid = self.jar[COOKIE].strip('"').encode()
        self.requests = 0
        self.cases = 0
        self.real = 0  # answers that read the real session

    def tearDown(self) -> None:
        report(".".join(self.id().split(".")[-2:]), cases=self.cases, requests=self.requests,
               real_session=self.real)
        super().tearDown()

    def entries(self) -> int:
        return len(self.store._entries) if isinstance(self.store, CountingStore) else 0

    def send(self, header: bytes) -> RawResponse:
        self.requests += 1
        self.events.clear()
        return self.io_loop.run_sync(lambda: self.raw_get("/probe", header))

    def check(self, header: bytes) -> None:
        """200, and the real session or a fresh one that works from then on."""
        self.cases += 1
        before = self.entries()
        response = self.send(header)
        self.assertEqual(response.code, 200, f"Cookie: {header!r} answered {response.code}")
        self.assertIn(response.body, (b"0", str(VIEWS).encode()), f"Cookie: {header!r}")
        self.assertLessEqual(len(self.events), 1)
        new_cookie = response.session_cookie()
        if response.body == str(VIEWS).encode():  # the real session
            self.real += 1
            self.assertEqual(self.entries(), before)
            return
        # A fresh session: one new record (store sessions), and the new cookie reads it.
        self.assertIsNotNone(new_cookie, f"Cookie: {header!r} gave a fresh session, no cookie")
        assert new_cookie is not None
        self.assertNotEqual(new_cookie.encode(), self.valid)
        if isinstance(self.store, CountingStore):
            self.assertEqual(self.entries(), before + 1)
        self.requests += 1
        again = self.io_loop.run_sync(
            lambda: self.raw_get("/dump", f"{COOKIE}={new_cookie}".encode())
        )
        self.assertEqual((again.code, orjson.loads(again.body)), (200, {"hits": 1}))


def cookie_properties() -> type[CookieFuzzCase]:
    """The property tests, as a new class each call (Hypothesis wants one function per class)."""

    class CookieProperties(CookieFuzzCase):
        __test__ = False

        @given(allowed_bytes)
        def test_any_header_bytes_answer_200_with_a_fresh_or_the_real_session(
            self, header: bytes
        ) -> None:
            self.check(header)

        @given(allowed_bytes)
        def test_any_bytes_as_the_session_cookie_answer_200(self, value: bytes) -> None:
            self.check(COOKIE.encode() + b"=" + value)

        @given(edits)
        def test_edited_real_cookie_answers_200(
            self, changes: list[tuple[str, int, bytes]]
        ) -> None:
            self.check(COOKIE.encode() + b"=" + apply_edits(self.valid, changes))

        @given(
            st.lists(
                st.tuples(
                    st.one_of(st.just(COOKIE), token),
                    st.one_of(st.just("valid"), st.just("edited"), allowed_bytes),
                    edits,
                ),
                min_size=1,
                max_size=4,
            ),
            st.sampled_from([b"; ", b";", b" ; ", b";;"]),
        )
        def test_session_cookie_among_others_answers_200(
            self, cookies: list[tuple[str, Any, list[tuple[str, int, bytes]]]], separator: bytes
        ) -> None:
            parts = []
            for name, value, changes in cookies:
                if value == "valid":
                    raw = self.valid
                elif value == "edited":
                    raw = apply_edits(self.valid, changes)
                else:
                    raw = value
                parts.append(name.encode() + b"=" + raw)
            header = separator.join(parts)
            self.check(header)
            # The real cookie sent first, whole, is always the session.
            if cookies[0][0] == COOKIE and cookies[0][1] == "valid":
                self.assertEqual(self.send(header).body, str(VIEWS).encode())

        @given(any_bytes_but_crlf)
        def test_control_characters_are_refused_by_tornado_with_400_and_others_answer_200(
            self, value: bytes
        ) -> None:
            header = COOKIE.encode() + b"=" + value
            if FORBIDDEN.search(value):
                self.cases += 1
                response = self.send(header)
                self.assertEqual(response.code, 400, f"Cookie: {header!r}")
            else:
                self.check(header)

    return CookieProperties


class TestCookiePropertiesStoreSessions(cookie_properties()):
    __test__ = True


class TestCookiePropertiesCookieSessions(cookie_properties()):
    __test__ = True

    def make_store(self) -> None:
        return None
