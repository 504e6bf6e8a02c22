"""Session.increment and Session.append as a handler sees them: values, bad input, cookies."""

from __future__ import annotations

import unittest
from typing import Any

import tornado.web

from tests.base import COOKIE_SECRET, SessionTestCase
from tornado_session import Session, SessionMixin, SessionOptions
from tornado_session.errors import SessionOptionError, SessionSerializationError
from tornado_session.serializers import Append, Increment


class TestIncrement(unittest.TestCase):
    def test_adds_to_the_value_and_starts_a_missing_key_at_zero(self) -> None:
        session = Session({"n": 5})
        session.increment("n")
        session.increment("n", by=-3)
        session.increment("new", by=7)
        self.assertEqual(dict(session), {"n": 3, "new": 7})

    def test_a_by_that_is_not_an_int_is_refused_and_changes_nothing(self) -> None:
        for by in (1.5, True, "1", None):
            with self.subTest(by=by):
                session = Session({"n": 1})
                with self.assertRaisesRegex(TypeError, r"by must be an int"):
                    session.increment("n", by=by)  # type: ignore[arg-type]
                self.assertEqual(dict(session), {"n": 1})
                self.assertIsNone(session.pending_ops({"n": 1}))

    def test_a_value_that_is_not_an_int_is_refused_and_changes_nothing(self) -> None:
        for value in ("3", 1.5, True, None, [1]):
            with self.subTest(value=value):
                session = Session({"n": value})
                with self.assertRaisesRegex(TypeError, r"'n' is a \w+, not an int"):
                    session.increment("n")
                self.assertEqual(dict(session), {"n": value})


class TestAppend(unittest.TestCase):
    def test_appends_and_keeps_the_newest_items(self) -> None:
        session = Session({"log": [1, 2]})
        session.append("log", 3, limit=3)
        session.append("log", {"n": 4}, limit=3)
        session.append("new", "a", limit=2)
        self.assertEqual(dict(session), {"log": [2, 3, {"n": 4}], "new": ["a"]})

    def test_a_bad_limit_is_refused(self) -> None:
        for limit, error in ((0, ValueError), (-1, ValueError), (1.5, TypeError),
                             (True, TypeError), (None, TypeError), ("5", TypeError)):
            with self.subTest(limit=limit):
                session = Session({"log": [1]})
                with self.assertRaisesRegex(error, r"limit"):
                    session.append("log", 2, limit=limit)  # type: ignore[arg-type]
                self.assertEqual(dict(session), {"log": [1]})

    def test_a_value_under_the_key_that_is_not_a_list_is_refused(self) -> None:
        for value in ("abc", {"a": 1}, 3, None):
            with self.subTest(value=value):
                session = Session({"log": value})
                with self.assertRaisesRegex(TypeError, r"'log' is a \w+, not a list"):
                    session.append("log", 1, limit=5)
                self.assertEqual(dict(session), {"log": value})

    def test_an_item_that_is_not_json_is_refused_naming_the_key(self) -> None:
        session = Session({"log": [1]})
        with self.assertRaises(SessionSerializationError) as caught:
            session.append("log", object(), limit=5)
        self.assertEqual(caught.exception.key, "log")
        self.assertEqual(dict(session), {"log": [1]})


class TestPendingOps(unittest.TestCase):
    def test_calls_on_one_key_add_up(self) -> None:
        session = Session({"n": 1, "log": []})
        session.increment("n")
        session.increment("n", by=2)
        session.append("log", 1, limit=5)
        session.append("log", 2, limit=5)
        self.assertEqual(session.pending_ops({"n": 1, "log": []}),
                         {"n": Increment(3), "log": Append((1, 2), 5)})

    def test_a_key_also_assigned_is_written_as_a_plain_value(self) -> None:
        session = Session({"n": 1, "m": 1})
        session.increment("n")
        session["n"] = 10
        session.increment("m")
        del session["m"]
        self.assertIsNone(session.pending_ops({"n": 1, "m": 1}))

    def test_none_when_neither_method_was_called(self) -> None:
        session = Session({"n": 1})
        session["n"] = 2
        self.assertIsNone(session.pending_ops({"n": 1}))


class Increments(SessionMixin, tornado.web.RequestHandler):
    async def get(self) -> None:
        self.session.increment("views")
        self.session.append("seen", self.get_argument("page", "/"), limit=2)
        await self.commit_session()
        self.write({"views": self.session["views"], "seen": self.session["seen"]})


class TestCookieSessions(SessionTestCase):
    """Nothing is shared in a cookie session: the methods are plain updates."""

    def make_store(self) -> None:
        return None

    def get_handlers(self) -> list[Any]:
        return [(r"/", Increments)]

    def test_increment_and_append_update_the_cookie(self) -> None:
        bodies = [self.fetch(f"/?page=/p{i}").body for i in range(3)]
        self.assertEqual(bodies[-1], b'{"views": 3, "seen": ["/p1", "/p2"]}')


class TestStoreSessions(TestCookieSessions):
    def make_store(self) -> Any:
        return super(TestCookieSessions, self).make_store()

    def test_the_store_counts_and_a_second_commit_writes_nothing_more(self) -> None:
        self.assertEqual(self.fetch("/").body, b'{"views": 1, "seen": ["/"]}')
        self.store.reset_calls()  # type: ignore[union-attr]
        self.assertEqual(self.fetch("/").body, b'{"views": 2, "seen": ["/", "/"]}')
        self.assertEqual(self.store.calls, {"get": 1, "set": 1, "destroy": 0, "touch": 0})  # type: ignore[union-attr]


class TestOnConflictOption(unittest.TestCase):
    def test_a_bad_on_conflict_fails_at_start_up_naming_the_choices(self) -> None:
        app = tornado.web.Application(
            [], cookie_secret=COOKIE_SECRET, session={"on_conflict": "merge"}
        )
        with self.assertRaises(SessionOptionError) as caught:
            SessionMixin.configure_application(app)
        self.assertIn("on_conflict='merge'", str(caught.exception))
        for choice in ("'last_write_wins'", "'first_write_wins'", "'fail'"):
            self.assertIn(choice, str(caught.exception))

    def test_last_write_wins_is_the_default(self) -> None:
        self.assertEqual(SessionOptions().on_conflict, "last_write_wins")
