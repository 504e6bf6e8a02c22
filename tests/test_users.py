"""A user's sessions through the handler API: listing with devices, revoking by handle."""

from __future__ import annotations

import json
from typing import Any

import tornado.web

from tests.base import COOKIE, COOKIE_SECRET, CountingStore, SessionTestCase
from tornado_session import SessionError, SessionMixin
from tornado_session.errors import SessionOptionError
from tornado_session.stores import MemoryStore, Store
from tornado_session.users import coarse_address, session_handle, short_agent

FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
SAFARI = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) Version/18.1 Safari/604.1"


class Login(SessionMixin, tornado.web.RequestHandler):
    async def post(self, user: str) -> None:
        await self.regenerate_session()
        self.session["user_id"] = int(user) if user.isdigit() else user


class Cart(SessionMixin, tornado.web.RequestHandler):
    def post(self) -> None:
        self.session["cart"] = self.session.get("cart", 0) + 1


class Whoami(SessionMixin, tornado.web.RequestHandler):
    def get(self) -> None:
        self.write(str(self.session.get("user_id", "nobody")))


class Devices(SessionMixin, tornado.web.RequestHandler):
    async def get(self) -> None:
        sessions = await self.list_sessions()
        self.write({"sessions": [
            {"handle": s.handle, "current": s.current, "agent": s.agent, "address": s.address,
             "created": s.created, "seen": s.seen, "expires": s.expires}
            for s in sessions
        ]})


class Revoke(SessionMixin, tornado.web.RequestHandler):
    async def post(self) -> None:
        self.write({"revoked": await self.revoke_session(self.get_argument("handle"))})


class RevokeOthers(SessionMixin, tornado.web.RequestHandler):
    async def post(self) -> None:
        self.write({"ended": await self.revoke_other_sessions()})


class BadUser(SessionMixin, tornado.web.RequestHandler):
    def post(self) -> None:
        self.session["user_id"] = 1.5


class UsersCase(SessionTestCase):
    def make_store(self) -> Store | None:
        return CountingStore(clock=self.clock, user_key="user_id")

    def get_handlers(self) -> list[Any]:
        return [(r"/login/(\w+)", Login), (r"/cart", Cart), (r"/whoami", Whoami),
                (r"/devices", Devices), (r"/revoke", Revoke), (r"/revoke-others", RevokeOthers),
                (r"/bad-user", BadUser)]

    def get_httpserver_options(self) -> dict[str, Any]:
        return {"xheaders": True}

    def as_browser(self, jar: dict[str, str], path: str, agent: str = FIREFOX,
                   address: str = "203.0.113.77", **kwargs: Any) -> Any:
        """A request from one browser: its own cookie jar, user agent and (forwarded) address."""
        self.jar = jar
        headers = {"User-Agent": agent, "X-Forwarded-For": address}
        if kwargs.get("method") == "POST":
            kwargs.setdefault("body", "")
        return self.fetch(path, headers=headers, **kwargs)

    def devices(self, jar: dict[str, str], **kwargs: Any) -> list[dict[str, Any]]:
        response = self.as_browser(jar, "/devices", **kwargs)
        self.assertEqual(response.code, 200)
        sessions: list[dict[str, Any]] = json.loads(response.body)["sessions"]
        return sessions


class TestListing(UsersCase):
    def test_each_login_of_the_user_is_listed_with_its_device_and_the_current_one_marked(
        self,
    ) -> None:
        laptop: dict[str, str] = {}
        phone: dict[str, str] = {}
        self.as_browser(laptop, "/login/42", method="POST")
        self.clock.advance(60)
        self.as_browser(phone, "/login/42", SAFARI, "2001:db8:1:2::5", method="POST")
        self.as_browser({}, "/login/7", method="POST")
        from_laptop = self.devices(laptop)
        self.assertEqual([(s["agent"], s["address"], s["current"]) for s in from_laptop], [
            (FIREFOX, "203.0.113.0/24", True), (SAFARI, "2001:db8:1::/48", False),
        ])
        self.assertEqual(from_laptop[1]["created"] - from_laptop[0]["created"], 60)
        self.assertEqual(from_laptop[0]["expires"], from_laptop[0]["created"] + 86400)
        from_phone = self.devices(phone)
        self.assertEqual([s["current"] for s in from_phone], [False, True])
        self.assertEqual([s["handle"] for s in from_phone], [s["handle"] for s in from_laptop])

    def test_a_session_without_a_user_lists_nothing(self) -> None:
        self.assertEqual(self.devices({}), [])
        jar: dict[str, str] = {}
        self.as_browser(jar, "/cart", method="POST")
        self.assertEqual(self.devices(jar), [])

    def test_a_handle_is_neither_the_session_id_nor_the_store_key_nor_a_cookie(self) -> None:
        jar: dict[str, str] = {}
        self.as_browser(jar, "/login/42", method="POST")
        (listed,) = self.devices(jar)
        assert isinstance(self.store, MemoryStore)
        (key,) = self.store._entries
        self.assertEqual(listed["handle"], session_handle(COOKIE_SECRET.encode(), key))
        self.assertNotIn(listed["handle"], key)
        self.assertNotIn(listed["handle"], jar[COOKIE])
        forged = {COOKIE: listed["handle"]}
        self.assertEqual(self.as_browser(forged, "/whoami").body, b"nobody")

    def test_the_user_agent_is_truncated(self) -> None:
        jar: dict[str, str] = {}
        self.as_browser(jar, "/login/42", "A" * 1000, method="POST")
        (listed,) = self.devices(jar)
        self.assertEqual(listed["agent"], "A" * 160)

    def test_a_request_that_leaves_the_user_alone_gives_the_index_no_work(self) -> None:
        owners: list[Any] = []
        store = self.store
        assert isinstance(store, CountingStore)
        original = store.set

        def spy(key: str, data: Any, max_age: float, **kwargs: Any) -> Any:
            owners.append(kwargs.get("owner"))
            return original(key, data, max_age, **kwargs)

        store.set = spy  # type: ignore[method-assign]
        jar: dict[str, str] = {}
        self.as_browser(jar, "/login/42", method="POST")
        self.assertEqual([owner.user for owner in owners], [42])
        store.reset_calls()
        owners.clear()
        self.as_browser(jar, "/cart", method="POST")
        self.as_browser(jar, "/cart", method="POST")
        self.assertEqual(owners, [None, None])
        self.assertEqual(store.calls, {"get": 2, "set": 2, "destroy": 0, "touch": 0})
        self.assertEqual(len(self.devices(jar)), 1)  # still listed after the updates

    def test_a_user_id_that_is_not_a_str_or_int_fails_the_request_and_is_not_stored(
        self,
    ) -> None:
        jar: dict[str, str] = {}
        self.as_browser(jar, "/login/42", method="POST")
        with self.assertLogs("tornado.application", "ERROR"):
            response = self.as_browser(jar, "/bad-user", method="POST")
        self.assertEqual(response.code, 500)
        self.assertEqual(self.as_browser(jar, "/whoami").body, b"42")


class TestLastSeen(UsersCase):
    def session_options(self) -> dict[str, Any]:
        return {"rolling": True, "touch_after": 600}

    def test_last_seen_moves_at_touch_after_precision(self) -> None:
        jar: dict[str, str] = {}
        self.as_browser(jar, "/login/42", method="POST")
        (first,) = self.devices(jar)
        self.clock.advance(300)
        self.as_browser(jar, "/whoami")
        (second,) = self.devices(jar)
        self.assertEqual(second["seen"], first["seen"])  # within touch_after: no write
        self.clock.advance(400)
        self.as_browser(jar, "/whoami")
        (third,) = self.devices(jar)
        self.assertEqual(third["seen"], first["seen"] + 700)
        self.assertEqual(third["created"], first["created"])


class TestRevoking(UsersCase):
    def login_twice(self) -> tuple[dict[str, str], dict[str, str]]:
        laptop: dict[str, str] = {}
        phone: dict[str, str] = {}
        self.as_browser(laptop, "/login/42", method="POST")
        self.clock.advance(1)  # (listed oldest first: the laptop, then the phone)
        self.as_browser(phone, "/login/42", SAFARI, method="POST")
        return laptop, phone

    def revoke(self, jar: dict[str, str], handle: str) -> bool:
        response = self.as_browser(jar, "/revoke", method="POST", body=f"handle={handle}")
        self.assertEqual(response.code, 200)
        revoked: bool = json.loads(response.body)["revoked"]
        return revoked

    def test_a_revoked_session_is_logged_out_on_its_next_request(self) -> None:
        laptop, phone = self.login_twice()
        phone_handle = self.devices(laptop)[1]["handle"]
        self.assertTrue(self.revoke(laptop, phone_handle))
        self.assertEqual(self.as_browser(phone, "/whoami", SAFARI).body, b"nobody")
        self.assertEqual(self.as_browser(laptop, "/whoami").body, b"42")
        self.assertEqual([s["current"] for s in self.devices(laptop)], [True])
        self.assertFalse(self.revoke(laptop, phone_handle))  # already gone

    def test_a_handle_of_another_users_session_revokes_nothing(self) -> None:
        laptop, _ = self.login_twice()
        other: dict[str, str] = {}
        self.as_browser(other, "/login/7", method="POST")
        handle = self.devices(laptop)[0]["handle"]
        self.assertFalse(self.revoke(other, handle))
        self.assertEqual(self.as_browser(laptop, "/whoami").body, b"42")
        self.assertFalse(self.revoke({}, handle))  # nobody logged in

    def test_made_up_handles_revoke_nothing(self) -> None:
        laptop, _ = self.login_twice()
        for handle in ("", "x", "0" * 32, "0" * 64, "%00", self.devices(laptop)[0]["handle"][:-1]):
            self.assertFalse(self.revoke(laptop, handle), handle)
        self.assertEqual(len(self.devices(laptop)), 2)

    def test_revoking_the_current_session_logs_this_browser_out(self) -> None:
        laptop, phone = self.login_twice()
        self.assertTrue(self.revoke(laptop, self.devices(laptop)[0]["handle"]))
        self.assertEqual(self.as_browser(laptop, "/whoami").body, b"nobody")
        self.assertEqual(self.as_browser(phone, "/whoami", SAFARI).body, b"42")

    def test_revoke_other_sessions_keeps_only_the_current_one(self) -> None:
        laptop, phone = self.login_twice()
        tablet: dict[str, str] = {}
        self.as_browser(tablet, "/login/42", method="POST")
        response = self.as_browser(laptop, "/revoke-others", method="POST")
        self.assertEqual(json.loads(response.body), {"ended": 2})
        self.assertEqual(self.as_browser(phone, "/whoami", SAFARI).body, b"nobody")
        self.assertEqual(self.as_browser(tablet, "/whoami").body, b"nobody")
        self.assertEqual(self.as_browser(laptop, "/whoami").body, b"42")


class TestWithoutAUserIndex(SessionTestCase):
    def get_handlers(self) -> list[Any]:
        return [(r"/devices", Devices)]

    def test_listing_without_a_user_key_says_what_to_build(self) -> None:
        with self.assertLogs("tornado.application", "ERROR") as logs:
            response = self.fetch("/devices")
        self.assertEqual(response.code, 500)
        self.assertIn("user_key", "\n".join(logs.output))
        self.assertIn("SessionOptionError", "\n".join(logs.output))


class TestOptions(SessionTestCase):
    def test_a_bad_user_key_is_refused_naming_it(self) -> None:
        for bad in ("", 42, b"user_id"):
            with self.assertRaises(SessionOptionError) as caught:
                MemoryStore(user_key=bad)  # type: ignore[arg-type]
            self.assertIn("user_key", str(caught.exception))

    def test_a_user_index_on_a_redis_cluster_is_spread_unless_the_namespace_has_a_tag(
        self,
    ) -> None:
        import redis.asyncio

        from tornado_session.stores import RedisStore

        async def run() -> None:
            client = redis.asyncio.RedisCluster(host="127.0.0.1", port=1)  # (no connection yet)
            layouts = {
                "app:": True,  # no tag: each user's keys on the user's slot
                "app:{sessions}:": False,  # a tag: every key in one slot
                "app:{": True,  # a '{' without '}' is no tag
            }
            for namespace, spread in layouts.items():
                store = RedisStore(client, namespace=namespace, user_key="user_id")
                self.assertIs(store.spread, spread, namespace)
            self.assertFalse(RedisStore(client).spread)  # no user index: nothing to spread
            # An empty tag first makes Redis hash each name whole: a session and
            # its owner's hash would land on different slots.
            for namespace in ("app:{}:", "app:{}{sessions}:"):
                with self.assertRaises(SessionOptionError) as caught:
                    RedisStore(client, namespace=namespace, user_key="user_id")
                self.assertIn("'{}'", str(caught.exception))
            await client.aclose()

        self.io_loop.run_sync(run)

    def test_destroy_user_on_a_store_without_an_index_says_so(self) -> None:
        async def run() -> None:
            with self.assertRaises(SessionError) as caught:
                await MemoryStore().destroy_user(42)
            self.assertIn("user_key", str(caught.exception))
            with self.assertRaises(SessionError):
                await MemoryStore().user_sessions(42)

        self.io_loop.run_sync(run)


class TestDevice(SessionTestCase):
    def test_addresses_are_coarsened_to_their_network(self) -> None:
        cases = {
            "203.0.113.77": "203.0.113.0/24",
            "10.1.2.3": "10.1.2.0/24",
            "2001:db8:1:2::5": "2001:db8:1::/48",
            "::ffff:198.51.100.9": "198.51.100.0/24",
            "fe80::1%eth0": "fe80::/48",
            "": "",
            None: "",
            "not an address": "",
            "999.1.1.1": "",
            "/run/app.sock": "",
        }
        for address, network in cases.items():
            self.assertEqual(coarse_address(address), network, address)

    def test_user_agents_are_truncated_and_stripped_of_control_characters(self) -> None:
        self.assertEqual(short_agent(None), "")
        self.assertEqual(short_agent(""), "")
        self.assertEqual(short_agent("Firefox\x00\n\x1b[31m"), "Firefox[31m")
        self.assertEqual(short_agent("é" * 500), "é" * 160)
