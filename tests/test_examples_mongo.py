"""The login example on MongoDB: users and sessions in the URI's database.

Runs against the mongoeco wire-protocol server of tests/mongo_server.py (no
``mongod`` can be installed here), over PyMongo's async client, exactly as
``python -m examples.login --mongodb_uri=...`` opens it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pymongo
import pytest
import tornado.web
from tornado.testing import ExpectLog

from examples import login
from tests.mongo_server import MongoWireServer
from tests.test_examples import SECRET, SESSION, Browser, LoginAppTest, RunningExample, http_get
from tornado_session import SessionOptions
from tornado_session.stores import MongoStore

_server: MongoWireServer | None = None


@pytest.fixture(scope="module", autouse=True)
def mongo_server() -> Iterator[MongoWireServer]:
    global _server
    server = MongoWireServer()
    server.start()
    _server = server
    try:
        yield server
    finally:
        _server = None
        server.close()


class TestLoginOnMongo(LoginAppTest):
    """The login flows of test_examples, with the app's MongoDB backends."""

    def setUp(self) -> None:
        assert _server is not None
        self.database = f"login_{uuid.uuid4().hex[:12]}"
        self.uri = f"{_server.uri}/{self.database}"
        self.db: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
            self.uri, serverSelectionTimeoutMS=10_000
        )
        super().setUp()

    def tearDown(self) -> None:
        self.io_loop.run_sync(self.users.close)
        self.io_loop.run_sync(self.store.close)
        self.db.drop_database(self.database)
        self.db.close()
        super().tearDown()

    def make_app(self) -> tornado.web.Application:
        with ExpectLog("examples.login", ".*users and sessions in MongoDB, database "
                       f"'{self.database}'", level=20):
            self.store, self.users = self.io_loop.run_sync(
                lambda: login.open_backends(self.uri)
            )
        return login.make_app(
            cookie_secret=SECRET, session=SessionOptions(store=self.store), users=self.users
        )

    def test_backends_are_a_mongo_store_and_mongo_users_on_one_client(self) -> None:
        self.assertIsInstance(self.store, MongoStore)
        self.assertIsInstance(self.users, login.MongoUsers)
        assert isinstance(self.users, login.MongoUsers) and isinstance(self.store, MongoStore)
        self.assertIs(self.store.client, self.users.collection.database.client)

    def test_signup_stores_the_user_with_a_hash_and_the_session_with_its_id(self) -> None:
        profile = self.browser.follow(self.signup(self.browser, "alice", "correct horse"))
        self.assertEqual(profile.code, 200)
        self.assertIn('<strong id="username">alice</strong>', profile.body.decode())
        users = list(self.db[self.database]["users"].find())
        self.assertEqual(len(users), 1)
        self.assertEqual(users[0]["username"], "alice")
        self.assertTrue(users[0]["password"].startswith("scrypt$"))
        self.assertNotIn("correct horse", users[0]["password"])
        sessions = list(self.db[self.database]["sessions"].find())
        self.assertEqual(len(sessions), 1)
        self.assertEqual(sessions[0]["data"]["user_id"], str(users[0]["_id"]))
        self.assertEqual(sessions[0]["data"]["username"], "alice")

    def test_usernames_are_unique_in_the_database(self) -> None:
        indexes = self.db[self.database]["users"].index_information()
        self.assertTrue(any(index.get("unique") for index in indexes.values()), indexes)
        self.signup(self.browser, "alice", "first password")
        response = self.signup(Browser(self), "alice", "second password")
        self.assertEqual(response.code, 409)
        self.assertIn("That username is taken.", response.body.decode())
        self.assertEqual(self.db[self.database]["users"].count_documents({}), 1)

    def test_login_regenerates_and_logout_removes_the_session_document(self) -> None:
        self.signup(self.browser)
        self.browser.post("/logout")
        sessions = self.db[self.database]["sessions"]
        self.assertEqual(sessions.count_documents({}), 0)  # the logout message needs none
        with self.browser.session_transaction(self.app) as session:  # a session before login
            session["theme"] = "dark"
        self.assertEqual(sessions.count_documents({}), 1)
        before = self.browser.cookies[SESSION]
        self.assert_redirect(self.login(self.browser), "/profile")
        self.assertNotEqual(self.browser.cookies[SESSION], before)
        self.assertEqual(sessions.count_documents({}), 1)  # the old document went
        self.assert_logged_out(self.browser, cookies={SESSION: before})
        self.assertEqual(self.browser.get("/profile").code, 200)

    def test_wrong_password_is_refused(self) -> None:
        self.signup(self.browser)
        response = self.login(Browser(self), "alice", "wrong password")
        self.assertEqual(response.code, 403)

    def test_logout_everywhere_deletes_every_session_document_of_the_user(self) -> None:
        laptop, phone, other = self.browser, Browser(self), Browser(self)
        self.signup(laptop)
        self.login(phone)
        self.signup(other, "bob", "bobs password")
        sessions = self.db[self.database]["sessions"]
        self.assertEqual(sessions.count_documents({"data.username": "alice"}), 2)
        response = laptop.post("/logout-everywhere")
        self.assert_redirect(response, "/login")
        self.assertIn("Logged out of 2 sessions.", laptop.follow(response).body.decode())
        self.assertEqual(sessions.count_documents({"data.username": "alice"}), 0)
        self.assert_logged_out(phone)
        self.assertEqual(other.get("/profile").code, 200)


def test_login_example_runs_on_mongodb_from_the_environment(
    mongo_server: MongoWireServer,
) -> None:
    database = f"login_{uuid.uuid4().hex[:12]}"
    env = {"MONGODB_URI": f"{mongo_server.uri}/{database}", "COOKIE_SECRET": SECRET}
    try:
        with RunningExample("login", env=env) as app:
            assert http_get(app.url + "login")[0] == 200
        log = "".join(app.log)
        assert f"users and sessions in MongoDB, database '{database}'" in log
        assert "kept in memory" not in log
        assert mongo_server.uri not in log  # the URI (it may carry a password) is never logged
    finally:
        client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(mongo_server.uri)
        with client:
            client.drop_database(database)
