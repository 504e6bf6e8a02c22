"""The commit decision, tested directly: a pure function of state, options and time."""

from __future__ import annotations

import unittest
from typing import Any

from tornado_session.lifecycle import Action, SessionState, decide
from tornado_session.options import SessionOptions
from tornado_session.session import Session
from tornado_session.stores import MemoryStore

NOW = 1_000_000.0
STORE = MemoryStore()


def loaded(data: dict[str, Any] | None = None, **kwargs: Any) -> Session:
    return Session(data or {"user": "ada"}, id="some-id", is_new=False, max_age=100, **kwargs)


def state(**kwargs: Any) -> SessionState:
    values: dict[str, Any] = {"cookie_sent": True, "expires": NOW + 90, "written_at": NOW - 10}
    values.update(kwargs)
    return SessionState(**values)


def options(**kwargs: Any) -> SessionOptions:
    kwargs.setdefault("store", STORE)
    kwargs.setdefault("max_age", 100)
    return SessionOptions(**kwargs)


class TestDecide(unittest.TestCase):
    def test_unchanged_session_is_skipped(self) -> None:
        decision = decide(loaded(), state(), options(), now=NOW)
        self.assertEqual((decision.action, decision.uses_store), (Action.SKIP, False))

    def test_a_stale_cookie_is_saved_even_unchanged_but_not_after_a_server_error(self) -> None:
        cookie = options(store=None)
        decision = decide(loaded(), state(stale=True), cookie, now=NOW)
        self.assertEqual((decision.action, decision.reason), (Action.SAVE, "stale cookie"))
        self.assertEqual(decide(loaded(), state(stale=True), cookie, now=NOW, status=500).action,
                         Action.SKIP)
        self.assertEqual(decide(loaded(), state(stale=True), cookie, now=NOW, save=False).action,
                         Action.SKIP)

    def test_changed_session_is_saved(self) -> None:
        session = loaded()
        session["user"] = "grace"
        decision = decide(session, state(), options(), now=NOW)
        self.assertEqual((decision.action, decision.reason), (Action.SAVE, "changed"))
        self.assertTrue(decision.uses_store)

    def test_nested_change_is_seen(self) -> None:
        session = loaded({"cart": [1]})
        session["cart"].append(2)
        self.assertEqual(decide(session, state(), options(), now=NOW).action, Action.SAVE)

    def test_change_back_to_the_loaded_value_is_not_a_change(self) -> None:
        session = loaded({"n": 1})
        session["n"] = 2
        session["n"] = 1
        self.assertEqual(decide(session, state(), options(), now=NOW).action, Action.SKIP)

    def test_save_forces(self) -> None:
        session = loaded()
        session.save()
        decision = decide(session, state(), options(), now=NOW)
        self.assertEqual((decision.action, decision.reason), (Action.SAVE, "forced"))

    def test_session_save_true_forces_and_false_skips_everything(self) -> None:
        self.assertEqual(decide(loaded(), state(), options(), now=NOW, save=True).action,
                         Action.SAVE)
        session = loaded()
        session["x"] = 1
        destroyed = state(destroyed=True, retired_key="k")
        self.assertEqual(decide(session, destroyed, options(), now=NOW, save=False).action,
                         Action.SKIP)

    def test_changing_max_age_forces_a_save(self) -> None:
        session = loaded()
        session.max_age = 30 * 86400
        self.assertEqual(decide(session, state(), options(), now=NOW).action, Action.SAVE)

    def test_server_error_writes_nothing(self) -> None:
        session = loaded()
        session["user"] = "grace"
        for status in (500, 502, 503):
            self.assertEqual(decide(session, state(), options(), now=NOW, status=status).action,
                             Action.SKIP)
        for status in (302, 404, 418):
            self.assertEqual(decide(session, state(), options(), now=NOW, status=status).action,
                             Action.SAVE)

    def test_server_error_still_destroys_and_retires_a_regenerated_id(self) -> None:
        session = loaded()
        session["user"] = "grace"
        for kind in ("destroyed", "regenerated"):
            failed = state(**{kind: True, "retired_key": "k"})
            decision = decide(session, failed, options(), now=NOW, status=500)
            self.assertEqual((decision.action, decision.uses_store), (Action.DESTROY, True))
            self.assertEqual(decision.reason, f"{kind} in a failed response")

    def test_new_empty_session_is_skipped_unless_save_uninitialized(self) -> None:
        fresh = Session()
        no_cookie = SessionState()
        self.assertEqual(decide(fresh, no_cookie, options(), now=NOW).action, Action.SKIP)
        decision = decide(fresh, no_cookie, options(save_uninitialized=True), now=NOW)
        self.assertEqual((decision.action, decision.reason), (Action.SAVE, "uninitialized"))

    def test_refused_cookie_with_nothing_to_save_is_expired(self) -> None:
        decision = decide(Session(), SessionState(cookie_sent=True), options(), now=NOW)
        self.assertEqual((decision.action, decision.uses_store), (Action.DESTROY, False))

    def test_destroy_deletes_the_retired_record(self) -> None:
        decision = decide(Session(), state(destroyed=True, retired_key="k"), options(), now=NOW)
        self.assertEqual((decision.action, decision.uses_store), (Action.DESTROY, True))

    def test_destroy_then_new_data_regenerates(self) -> None:
        fresh = Session()
        fresh["flash"] = "bye"
        decision = decide(fresh, state(destroyed=True, retired_key="k"), options(), now=NOW)
        self.assertEqual(decision.action, Action.REGENERATE)

    def test_regenerate(self) -> None:
        decision = decide(loaded(), state(regenerated=True, retired_key="k"), options(), now=NOW)
        self.assertEqual((decision.action, decision.uses_store), (Action.REGENERATE, True))

    def test_rolling_touches_an_unchanged_session(self) -> None:
        decision = decide(loaded(), state(), options(rolling=True), now=NOW)
        self.assertEqual((decision.action, decision.uses_store), (Action.TOUCH, True))

    def test_touch_after_limits_rolling_store_writes(self) -> None:
        opts = options(rolling=True, touch_after=60)
        recent = decide(loaded(), state(written_at=NOW - 59), opts, now=NOW)
        self.assertEqual((recent.action, recent.uses_store), (Action.TOUCH, False))
        due = decide(loaded(), state(written_at=NOW - 60), opts, now=NOW)
        self.assertEqual((due.action, due.uses_store), (Action.TOUCH, True))

    def test_renew_only_when_less_than_half_remains(self) -> None:
        opts = options(renew=True)
        self.assertEqual(decide(loaded(), state(expires=NOW + 51), opts, now=NOW).action,
                         Action.SKIP)
        decision = decide(loaded(), state(expires=NOW + 49), opts, now=NOW)
        self.assertEqual((decision.action, decision.reason), (Action.SAVE, "renew"))

    def test_cookie_sessions_never_write_a_store(self) -> None:
        session = loaded()
        session["user"] = "grace"
        decision = decide(session, state(), options(store=None), now=NOW)
        self.assertEqual((decision.action, decision.uses_store), (Action.SAVE, False))

    def test_after_headers_a_known_id_is_still_written_without_a_cookie(self) -> None:
        session = loaded()
        session["user"] = "grace"
        decision = decide(session, state(), options(), now=NOW, headers_sent=True)
        self.assertEqual(decision.action, Action.SAVE)
        self.assertTrue(decision.uses_store)
        self.assertFalse(decision.send_cookie)
        self.assertTrue(decision.lost_cookie)

    def test_after_headers_a_new_session_cannot_be_saved(self) -> None:
        fresh = Session()
        fresh["user"] = "grace"
        decision = decide(fresh, SessionState(), options(), now=NOW, headers_sent=True)
        self.assertEqual(decision.action, Action.SKIP)
        self.assertTrue(decision.lost_cookie)

    def test_after_headers_a_cookie_session_cannot_be_saved(self) -> None:
        session = loaded()
        session["user"] = "grace"
        decision = decide(session, state(), options(store=None), now=NOW, headers_sent=True)
        self.assertEqual(decision.action, Action.SKIP)

    def test_after_headers_destroy_still_deletes_the_record(self) -> None:
        decision = decide(Session(), state(destroyed=True, retired_key="k"), options(), now=NOW,
                          headers_sent=True)
        self.assertEqual((decision.action, decision.uses_store), (Action.DESTROY, True))
        self.assertFalse(decision.send_cookie)

    def test_order_destroy_beats_forced_save_and_changes(self) -> None:
        fresh = Session()
        fresh.save()
        decision = decide(fresh, state(destroyed=True, retired_key="k"), options(), now=NOW)
        self.assertEqual(decision.action, Action.DESTROY)
