"""MongoStore over TCP: the store contract against the mongoeco wire server, with
PyMongo's async client and with Motor, and against a real MongoDB when MONGODB_URI is set."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pymongo
import pytest
from motor.motor_asyncio import AsyncIOMotorClient

from tests.mongo_server import MongoWireServer
from tornado_session.stores import MongoStore
from tornado_session.testing import StoreContract

MONGODB_URI = os.environ.get("MONGODB_URI")
DATABASE = "tornado_session_test"
SERVER: MongoWireServer | None = None


@pytest.fixture(scope="module", autouse=True)
def wire_server() -> Iterator[MongoWireServer]:
    global SERVER
    server = MongoWireServer()
    server.start()
    SERVER = server
    yield server
    SERVER = None
    server.close()


def server_uri() -> str:
    assert SERVER is not None
    return SERVER.uri


def unique_collection() -> str:
    return "sessions_" + uuid.uuid4().hex[:12]


class TestMongoStoreContractPyMongo(StoreContract):
    """The contract with pymongo.AsyncMongoClient, the primary path."""

    def make_store(self) -> MongoStore:
        async def build() -> MongoStore:  # PyMongo's async client is made inside the loop
            self.client: Any = pymongo.AsyncMongoClient(
                server_uri(), event_listeners=[MongoStore.listener()],
                serverSelectionTimeoutMS=5000,
            )
            return MongoStore(self.client[DATABASE][unique_collection()], clock=self.clock)

        return self.io_loop.run_sync(build)

    async def _close_store(self) -> None:
        await super()._close_store()
        await self.client.close()


class TestMongoStoreContractMotor(StoreContract):
    """The contract with a motor.motor_asyncio client, without a ConnectionMonitor
    (so the store watches driver errors instead)."""

    def make_store(self) -> MongoStore:
        self.client: Any = AsyncIOMotorClient(server_uri(), serverSelectionTimeoutMS=5000)
        return MongoStore(self.client[DATABASE][unique_collection()], clock=self.clock)

    async def _close_store(self) -> None:
        await super()._close_store()
        self.client.close()


@pytest.mark.skipif(
    not MONGODB_URI, reason="MONGODB_URI is not set: no real MongoDB to test against"
)
class TestMongoStoreContractRealMongoDB(StoreContract):
    """The contract against a real MongoDB (CI's mongo:7 service)."""

    def make_store(self) -> MongoStore:
        assert MONGODB_URI
        return MongoStore.from_uri(
            MONGODB_URI, collection=unique_collection(), clock=self.clock,
            serverSelectionTimeoutMS=5000,
        )
