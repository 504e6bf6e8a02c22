"""``python -m tornado_session`` as an operator runs it: against a real redis-server and the
MongoDB wire server, in a subprocess, reading what it prints and its exit status."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import unittest
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, ClassVar

from tests.mongo_server import MongoWireServer
from tests.redis_server import RedisServerCase, free_port
from tornado_session.stores import MongoStore, Owner, RedisStore, Store
from tornado_session.users import session_handle

ROOT = Path(__file__).resolve().parent.parent
SECRET = "cli-test-secret"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"


def owner(user: Any, agent: str = FIREFOX) -> Owner:
    now = time.time()
    return Owner(user, now, now, agent, "203.0.113.0/24")


class CommandLine:
    """Runs the command line against ``self.store_args()`` and seeds the store it looks at."""

    store_args: Callable[[], list[str]]
    make_store: Callable[[], Store]

    def cli(self, *args: str, stdin: str = "", env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tornado_session", *self.store_args(), *args],
            input=stdin, capture_output=True, text=True, cwd=ROOT, timeout=60,
            env={**os.environ, "COOKIE_SECRET": SECRET, **(env or {})},
        )

    def with_store(self, work: Callable[[Store], Coroutine[Any, Any, Any]]) -> Any:
        async def run() -> Any:
            store = self.make_store()
            try:
                return await work(store)
            finally:
                await store.close()

        return asyncio.run(run())

    def seed(self) -> None:
        async def work(store: Store) -> None:
            await store.set("laptop", {"user_id": 42}, 3600, owner=owner(42))
            await store.set("phone", {"user_id": 42}, 3600, owner=owner(42, "Safari on iPhone"))
            await store.set("alice", {"user_id": "alice"}, 3600, owner=owner("alice"))
            await store.set("anonymous", {"cart": [1]}, 3600)

        self.with_store(work)

    def keys_of(self, user: Any) -> list[str]:
        async def work(store: Store) -> list[str]:
            return sorted(record.key for record in await store.user_sessions(user))

        result: list[str] = self.with_store(work)
        return result

    def count(self) -> int:
        async def work(store: Store) -> int:
            return await store.count()

        result: int = self.with_store(work)
        return result


class Commands(CommandLine):
    """The commands, the same against every store."""

    assertEqual: Any
    assertIn: Any
    assertNotIn: Any
    assertTrue: Any

    def test_count_prints_the_number_of_live_sessions(self) -> None:
        self.seed()
        done = self.cli("count")
        self.assertEqual((done.returncode, done.stdout), (0, "4\n"), done.stderr)
        done = self.cli("--json", "count")
        self.assertEqual(json.loads(done.stdout), {"count": 4})

    def test_list_shows_a_users_sessions_with_their_devices_and_handles(self) -> None:
        self.seed()
        done = self.cli("list", "--user", "42")
        self.assertEqual(done.returncode, 0, done.stderr)
        lines = done.stdout.splitlines()
        self.assertEqual(len(lines), 3)  # a header and two sessions
        self.assertIn("HANDLE", lines[0])
        self.assertIn("Safari on iPhone", done.stdout)
        self.assertIn("203.0.113.0/24", done.stdout)
        listed = json.loads(self.cli("--json", "list", "--user", "42").stdout)
        handles = {session_handle(SECRET.encode(), key) for key in ("laptop", "phone")}
        self.assertEqual({s["handle"] for s in listed["sessions"]}, handles)
        self.assertEqual({s["agent"] for s in listed["sessions"]}, {FIREFOX, "Safari on iPhone"})
        self.assertEqual(listed["user"], 42)
        alice = json.loads(self.cli("--json", "list", "--user", "alice").stdout)
        self.assertEqual(len(alice["sessions"]), 1)
        nobody = self.cli("list", "--user", '"42"')  # the string "42" is another user
        self.assertEqual(nobody.stdout, "no live sessions of user '42'\n")

    def test_revoke_one_session_by_its_handle(self) -> None:
        self.seed()
        handle = session_handle(SECRET.encode(), "phone")
        done = self.cli("revoke", "--user", "42", "--session", handle)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertIn("revoked session", done.stdout)
        self.assertEqual(self.keys_of(42), ["laptop"])
        again = self.cli("--json", "revoke", "--user", "42", "--session", handle)
        self.assertEqual((again.returncode, json.loads(again.stdout)["revoked"]), (1, 0))

    def test_a_handle_is_only_good_for_its_own_user(self) -> None:
        self.seed()
        handle = session_handle(SECRET.encode(), "phone")
        done = self.cli("revoke", "--user", "alice", "--session", handle)
        self.assertEqual(done.returncode, 1)
        self.assertIn("has no live session", done.stdout)
        self.assertEqual(self.keys_of(42), ["laptop", "phone"])
        other_secret = self.cli("revoke", "--user", "42", "--session", handle,
                                env={"COOKIE_SECRET": "another"})
        self.assertEqual(other_secret.returncode, 1)

    def test_revoke_without_a_session_ends_every_session_of_the_user(self) -> None:
        self.seed()
        done = self.cli("revoke", "--user", "42")
        self.assertEqual((done.returncode, done.stdout), (0, "revoked 2 sessions of user 42\n"))
        self.assertEqual(self.keys_of(42), [])
        self.assertEqual(self.keys_of("alice"), ["alice"])
        self.assertEqual(self.count(), 2)

    def test_clear_asks_first_and_deletes_nothing_unless_confirmed(self) -> None:
        self.seed()
        for answer in ("", "n\n", "no\n", "nope\n"):
            done = self.cli("clear", stdin=answer)
            self.assertEqual(done.returncode, 1)
            self.assertIn("Delete all 4 sessions", done.stderr)
            self.assertIn("nothing deleted", done.stderr)
        self.assertEqual(self.count(), 4)
        done = self.cli("clear", stdin="yes\n")
        self.assertEqual((done.returncode, done.stdout), (0, "cleared\n"), done.stderr)
        self.assertEqual(self.count(), 0)

    def test_clear_with_yes_does_not_ask(self) -> None:
        self.seed()
        done = self.cli("--json", "clear", "--yes")
        self.assertEqual((done.returncode, json.loads(done.stdout)), (0, {"cleared": True}))
        self.assertNotIn("Delete", done.stderr)
        self.assertEqual(self.count(), 0)

    def test_a_bad_user_id_is_refused_by_the_command_line(self) -> None:
        for bad in ("", '"unterminated', '"'):
            done = self.cli("list", "--user", bad)
            self.assertEqual(done.returncode, 2, bad)
            self.assertIn("--user", done.stderr)


class TestRedisCommandLine(RedisServerCase, Commands, unittest.TestCase):
    namespace: ClassVar[str] = "cli-test:"

    def store_args(self) -> list[str]:
        return ["--redis-url", self.redis_server.url, "--namespace", self.namespace]

    def make_store(self) -> Store:
        return RedisStore.from_url(self.redis_server.url, namespace=self.namespace,
                                   user_key="user_id", timeout=30)

    def test_a_long_scan_shows_its_progress(self) -> None:
        async def work(store: Store) -> None:
            for start in range(0, 3000, 100):
                await asyncio.gather(*(store.set(f"k{i}", {"n": i}, 3600)
                                       for i in range(start, start + 100)))

        self.with_store(work)
        done = self.cli("--progress", "count")
        self.assertEqual(done.stdout, "3000\n")
        self.assertIn("scanned", done.stderr)
        self.assertIn(" keys", done.stderr)
        quiet = self.cli("count")  # stderr is not a terminal: no progress
        self.assertEqual(quiet.stderr, "")
        done = self.cli("--progress", "clear", "--yes")
        self.assertIn("deleted", done.stderr)
        self.assertEqual(self.count(), 0)

    def test_a_bad_url_exits_2_naming_the_option(self) -> None:
        for url in ("http://localhost:6379/0", "redis://localhost:notaport/0"):
            done = self.cli_at(["--redis-url", url], "count")
            self.assertEqual(done.returncode, 2, done.stderr)
            self.assertIn("--redis-url", done.stderr)
            self.assertNotIn("Traceback", done.stderr)

    def test_an_unreachable_server_exits_1_naming_it(self) -> None:
        port = free_port()
        done = self.cli_at(["--redis-url", f"redis://user:hunter2@127.0.0.1:{port}/0"], "count")
        self.assertEqual(done.returncode, 1)
        self.assertIn(f"cannot reach Redis at 127.0.0.1:{port} (--redis-url)", done.stderr)
        self.assertNotIn("hunter2", done.stderr)
        self.assertNotIn("Traceback", done.stderr)

    def test_a_store_must_be_named(self) -> None:
        done = self.cli_at([], "count")
        self.assertEqual(done.returncode, 2)
        self.assertIn("--redis-url", done.stderr)

    def cli_at(self, store_args: list[str], *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "tornado_session", *store_args, *args],
                              capture_output=True, text=True, cwd=ROOT, timeout=60)


class TestMongoCommandLine(Commands, unittest.TestCase):
    server: ClassVar[MongoWireServer]

    @classmethod
    def setUpClass(cls) -> None:
        server = MongoWireServer()
        server.start()
        cls.addClassCleanup(server.close)
        cls.server = server

    def setUp(self) -> None:
        self.collection = "cli_" + uuid.uuid4().hex[:8]

    def store_args(self) -> list[str]:
        return ["--mongodb-uri", self.server.uri + "/cli_test", "--collection", self.collection]

    def make_store(self) -> Store:
        return MongoStore.from_uri(self.server.uri + "/cli_test", collection=self.collection,
                                   user_key="user_id")

    def test_a_bad_uri_exits_2_naming_the_option(self) -> None:
        for uri in ("http://localhost/app", "mongodb://"):
            done = subprocess.run(
                [sys.executable, "-m", "tornado_session", "--mongodb-uri", uri, "count"],
                capture_output=True, text=True, cwd=ROOT, timeout=60,
            )
            self.assertEqual(done.returncode, 2, done.stderr)
            self.assertIn("--mongodb-uri", done.stderr)
            self.assertNotIn("Traceback", done.stderr)

    def test_an_unreachable_server_exits_1_naming_it(self) -> None:
        port = free_port()
        done = subprocess.run(
            [sys.executable, "-m", "tornado_session", "--mongodb-uri",
             f"mongodb://127.0.0.1:{port}/app", "count"],
            capture_output=True, text=True, cwd=ROOT, timeout=60,
        )
        self.assertEqual(done.returncode, 1)
        self.assertIn(f"cannot reach MongoDB at 127.0.0.1:{port} (--mongodb-uri)", done.stderr)
        self.assertNotIn("Traceback", done.stderr)
