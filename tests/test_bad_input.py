"""Bad input never becomes a 500: every broken cookie gives a fresh session and an event.

The requests are written byte for byte on a raw connection, so that what reaches
the server (non-ASCII bytes, a cookie sent twice, a 100 KB header) is exactly
what the test says.
"""

from __future__ import annotations

import base64
import http.cookies
import logging
from typing import Any

import orjson
import tornado.web
from tornado.tcpclient import TCPClient
from tornado.testing import gen_test

from tests.base import COOKIE, COOKIE_SECRET, SessionTestCase
from tornado_session import SessionMixin
from tornado_session.serializers import hash_session_id


class RawResponse:
    """A response read off the wire: status, headers as lines, body."""

    def __init__(self, raw: bytes) -> None:
        head, _, self.body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.code = int(lines[0].split()[1])
        self.header_lines = lines[1:]

    def session_cookie(self) -> str | None:
        for line in self.header_lines:
            name, _, value = line.partition(":")
            if name.lower() == "set-cookie":
                jar: http.cookies.SimpleCookie = http.cookies.SimpleCookie()
                jar.load(value.strip())
                if COOKIE in jar:
                    return jar[COOKIE].value
        return None


class BadValue(SessionMixin, tornado.web.RequestHandler):
    def get(self) -> None:
        self.session["x"] = object()
        self.write("unreachable")


class TooBig(SessionMixin, tornado.web.RequestHandler):
    def get(self) -> None:
        self.session["big"] = "x" * 5000
        self.write("unreachable")


class BadInputCase(SessionTestCase):
    """Records the session events and lets headers of up to 256 KB through Tornado."""

    def setUp(self) -> None:
        super().setUp()
        self.events: list[tuple[str, dict[str, Any]]] = []
        emitter = self._app.settings["session"].events
        for name in ("missed", "invalid", "expired"):
            emitter.on(f"session:{name}", lambda p, n=name: self.events.append((n, p)))

    def get_handlers(self) -> list[Any]:
        return [*super().get_handlers(), (r"/bad-value", BadValue), (r"/too-big", TooBig)]

    def get_httpserver_options(self) -> dict[str, Any]:
        # Tornado's own server refuses headers over 64 KiB before any handler
        # runs; raise the limit so the oversized cookie reaches the session layer.
        return {"max_header_size": 256 * 1024}

    async def raw_get(self, path: str, cookie_header: bytes) -> RawResponse:
        stream = await TCPClient().connect("127.0.0.1", self.get_http_port())
        request = (
            b"GET " + path.encode() + b" HTTP/1.1\r\nHost: localhost\r\n"
            b"Cookie: " + cookie_header + b"\r\nConnection: close\r\n\r\n"
        )
        await stream.write(request)
        raw = await stream.read_until_close()
        return RawResponse(raw)

    async def valid_cookie(self) -> str:
        """A real session cookie with views=1, as the app set it."""
        response = await self.fetch_async("/count", cookies=False)
        self.assertEqual(response.body, b"1")
        return self.jar[COOKIE].strip('"')

    def signed(self, payload: Any, *, secret: Any = COOKIE_SECRET, key_version: Any = None) -> str:
        raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
        value = tornado.web.create_signed_value(
            secret, COOKIE, raw, version=2, key_version=key_version, clock=self.clock
        )
        return value.decode()

    async def assert_fresh(self, cookie_header: bytes | str, event: str = "invalid") -> RawResponse:
        """The request is answered 200 from a fresh session, with ``event`` emitted."""
        if isinstance(cookie_header, str):
            cookie_header = cookie_header.encode()
        self.events.clear()
        response = await self.raw_get("/count", cookie_header)
        self.assertEqual(response.code, 200)
        self.assertEqual(response.body, b"1")  # a fresh session, not the old count
        self.assertEqual([name for name, _ in self.events], [event])
        self.assertEqual(self.events[0][1]["key"], COOKIE)
        new_cookie = response.session_cookie()
        self.assertIsNotNone(new_cookie, "a fresh session that changed must set a cookie")
        return response

    async def assert_failed_commit_keeps_the_session(self, path: str, logged: str) -> None:
        """``path`` answers 500, logs ``logged``, and the session of views=1 lives on untouched."""
        await self.valid_cookie()
        before = dict(self.jar)
        records = _capture("tornado.application")
        try:
            response = await self.fetch_async(path)
        finally:
            logging.getLogger("tornado.application").removeHandler(records)
        self.assertEqual(response.code, 500)
        self.assertNotIn("Set-Cookie", response.headers)
        self.assertRegex(records.text(), logged)
        self.assertEqual(self.jar, before)
        self.assertEqual((await self.fetch_async("/read")).body, b"1")


class BadCookieCases(BadInputCase):
    """Each bad cookie, for both store sessions (here) and cookie sessions (subclass)."""

    __test__ = False

    @gen_test
    async def test_tampered_signature(self) -> None:
        cookie = await self.valid_cookie()
        last = cookie[-1]
        tampered = cookie[:-1] + ("0" if last != "0" else "1")
        await self.assert_fresh(f"{COOKIE}={tampered}")

    @gen_test
    async def test_tampered_payload_with_the_old_signature(self) -> None:
        cookie = await self.valid_cookie()
        parts = cookie.split("|")
        length, _, payload = parts[4].partition(":")
        flipped = ("B" if payload[5] != "B" else "C")
        parts[4] = f"{length}:{payload[:5]}{flipped}{payload[6:]}"
        await self.assert_fresh(f"{COOKIE}={'|'.join(parts)}")

    @gen_test
    async def test_cookie_signed_with_an_unknown_key_version(self) -> None:
        cookie = await self.valid_cookie()
        payload = base64.b64decode(cookie.split("|")[4].partition(":")[2])
        forged = self.signed(payload, secret={9: "another-secret-" + "y" * 40}, key_version=9)
        await self.assert_fresh(f"{COOKIE}={forged}")

    @gen_test
    async def test_truncated_cookie(self) -> None:
        cookie = await self.valid_cookie()
        await self.assert_fresh(f"{COOKIE}={cookie[: len(cookie) // 2]}")

    @gen_test
    async def test_signed_bytes_that_are_not_json(self) -> None:
        await self.assert_fresh(f"{COOKIE}={self.signed(b'not json at all {')}")

    @gen_test
    async def test_signed_json_that_is_not_an_object(self) -> None:
        await self.assert_fresh(f"{COOKIE}={self.signed([1, 2, 3])}")

    @gen_test
    async def test_signed_object_of_the_wrong_shape(self) -> None:
        await self.assert_fresh(f"{COOKIE}={self.signed({'e': 'tomorrow', 'i': 42})}")
        later = self.clock() + 3600
        body = {"i": "x" * 43, "d": {}}  # the right body for both kinds: only e or m is wrong
        for fields in ({"e": True}, {"e": -1}, {"e": later, "m": 0}, {"e": later, "m": -5},
                       {"e": later, "m": True}, {"e": later, "m": "1"}):
            with self.subTest(fields=fields):
                await self.assert_fresh(f"{COOKIE}={self.signed({**fields, **body})}")

    @gen_test
    async def test_hundred_kilobyte_cookie_header(self) -> None:
        await self.assert_fresh(f"{COOKIE}={'A' * 100_000}")

    @gen_test
    async def test_non_ascii_bytes(self) -> None:
        await self.assert_fresh(COOKIE.encode() + b"=\xc3\xa9\xff\x80 abc")

    @gen_test
    async def test_cookie_sent_twice_both_bad(self) -> None:
        await self.assert_fresh(f"{COOKIE}=garbage; {COOKIE}=more-garbage")

    @gen_test
    async def test_only_the_first_four_values_of_the_cookie_are_checked(self) -> None:
        cookie = await self.valid_cookie()
        garbage = "; ".join(f"{COOKIE}=garbage{n}" for n in range(4))
        await self.assert_fresh(f"{garbage}; {COOKIE}={cookie}")
        garbage = "; ".join(f"{COOKIE}=garbage{n}" for n in range(3))
        response = await self.raw_get("/read", f"{garbage}; {COOKIE}={cookie}".encode())
        self.assertEqual((response.code, response.body), (200, b"1"))

    @gen_test
    async def test_cookie_sent_twice_first_valid_one_is_the_session(self) -> None:
        cookie = await self.valid_cookie()
        for header in (f"{COOKIE}=garbage; {COOKIE}={cookie}", f"{COOKIE}={cookie}; {COOKIE}=x"):
            self.events.clear()
            response = await self.raw_get("/read", header.encode())
            self.assertEqual(response.code, 200)
            self.assertEqual(response.body, b"1")
            self.assertEqual(self.events, [])

    @gen_test
    async def test_unserialisable_value_is_a_500_naming_the_key_and_keeps_the_session(
        self,
    ) -> None:
        await self.assert_failed_commit_keeps_the_session("/bad-value", r"key 'x'")


class TestBadCookiesStoreSessions(BadCookieCases):
    __test__ = True

    @gen_test
    async def test_unknown_session_id_is_never_adopted(self) -> None:
        attacker_id = "attacker-chosen-id-" + "z" * 30
        forged = self.signed({"e": self.clock() + 3600, "m": 3600, "i": attacker_id})
        await self.assert_fresh(f"{COOKIE}={forged}", event="missed")
        assert self.counting is not None
        self.assertNotIn(hash_session_id(attacker_id), self.counting._entries)
        self.assertEqual(len(self.counting._entries), 1)  # the fresh session, under a new id

    @property
    def counting(self) -> Any:
        return self.store


class TestBadCookiesCookieSessions(BadCookieCases):
    __test__ = True

    def make_store(self) -> None:
        return None

    @gen_test
    async def test_cookie_too_large_is_a_500_naming_the_size_and_keeps_the_old_cookie(
        self,
    ) -> None:
        await self.assert_failed_commit_keeps_the_session(
            "/too-big", r"would be \d{4} bytes, more than the 4093 bytes"
        )


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def text(self) -> str:
        return "\n".join(self.lines)


def _capture(logger_name: str) -> _Records:
    """Collect what ``logger_name`` logs, tracebacks included."""
    handler = _Records()
    logging.getLogger(logger_name).addHandler(handler)
    return handler
