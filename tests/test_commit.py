"""When and how the session is committed: every way a Tornado response can end."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import tornado.web
from tornado.testing import ExpectLog

from tests.base import COOKIE, CountingStore, SessionTestCase
from tornado_session import SessionMixin


class LoginRedirect(SessionMixin, tornado.web.RequestHandler):
    def post(self) -> None:
        self.session["user"] = "ada"
        self.redirect("/read-user")


class ReadUser(SessionMixin, tornado.web.RequestHandler):
    def get(self) -> None:
        self.write(self.session.get("user") or "-")


class ExplicitFinish(SessionMixin, tornado.web.RequestHandler):
    def get(self) -> None:
        self.session["user"] = "explicit"
        self.finish("done")


class AwaitedFinish(SessionMixin, tornado.web.RequestHandler):
    async def get(self) -> None:
        self.session["user"] = "awaited"
        await self.finish("done")
        self.finished_after_await = True


class RaisesHTTPError(SessionMixin, tornado.web.RequestHandler):
    def get(self) -> None:
        self.session["user"] = "teapot"
        raise tornado.web.HTTPError(418)


class Crashes(SessionMixin, tornado.web.RequestHandler):
    def get(self) -> None:
        self.session["user"] = "half-done"
        raise RuntimeError("boom")


class SendsError(SessionMixin, tornado.web.RequestHandler):
    def get(self) -> None:
        self.session["user"] = "server-error"
        self.send_error(503)


ran_after_prepare_redirect: list[str] = []


class PrepareRedirects(SessionMixin, tornado.web.RequestHandler):
    async def prepare(self) -> None:
        await super().prepare()
        self.session["user"] = "from-prepare"
        self.redirect("/read-user")

    def get(self) -> None:
        ran_after_prepare_redirect.append("get")
        self.write("handler body ran")


class FlushesFirst(SessionMixin, tornado.web.RequestHandler):
    async def get(self) -> None:
        self.write("partial ")
        await self.flush()
        self.session["user"] = "after-flush"
        self.write("rest")


class AsyncCounter(SessionMixin, tornado.web.RequestHandler):
    async def get(self) -> None:
        await asyncio.sleep(0)
        self.session["views"] = self.session.get("views", 0) + 1
        self.write(str(self.session["views"]))


class Login(SessionMixin, tornado.web.RequestHandler):
    async def post(self) -> None:
        self.session["user"] = "ada"
        await self.regenerate_session()
        self.redirect("/read-user")


class Logout(SessionMixin, tornado.web.RequestHandler):
    async def post(self) -> None:
        await self.destroy_session()
        self.redirect("/read-user")


class AssignNone(SessionMixin, tornado.web.RequestHandler):
    def post(self) -> None:
        self.session = None
        self.write("bye")


class ReplaceData(SessionMixin, tornado.web.RequestHandler):
    def post(self) -> None:
        self.session = {"user": "replaced"}


class ForceSave(SessionMixin, tornado.web.RequestHandler):
    def get(self) -> None:
        self.session_save = True
        self.write(str(self.session.get("views", 0)))


class NeverSave(SessionMixin, tornado.web.RequestHandler):
    def get(self) -> None:
        self.session_save = False
        self.session["views"] = 1000


class RememberMe(SessionMixin, tornado.web.RequestHandler):
    def post(self) -> None:
        self.session.max_age = 30 * 86400


class BrowserSession(SessionMixin, tornado.web.RequestHandler):
    def post(self) -> None:
        self.session.max_age = None
        self.session["user"] = "ada"


class CommitHandlers(SessionTestCase):
    def get_handlers(self) -> list[Any]:
        return [
            *super().get_handlers(),
            (r"/login-redirect", LoginRedirect),
            (r"/read-user", ReadUser),
            (r"/explicit", ExplicitFinish),
            (r"/awaited", AwaitedFinish),
            (r"/teapot", RaisesHTTPError),
            (r"/crash", Crashes),
            (r"/send-error", SendsError),
            (r"/prepare-redirect", PrepareRedirects),
            (r"/flush", FlushesFirst),
            (r"/async-count", AsyncCounter),
            (r"/login", Login),
            (r"/logout", Logout),
            (r"/assign-none", AssignNone),
            (r"/replace", ReplaceData),
            (r"/force", ForceSave),
            (r"/never", NeverSave),
            (r"/remember", RememberMe),
            (r"/browser-session", BrowserSession),
        ]

    @property
    def counting(self) -> CountingStore:
        assert isinstance(self.store, CountingStore)
        return self.store


class TestCommitBeforeResponse(CommitHandlers):
    def test_redirect_carries_the_cookie_and_next_request_reads_it(self) -> None:
        response = self.fetch("/login-redirect", method="POST", body="")
        self.assertEqual(response.code, 302)
        self.assertIsNotNone(self.session_cookie(response))
        self.assertEqual(self.fetch("/read-user").body, b"ada")

    def test_explicit_finish_commits(self) -> None:
        response = self.fetch("/explicit")
        self.assertEqual(response.body, b"done")
        self.assertIsNotNone(self.session_cookie(response))
        self.assertEqual(self.fetch("/read-user").body, b"explicit")

    def test_awaited_finish_commits_and_returns(self) -> None:
        response = self.fetch("/awaited")
        self.assertEqual(response.body, b"done")
        self.assertEqual(self.fetch("/read-user").body, b"awaited")

    def test_async_handler_counts(self) -> None:
        self.assertEqual(self.fetch("/async-count").body, b"1")
        self.assertEqual(self.fetch("/async-count").body, b"2")

    def test_http_error_4xx_commits(self) -> None:
        with ExpectLog("tornado.access", "418", required=False):
            response = self.fetch("/teapot")
        self.assertEqual(response.code, 418)
        self.assertIsNotNone(self.session_cookie(response))
        self.assertEqual(self.fetch("/read-user").body, b"teapot")

    def test_uncaught_exception_500_writes_nothing(self) -> None:
        with ExpectLog("tornado.application", "Uncaught exception"):
            response = self.fetch("/crash")
        self.assertEqual(response.code, 500)
        self.assertIsNone(self.session_cookie(response))
        self.assertEqual(self.counting.calls["set"], 0)

    def test_send_error_5xx_writes_nothing(self) -> None:
        self.fetch("/count")
        self.counting.reset_calls()
        with ExpectLog("tornado.access", "503", required=False):
            response = self.fetch("/send-error")
        self.assertEqual(response.code, 503)
        self.assertIsNone(self.session_cookie(response))
        self.assertEqual(self.counting.calls["set"], 0)
        self.assertEqual(self.fetch("/read-user").body, b"-")

    def test_redirect_in_prepare_stops_the_handler_and_commits(self) -> None:
        ran_after_prepare_redirect.clear()
        response = self.fetch("/prepare-redirect")
        self.assertEqual(response.code, 302)
        self.assertEqual(ran_after_prepare_redirect, [])
        self.assertIsNotNone(self.session_cookie(response))
        self.assertEqual(self.fetch("/read-user").body, b"from-prepare")

    def test_change_after_flush_warns_and_keeps_known_session_in_store(self) -> None:
        self.fetch("/count")  # the session now has an id
        with ExpectLog("tornado_session.lifecycle", "FlushesFirst changed its session after"):
            response = self.fetch("/flush")
        self.assertEqual(response.body, b"partial rest")
        self.assertIsNone(self.session_cookie(response))
        self.assertEqual(self.fetch("/read-user").body, b"after-flush")

    def test_change_after_flush_of_new_session_warns_and_saves_nothing(self) -> None:
        with ExpectLog("tornado_session.lifecycle", "FlushesFirst changed its session after"):
            response = self.fetch("/flush")
        self.assertEqual(response.code, 200)
        self.assertEqual(self.counting.calls["set"], 0)


class TestStoreRoundTrips(CommitHandlers):
    def test_no_store_call_without_a_session_cookie(self) -> None:
        self.fetch("/unused")
        self.fetch("/read")
        self.assertEqual(self.counting.calls, {"get": 0, "set": 0, "destroy": 0, "touch": 0})

    def test_empty_new_session_sets_no_cookie(self) -> None:
        response = self.fetch("/read")
        self.assertIsNone(self.session_cookie(response))

    def test_unchanged_session_is_read_once_and_not_written(self) -> None:
        self.fetch("/count")
        self.counting.reset_calls()
        response = self.fetch("/read")
        self.assertEqual(response.body, b"1")
        self.assertEqual(self.counting.calls, {"get": 1, "set": 0, "destroy": 0, "touch": 0})
        self.assertIsNone(self.session_cookie(response))

    def test_changed_session_is_read_once_and_written_once(self) -> None:
        self.fetch("/count")
        self.counting.reset_calls()
        self.fetch("/count")
        self.assertEqual(self.counting.calls, {"get": 1, "set": 1, "destroy": 0, "touch": 0})

    def test_unused_session_with_cookie_is_loaded_but_not_written(self) -> None:
        self.fetch("/count")
        self.counting.reset_calls()
        response = self.fetch("/unused")
        self.assertEqual(self.counting.calls["set"], 0)
        self.assertNotIn("Cookie", response.headers.get("Vary", ""))

    def test_session_id_is_kept_across_writes(self) -> None:
        first = self.fetch("/count")
        value = self.session_cookie(first)
        self.assertIsNotNone(value)
        self.fetch("/count")
        self.assertEqual(len(self.counting._entries), 1)


class TestVary(CommitHandlers):
    def test_response_that_read_the_session_varies_on_cookie(self) -> None:
        response = self.fetch("/read")
        self.assertIn("Cookie", response.headers.get("Vary", ""))

    def test_response_that_never_touched_the_session_is_left_alone(self) -> None:
        response = self.fetch("/unused")
        self.assertNotIn("Vary", response.headers)


class TestRegenerateAndDestroy(CommitHandlers):
    def test_regenerate_gives_a_new_id_keeps_data_and_kills_the_old_cookie(self) -> None:
        self.fetch("/count")
        old_jar = dict(self.jar)
        response = self.fetch("/login", method="POST", body="")
        self.assertEqual(response.code, 302)
        self.assertNotEqual(self.jar[COOKIE], old_jar[COOKIE])
        self.assertEqual(self.fetch("/read-user").body, b"ada")
        self.assertEqual(self.fetch("/read").body, b"1")  # data kept
        self.assertEqual(len(self.counting._entries), 1)  # old record destroyed
        self.jar = old_jar
        self.assertEqual(self.fetch("/read-user").body, b"-")

    def test_destroy_session_deletes_the_record_and_expires_the_cookie(self) -> None:
        self.fetch("/count")
        response = self.fetch("/logout", method="POST", body="")
        self.assert_cookie_expired(response)
        self.assertEqual(len(self.counting._entries), 0)
        self.assertEqual(self.fetch("/read").body, b"0")

    def test_old_cookie_is_dead_after_logout(self) -> None:
        self.fetch("/count")
        old_jar = dict(self.jar)
        self.fetch("/logout", method="POST", body="")
        self.jar = old_jar
        self.assertEqual(self.fetch("/read").body, b"0")

    def test_assigning_none_destroys(self) -> None:
        self.fetch("/count")
        response = self.fetch("/assign-none", method="POST", body="")
        self.assert_cookie_expired(response)
        self.assertEqual(len(self.counting._entries), 0)

    def test_assigning_a_dict_replaces_the_data(self) -> None:
        self.fetch("/count")
        self.fetch("/replace", method="POST", body="")
        self.assertEqual(self.fetch("/read-user").body, b"replaced")
        self.assertEqual(self.fetch("/read").body, b"0")

    def test_destroy_without_a_session_sets_no_cookie(self) -> None:
        response = self.fetch("/logout", method="POST", body="")
        self.assertIsNone(self.session_cookie(response))


class TestSaveOverrides(CommitHandlers):
    def test_session_save_true_forces_a_write(self) -> None:
        self.fetch("/count")
        self.counting.reset_calls()
        self.fetch("/force")
        self.assertEqual(self.counting.calls["set"], 1)

    def test_session_save_false_skips_every_write(self) -> None:
        self.fetch("/count")
        self.counting.reset_calls()
        response = self.fetch("/never")
        self.assertEqual(self.counting.calls["set"], 0)
        self.assertIsNone(self.session_cookie(response))
        self.assertEqual(self.fetch("/read").body, b"1")

    def test_max_age_set_per_session_is_kept_by_later_requests(self) -> None:
        self.fetch("/count")
        response = self.fetch("/remember", method="POST", body="")
        morsel = self.session_cookie(response)
        assert morsel is not None
        self.assertEqual(morsel["max-age"], str(30 * 86400))
        self.clock.advance(2 * 86400)  # past the default max_age of a day
        self.assertEqual(self.fetch("/read").body, b"1")
        response = self.fetch("/count")
        morsel = self.session_cookie(response)
        assert morsel is not None
        self.assertEqual(morsel["max-age"], str(30 * 86400))

    def test_browser_session_cookie_has_no_max_age(self) -> None:
        response = self.fetch("/browser-session", method="POST", body="")
        morsel = self.session_cookie(response)
        assert morsel is not None
        self.assertEqual(morsel["max-age"], "")
        self.assertEqual(morsel["expires"], "")
        self.assertEqual(self.fetch("/read-user").body, b"ada")


class TestSaveUninitialized(CommitHandlers):
    def session_options(self) -> dict[str, Any]:
        return {"save_uninitialized": True}

    def test_new_empty_session_gets_a_cookie(self) -> None:
        response = self.fetch("/read")
        self.assertIsNotNone(self.session_cookie(response))
        self.assertEqual(self.counting.calls["set"], 1)


class TestRolling(CommitHandlers):
    def session_options(self) -> dict[str, Any]:
        return {"rolling": True, "max_age": 100}

    def test_every_request_resets_cookie_and_store_expiry(self) -> None:
        self.fetch("/count")
        for _ in range(3):
            self.clock.advance(60)
            self.counting.reset_calls()
            response = self.fetch("/read")
            self.assertEqual(response.body, b"1")
            self.assertIsNotNone(self.session_cookie(response))
            self.assertEqual((self.counting.calls["set"], self.counting.calls["touch"]), (0, 1))

    def test_unused_request_still_rolls(self) -> None:
        self.fetch("/count")
        self.clock.advance(60)
        self.fetch("/unused")
        self.clock.advance(60)
        self.assertEqual(self.fetch("/read").body, b"1")


class TestTouchAfter(CommitHandlers):
    def session_options(self) -> dict[str, Any]:
        return {"rolling": True, "max_age": 3600, "touch_after": 60}

    def test_unchanged_session_touches_the_store_once_per_touch_after(self) -> None:
        self.fetch("/count")
        self.counting.reset_calls()
        for _ in range(100):
            self.clock.advance(1)
            response = self.fetch("/read")
            self.assertIsNotNone(self.session_cookie(response))  # the cookie still rolls
        self.assertEqual((self.counting.calls["set"], self.counting.calls["touch"]), (0, 1))


class TestRenew(CommitHandlers):
    def session_options(self) -> dict[str, Any]:
        return {"renew": True, "max_age": 100}

    def test_renews_only_when_less_than_half_remains(self) -> None:
        self.fetch("/count")
        self.counting.reset_calls()
        self.clock.advance(40)
        self.assertIsNone(self.session_cookie(self.fetch("/read")))
        self.assertEqual(self.counting.calls["set"], 0)
        self.clock.advance(20)  # 40 s left of 100
        self.assertIsNotNone(self.session_cookie(self.fetch("/read")))
        self.assertEqual(self.counting.calls["set"], 1)
        self.clock.advance(90)  # renewed 90 s ago: still alive
        self.assertEqual(self.fetch("/read").body, b"1")


class TestExpiry(CommitHandlers):
    def session_options(self) -> dict[str, Any]:
        return {"max_age": 100}

    def test_session_expires_after_max_age_without_a_store_call(self) -> None:
        events: list[dict[str, Any]] = []
        self.fetch("/count")
        self._app.settings["session"].events.on("session:expired", events.append)
        self.clock.advance(101)
        self.counting.reset_calls()
        self.assertEqual(self.fetch("/read").body, b"0")
        self.assertEqual(self.counting.calls["get"], 0)
        self.assertEqual(len(events), 1)
        self.assertEqual(events[0]["key"], COOKIE)


class TestCookieSessions(CommitHandlers):
    def make_store(self) -> None:
        return None

    def test_counter_counts_in_the_cookie(self) -> None:
        self.assertEqual(self.fetch("/count").body, b"1")
        self.assertEqual(self.fetch("/count").body, b"2")

    def test_regenerate_and_destroy_work_without_a_store(self) -> None:
        self.fetch("/count")
        self.fetch("/login", method="POST", body="")
        self.assertEqual(self.fetch("/read-user").body, b"ada")
        response = self.fetch("/logout", method="POST", body="")
        self.assert_cookie_expired(response)
        self.assertEqual(self.fetch("/read-user").body, b"-")

    def test_redirect_after_login_carries_the_data(self) -> None:
        self.fetch("/login-redirect", method="POST", body="")
        self.assertEqual(self.fetch("/read-user").body, b"ada")


class TestLogging(CommitHandlers):
    def test_no_session_id_or_cookie_in_logs(self) -> None:
        records: list[logging.LogRecord] = []

        class Collect(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                records.append(record)

        collector = Collect(level=logging.DEBUG)
        root = logging.getLogger()
        root.addHandler(collector)
        old_level = root.level
        root.setLevel(logging.DEBUG)
        try:
            self.fetch("/count")
            self.fetch("/login", method="POST", body="")
            with ExpectLog("tornado.application", "Uncaught exception"):
                self.fetch("/crash")
            self.fetch("/logout", method="POST", body="")
        finally:
            root.removeHandler(collector)
            root.setLevel(old_level)
        text = "\n".join(record.getMessage() for record in records)
        for value in self.jar.values():
            self.assertNotIn(value, text)
        for key in self.counting._entries:
            self.assertNotIn(key, text)
