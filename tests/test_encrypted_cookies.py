"""Encrypted cookie sessions: confidentiality, tampering, keys, rotation, migration, start-up.

What a user sees: the cookie a browser holds reveals nothing of the session; any
change to it gives a fresh session (200, ``session:invalid``), never a 500; keys
rotate without logging anyone out; an application switching from signed to
encrypted cookies keeps its users' sessions; bad keys fail at start-up.
"""

from __future__ import annotations

import base64
import builtins
import struct
import sys
from typing import Any

import orjson
import pytest
import tornado.web
from tornado.testing import gen_test

from tests.base import COOKIE, COOKIE_SECRET, SessionTestCase
from tests.test_bad_input import BadInputCase
from tests.test_properties_cookies import cookie_properties
from tornado_session import SessionMixin, SessionOptions
from tornado_session.crypto import ENCRYPTED_PREFIX, EncryptedCookieCodec, Keyring
from tornado_session.errors import CookieTooLargeError, SessionOptionError

KEY_1 = "first-key-" + "1" * 40
KEY_2 = "second-key-" + "2" * 40
SECRET_WORD = "my-very-private-address"


def key_version_of(value: str) -> int:
    """The key version an encrypted cookie value was sealed under (its 9th byte)."""
    text = value.strip('"')[len(ENCRYPTED_PREFIX):]
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))[8]


class PrivateWriter(SessionMixin, tornado.web.RequestHandler):
    """Counts views and keeps a private word in the session."""

    def get(self) -> None:
        self.session["views"] = self.session.get("views", 0) + 1
        self.session["address"] = SECRET_WORD
        self.write(str(self.session["views"]))


class EncryptedCase(BadInputCase):
    """Cookie sessions encrypted with ``keys``; the app's ``cookie_secret`` is ``secret``."""

    keys: dict[int, str] = {1: KEY_1}
    secret: Any = None

    def make_store(self) -> None:
        return None

    def session_options(self) -> dict[str, Any]:
        return {"encryption_keys": self.keys}

    def app_settings(self) -> dict[str, Any]:
        return {"cookie_secret": self.secret}

    def use_keys(self, keys: dict[int, str], *, secret: Any = None) -> None:
        """Restart the application with other keys (rotation is a restart)."""
        self.keys, self.secret = keys, secret
        self._app = self.get_app()
        self.http_server.request_callback = self._app
        self.setUp_events()

    def setUp_events(self) -> None:
        self.events.clear()
        emitter = self._app.settings["session"].events
        for name in ("missed", "invalid", "expired"):
            emitter.on(f"session:{name}", lambda p, n=name: self.events.append((n, p)))

    def cookie(self) -> str:
        return self.jar[COOKIE].strip('"')


class TestEncryptedCookieSessions(EncryptedCase):
    def get_handlers(self) -> list[Any]:
        return [*super().get_handlers(), (r"/private", PrivateWriter)]

    def test_the_session_works_and_its_cookie_reveals_nothing(self) -> None:
        self.assertEqual(self.fetch("/private").body, b"1")
        self.assertEqual(self.fetch("/private").body, b"2")
        value = self.cookie()
        self.assertTrue(value.startswith(ENCRYPTED_PREFIX))
        text = value[len(ENCRYPTED_PREFIX):]
        decoded = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        for needle in (SECRET_WORD.encode(), b"views", b'"d"', b"86400"):
            self.assertNotIn(needle, decoded)
            self.assertNotIn(needle.decode(), value)

    def test_the_encrypted_cookie_is_smaller_than_the_signed_one(self) -> None:
        self.fetch("/private")
        encrypted = self.cookie()
        self.use_keys(self.keys)
        signed_app = tornado.web.Application(
            self.get_handlers(), cookie_secret=COOKIE_SECRET,
            session=SessionOptions(clock=self.clock),
        )
        self.http_server.request_callback = signed_app
        self.jar.clear()
        self.fetch("/private")
        signed = self.cookie()
        self.assertTrue(signed.startswith("2|"))
        self.assertLess(len(encrypted), len(signed))

    def test_an_unchanged_session_sets_no_cookie(self) -> None:
        self.fetch("/count")
        response = self.fetch("/read")
        self.assertEqual(response.body, b"1")
        self.assertNotIn("Set-Cookie", response.headers)

    def test_expired_cookie_gives_a_fresh_session(self) -> None:
        self.fetch("/count")
        self.clock.advance(86400 + 1)
        self.assertEqual(self.fetch("/read").body, b"0")
        self.assertEqual([name for name, _ in self.events], ["expired"])

    @gen_test
    async def test_tampering_with_any_character_gives_a_fresh_session(self) -> None:
        cookie = await self.valid_cookie()
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        for at in range(len(ENCRYPTED_PREFIX), len(cookie)):
            # Change the character's 6 bits so that its byte(s) change; the last
            # character of unpadded base64 carries fewer bits: change its high ones.
            char = cookie[at]
            index = alphabet.index(char)
            replacement = alphabet[index ^ (0x20 if at == len(cookie) - 1 else 0x01)]
            tampered = cookie[:at] + replacement + cookie[at + 1:]
            await self.assert_fresh(f"{COOKIE}={tampered}")

    @gen_test
    async def test_tampering_with_any_byte_of_the_token_gives_a_fresh_session(self) -> None:
        cookie = await self.valid_cookie()
        text = cookie[len(ENCRYPTED_PREFIX):]
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        for at in range(len(raw)):
            flipped = raw[:at] + bytes([raw[at] ^ 0x01]) + raw[at + 1:]
            value = ENCRYPTED_PREFIX + base64.urlsafe_b64encode(flipped).rstrip(b"=").decode()
            await self.assert_fresh(f"{COOKIE}={value}")

    @gen_test
    async def test_a_later_expiry_written_into_the_cookie_is_refused(self) -> None:
        cookie = await self.valid_cookie()
        text = cookie[len(ENCRYPTED_PREFIX):]
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        expires = struct.unpack(">d", raw[:8])[0]
        later = struct.pack(">d", expires + 365 * 86400) + raw[8:]
        value = ENCRYPTED_PREFIX + base64.urlsafe_b64encode(later).rstrip(b"=").decode()
        await self.assert_fresh(f"{COOKIE}={value}")

    @gen_test
    async def test_a_cookie_moved_to_another_name_is_refused(self) -> None:
        other = EncryptedCookieCodec("other.sess", {1: KEY_1})
        value = other.dumps({"e": self.clock() + 3600, "m": 3600, "d": {"views": 41}})
        self.assertIsNotNone(other.loads(value))  # it is a good cookie of that name
        await self.assert_fresh(f"{COOKIE}={value}")

    @gen_test
    async def test_a_signed_cookie_is_refused_without_a_cookie_secret(self) -> None:
        signed = tornado.web.create_signed_value(
            COOKIE_SECRET, COOKIE, orjson.dumps({"e": self.clock() + 3600, "m": 3600,
                                                 "d": {"views": 41}}), version=2,
        ).decode()
        await self.assert_fresh(f"{COOKIE}={signed}")

    @gen_test
    async def test_garbage_after_the_prefix_gives_a_fresh_session(self) -> None:
        for value in ("e1.", "e1.!!!!", "e1.AAAA", "e1." + "A" * 40, "e1.=" * 3,
                      "e1." + "A" * 5000):
            await self.assert_fresh(f"{COOKIE}={value}")

    @gen_test
    async def test_an_encrypted_payload_that_is_not_a_session_is_refused(self) -> None:
        codec = EncryptedCookieCodec(COOKIE, self.keys)
        keyring = codec._keys
        for plaintext in (b"not json", b"[1, 2]", b'{"m": 3600}', b'{"m": 3600, "d": 5}'):
            header = struct.pack(">d", self.clock() + 3600)
            token = keyring.seal(plaintext, codec._associated + header)
            value = ENCRYPTED_PREFIX + base64.urlsafe_b64encode(header + token).rstrip(
                b"=").decode()
            await self.assert_fresh(f"{COOKIE}={value}")

    @gen_test
    async def test_a_cookie_over_4_kb_is_a_500_naming_its_size_and_keeps_the_old_one(
        self,
    ) -> None:
        await self.assert_failed_commit_keeps_the_session(
            "/too-big", r"encrypted session cookie 'tornado.sess' would be \d{4} bytes, more "
            r"than the 4093 bytes"
        )


class Flash(SessionMixin, tornado.web.RequestHandler):
    def get(self) -> None:
        self.flash(SECRET_WORD)
        self.write("ok")


class ShowFlashes(SessionMixin, tornado.web.RequestHandler):
    def get(self) -> None:
        self.write(",".join(self.get_flashed_messages()))


class TestFlashCookieOfEncryptedSessions(EncryptedCase):
    def get_handlers(self) -> list[Any]:
        return [(r"/flash", Flash), (r"/show", ShowFlashes)]

    def test_the_flash_cookie_is_encrypted_too_and_reads_back_once(self) -> None:
        self.fetch("/flash")
        value = self.jar[COOKIE + ".flash"].strip('"')
        self.assertTrue(value.startswith(ENCRYPTED_PREFIX))
        text = value[len(ENCRYPTED_PREFIX):]
        self.assertNotIn(SECRET_WORD.encode(),
                         base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        self.assertEqual(self.fetch("/show").body.decode(), SECRET_WORD)

    def test_a_session_cookie_value_is_not_a_flash_cookie(self) -> None:
        codec = EncryptedCookieCodec(COOKIE, self.keys)
        value = codec.dumps({"e": self.clock() + 3600, "m": 3600, "d": {"views": 1}})
        self.assertIsNone(codec.renamed(COOKIE + ".flash").loads(value))
        self.assertIsNotNone(codec.loads(value))


class TestKeys(EncryptedCase):
    def test_a_wrong_key_gives_a_fresh_session(self) -> None:
        self.fetch("/count")
        self.use_keys({1: "another-key-" + "9" * 40})
        self.assertEqual(self.fetch("/read").body, b"0")
        self.assertEqual([name for name, _ in self.events], ["invalid"])

    def test_a_removed_key_gives_a_fresh_session(self) -> None:
        self.fetch("/count")
        self.use_keys({2: KEY_2})
        self.assertEqual(self.fetch("/read").body, b"0")
        self.assertEqual([name for name, _ in self.events], ["invalid"])

    def test_rotation_reads_old_cookies_and_rewrites_them_under_the_newest_key(self) -> None:
        self.fetch("/count")
        self.fetch("/count")
        self.assertEqual(key_version_of(self.cookie()), 1)
        old_cookie = self.cookie()
        self.use_keys({1: KEY_1, 2: KEY_2})
        # An unchanged read still answers with the cookie under the newest key.
        response = self.fetch("/read")
        self.assertEqual(response.body, b"2")
        self.assertIn("Set-Cookie", response.headers)
        self.assertEqual(key_version_of(self.cookie()), 2)
        # From then on it is current: nothing more to write for a read.
        self.assertNotIn("Set-Cookie", self.fetch("/read").headers)
        self.assertEqual(self.fetch("/count").body, b"3")
        self.assertEqual(key_version_of(self.cookie()), 2)
        new_cookie = self.cookie()
        # Another user's old cookie still reads while key 1 is listed.
        self.jar[COOKIE] = old_cookie
        self.assertEqual(self.fetch("/read").body, b"2")
        # Once key 1 is removed, only cookies under key 2 read.
        self.use_keys({2: KEY_2})
        self.jar[COOKIE] = old_cookie
        self.assertEqual(self.fetch("/read").body, b"0")
        self.jar[COOKIE] = new_cookie
        self.assertEqual(self.fetch("/read").body, b"3")

    def test_the_highest_version_encrypts_whatever_the_order_of_the_dict(self) -> None:
        self.use_keys({7: KEY_2, 3: KEY_1})
        self.fetch("/count")
        self.assertEqual(key_version_of(self.cookie()), 7)


class TestMigrationFromSignedCookies(EncryptedCase):
    secret = COOKIE_SECRET

    def test_a_signed_cookie_is_read_once_and_answered_encrypted(self) -> None:
        signed_app = tornado.web.Application(
            self.get_handlers(), cookie_secret=COOKIE_SECRET,
            session=SessionOptions(clock=self.clock),
        )
        encrypted_app = self._app
        self.http_server.request_callback = signed_app
        self.fetch("/count")
        self.fetch("/count")
        self.assertTrue(self.cookie().startswith("2|"))
        # The application switches to encrypted cookies, keeping its cookie_secret.
        self.http_server.request_callback = encrypted_app
        response = self.fetch("/read")
        self.assertEqual(response.body, b"2")
        self.assertTrue(self.cookie().startswith(ENCRYPTED_PREFIX))
        self.assertEqual(self.fetch("/count").body, b"3")
        self.assertNotIn("Set-Cookie", self.fetch("/read").headers)
        # Once cookie_secret is gone, signed cookies are refused; encrypted ones read.
        encrypted_cookie = self.cookie()
        self.use_keys(self.keys, secret=None)
        self.assertEqual(self.fetch("/read").body, b"3")
        self.http_server.request_callback = signed_app
        self.jar.clear()
        self.fetch("/count")
        self.use_keys(self.keys, secret=None)
        self.assertEqual(self.fetch("/read").body, b"0")
        self.assertEqual([name for name, _ in self.events], ["invalid"])
        self.jar[COOKIE] = encrypted_cookie
        self.assertEqual(self.fetch("/read").body, b"3")

    def test_a_tampered_signed_cookie_is_refused_during_migration(self) -> None:
        signed = tornado.web.create_signed_value(
            COOKIE_SECRET, COOKIE, orjson.dumps({"e": self.clock() + 3600, "m": 3600,
                                                 "d": {"views": 41}}), version=2,
        ).decode()
        self.jar[COOKIE] = signed
        self.assertEqual(self.fetch("/read").body, b"41")
        self.jar[COOKIE] = signed[:-1] + ("0" if signed[-1] != "0" else "1")
        self.assertEqual(self.fetch("/read").body, b"0")


class TestNonces:
    def test_no_nonce_is_reused_across_100_000_encryptions(self) -> None:
        keyring = Keyring({1: KEY_1}, purpose=b"test")
        nonces = {keyring.seal(b"{}", b"")[1:13] for _ in range(100_000)}
        assert len(nonces) == 100_000

    def test_two_keyrings_and_a_forked_child_start_at_different_nonces(self) -> None:
        first = Keyring({1: KEY_1}, purpose=b"test")
        second = Keyring({1: KEY_1}, purpose=b"test")
        assert first.next_nonce() != second.next_nonce()
        before = first.next_nonce()
        from tornado_session import crypto

        crypto._reseed_after_fork()  # what os.register_at_fork runs in a child
        after = first.next_nonce()
        assert int.from_bytes(after, "big") != int.from_bytes(before, "big") + 1

    def test_the_same_session_encrypts_differently_each_time(self) -> None:
        codec = EncryptedCookieCodec(COOKIE, {1: KEY_1})
        payload = {"e": 1e9, "m": 3600, "d": {"views": 1}}
        assert codec.dumps(payload) != codec.dumps(payload)
        assert codec.loads(codec.dumps(payload)) == payload


class TestStartUp:
    def build(self, **options: Any) -> None:
        SessionOptions(**options)

    @pytest.mark.parametrize(
        ("keys", "says"),
        [
            ({}, r"at least one key"),
            ("a-single-string-" + "x" * 40, r"expected \{version: secret\}"),
            ({1: "short"}, r"key of version 1 is 5 bytes, too short; expected at least 32"),
            ({1: b"\x00" * 31}, r"31 bytes, too short"),
            ({"1": KEY_1}, r"key version '1' is invalid; expected an int from 0 to 255"),
            ({256: KEY_1}, r"key version 256 is invalid"),
            ({True: KEY_1}, r"key version True is invalid"),
            ({1: 12345}, r"the key of version 1 is a int; expected str or bytes"),
            ({1: None}, r"the key of version 1 is a NoneType"),
        ],
    )
    def test_bad_keys_fail_at_start_up_naming_the_problem(self, keys: Any, says: str) -> None:
        with pytest.raises(SessionOptionError, match=r"session option encryption_keys") as info:
            self.build(encryption_keys=keys)
        assert info.match(says)
        if isinstance(keys, dict):
            for secret in keys.values():
                if isinstance(secret, str) and len(secret) > 8:
                    assert secret not in str(info.value)

    def test_keys_with_a_store_point_to_encrypted_store(self) -> None:
        from tornado_session.stores import MemoryStore

        with pytest.raises(SessionOptionError, match=r"EncryptedStore\(store, keys="):
            self.build(encryption_keys={1: KEY_1}, store=MemoryStore())

    def test_keys_with_a_custom_codec_are_refused(self) -> None:
        with pytest.raises(SessionOptionError, match=r"session option encode=.*encryption_keys"):
            self.build(encryption_keys={1: KEY_1}, encode=orjson.dumps, decode=orjson.loads)

    def test_keys_without_the_package_fail_naming_the_extra(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        real_import = builtins.__import__

        def no_cryptography(name: str, *args: Any, **kwargs: Any) -> Any:
            if name == "cryptography" or name.startswith("cryptography."):
                raise ImportError(f"No module named {name!r}")
            return real_import(name, *args, **kwargs)

        for name in [m for m in sys.modules if m.startswith("cryptography")]:
            monkeypatch.delitem(sys.modules, name)
        monkeypatch.setattr(builtins, "__import__", no_cryptography)
        with pytest.raises(SessionOptionError) as info:
            self.build(encryption_keys={1: KEY_1})
        message = str(info.value)
        assert "encryption_keys is given" in message
        assert 'pip install "tornado-async-session[crypto]"' in message

    def test_the_keys_are_not_in_the_options_repr(self) -> None:
        options = SessionOptions(encryption_keys={1: KEY_1})
        assert KEY_1 not in repr(options)

    def test_editing_the_dict_given_changes_nothing(self) -> None:
        keys = {1: KEY_1}
        options = SessionOptions(encryption_keys=keys)
        keys[1] = "x"
        assert options.encryption_keys == {1: KEY_1.encode()}

    def test_a_large_payload_raises_naming_its_size(self) -> None:
        codec = EncryptedCookieCodec(COOKIE, {1: KEY_1})
        with pytest.raises(CookieTooLargeError, match=r"would be (\d{4}) bytes") as info:
            codec.dumps({"e": 1e9, "m": 3600, "d": {"big": "x" * 4000}})
        assert info.value.size > 4093


class TestEncryptedCookieProperties(cookie_properties()):
    """Hypothesis: any header, any bytes, any edit of a real encrypted cookie: 0 500s."""

    __test__ = True

    def make_store(self) -> None:
        return None

    def session_options(self) -> dict[str, Any]:
        return {"encryption_keys": {1: KEY_1}}


class TestSignedCookiesStillOneAfterAnother(SessionTestCase):
    """Plain signed cookie sessions are untouched by the encrypted mode."""

    def make_store(self) -> None:
        return None

    def test_signed_cookies_are_signed_and_not_rewritten_on_read(self) -> None:
        self.fetch("/count")
        self.assertTrue(self.jar[COOKIE].strip('"').startswith("2|"))
        self.assertNotIn("Set-Cookie", self.fetch("/read").headers)
