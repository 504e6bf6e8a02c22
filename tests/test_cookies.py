"""What the browser is told: Set-Cookie attributes, signing keys, codec hooks, refusal hooks."""

from __future__ import annotations

import email.utils
import unittest
from typing import Any

import orjson
import tornado.web

from tests.base import COOKIE, COOKIE_SECRET, SessionTestCase, set_cookies
from tornado_session import SessionMixin, SessionOptions
from tornado_session.config import COOKIE_MEMORY, SessionConfig
from tornado_session.cookies import CookieCodec, Signer
from tornado_session.serializers import hash_session_id
from tornado_session.stores import MemoryStore


class RememberMe(SessionMixin, tornado.web.RequestHandler):
    def get(self) -> None:
        self.session["user"] = "ada"
        self.session.max_age = None if self.get_argument("browser", "") else 30 * 86400


class SessionsCase(SessionTestCase):
    def get_handlers(self) -> list[Any]:
        return [*super().get_handlers(), (r"/remember", RememberMe)]


class TestDefaultAttributes(SessionsCase):
    def test_cookie_is_httponly_lax_path_root_with_max_age_and_expires(self) -> None:
        morsel = self.session_cookie(self.fetch("/count"))
        assert morsel is not None
        self.assertTrue(morsel["httponly"])
        self.assertEqual(morsel["samesite"], "Lax")
        self.assertEqual(morsel["path"], "/")
        self.assertEqual(morsel["max-age"], "86400")
        self.assertFalse(morsel["secure"])  # plain http
        self.assertEqual(morsel["domain"], "")
        expires = email.utils.parsedate_to_datetime(morsel["expires"]).timestamp()
        self.assertAlmostEqual(expires, self.clock() + 86400, delta=2)

    def test_per_session_max_age_sets_the_cookie_lifetime(self) -> None:
        morsel = self.session_cookie(self.fetch("/remember"))
        assert morsel is not None
        self.assertEqual(morsel["max-age"], str(30 * 86400))

    def test_browser_session_cookie_has_neither_max_age_nor_expires(self) -> None:
        morsel = self.session_cookie(self.fetch("/remember?browser=1"))
        assert morsel is not None
        self.assertEqual((morsel["max-age"], morsel["expires"]), ("", ""))
        self.assertEqual(self.fetch("/read").code, 200)


class TestCustomAttributes(SessionsCase):
    def session_options(self) -> dict[str, Any]:
        return {"key": "sid", "httponly": False, "samesite": "Strict", "secure": True,
                "domain": "example.com", "path": "/app"}

    def test_every_attribute_follows_the_options(self) -> None:
        response = self.fetch("/count")
        morsel = set_cookies(response)["sid"]
        self.assertFalse(morsel["httponly"])
        self.assertEqual(morsel["samesite"], "Strict")
        self.assertTrue(morsel["secure"])
        self.assertEqual(morsel["domain"], "example.com")
        self.assertEqual(morsel["path"], "/app")
        self.assertNotIn(COOKIE, set_cookies(response))


class TestSameSiteOff(SessionsCase):
    def session_options(self) -> dict[str, Any]:
        return {"samesite": None}

    def test_no_samesite_attribute(self) -> None:
        morsel = self.session_cookie(self.fetch("/count"))
        assert morsel is not None
        self.assertEqual(morsel["samesite"], "")


class TestSecureBehindAProxy(SessionsCase):
    def get_httpserver_options(self) -> dict[str, Any]:
        return {"xheaders": True}

    def test_secure_follows_x_forwarded_proto(self) -> None:
        https = self.session_cookie(
            self.fetch("/count", cookies=False, headers={"X-Forwarded-Proto": "https"})
        )
        http = self.session_cookie(self.fetch("/count", cookies=False))
        assert https is not None and http is not None
        self.assertTrue(https["secure"])
        self.assertFalse(http["secure"])


class TestKeyRotation(SessionsCase):
    """A cookie signed with an older key still reads, and is re-signed with the new one."""

    def make_store(self) -> None:
        return None

    def app_settings(self) -> dict[str, Any]:
        return {"cookie_secret": {1: "old-secret-" + "o" * 40, 2: "new-secret-" + "n" * 40},
                "key_version": self.key_version}

    key_version = 1

    def test_old_key_cookie_is_read_and_re_signed_with_the_current_key(self) -> None:
        self.fetch("/count")
        self.assertTrue(self.jar[COOKIE].strip('"').startswith("2|1:1|"))
        self.key_version = 2
        self._app = self.get_app()
        self.http_server.request_callback = self._app
        self.assertEqual(self.fetch("/read").body, b"1")  # read with the old key
        self.assertEqual(self.fetch("/count").body, b"2")  # saved: re-signed
        self.assertTrue(self.jar[COOKIE].strip('"').startswith("2|1:2|"))

    def test_a_retired_key_no_longer_reads(self) -> None:
        self.fetch("/count")
        self._app = tornado.web.Application(
            self.get_handlers(), cookie_secret={2: "new-secret-" + "n" * 40}, key_version=2,
            session={"clock": self.clock},
        )
        self.http_server.request_callback = self._app
        self.assertEqual(self.fetch("/read").body, b"0")


class TestKeyChangeWithoutRestart(SessionsCase):
    """A change of the signing settings takes effect at the next request, memory included."""

    def app_settings(self) -> dict[str, Any]:
        return {"cookie_secret": {1: "leaked-secret-" + "l" * 40}, "key_version": 1}

    def settings(self) -> dict[str, Any]:
        return self._app.settings

    def test_a_key_removed_from_the_settings_verifies_nothing_any_more(self) -> None:
        for remove in ("replace the dict", "edit it in place"):
            with self.subTest(remove=remove):
                self.settings()["cookie_secret"] = {1: "leaked-secret-" + "l" * 40}
                self.settings()["key_version"] = 1
                self.jar.clear()
                self.fetch("/count")
                self.assertEqual(self.fetch("/read").body, b"1")  # verified, remembered
                # The new key comes in; the leaked one still reads until removed.
                self.settings()["cookie_secret"][2] = "new-secret-" + "n" * 40
                self.settings()["key_version"] = 2
                self.assertEqual(self.fetch("/read").body, b"1")
                leaked_cookie = dict(self.jar)
                if remove == "replace the dict":
                    self.settings()["cookie_secret"] = {2: "new-secret-" + "n" * 40}
                else:
                    del self.settings()["cookie_secret"][1]
                self.assertEqual(self.fetch("/read").body, b"0")  # refused at once
                self.jar = leaked_cookie
                self.assertEqual(self.fetch("/count").body, b"1")  # a fresh session...
                self.assertTrue(self.jar[COOKIE].strip('"').startswith("2|1:2|"))  # new key

    def test_the_signing_key_can_change_without_a_restart(self) -> None:
        self.fetch("/count")
        self.settings()["cookie_secret"] = {1: "leaked-secret-" + "l" * 40,
                                            2: "new-secret-" + "n" * 40}
        self.settings()["key_version"] = 2
        self.assertEqual(self.fetch("/count").body, b"2")
        self.assertTrue(self.jar[COOKIE].strip('"').startswith("2|1:2|"))


class TestAbsoluteLifetimeOfCookieSessions(SessionsCase):
    """Cookie sessions end at ``absolute_max_age`` too, however often ``renew`` renews them."""

    def make_store(self) -> None:
        return None

    def session_options(self) -> dict[str, Any]:
        return {"renew": True, "max_age": 60, "absolute_max_age": 100}

    def test_a_renewed_cookie_session_ends_at_its_absolute_lifetime(self) -> None:
        self.fetch("/count")
        for _ in range(3):
            self.clock.advance(31)  # less than half of max_age left: renew re-issues it
            self.assertEqual(self.fetch("/read").body, b"1")
        self.clock.advance(8)  # 101 s after it began
        self.assertEqual(self.fetch("/read").body, b"0")

    def test_the_cookie_expiry_never_passes_the_absolute_deadline(self) -> None:
        self.fetch("/count")
        self.clock.advance(50)  # max_age (60) from now would pass the deadline (100)
        morsel = self.session_cookie(self.fetch("/count"))
        assert morsel is not None
        value = tornado.web.decode_signed_value(
            COOKIE_SECRET, COOKIE, morsel.value, max_age_days=float("inf"), clock=self.clock
        )
        assert value is not None
        payload = orjson.loads(value)
        self.assertAlmostEqual(payload["e"], payload["c"] + 100, places=2)


class TestCookieSessionExpiry(SessionsCase):
    """The expiry travels inside the signed payload: a replayed cookie is refused."""

    def make_store(self) -> None:
        return None

    def session_options(self) -> dict[str, Any]:
        return {"max_age": 100}

    def test_replayed_cookie_past_its_expiry_is_refused(self) -> None:
        events: list[dict[str, Any]] = []
        self._app.settings["session"].events.on("session:expired", events.append)
        self.fetch("/count")
        replay = dict(self.jar)
        self.clock.advance(99)
        self.assertEqual(self.fetch("/read", cookies=False,
                                    headers={"Cookie": f"{COOKIE}={replay[COOKIE]}"}).body, b"1")
        self.clock.advance(2)
        response = self.fetch("/read", cookies=False,
                              headers={"Cookie": f"{COOKIE}={replay[COOKIE]}"})
        self.assertEqual(response.body, b"0")
        self.assertEqual([event["key"] for event in events], [COOKIE])


class TestCodecHooks(SessionsCase):
    """``encode``/``decode`` replace the JSON step of cookie sessions."""

    def make_store(self) -> None:
        return None

    def session_options(self) -> dict[str, Any]:
        def encode(payload: dict[str, Any]) -> str:
            return "v1." + orjson.dumps(payload).hex()

        def decode(value: str) -> dict[str, Any]:
            if not value.startswith("v1."):
                raise ValueError("not v1")
            data: dict[str, Any] = orjson.loads(bytes.fromhex(value[3:]))
            return data

        return {"encode": encode, "decode": decode, "signed": False}

    def test_the_cookie_is_what_encode_made_and_decode_reads_it(self) -> None:
        self.fetch("/count")
        value = self.jar[COOKIE]
        self.assertTrue(value.startswith("v1."))
        self.assertEqual(orjson.loads(bytes.fromhex(value[3:]))["d"], {"views": 1})
        self.assertEqual(self.fetch("/count").body, b"2")

    def test_a_value_decode_refuses_gives_a_fresh_session(self) -> None:
        events: list[dict[str, Any]] = []
        self._app.settings["session"].events.on("session:invalid", events.append)
        response = self.fetch("/read", cookies=False, headers={"Cookie": f"{COOKIE}=v2.00"})
        self.assertEqual((response.code, response.body), (200, b"0"))
        self.assertEqual(len(events), 1)


class TestValidHook(SessionsCase):
    """``valid(handler, data)`` returning false refuses a loaded session."""

    def session_options(self) -> dict[str, Any]:
        def valid(handler: Any, data: dict[str, Any]) -> bool:
            return handler.request.headers.get("User-Agent") == data.get("agent", "tests")

        def before_save(handler: Any, session: Any) -> None:
            session["agent"] = handler.request.headers.get("User-Agent", "tests")

        return {"valid": valid, "before_save": before_save}

    def test_refused_session_is_fresh_and_emits_invalid(self) -> None:
        events: list[dict[str, Any]] = []
        self._app.settings["session"].events.on("session:invalid", events.append)
        self.fetch("/count", headers={"User-Agent": "browser-a"})
        self.assertEqual(self.fetch("/read", headers={"User-Agent": "browser-a"}).body, b"1")
        self.assertEqual(events, [])
        self.assertEqual(self.fetch("/read", headers={"User-Agent": "browser-b"}).body, b"0")
        self.assertEqual([event["key"] for event in events], [COOKIE])
        self.assertEqual(events[0]["reason"], "refused by valid()")


class TestSignedValue(SessionTestCase):
    def test_signed_cookie_is_tornado_signed_value_version_2(self) -> None:
        self.fetch("/count")
        value = self.jar[COOKIE].strip('"')
        decoded = tornado.web.decode_signed_value(
            COOKIE_SECRET, COOKIE, value, max_age_days=1, clock=self.clock
        )
        assert decoded is not None
        payload = orjson.loads(decoded)
        self.assertEqual(set(payload), {"e", "m", "i"})
        self.assertGreaterEqual(len(payload["i"]), 43)  # 256 bits, base64url


class TestVerifiedMemory(unittest.TestCase):
    """A value that verified once is read from memory, with its fields; only such values."""

    def setUp(self) -> None:
        self.checked: list[str] = []

        def unsign(name: str, value: str) -> bytes | None:
            self.checked.append(value)
            return tornado.web.decode_signed_value(
                COOKIE_SECRET, name, value, max_age_days=float("inf"), min_version=2
            )

        self.codec = CookieCodec(COOKIE, sign=Signer(COOKIE_SECRET).sign, unsign=unsign)
        self.config = SessionConfig(SessionOptions(store=MemoryStore()), self.codec)

    def test_a_value_verified_once_is_not_checked_again(self) -> None:
        value = self.codec.dumps({"e": 1, "m": None, "i": "an-id"})
        first = self.config.read_cookie(value)
        assert first is not None
        self.assertEqual((first.expires, first.session_id), (1.0, "an-id"))
        self.assertEqual(first.store_key, hash_session_id("an-id"))
        self.assertEqual(self.config.read_cookie(value), first)
        self.assertEqual(self.checked, [value])

    def test_a_refused_value_is_checked_every_time(self) -> None:
        signed = self.codec.dumps({"e": 1, "m": None, "i": "an-id"})
        forged = signed[:-1] + ("0" if signed[-1] != "0" else "1")
        wrong_shape = self.codec.dumps({"e": 1, "d": {}})  # a cookie session's, for a store
        for value in (forged, wrong_shape):
            self.assertIsNone(self.config.read_cookie(value))
            self.assertIsNone(self.config.read_cookie(value))
        self.assertEqual(self.checked, [forged, forged, wrong_shape, wrong_shape])

    def test_the_memory_is_bounded_oldest_first(self) -> None:
        values = [self.codec.dumps({"e": n, "i": f"id{n}"}) for n in range(COOKIE_MEMORY + 1)]
        for value in values:
            self.config.read_cookie(value)
        self.checked.clear()
        self.config.read_cookie(values[-1])
        self.config.read_cookie(values[1])
        self.assertEqual(self.checked, [])
        self.config.read_cookie(values[0])  # forgotten: checked again
        self.assertEqual(self.checked, [values[0]])
