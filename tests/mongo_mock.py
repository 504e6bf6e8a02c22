"""A MockupDB server that records every command a MongoStore sends.

MockupDB speaks the wire protocol and shows the exact commands PyMongo sends,
so the tests assert on them: the read filter, the fields an update writes, the
index spec.  It answers the handshake (``hello`` and ``ismaster``, with
``helloOk``) by itself, and here it keeps the sessions it was sent in a dict so
that a whole HTTP flow can run against it; ``fail`` makes chosen commands hang
up, as a server that goes away does.
"""

from __future__ import annotations

import copy
import datetime
import threading
from typing import Any, ClassVar

from mockupdb import MockupDB

from tornado_session.stores import MongoStore
from tornado_session.testing import FakeClock

HANDSHAKE = ("hello", "ismaster", "isMaster", "ping", "endSessions")
DATABASE = "tornado_session"
COLLECTION = "sessions"


def bson_datetime(timestamp: float) -> datetime.datetime:
    """A timestamp as MockupDB decodes a BSON datetime (naive UTC, milliseconds)."""
    aware = datetime.datetime.fromtimestamp(round(timestamp, 3), tz=datetime.UTC)
    return aware.replace(tzinfo=None)


class MockMongo:
    """A running MockupDB with a command log (`commands`) and a tiny session table."""

    def __init__(self) -> None:
        self.server = MockupDB(auto_ismaster=True, max_wire_version=21)
        hello = {"helloOk": True, "maxWireVersion": 21, "minWireVersion": 0}
        self.server.autoresponds("hello", isWritablePrimary=True, **hello)
        self.server.autoresponds("ismaster", ismaster=True, **hello)
        self.server.autoresponds("ping")
        self.server.autoresponds(self._handle)
        self.lock = threading.Lock()
        #: ``(command name, command document)`` of every command but the handshake.
        self.commands: list[tuple[str, dict[str, Any]]] = []
        #: The documents upserted, by ``_id``.
        self.documents: dict[str, dict[str, Any]] = {}
        #: Command names to answer by hanging up (a network error).
        self.fail: set[str] = set()
        #: Command names to answer with a command error, and its code.
        self.refuse: dict[str, int] = {}
        self.server.run()

    @property
    def uri(self) -> str:
        """The server's connection string."""
        return str(self.server.uri)

    def stop(self) -> None:
        """Stop the server (it takes MockupDB a second: share one per test class)."""
        self.server.stop()

    def names(self) -> list[str]:
        """The names of the commands received, in order."""
        with self.lock:
            return [name for name, _ in self.commands]

    def of(self, name: str) -> list[dict[str, Any]]:
        """The documents of the commands called ``name``."""
        with self.lock:
            return [doc for command, doc in self.commands if command == name]

    def clear(self) -> None:
        """Forget the commands received so far."""
        with self.lock:
            self.commands.clear()

    def reset(self) -> None:
        """Forget everything: commands, documents, failures (between tests)."""
        with self.lock:
            self.commands.clear()
            self.documents.clear()
            self.fail.clear()
            self.refuse.clear()

    def _handle(self, request: Any) -> Any:
        doc = dict(request.doc)
        name = next(iter(doc))
        if name in HANDSHAKE:
            return None
        with self.lock:
            self.commands.append((name, doc))
            if name in self.fail:
                return request.hangup()
            if name in self.refuse:
                return request.command_err(self.refuse[name], "refused by the test")
            return self._answer(request, name, doc)

    def _answer(self, request: Any, name: str, doc: dict[str, Any]) -> Any:
        if name == "find":
            found = self.documents.get(doc["filter"].get("_id"))
            batch = [{"data": found["data"]}] if found else []
            cursor = {"id": 0, "ns": f"{DATABASE}.{COLLECTION}", "firstBatch": batch}
            return request.ok(cursor=cursor)
        if name == "update":
            (update,) = doc["updates"]
            key = update["q"]["_id"]
            if update["upsert"]:
                self.documents[key] = dict(update["u"])
                return request.ok(n=1, nModified=0, upserted=[{"index": 0, "_id": key}])
            if key not in self.documents:
                return request.ok(n=0, nModified=0)
            apply(self.documents[key], update["u"])
            return request.ok(n=1, nModified=1)
        if name == "findAndModify":
            found = self.documents.get(doc["query"]["_id"])
            if found is None:
                return request.ok(value=None, lastErrorObject={"n": 0, "updatedExisting": False})
            before = copy.deepcopy(found)
            if isinstance(doc["update"], dict):  # (a pipeline is only recorded)
                code = refused_op(found, doc["update"])
                if code:
                    return request.command_err(code, "refused as MongoDB refuses it")
                apply(found, doc["update"])
            return request.ok(value={"data": before.get("data", {})},
                              lastErrorObject={"n": 1, "updatedExisting": True})
        if name == "delete":
            (delete,) = doc["deletes"]
            found = self.documents.pop(delete["q"].get("_id"), None)
            return request.ok(n=int(found is not None))
        return request.ok()


def refused_op(document: dict[str, Any], update: dict[str, Any]) -> int:
    """MongoDB's error code for an ``$inc`` of a non-number or a ``$push`` to a non-array."""
    data = document.get("data", {})
    for path in update.get("$inc", {}):
        value = data.get(path.split(".", 1)[1], 0)
        if type(value) not in (int, float):
            return 14
    for path in update.get("$push", {}):
        if type(data.get(path.split(".", 1)[1], [])) is not list:
            return 2
    return 0


def apply(document: dict[str, Any], update: dict[str, Any]) -> None:
    """Apply ``$set``, ``$unset``, ``$inc`` and ``$push`` of one dotted level, as MongoDB would."""
    data = document.setdefault("data", {})
    for path, by in update.get("$inc", {}).items():
        name = path.split(".", 1)[1]
        data[name] = data.get(name, 0) + by
    for path, push in update.get("$push", {}).items():
        name = path.split(".", 1)[1]
        data[name] = [*data.get(name, []), *push["$each"]][push["$slice"]:]
    for path, value in update.get("$set", {}).items():
        *parents, last = path.split(".")
        target = document
        for part in parents:
            target = target.setdefault(part, {})
        target[last] = value
    for path in update.get("$unset", {}):
        *parents, last = path.split(".")
        target = document
        for part in parents:
            target = target.get(part, {})
        target.pop(last, None)


class MockMongoCase:
    """Mixin: ``cls.mock``, one `MockMongo` for the test class (it takes a second to stop)."""

    mock: ClassVar[MockMongo]
    clock: FakeClock

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()  # type: ignore[misc]
        cls.mock = MockMongo()
        cls.addClassCleanup(cls.mock.stop)  # type: ignore[attr-defined]

    def mock_store(self) -> MongoStore:
        """A MongoStore on the mock, whose log and documents start empty."""
        self.mock.reset()
        return MongoStore.from_uri(self.mock.uri, clock=self.clock, serverSelectionTimeoutMS=3000)
