"""MongoStore: sessions in MongoDB, expired by a TTL index, written key by key.

One document per session::

    {"_id": <store key>, "data": {<session keys>...}, "expires": <UTC datetime>}

``_id`` is the key the lifecycle gives (a hash of the session id, never the
id), ``data`` is a subdocument, so an operator can query sessions
(``{"data.user_id": 42}``), and ``expires`` carries a TTL index with
``expireAfterSeconds=0``, so MongoDB removes expired sessions by itself.
A store with a ``user_key`` keeps its user index in fields beside ``data``
(``user``, ``created``, ``seen``, ``agent``, ``address``: see `Owner`) with an
index on ``(user, expires)``, so one user's sessions are found, listed and
deleted without reading anyone else's.  Its
TTL monitor runs about once a minute, so every read also filters on
``expires > now``: an expired session never reads as live.  Session keys that
cannot be field names (``a.b``, ``$x``, ``""``, a NUL) are escaped losslessly
by `escape_field_name`, at every depth.

Every operation is one round trip:

* `MongoStore.get` is one ``find`` on ``{_id, expires > now}``;
* a new or regenerated session is one upserting ``update`` that replaces the
  whole document;
* an update of a loaded session is one ``findAndModify`` of ``{_id, expires >
  now}`` without upsert that ``$set``/``$unset`` only the top-level keys this
  request changed (``data.<key>``) and the expiry, ``$inc`` and ``$push`` with
  ``$slice`` for `Session.increment` and `Session.append`: two requests of one
  user that change different keys both keep their writes, and a session that a
  concurrent request destroyed (a logout) is not brought back.  It answers the
  changed fields as they were, so a key another request wrote since the load
  is reported as a conflict from the same round trip; ``first_write_wins`` and
  ``fail`` send a pipeline that compares as it writes;
* `MongoStore.touch`, and an update that changes no key, ``$set`` only
  ``expires``; with ``touch_after`` the lifecycle touches at most once per period.

The TTL index is created by `MongoStore.setup`, run once on first use.

Outages: a `ConnectionMonitor` among the client's ``event_listeners`` reports
PyMongo's own view of the deployment (its server heartbeats), so the
store emits ``disconnect`` as soon as no writable server is left and
``connect`` when one is back, without any request being made.
`MongoStore.from_uri` installs one; for a client you build, pass
``event_listeners=[MongoStore.listener()]``.  Without one the store still
notices: a driver connection error marks it disconnected, and a ``ping`` sent
every ``probe_interval`` seconds marks it connected again.  Either way driver
errors surface as `StoreUnavailableError`, which the lifecycle turns into 503,
and each change is logged once, whichever signal brought it
(`Store.call_backend` keeps the state, as for every store).

PyMongo is imported with this module, but not by ``import tornado_session``;
without it, building a `MongoStore` fails with the extra to install.
"""

from __future__ import annotations

import asyncio
import datetime
import inspect
import re
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from .. import serializers
from ..errors import (
    SessionError,
    SessionOptionError,
    SessionSerializationError,
    StoreUnavailableError,
)
from .base import Clock, Owner, Progress, Store, UserId, UserRecord, Written

_INSTALL_HINT = 'MongoStore needs PyMongo: pip install "tornado-async-session[mongo]"'

try:
    import bson
    import pymongo
    from bson.codec_options import CodecOptions
    from pymongo import ReadPreference, ReturnDocument, WriteConcern, monitoring
    from pymongo.errors import ConnectionFailure, OperationFailure, PyMongoError
except ImportError as exc:  # checked when a store is built
    _IMPORT_ERROR: ImportError | None = exc

    class _HeartbeatListener:
        pass

else:
    _IMPORT_ERROR = None
    _HeartbeatListener = monitoring.ServerHeartbeatListener  # type: ignore[misc,assignment]


__all__ = [
    "ConnectionMonitor",
    "MongoStore",
    "escape_field_name",
    "escape_field_names",
    "unescape_field_name",
    "unescape_field_names",
]

_UTC = datetime.UTC
#: MongoDB's error codes for an index that exists with other options.
_INDEX_CONFLICTS = frozenset({85, 86})
#: MongoDB's error codes for ``$inc`` of a value that is not a number (TypeMismatch)
#: and ``$push`` to one that is not an array (BadValue).
_OP_REFUSED = frozenset({14, 2})


def _require_pymongo() -> None:
    if _IMPORT_ERROR is not None:
        raise ImportError(_INSTALL_HINT) from _IMPORT_ERROR


class ConnectionMonitor(_HeartbeatListener):
    """A PyMongo event listener that tells stores when MongoDB comes and goes.

    Pass it in the client's ``event_listeners`` (PyMongo only takes listeners
    when a client is built)::

        client = pymongo.AsyncMongoClient(uri, event_listeners=[MongoStore.listener()])
        store = MongoStore(client["app"]["sessions"])

    The store finds it among the client's options.  It follows the driver's
    heartbeats, which PyMongo sends every ``heartbeatFrequencyMS`` whether or
    not requests are made, and which it publishes at once: MongoDB is up while
    the last heartbeat of at least one server found it writable (a standalone,
    a primary or a mongos), and down when none did.  (Topology events would
    come through a queue, up to a second late, and would make closing the
    client wait for that queue's thread.)  PyMongo calls listeners on its own
    threads for synchronous (and Motor) clients; the stores move the news onto
    their event loop.
    """

    def __init__(self) -> None:
        _require_pymongo()
        self._stores: weakref.WeakSet[MongoStore] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._writable: dict[Any, bool] = {}
        #: The last state reported: ``True`` up, ``False`` down, ``None`` not known yet.
        self.up: bool | None = None

    def attach(self, store: MongoStore) -> None:
        """Report to ``store`` from now on (and tell it now if MongoDB is down)."""
        with self._lock:  # heartbeats may be iterating the stores on another thread
            self._stores.add(store)
            down = self.up is False
        if down:
            store._from_monitor(False, "no writable server")

    def detach(self, store: MongoStore) -> None:
        """Stop reporting to ``store``."""
        with self._lock:
            self._stores.discard(store)

    def _heard(self, address: Any, writable: bool, reason: str) -> None:
        with self._lock:
            self._writable[address] = writable
            up = any(self._writable.values())
            if up is self.up:
                return
            self.up = up
            stores = list(self._stores)
        for store in stores:
            store._from_monitor(up, reason)

    # -- ServerHeartbeatListener ----------------------------------------------

    def started(self, event: Any) -> None:
        """Part of PyMongo's listener protocol; nothing to do."""

    def succeeded(self, event: Any) -> None:
        """A server answered its heartbeat; up if it takes writes."""
        self._heard(event.connection_id, bool(event.reply.is_writable), "heartbeat succeeded")

    def failed(self, event: Any) -> None:
        """A server did not answer its heartbeat; down if no other one takes writes."""
        self._heard(event.connection_id, False, "heartbeat failed")


class MongoStore(Store):
    """Keeps sessions in a MongoDB collection; see the module docstring.

    ``collection`` is a PyMongo async collection
    (``pymongo.AsyncMongoClient(...)["app"]["sessions"]``) or a Motor one
    (``motor.motor_asyncio`` or ``motor.motor_tornado``); the store never
    closes its client.  `from_uri` builds the client too (and `close` closes
    it).

    ``namespace`` is put before every ``_id``: applications that share one
    collection each give their own, and then neither sees the other's
    sessions, `destroy_all`, `count` and `clear` included (they match
    ``_id`` by its namespace, an anchored prefix that uses the ``_id`` index).
    The default, ``""``, is the whole collection.

    ``create_ttl_index=False`` leaves index creation to you (for a user
    without the ``createIndex`` privilege); the ``expires > now`` filter keeps
    expired sessions out either way.  ``probe_interval`` is how often a store
    without a `ConnectionMonitor` pings the server during an outage.
    """

    backend = "MongoDB"

    def __init__(
        self,
        collection: Any,
        *,
        namespace: str = "",
        clock: Clock = time.time,
        create_ttl_index: bool = True,
        probe_interval: float = 0.5,
        user_key: str | None = None,
    ) -> None:
        _require_pymongo()
        if not isinstance(namespace, str):
            raise SessionOptionError(
                f"MongoStore(namespace={namespace!r}): expected a str put before every _id"
            )
        if isinstance(collection, pymongo.collection.Collection):
            raise SessionOptionError(
                f"MongoStore(collection={collection!r}): a synchronous PyMongo collection would "
                "block the IOLoop on every request; use pymongo.AsyncMongoClient (or Motor)"
            )
        if not isinstance(collection, _ClientSpec) and not all(
            hasattr(collection, name) for name in ("find_one", "update_one", "database")
        ):
            raise SessionOptionError(
                f"MongoStore(collection={collection!r}): expected a PyMongo async or Motor "
                "collection, e.g. pymongo.AsyncMongoClient(uri)['app']['sessions']"
            )
        super().__init__(clock=clock, probe_interval=probe_interval, user_key=user_key)
        #: Put before every ``_id``; the bulk operations see only ids that start with it.
        self.namespace = namespace
        #: The filter of this store's documents (nothing for the whole collection).
        self._scope: dict[str, Any] = (
            {"_id": {"$regex": "^" + re.escape(namespace)}} if namespace else {}
        )
        #: The collection (with the store's codec options) and its client;
        #: ``None`` until first use for a store built by `from_uri` outside a loop.
        self.collection: Any = None
        self.client: Any = None
        #: The `ConnectionMonitor` found among the client's listeners, if any.
        self.monitor: ConnectionMonitor | None = None
        self._deferred: _ClientSpec | None = None
        self._owns_client = False
        self._create_ttl_index = create_ttl_index
        self._ready = False
        self._setup_task: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        if isinstance(collection, _ClientSpec):
            self._deferred = collection
            self._owns_client = True
        else:
            self._bind(collection)

    def _bind(self, collection: Any) -> None:
        # Our own codec options, whatever the client's: plain dicts, UTC datetimes.
        # Sessions are read from the primary and written with `_write_concern`.
        self.collection = collection.with_options(
            codec_options=CodecOptions(document_class=dict, tz_aware=True, tzinfo=_UTC),
            read_preference=ReadPreference.PRIMARY,
            write_concern=self._write_concern(getattr(collection, "write_concern", None)),
        )
        self.client = collection.database.client
        for listener in getattr(self.client.options, "event_listeners", ()):
            if isinstance(listener, ConnectionMonitor):
                self.monitor = listener
                listener.attach(self)
                break

    @classmethod
    def from_uri(
        cls,
        uri: str,
        database: str | None = None,
        collection: str = "sessions",
        *,
        namespace: str = "",
        clock: Clock = time.time,
        create_ttl_index: bool = True,
        probe_interval: float = 0.5,
        user_key: str | None = None,
        **client_options: Any,
    ) -> MongoStore:
        """Build a store on a new `pymongo.AsyncMongoClient` that the store owns.

        The database is ``database`` when given, else the one the URI names
        (``mongodb://host/app`` uses ``app``), else ``"tornado_session"``.
        ``client_options`` go to the client; a `ConnectionMonitor` is added to
        its ``event_listeners``.  The client is created on first use, inside the
        event loop (PyMongo's async client with listeners must be), so a store
        can be built at import time or before the IOLoop starts.  `close`
        closes the client.

        Unless the URI or ``client_options`` set it, ``serverSelectionTimeoutMS``
        is 2000 rather than PyMongo's 30000: a call made while no server answers
        then fails within 2 s as `StoreUnavailableError`, and the waiting is the
        lifecycle's (``reconnect_timeout``, released by ``connect``), not the
        driver's.  Give a client you build the same setting.
        """
        _require_pymongo()
        if "serverselectiontimeoutms" not in uri.lower() and not any(
            name.lower() == "serverselectiontimeoutms" for name in client_options
        ):
            client_options["serverSelectionTimeoutMS"] = _SERVER_SELECTION_TIMEOUT_MS
        spec = _ClientSpec(uri, database, collection, client_options)
        return cls(
            spec, namespace=namespace, clock=clock, create_ttl_index=create_ttl_index,
            probe_interval=probe_interval, user_key=user_key,
        )

    def _open(self) -> None:
        """Create the client of a `from_uri` store (inside the loop, as PyMongo needs)."""
        spec, self._deferred = self._deferred, None
        if spec is None:
            if self.collection is None:
                raise StoreUnavailableError("MongoStore is closed")
            return
        options = dict(spec.options)
        listeners = [*options.pop("event_listeners", ()), ConnectionMonitor()]
        client: Any = pymongo.AsyncMongoClient(spec.uri, event_listeners=listeners, **options)
        database = spec.database
        if database is None:
            database = client.get_default_database(default="tornado_session").name
        self._bind(client[database][spec.collection])

    @staticmethod
    def _write_concern(given: Any) -> Any:
        """``w: "majority"``, unless the collection (or its client, or the URI) chose one.

        On a replica set, a write acknowledged by the primary alone is lost if
        the primary fails before a secondary copies it: the new primary never
        saw it, and the old one rolls it back when it returns.  A login that
        the user saw succeed would be undone.  ``majority`` acknowledges a
        session write once most members hold it, so an election keeps it.
        On a single server it costs nothing.  A write concern you set (``w=1``
        in the URI, or ``with_options`` on the collection) is kept.
        """
        if given is None or given.is_server_default:
            return WriteConcern("majority")
        return given

    @staticmethod
    def listener() -> ConnectionMonitor:
        """A new `ConnectionMonitor`, for the ``event_listeners`` of a client you build."""
        return ConnectionMonitor()

    # -- set-up -----------------------------------------------------------------

    async def setup(self) -> None:
        """Create the TTL index on ``expires`` (``expireAfterSeconds=0``).

        With a `user_key`, also the user index, on ``(user, expires)``.

        Idempotent: an existing index with the same options is fine.  One on
        ``expires`` with other options raises `SessionError` saying so.  Run
        once, lazily, by the first operation; call it at start-up to fail early.
        """
        self._open()
        try:
            await self.call_backend(
                self.collection.create_index, [("expires", 1)], expireAfterSeconds=0
            )
        except SessionError as exc:
            cause = exc.__cause__
            if not isinstance(cause, OperationFailure) or cause.code not in _INDEX_CONFLICTS:
                raise
            raise SessionError(
                f"MongoStore: collection {self.collection.full_name!r} already has an index "
                "on 'expires' with other options; drop it, or create it with "
                "expireAfterSeconds=0 and pass create_ttl_index=False"
            ) from cause
        if self.user_key is not None:
            await self.call_backend(self.collection.create_index, [("user", 1), ("expires", 1)])
        self._ready = True

    async def _ensure_ready(self) -> None:
        """Run once before the first operation: the client, then `setup`."""
        self._loop = asyncio.get_running_loop()
        if self._ready:
            return
        if not self._create_ttl_index:
            self._open()
            self._ready = True
            return
        task = self._setup_task
        if task is None or (task.done() and (task.cancelled() or task.exception())):
            task = self._setup_task = asyncio.ensure_future(self.setup())
            task.add_done_callback(_retrieve)
        await asyncio.shield(task)

    # -- the protocol -------------------------------------------------------------

    async def get(self, key: str) -> dict[str, Any] | None:
        """Return the live data under ``key``, or ``None`` (expired reads as ``None``)."""
        await self._ensure_ready()
        document = await self.call_backend(
            self.collection.find_one,
            {"_id": self.namespace + key, "expires": {"$gt": self._now()}},
            {"data": 1, "_id": 0},
        )
        if document is None:
            return None
        data: dict[str, Any] = unescape_field_names(
            document.get("data") or {}, _from_bson
        )
        return data

    async def set(
        self,
        key: str,
        data: Mapping[str, Any],
        max_age: float,
        *,
        previous: Mapping[str, Any] | None = None,
        ops: Mapping[str, serializers.Op] | None = None,
        on_conflict: str = "last_write_wins",
        owner: Owner | None = None,
    ) -> bool | Written:
        """Write ``data`` in one round trip; see `Store.set` and the module docstring."""
        await self._ensure_ready()
        expires = self._datetime(self.expires_at(max_age))
        try:
            if previous is None:
                return await self._replace(key, data, expires, owner)
            return await self._update_changes(
                key, data, expires, previous, ops, on_conflict, owner
            )
        except SessionSerializationError as exc:
            if exc.key is None:  # find the key, in JSON's words
                serializers.dumps(data)
            raise

    async def _replace(
        self, key: str, data: Mapping[str, Any], expires: datetime.datetime,
        owner: Owner | None = None,
    ) -> bool:
        """Write a new or regenerated session: one upsert of the whole document."""
        name = self.namespace + key
        document = {"_id": name, "data": _escape(dict(data)), "expires": expires}
        if self.user_key is not None and owner is not None and owner.user is not None:
            document.update(self._owner_fields(owner))
        await self.call_backend(self.collection.replace_one, {"_id": name}, document, upsert=True)
        return True

    async def _update_changes(
        self,
        key: str,
        data: Mapping[str, Any],
        expires: datetime.datetime,
        previous: Mapping[str, Any],
        ops: Mapping[str, serializers.Op] | None,
        on_conflict: str,
        owner: Owner | None = None,
    ) -> bool | Written:
        """Apply the keys this request changed, in one ``findAndModify``.

        It answers the changed fields as they were just before the update, so
        the conflicts (and the values of increments and appends) are found
        from the same round trip that wrote.  With ``last_write_wins`` the
        update is plain ``$set``/``$unset``/``$inc``/``$push`` with
        ``$slice``; the other policies compare in the update itself (a
        pipeline: `_guarded_update`).  ``$inc`` of a value that another
        request made something else than a number is refused by MongoDB: that
        write is sent again with this request's values (the rare case of a
        second round trip).
        """
        to_set, to_unset = serializers.changed_keys(previous, data)
        if not to_set and not to_unset:
            return await self._update(key, self._owned({"$set": {"expires": expires}}, owner))
        ops = {name: op for name, op in ops.items() if name in to_set} if ops else None
        if on_conflict == "last_write_wins":
            update: Any = _plain_update(to_set, to_unset, expires, ops)
        else:
            update = _guarded_update(to_set, to_unset, expires, previous, ops, on_conflict)
        update = self._owned(update, owner)
        try:
            before = await self._modify(key, update, [*to_set, *to_unset])
        except SessionError as exc:
            refused = exc.__cause__
            if not (ops and isinstance(refused, OperationFailure) and refused.code in _OP_REFUSED):
                raise
            ops = None
            update = self._owned(_plain_update(to_set, to_unset, expires, None), owner)
            before = await self._modify(key, update, [*to_set, *to_unset])
        if before is None:
            return False
        current = unescape_field_names(before.get("data") or {}, _from_bson)
        merged = serializers.merge_changes(
            current, previous, data, ops=ops, on_conflict=on_conflict
        )
        return Written.of(merged)

    async def _modify(self, key: str, update: Any, names: list[str]) -> dict[str, Any] | None:
        """``findAndModify`` of the live record: the named fields before the update, or ``None``."""
        projection = {"_id": 0, **{"data." + escape_field_name(name): 1 for name in names}}
        document: dict[str, Any] | None = await self.call_backend(
            self.collection.find_one_and_update,
            {"_id": self.namespace + key, "expires": {"$gt": self._now()}}, update,
            projection=projection, return_document=ReturnDocument.BEFORE,
        )
        return document

    def _owned(self, update: Any, owner: Owner | None) -> Any:
        """``update`` (a document or a pipeline) keeping the owner fields beside ``data``.

        Without a `user_key`, ``update`` as it is.  Else: ``owner=None`` sets
        ``seen`` only (the record's owner stays as it is); an `Owner` of a user
        sets all of its fields, one of no user removes them (a logout).
        """
        if self.user_key is None:
            return update
        if owner is None:
            fields: dict[str, Any] = {"seen": self._now()}
            removed: list[str] = []
        elif owner.user is None:
            fields, removed = {}, list(_OWNER_FIELDS)
        else:
            fields, removed = self._owner_fields(owner), []
        if isinstance(update, list):  # a pipeline: values as literals, removal as a stage
            update[0]["$set"].update({name: {"$literal": value} for name, value in fields.items()})
            return [*update, {"$unset": removed}] if removed else update
        update["$set"].update(fields)
        if removed:
            update.setdefault("$unset", {}).update(dict.fromkeys(removed, ""))
        return update

    def _owner_fields(self, owner: Owner) -> dict[str, Any]:
        """The fields of a document that hold its owner (beside ``data``)."""
        return {"user": owner.user, "created": self._datetime(owner.created),
                "seen": self._now(), "agent": owner.agent, "address": owner.address}

    async def touch(self, key: str, max_age: float) -> bool:
        """Extend a live record's expiry with one update; ``False`` when there is none."""
        await self._ensure_ready()
        fields = {"expires": self._datetime(self.expires_at(max_age))}
        if self.user_key is not None:
            fields["seen"] = self._now()
        return await self._update(key, {"$set": fields})

    async def destroy(self, key: str) -> bool:
        """Delete the live record under ``key``; whether there was one.

        An expired document is left to the TTL index (it reads as missing
        already), so that the answer says whether the session was alive.
        """
        await self._ensure_ready()
        result = await self.call_backend(
            self.collection.delete_one,
            {"_id": self.namespace + key, "expires": {"$gt": self._now()}},
        )
        return bool(result.deleted_count)

    async def destroy_user(self, user: UserId) -> int:
        """Destroy ``user``'s live sessions: one ``delete`` on the ``(user, expires)`` index."""
        self._needs_user_key()
        await self._ensure_ready()
        result = await self.call_backend(
            self.collection.delete_many,
            {**self._scope, "user": user, "expires": {"$gt": self._now()}},
        )
        return int(result.deleted_count)

    async def user_sessions(self, user: UserId) -> list[UserRecord]:
        """``user``'s live sessions: one ``find`` on the ``(user, expires)`` index."""
        self._needs_user_key()
        await self._ensure_ready()
        cursor = self.collection.find(
            {**self._scope, "user": user, "expires": {"$gt": self._now()}},
            {"data": 0},
        )
        documents = await self.call_backend(cursor.to_list, None)
        skip = len(self.namespace)
        found = [
            UserRecord(
                document["_id"][skip:], document["expires"].timestamp(),
                Owner(user, document["created"].timestamp(), document["seen"].timestamp(),
                      document.get("agent", ""), document.get("address", "")),
            )
            for document in documents
            if type(_from_bson(document.get("user"))) is type(user)  # 42 is not "42"
        ]
        found.sort(key=lambda record: (record.owner.created, record.key))
        return found

    async def destroy_matching(self, match: Mapping[str, Any]) -> int:
        """Destroy every live session whose data has these top-level values.

        ``destroy_all(user_id=42)`` deletes with ``{"data.user_id": 42}``; give
        it an index (``create_index("data.user_id")``) so it does not scan the
        collection.  A value is matched as a whole: a list matches an equal
        list, and a scalar does not match a list that contains it.
        """
        await self._ensure_ready()
        query: dict[str, Any] = {**self._scope, "expires": {"$gt": self._now()}}
        for name, value in match.items():
            field = "data." + escape_field_name(name)
            value = _escape(value)
            # Present (``None`` must not match a missing key) and equal; a scalar
            # must not match an array that merely contains it.
            query[field] = {"$exists": True, "$eq": value}
            if not isinstance(value, list):
                query[field]["$not"] = {"$type": "array"}
        result = await self.call_backend(self.collection.delete_many, query)
        return int(result.deleted_count)

    async def count(self, *, progress: Progress | None = None) -> int:
        """Return how many live sessions the store (its namespace) holds (one command)."""
        await self._ensure_ready()
        found = await self.call_backend(
            self.collection.count_documents, {**self._scope, "expires": {"$gt": self._now()}}
        )
        if progress is not None:
            progress(int(found))
        return int(found)

    async def clear(self, *, progress: Progress | None = None) -> None:
        """Delete every session of the store (its namespace; the whole collection for ``""``)."""
        await self._ensure_ready()
        result = await self.call_backend(self.collection.delete_many, dict(self._scope))
        if progress is not None:
            progress(int(result.deleted_count))

    async def ping(self) -> None:
        """Send ``ping``; `StoreUnavailableError` when MongoDB does not answer."""
        if self.collection is None:
            self._open()
        await self.ping_backend(self.collection.database.command, "ping")

    async def close(self) -> None:
        """Stop probing, and close the client if `from_uri` created it."""
        if self.monitor is not None:
            self.monitor.detach(self)
        await super().close()
        self._deferred = None
        if self._owns_client and self.client is not None:
            self._owns_client = False
            closing = self.client.close()
            if inspect.isawaitable(closing):
                await closing

    # -- internals ----------------------------------------------------------------

    def _now(self) -> datetime.datetime:
        return self._datetime(self.clock())

    @staticmethod
    def _datetime(timestamp: float) -> datetime.datetime:
        # BSON datetimes hold milliseconds: round here so what we send is exact.
        return datetime.datetime.fromtimestamp(round(timestamp, 3), tz=_UTC)

    async def _update(self, key: str, update: dict[str, Any]) -> bool:
        """Update the live record under ``key`` (no upsert); whether one was there."""
        result = await self.call_backend(
            self.collection.update_one,
            {"_id": self.namespace + key, "expires": {"$gt": self._now()}}, update,
        )
        return bool(result.matched_count)

    def translate_error(self, exc: Exception) -> SessionError | None:
        """PyMongo's connection failures and time-outs are outages; BSON's limits are ours."""
        if isinstance(exc, ConnectionFailure) or (isinstance(exc, PyMongoError) and exc.timeout):
            return StoreUnavailableError(f"MongoDB cannot be reached: {exc}")
        if isinstance(exc, (bson.errors.InvalidDocument, OverflowError)):
            return SessionSerializationError(f"session data cannot be stored in MongoDB: {exc}")
        if isinstance(exc, PyMongoError):
            return SessionError(f"MongoDB refused the operation: {exc}")
        return super().translate_error(exc)

    def _from_monitor(self, up: bool, reason: str) -> None:
        """News from the `ConnectionMonitor`, possibly on one of PyMongo's threads."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is not loop:
                try:
                    loop.call_soon_threadsafe(self._apply, up, reason)
                    return
                except RuntimeError:  # the loop closed meanwhile
                    pass
        self._apply(up, reason)

    def _apply(self, up: bool, reason: str) -> None:
        if self._closed:
            return
        if up:
            self.mark_connected(reason=reason)
        else:
            self.mark_disconnected(reason=reason)


#: The fields of a document that hold its owner, beside ``data`` (see `Owner`).
_OWNER_FIELDS = ("user", "created", "seen", "agent", "address")


def _plain_update(
    to_set: Mapping[str, Any],
    to_unset: list[str],
    expires: datetime.datetime,
    ops: Mapping[str, serializers.Op] | None,
) -> dict[str, Any]:
    """The update of ``last_write_wins``: ``$set``, ``$unset``, ``$inc``, ``$push`` with ``$slice``.

    Whatever the stored values are, this is written: the conflicts are found
    afterwards, in the fields as they were before it (`MongoStore._modify`).
    """
    sets: dict[str, Any] = {"expires": expires}
    update: dict[str, Any] = {"$set": sets}
    for name, value in to_set.items():
        field = "data." + escape_field_name(name)
        op = ops.get(name) if ops else None
        if op is None:
            sets[field] = _escape(value)
        elif type(op) is serializers.Increment:
            update.setdefault("$inc", {})[field] = op.by
        else:
            assert type(op) is serializers.Append
            update.setdefault("$push", {})[field] = {
                "$each": _escape(list(op.values)), "$slice": -op.limit,
            }
    if to_unset:
        update["$unset"] = {"data." + escape_field_name(name): "" for name in to_unset}
    return update


def _guarded_update(
    to_set: Mapping[str, Any],
    to_unset: list[str],
    expires: datetime.datetime,
    previous: Mapping[str, Any],
    ops: Mapping[str, serializers.Op] | None,
    on_conflict: str,
) -> list[dict[str, Any]]:
    """The update of ``first_write_wins`` and ``fail``: a pipeline that compares as it writes.

    Each changed field is written only if it still holds what the request
    loaded (an op's field: a value the op can take); with ``fail``, every
    field is written only if all of them do.  Values go in ``$literal``, so a
    string such as ``"$x"`` stays a string.
    """
    fields: dict[str, Any] = {}
    checks: dict[str, Any] = {}
    for name in (*to_set, *to_unset):
        path = "$data." + escape_field_name(name)
        op = ops.get(name) if ops else None
        if type(op) is serializers.Increment:
            checks[name] = {"$in": [{"$type": path}, ["int", "long", "missing"]]}
            fields[name] = {"$add": [{"$ifNull": [path, 0]}, op.by]}
        elif type(op) is serializers.Append:
            checks[name] = {"$in": [{"$type": path}, ["array", "missing"]]}
            added = {"$literal": _escape(list(op.values))}
            items = {"$concatArrays": [{"$ifNull": [path, []]}, added]}
            fields[name] = {"$slice": [items, -op.limit]}
        else:
            if name in previous:
                checks[name] = {"$eq": [path, {"$literal": _escape(previous[name])}]}
            else:
                checks[name] = {"$eq": [{"$type": path}, "missing"]}
            fields[name] = {"$literal": _escape(to_set[name])} if name in to_set else "$$REMOVE"
    sets: dict[str, Any] = {"expires": expires}
    for name, value in fields.items():
        path = "$data." + escape_field_name(name)
        # With "fail" every field asks the one verdict of the first stage (naming
        # all the checks in each field would grow the command with the square).
        check = "$" + _ALL_AS_LOADED if on_conflict == "fail" else checks[name]
        # The field as it is (missing stays missing: a bare path would read as null).
        keep = {"$cond": [{"$eq": [{"$type": path}, "missing"]}, "$$REMOVE", path]}
        sets[path[1:]] = {"$cond": [check, value, keep]}
    if on_conflict != "fail":
        return [{"$set": sets}]
    every = {"$and": list(checks.values())}
    return [{"$set": {_ALL_AS_LOADED: every}}, {"$set": sets}, {"$unset": _ALL_AS_LOADED}]


#: A field that holds, during a ``fail`` update, whether every changed field is as loaded
#: (outside ``data``: no session key can collide with it).
_ALL_AS_LOADED = "_tornado_session_all_as_loaded"


#: `MongoStore.from_uri`'s default ``serverSelectionTimeoutMS`` (PyMongo's is 30 s).
_SERVER_SELECTION_TIMEOUT_MS = 2000


class _ClientSpec(NamedTuple):
    """What `MongoStore.from_uri` needs to build its client on first use."""

    uri: str
    database: str | None
    collection: str
    options: dict[str, Any]


# -- field names ----------------------------------------------------------------
#
# MongoDB cannot take every JSON key as a field name: a ``.`` means a path, a
# leading ``$`` an operator, NUL ends a BSON name, and an empty name cannot
# appear in an update path.  Such keys are percent-escaped (``%`` itself always
# is), and the empty key becomes a lone ``%``, which no other key escapes to:
# the mapping is lossless and no plain key can collide with an escaped one.
# (They lived in serializers.py; this store is their only user.)

_FIELD_ESCAPES = {"%": "%25", ".": "%2E", "\0": "%00"}


def escape_field_name(name: str) -> str:
    """A session key as a document field name (see `unescape_field_name`).

    ``"a.b"`` becomes ``"a%2Eb"``, ``"$x"`` ``"%24x"``, ``"50%"`` ``"50%25"``,
    ``""`` ``"%"``; a key with none of ``.``, ``%``, NUL or a leading ``$``
    (nearly every key) is returned as it is.
    """
    if not name:
        return "%"
    if "%" in name or "." in name or "\0" in name:
        name = "".join(_FIELD_ESCAPES.get(char, char) for char in name)
    if name[0] == "$":
        name = "%24" + name[1:]
    return name


def unescape_field_name(name: str) -> str:
    """The session key that `escape_field_name` turned into ``name``."""
    if "%" not in name:
        return name
    if name == "%":
        return ""
    parts = name.split("%")
    return parts[0] + "".join(chr(int(part[:2], 16)) + part[2:] for part in parts[1:])


def escape_field_names(value: Any) -> Any:
    """``value`` with `escape_field_name` applied to every dict key, at any depth."""
    if isinstance(value, dict):
        return {_escape_key(key): escape_field_names(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [escape_field_names(item) for item in value]
    return value


def _escape_key(key: Any) -> str:
    if not isinstance(key, str):
        raise TypeError(f"key {key!r} is not a string")
    return escape_field_name(key)


def unescape_field_names(value: Any, leaf: Callable[[Any], Any] | None = None) -> Any:
    """Undo `escape_field_names`; ``leaf`` (if given) converts every other value.

    A store passes ``leaf`` to turn a driver's types back into JSON's (BSON's
    ``Int64`` into ``int``) in the same walk.
    """
    if isinstance(value, dict):
        return {
            unescape_field_name(key): unescape_field_names(item, leaf)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [unescape_field_names(item, leaf) for item in value]
    return value if leaf is None else leaf(value)


def _escape(value: Any) -> Any:
    """Field names escaped for MongoDB; a non-str key is a serialisation error."""
    try:
        return escape_field_names(value)
    except TypeError as exc:
        raise SessionSerializationError(
            f"session data has a key that is not a string: {exc}"
        ) from exc


def _from_bson(value: Any) -> Any:
    """A BSON value as JSON's type: ``Int64`` (how 64-bit ints come back) as ``int``."""
    return int(value) if type(value) is bson.int64.Int64 else value


def _retrieve(task: asyncio.Future[None]) -> None:
    """Mark a set-up task's exception as seen; the callers that awaited it got it."""
    if not task.cancelled():
        task.exception()
