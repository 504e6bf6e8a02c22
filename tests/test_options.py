"""A wrong option fails when the options are built, with a message naming it."""

from __future__ import annotations

import typing
import unittest
from typing import Any

import tornado.web
from tornado.testing import ExpectLog

from tests.base import COOKIE_SECRET, CounterHandler, SessionTestCase
from tornado_session import Session, SessionError, SessionMixin, SessionOptions
from tornado_session import options as options_module
from tornado_session.cookies import CookieCodec
from tornado_session.errors import SessionOptionError
from tornado_session.stores import MemoryStore

BAD_VALUES: list[tuple[str, Any]] = [
    ("store", "redis://localhost"),
    ("store", object()),
    ("key", ""),
    ("key", "has space"),
    ("key", "semi;colon"),
    ("key", 42),
    ("max_age", 0),
    ("max_age", -5),
    ("max_age", "1d"),
    ("max_age", float("nan")),
    ("max_age", float("inf")),
    ("max_age", True),
    ("auto_commit", "yes"),
    ("rolling", 1),
    ("renew", None),
    ("lazy", "false"),
    ("save_uninitialized", 0),
    ("signed", "true"),
    ("httponly", 1),
    ("secure", "auto"),
    ("samesite", "loose"),
    ("samesite", 1),
    ("domain", ""),
    ("domain", "a b.com"),
    ("domain", "x.com; secure"),
    ("path", "no-slash"),
    ("path", "/a;b"),
    ("prefix", 7),
    ("genid", "uuid4"),
    ("valid", 1),
    ("before_save", "save"),
    ("reconnect_timeout", -1),
    ("reconnect_timeout", "10"),
    ("touch_after", -1),
    ("absolute_max_age", 0),
    ("absolute_max_age", "1 day"),
    ("events", {}),
    ("clock", 12.0),
    ("on_conflict", "last"),
    ("on_conflict", "LAST_WRITE_WINS"),
    ("on_conflict", None),
    ("on_conflict", ["fail"]),
]


class TestOptionValidation(unittest.TestCase):
    def test_each_bad_value_names_its_option_and_the_value(self) -> None:
        for name, value in BAD_VALUES:
            with self.subTest(option=name, value=value):
                with self.assertRaises(SessionOptionError) as caught:
                    SessionOptions(**{name: value})
                message = str(caught.exception)
                self.assertIn(f"{name}=", message)
                self.assertIn("expected", message)

    def test_option_errors_are_session_errors_and_value_errors(self) -> None:
        with self.assertRaises(SessionError):
            SessionOptions(max_age=-1)
        with self.assertRaises(ValueError):
            SessionOptions(max_age=-1)

    def test_samesite_none_needs_secure(self) -> None:
        with self.assertRaisesRegex(SessionOptionError, "samesite="):
            SessionOptions(samesite="None", secure=False)
        self.assertEqual(SessionOptions(samesite="none", secure=True).samesite, "None")

    def test_samesite_is_case_insensitive_and_canonical(self) -> None:
        self.assertEqual(SessionOptions(samesite="strict").samesite, "Strict")
        self.assertIsNone(SessionOptions(samesite=None).samesite)

    def test_samesite_is_typed_with_the_three_values_browsers_know(self) -> None:
        # mypy then refuses samesite="Loose" where the options are written; at run
        # time any case is still accepted (above).
        annotation = SessionOptions.__dataclass_fields__["samesite"].type
        resolved = eval(annotation, vars(options_module))  # "SameSite | None"
        self.assertEqual(typing.get_args(resolved),
                         (typing.Literal["Strict", "Lax", "None"], type(None)))

    def test_touch_after_needs_rolling_and_must_be_shorter_than_max_age(self) -> None:
        with self.assertRaisesRegex(SessionOptionError, "touch_after=60.*rolling=True"):
            SessionOptions(touch_after=60)
        with self.assertRaisesRegex(SessionOptionError, "touch_after=100"):
            SessionOptions(touch_after=100, rolling=True, max_age=100)
        self.assertEqual(SessionOptions(touch_after=60, rolling=True).touch_after, 60)

    def test_encode_and_decode_come_together(self) -> None:
        with self.assertRaisesRegex(SessionOptionError, "encode="):
            SessionOptions(encode=lambda data: "x")
        with self.assertRaisesRegex(SessionOptionError, "decode="):
            SessionOptions(decode=lambda value: {})

    def test_unknown_keyword_is_named(self) -> None:
        with self.assertRaisesRegex(TypeError, "maxAge"):
            SessionOptions(maxAge=10)  # type: ignore[call-arg]

    def test_options_are_frozen(self) -> None:
        options = SessionOptions()
        with self.assertRaises(AttributeError):
            options.max_age = 5  # type: ignore[misc]

    def test_defaults_follow_the_design(self) -> None:
        options = SessionOptions()
        self.assertIsNone(options.store)
        self.assertEqual(options.key, "tornado.sess")
        self.assertEqual(options.max_age, 86400)
        self.assertEqual(
            (options.auto_commit, options.rolling, options.renew, options.lazy),
            (True, False, False, False),
        )
        self.assertEqual((options.signed, options.httponly, options.secure), (True, True, None))
        self.assertEqual((options.samesite, options.domain, options.path), ("Lax", None, "/"))
        self.assertEqual((options.prefix, options.reconnect_timeout), ("", 10.0))
        self.assertIsNone(options.touch_after)


class TestDictOptions(unittest.TestCase):
    def test_a_dict_is_accepted(self) -> None:
        store = MemoryStore()
        options = SessionOptions.coerce({"store": store, "max_age": 60})
        self.assertIs(options.store, store)
        self.assertEqual(options.max_age, 60)

    def test_an_unknown_dict_key_is_named(self) -> None:
        with self.assertRaisesRegex(SessionOptionError, "unknown session option 'maxAge'"):
            SessionOptions.coerce({"maxAge": 60})

    def test_a_bad_dict_value_is_named(self) -> None:
        with self.assertRaisesRegex(SessionOptionError, "rolling='yes'"):
            SessionOptions.coerce({"rolling": "yes"})

    def test_a_setting_of_the_wrong_type_is_named(self) -> None:
        with self.assertRaisesRegex(SessionOptionError, "setting 'session'"):
            SessionOptions.coerce(["store"])  # type: ignore[arg-type]


class TestApplicationStartUp(unittest.TestCase):
    """``configure_application`` checks the settings where the app is built."""

    def app(self, **settings: Any) -> tornado.web.Application:
        return tornado.web.Application([(r"/", CounterHandler)], **settings)

    def test_missing_cookie_secret_with_signed_cookies_fails(self) -> None:
        app = self.app(session=SessionOptions())
        with self.assertRaisesRegex(SessionOptionError, "signed=True needs .*cookie_secret"):
            SessionMixin.configure_application(app)

    def test_unsigned_cookies_with_their_own_codec_need_no_secret(self) -> None:
        codec = {"encode": lambda payload: "x", "decode": lambda value: {}}
        options = SessionMixin.configure_application(
            self.app(session={"signed": False, **codec})
        )
        self.assertFalse(options.signed)

    def test_unsigned_cookies_without_a_codec_of_their_own_are_refused(self) -> None:
        for store in (None, MemoryStore()):
            with self.subTest(store=store), self.assertRaisesRegex(
                SessionOptionError, r"signed=False is invalid; .*whatever the client sends"
            ):
                SessionOptions(signed=False, store=store)
        with self.assertRaisesRegex(SessionOptionError, "whatever the client sends"):
            CookieCodec("tornado.sess")

    def test_key_version_missing_from_the_secrets_fails(self) -> None:
        app = self.app(cookie_secret={1: "a" * 40}, key_version=2)
        with self.assertRaisesRegex(SessionOptionError, "key_version=2"):
            SessionMixin.configure_application(app)

    def test_a_bad_dict_fails_naming_the_option(self) -> None:
        app = self.app(cookie_secret=COOKIE_SECRET, session={"max_age": "forever"})
        with self.assertRaisesRegex(SessionOptionError, "max_age='forever'"):
            SessionMixin.configure_application(app)

    def test_no_session_setting_means_signed_cookie_sessions(self) -> None:
        options = SessionMixin.configure_application(self.app(cookie_secret=COOKIE_SECRET))
        self.assertIsNone(options.store)
        self.assertTrue(options.signed)


class TestSecondsSettings(unittest.TestCase):
    """Every setting in seconds is checked by one rule, and says so the same way."""

    def test_every_setting_in_seconds_refuses_the_same_values_with_the_same_message(self) -> None:
        def session_max_age(value: Any) -> None:
            Session().max_age = value

        settings: dict[str, tuple[Any, str]] = {
            "session option max_age": (lambda v: SessionOptions(max_age=v), "> 0 or None"),
            "session option reconnect_timeout": (
                lambda v: SessionOptions(reconnect_timeout=v), ">= 0"
            ),
            "session option absolute_max_age": (
                lambda v: SessionOptions(absolute_max_age=v), "> 0 or None"
            ),
            "session.max_age": (session_max_age, "> 0 or None"),
            "MemoryStore option sweep_interval": (lambda v: MemoryStore(sweep_interval=v), "> 0"),
        }
        for name, (build, accepted) in settings.items():
            for bad in (-1, True, "1", float("inf"), float("nan"), [5]):
                with self.subTest(setting=name, value=bad), \
                        self.assertRaises(SessionOptionError) as caught:
                    build(bad)
                self.assertEqual(
                    str(caught.exception),
                    f"{name}={bad!r} is invalid; expected a number of seconds {accepted}",
                )

    def test_a_number_of_seconds_is_accepted_as_given(self) -> None:
        self.assertEqual(SessionOptions(max_age=0.5).max_age, 0.5)
        self.assertEqual(SessionOptions(reconnect_timeout=0).reconnect_timeout, 0)
        self.assertEqual(MemoryStore(sweep_interval=2).sweep_interval, 2.0)
        session = Session()
        session.max_age = 30
        self.assertEqual(session.max_age, 30)


class TestMisconfiguredAppAtRequestTime(SessionTestCase):
    """An app that skipped ``configure_application`` fails loudly on each request."""

    def get_app(self) -> tornado.web.Application:
        return tornado.web.Application([(r"/count", CounterHandler)], session={"lazy": "no"})

    def test_every_request_is_a_500_that_logs_the_option(self) -> None:
        for _ in range(2):
            with ExpectLog("tornado.application", "Uncaught exception"):
                self.assertEqual(self.fetch("/count").code, 500)
