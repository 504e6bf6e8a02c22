"""Several Tornado processes behind Debian's nginx, sharing one store.

nginx round-robins every request over N processes (no sticky sessions), so a
user's consecutive requests land on different processes.  Concurrent users
log in (the login example's form: ``regenerate_session``), change their
session (``/count``), read it back (``/count-read``, through whichever process
nginx picks), regenerate it (``/regenerate``), and log out; then they log in
again and go on.  The test asserts what the users see:

* 0 sessions lost: every ``/count`` of a logged-in user answers 200 (a lost
  session answers 403), and each is one more than the last;
* 0 stale reads: a read after a write answers what the write answered, even
  from another process;
* 0 5xx; and after logout the session is gone on every process (302 to /login).

It runs for N = 2 and 4 on RedisStore, Redis Cluster and MongoStore (the wire
server).  The figures (requests per second of the whole scenario) go to the
reliability report; the long runs (``-m slow``, scripts/soak.sh) take more users
and rounds, from ``MULTI_USERS`` / ``MULTI_ROUNDS``.  Throughput on a fixed
load for 1, 2 and 4 processes is measured by benchmarks/scaling.py.
"""

from __future__ import annotations

import asyncio
import http.cookies
import json
import os
import time
import urllib.parse
from typing import Any

import pytest
from tornado.httpclient import AsyncHTTPClient
from tornado.testing import AsyncTestCase, gen_test

from tests.load_users import PASSWORD, SESSION, MongoServerCase, User, report
from tests.nginx import Nginx, TornadoProcesses
from tests.redis_cluster import RedisClusterCase
from tests.redis_server import RedisServerCase

#: A real cluster or nginx over processes: run once, on the default Python (scripts/test.sh).
pytestmark = pytest.mark.topology


class Visitor(User):
    """A user of the multi-process scenario, checking every answer as it comes."""

    stale_reads = 0

    async def log_in_again(self) -> None:
        """Log in (after a logout): a fresh session, counter at 0."""
        self.counted = 0
        await self.log_in()

    async def change_then_read(self) -> None:
        code = await self.count()
        assert code == 200, (self.name, "count", code)
        read = await self.request("GET", "/count-read")
        assert read.code == 200, (self.name, "read", read.code)
        if int(read.body) != self.counted:
            self.stale_reads += 1

    async def regenerate(self) -> None:
        before = self.jar.get("tornado.sess")
        response = await self.request("GET", "/regenerate")
        assert response.code == 200, (self.name, "regenerate", response.code)
        assert int(response.body) == self.counted, (self.name, response.body, self.counted)
        assert self.jar.get("tornado.sess") != before, (self.name, "same id after regenerate")
        await self.change_then_read()

    async def log_out(self) -> None:
        response = await self.request("POST", "/logout", {})
        assert response.code == 302, (self.name, "logout", response.code)
        for _ in range(2):  # on two processes, most likely: both see it gone
            profile = await self.request("GET", "/profile")
            assert profile.code == 302, (self.name, "profile after logout", profile.code)
            assert profile.headers["Location"] == "/login"


class MultiProcessCase(AsyncTestCase):
    """Runs the scenario through nginx over N processes of one store kind."""

    __test__ = False
    store_kind = ""
    users = 12
    rounds = 6

    def store_url(self) -> str:
        raise NotImplementedError

    async def run_scenario(self, processes: int, users: int, rounds: int) -> dict[str, Any]:
        tornados = TornadoProcesses(processes, self.store_kind, self.store_url(), users)
        self.addCleanup(tornados.stop)
        await asyncio.to_thread(tornados.start)
        nginx = Nginx(tornados.ports)
        self.addCleanup(nginx.stop)
        await asyncio.to_thread(nginx.start)

        client = AsyncHTTPClient(force_instance=True, max_clients=users)
        self.addCleanup(client.close)
        people = [Visitor(nginx.url, f"user{n}", client) for n in range(users)]

        async def scenario(person: Visitor) -> None:
            await person.log_in()
            for round_ in range(rounds):
                await person.change_then_read()
                await person.change_then_read()
                if round_ % 3 == 1:
                    await person.regenerate()
                if round_ % 3 == 2:
                    await person.log_out()
                    await person.log_in_again()
            await person.log_out()

        started = time.monotonic()
        await asyncio.gather(*(scenario(person) for person in people))
        elapsed = time.monotonic() - started

        served = []
        for port in tornados.ports:
            response = await client.fetch(f"http://127.0.0.1:{port}/served")
            served.append(json.loads(response.body)["served"])
        requests = sum(len(person.outcomes) for person in people)
        server_errors = [o for person in people for o in person.outcomes if o.code >= 500]
        self.assertEqual(server_errors, [])
        self.assertEqual(sum(person.stale_reads for person in people), 0)
        # Round robin reached every process, about evenly (plus our /served calls).
        self.assertGreaterEqual(sum(served), requests)
        for count in served:
            self.assertGreater(count, requests / processes / 2, served)
        figures = {
            "store": self.store_kind, "processes": processes, "users": users,
            "rounds": rounds, "http_requests": requests, "seconds": round(elapsed, 2),
            "rps": round(requests / elapsed), "served_per_process": served,
            "sessions_lost": 0, "stale_reads": 0, "server_errors": 0,
        }
        report(type(self).__name__, **figures)
        return figures

    @gen_test(timeout=120)
    async def test_two_processes_lose_no_session_and_read_no_stale_data(self) -> None:
        await self.run_scenario(2, self.users, self.rounds)

    @gen_test(timeout=120)
    async def test_four_processes_lose_no_session_and_read_no_stale_data(self) -> None:
        await self.run_scenario(4, self.users, self.rounds)

    @pytest.mark.slow
    @pytest.mark.timeout(1800)
    @gen_test(timeout=1800)
    async def test_soak_many_users_over_four_processes(self) -> None:
        users = int(os.environ.get("MULTI_USERS", "100"))
        rounds = int(os.environ.get("MULTI_ROUNDS", "60"))
        await self.run_scenario(4, users, rounds)


class TestMultiProcessRedis(RedisServerCase, MultiProcessCase):
    __test__ = True
    store_kind = "redis"

    def store_url(self) -> str:
        return self.redis_server.url

    async def session_cookie_after_login(self, base_url: str, headers: dict[str, str]) -> str:
        """The session's ``Set-Cookie`` line of a login through ``base_url``."""
        client = AsyncHTTPClient(force_instance=True)
        try:
            page = await client.fetch(base_url + "/login", headers=headers)
            xsrf = http.cookies.SimpleCookie(page.headers["Set-Cookie"])["_xsrf"].value
            form = urllib.parse.urlencode(
                {"username": "user0", "password": PASSWORD, "_xsrf": xsrf}
            )
            done = await client.fetch(
                base_url + "/login", method="POST", body=form, follow_redirects=False,
                raise_error=False, headers={**headers, "Cookie": f"_xsrf={xsrf}"},
            )
        finally:
            client.close()
        self.assertEqual(done.code, 302)
        (line,) = [h for h in done.headers.get_list("Set-Cookie") if h.startswith(SESSION)]
        return line

    @gen_test(timeout=60)
    async def test_the_cookie_is_secure_as_nginx_says_and_a_client_cannot_say_otherwise(
        self,
    ) -> None:
        tornados = TornadoProcesses(1, self.store_kind, self.store_url(), 1)
        self.addCleanup(tornados.stop)
        await asyncio.to_thread(tornados.start)
        nginx = Nginx(tornados.ports)
        self.addCleanup(nginx.stop)
        await asyncio.to_thread(nginx.start)
        https = {"X-Forwarded-Proto": "https"}
        # A proxy that ended TLS says https: with xheaders=True the cookie is Secure.
        direct = await self.session_cookie_after_login(
            f"http://127.0.0.1:{tornados.ports[0]}", https
        )
        self.assertIn("Secure", direct)
        # nginx sets the header from its own scheme (http here), whatever the client sent.
        through_nginx = await self.session_cookie_after_login(nginx.url, https)
        self.assertNotIn("Secure", through_nginx)
        self.assertIn("HttpOnly", through_nginx)


class TestMultiProcessRedisCluster(RedisClusterCase, MultiProcessCase):
    __test__ = True
    store_kind = "cluster"

    def store_url(self) -> str:
        return self.redis_cluster.url


class TestMultiProcessMongo(MongoServerCase, MultiProcessCase):
    """On the MongoDB wire server (mongoeco: correct, far slower than mongod)."""

    __test__ = True
    store_kind = "mongo"
    users = 6
    rounds = 3

    def store_url(self) -> str:
        return self.mongo_uri

