"""EncryptedStore: session data encrypted at rest, in any store.

``EncryptedStore(store, keys={1: secret})`` wraps a store (`MemoryStore`,
`RedisStore`, `MongoStore`, or one of yours that passes the
`~tornado_session.testing.StoreContract`) and hands it ciphertext: a dump of
Redis or MongoDB then shows no session data.

Each top-level key of a session is sealed on its own (AES-256-GCM, see
`tornado_session.crypto`): the record the wrapped store keeps maps a field id
(``~`` and 16 characters of an HMAC of the key's name, so names are hidden
too) to the base64 of the sealed ``[name, value]``.  The store key and the
field id are authenticated with it, so a field copied into another session or
under another name does not open.  Sealing key by key is what keeps the
wrapped store's guarantees: a request that changed one key hands the store
one new field and the others as they were, and the store's own compare-and-set
and key-by-key merge (a Lua script in Redis, ``$set`` of fields in MongoDB)
work on fields as they work on keys, so two concurrent requests that change
different keys both keep their writes, and a concurrent logout still wins.

What stays readable, and why:

* the expiry: each store keeps it its own way (Redis's TTL, MongoDB's
  ``expires`` field and TTL index, MemoryStore's entry), and expires the
  record without decrypting it;
* the store key (a hash of the session id, never the id) and the number of
  top-level keys of a session;
* the keys named in ``readable``, stored as they are: for `destroy_all` and a
  user index, such as ``readable=("user_id",)``.  Name only ids there.

A record with a field that does not open (tampered, moved, a removed key, or
plaintext written by someone else) reads as missing, with a warning: the
user gets a fresh session, never another's data.

Keys rotate as for cookies: the highest version seals, every listed version
opens, and a field under an older key is sealed again under the newest at the
record's next write.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
from collections.abc import Awaitable, Iterable, Mapping
from typing import Any

import orjson

from .. import serializers
from ..crypto import Keyring, check_keys
from ..errors import SessionError, SessionOptionError
from ..events import Listener
from .base import Ready, Store, Written

logger = logging.getLogger(__name__)

#: What a sealed field's id starts with; a readable key may not.
FIELD_MARK = "~"
#: How many opened records are remembered, so an update needs no second read.
_MEMORY = 4096

_NONE: Ready[Any] = Ready(None)


def _keep(memory: dict[Any, _Opened], key: Any, opened: _Opened) -> None:
    """``memory[key] = opened``, at the recent end; the oldest entry goes past `_MEMORY`."""
    if key in memory:
        del memory[key]
    elif len(memory) >= _MEMORY:
        del memory[next(iter(memory))]
    memory[key] = opened


class _Opened:
    """A record as read: its plaintext, the store's record, where each key is, what is stale."""

    __slots__ = ("dropped", "fields", "raw", "sealed", "stale")

    def __init__(
        self, raw: bytes, sealed: Mapping[str, Any], fields: dict[str, str], stale: list[str],
        dropped: list[str],
    ) -> None:
        self.raw = raw
        self.sealed = sealed
        #: The field id each key was found under.
        self.fields = fields
        #: The keys sealed under an older key version: sealed again at the next write.
        self.stale = stale
        #: Fields of a key also found under a newer version: deleted at the next write.
        self.dropped = dropped


class EncryptedStore(Store):
    """Wraps ``store`` so that it keeps session data encrypted (see the module docstring).

    ``keys`` is ``{version: secret}`` like ``encryption_keys`` (each secret
    at least 32 bytes; needs the ``[crypto]`` extra).  ``readable`` names the
    top-level keys kept in clear for the store: `destroy_all` matches only
    those, and a user index reads them.

    Connection state, events (``connect``/``disconnect``), expiry, `touch`,
    `count` and `clear` are the wrapped store's.  ``destroy_all(**match)``
    works when every key in ``match`` is readable.
    """

    def __init__(
        self, store: Store, *, keys: Mapping[int, str | bytes], readable: Iterable[str] = ()
    ) -> None:
        if not isinstance(store, Store) or isinstance(store, EncryptedStore):
            raise SessionOptionError(
                f"EncryptedStore(store={type(store).__name__}): expected a store "
                "(tornado_session.stores.Store) that is not already encrypted"
            )
        checked = check_keys("EncryptedStore option keys", keys)
        if isinstance(readable, str):
            raise SessionOptionError(
                f"EncryptedStore(readable={readable!r}): expected a list of key names, "
                f"such as ({readable!r},)"
            )
        names = tuple(readable)
        for name in names:
            if not isinstance(name, str) or not name or name.startswith(FIELD_MARK):
                raise SessionOptionError(
                    f"EncryptedStore(readable=...): {name!r} is not a key name "
                    f"(a non-empty str that does not start with {FIELD_MARK!r})"
                )
        super().__init__(clock=store.clock)
        #: The store that keeps the encrypted records.
        self.store = store
        self.events = store.events
        self.backend = store.backend
        #: The top-level keys kept in clear.
        self.readable = frozenset(names)
        self._keys = Keyring(checked, purpose=b"store")
        # The field ids: the newest key version and an HMAC of the name under
        # a key made from its secret (an older version's ids are read, and
        # moved to the newest at the next write, with their values).
        newest = self._keys.newest
        self._ids_mac = hmac.new(
            hashlib.sha256(b"tornado-session field ids\0" + checked[newest]).digest(),
            digestmod="sha256",
        )
        self._id_prefix = f"{FIELD_MARK}{newest}."
        self._ids: dict[str, str] = {}
        #: The record last read or written under each key (a read compares with it).
        self._opened: dict[str, _Opened] = {}
        #: The records read or written, by key and plaintext: an update finds the sealed
        #: record its request loaded even when another request of the session wrote since.
        self._versions: dict[tuple[str, bytes], _Opened] = {}

    # -- connection state: the wrapped store's ---------------------------------

    @property
    def connected(self) -> bool:
        """Whether the wrapped store believes its backend reachable."""
        return self.store.connected

    async def wait_connected(self, timeout: float) -> bool:
        """Wait for the wrapped store to be connected (see `Store.wait_connected`)."""
        return await self.store.wait_connected(timeout)

    def on(self, event: str, listener: Listener) -> Listener:
        """Listen to the wrapped store's ``connect`` / ``disconnect``."""
        return self.store.on(event, listener)

    def off(self, event: str, listener: Listener) -> None:
        """Remove a listener added with `on`."""
        self.store.off(event, listener)

    async def ping(self) -> None:
        """Ask the wrapped store's backend whether it answers."""
        await self.store.ping()

    # -- the protocol ---------------------------------------------------------------

    def get(self, key: str) -> Awaitable[dict[str, Any] | None]:
        """The decrypted data under ``key`` (a `serializers.Loaded`), or ``None``.

        Answers at hand (`Ready`) when the wrapped store does.
        """
        answer = self.store.get(key)
        if type(answer) is Ready:
            return Ready(self._open_record(key, answer.value))
        return self._get_later(key, answer)

    async def _get_later(
        self, key: str, answer: Awaitable[dict[str, Any] | None]
    ) -> serializers.Loaded | None:
        return self._open_record(key, await answer)

    async def set(
        self,
        key: str,
        data: Mapping[str, Any],
        max_age: float,
        *,
        previous: Mapping[str, Any] | None = None,
        ops: Mapping[str, serializers.Op] | None = None,
        on_conflict: str = "last_write_wins",
    ) -> bool | Written:
        """Seal the changed keys and let the wrapped store write them; see `Store.set`.

        With ``previous``, the sealed record the request loaded (remembered
        from `get`) is handed to the store as its ``previous``, and the new
        record is that one with this request's changes sealed in, written
        with ``on_conflict="fail"``: the store keeps the other requests'
        writes to other keys, and refuses the write if one of this request's
        keys was written since.  Then, and when nothing is remembered, the
        record is read, the request's changes (``ops`` included: the server
        cannot add to a sealed number) are merged into it here by
        `serializers.merge_changes` with ``on_conflict``, and written by
        compare-and-set again, until it holds still for one round trip.
        """
        raw = serializers.raw_json(data)  # first: a value that is not JSON names its key
        record: Mapping[str, Any]
        if previous is None:
            record, fields = self._seal_all(key, data)
            return self._after_write(
                key, await self.store.set(key, record, max_age), raw, record, fields
            )
        opened = self._versions.get((key, serializers.raw_json(previous)))
        if opened is not None:
            written, record, fields = await self._write_changes(
                key, opened, previous, data, max_age
            )
            if written or not isinstance(written, Written) or not written.conflicts:
                return self._after_write(key, written, raw, record, fields)
        while True:  # merge here, on the record as it is now
            current = await self.store.get(key)
            opened = None if current is None else self._open_fields(key, current)
            if opened is None:
                return self._after_write(key, False, raw, {}, {})
            now: dict[str, Any] = serializers.loads(opened.raw)
            merged = serializers.merge_changes(
                dict(now), previous, data, ops=ops, on_conflict=on_conflict
            )
            if merged.data is None:  # on_conflict="fail": nothing is written
                return Written.of(merged)
            written, record, fields = await self._write_changes(
                key, opened, now, merged.data, max_age
            )
            if written or not isinstance(written, Written) or not written.conflicts:
                answer = Written.of(merged) if written else False
                return self._after_write(
                    key, answer, serializers.dumps(merged.data), record, fields
                )

    async def _write_changes(
        self, key: str, opened: _Opened, before: Mapping[str, Any], after: Mapping[str, Any],
        max_age: float,
    ) -> tuple[bool | Written, Mapping[str, Any], dict[str, str]]:
        """Write ``opened``'s record with the changes from ``before`` to ``after`` sealed in.

        A compare-and-set of the changed fields (``on_conflict="fail"``).
        Returns the store's answer, and the record and fields sent.
        """
        record: Mapping[str, Any]
        if after == before and not opened.stale and not opened.dropped:
            record, fields = opened.sealed, opened.fields  # nothing to seal: expiry renewed
        else:
            record, fields = self._sealed_changes(key, opened, before, after)
        written = await self.store.set(
            key, record, max_age, previous=opened.sealed, on_conflict="fail"
        )
        return written, record, fields

    def _after_write(
        self, key: str, written: bool | Written, raw: bytes, record: Mapping[str, Any],
        fields: dict[str, str],
    ) -> bool | Written:
        """Remember what was written (the next read most likely finds it), or forget the key."""
        if written:
            self._remember(key, _Opened(raw, record, fields, [], []))
        else:
            self._opened.pop(key, None)
        return written

    def touch(self, key: str, max_age: float) -> Awaitable[bool]:
        """Extend the record's expiry (the wrapped store's `touch`: nothing is decrypted)."""
        return self.store.touch(key, max_age)

    def destroy(self, key: str) -> Awaitable[bool]:
        """Delete the record under ``key`` (the wrapped store's `destroy`)."""
        self._opened.pop(key, None)
        return self.store.destroy(key)

    async def destroy_all(self, **match: Any) -> int:
        """Destroy every session whose readable keys have these values.

        Raises `SessionError` for a key that is not readable: its values are
        sealed, and the store cannot compare them.
        """
        sealed = sorted(name for name in match if name not in self.readable)
        if sealed:
            raise SessionError(
                f"EncryptedStore.destroy_all({sealed[0]}=...): {sealed[0]!r} is encrypted; "
                f"name it in EncryptedStore(readable=...) to match sessions by it"
            )
        self._opened.clear()
        self._versions.clear()
        return await self.store.destroy_all(**match)

    async def count(self) -> int:
        """Return how many live sessions the wrapped store holds."""
        return await self.store.count()

    async def clear(self) -> None:
        """Delete every session of the wrapped store."""
        self._opened.clear()
        self._versions.clear()
        await self.store.clear()

    async def close(self) -> None:
        """Close the wrapped store, and this one."""
        self._opened.clear()
        self._versions.clear()
        await self.store.close()
        await super().close()

    # -- sealing --------------------------------------------------------------------

    def field_id(self, name: str) -> str:
        """The id under which the key ``name`` is sealed (its own name if readable)."""
        field = self._ids.get(name)
        if field is None:
            if name in self.readable:
                return name
            mac = self._ids_mac.copy()
            mac.update(name.encode("utf-8", "surrogatepass"))
            field = self._id_prefix + base64.urlsafe_b64encode(mac.digest()[:12]).decode("ascii")
            if len(self._ids) < _MEMORY:
                self._ids[name] = field
        return field

    def _seal(self, key: str, field: str, name: str, value: Any) -> str:
        """One key's value, sealed for this record and field, as base64 text."""
        token = self._keys.seal(
            orjson.dumps([name, value]), key.encode("utf-8") + b"\0" + field.encode("ascii")
        )
        return base64.b64encode(token).decode("ascii")

    def _seal_all(
        self, key: str, data: Mapping[str, Any]
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """The whole record for ``data`` (every key sealed but the readable ones), its fields."""
        record: dict[str, Any] = {}
        fields: dict[str, str] = {}
        for name, value in data.items():
            self._put(record, key, fields, name, value)
        return record, fields

    def _sealed_changes(
        self, key: str, opened: _Opened, previous: Mapping[str, Any], data: Mapping[str, Any]
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """The record as read, with this request's changes (and stale fields) sealed anew."""
        to_set, to_unset = serializers.changed_keys(previous, data)
        record = dict(opened.sealed)
        fields = dict(opened.fields)
        for field in opened.dropped:
            record.pop(field, None)
        for name in to_unset:
            record.pop(fields.pop(name, "") or self.field_id(name), None)
        if opened.stale:  # under an older key: the value read is sealed again
            current: dict[str, Any] = serializers.loads(opened.raw)
            for name in opened.stale:
                if name not in to_set and name in current:
                    self._put(record, key, fields, name, current[name])
        for name, value in to_set.items():
            self._put(record, key, fields, name, value)
        return record, fields

    def _put(
        self, record: dict[str, Any], key: str, fields: dict[str, str], name: str, value: Any
    ) -> None:
        """Write ``name`` into ``record``: in clear if readable, else sealed under its id."""
        field = self.field_id(name)
        old = fields.get(name)
        if old is not None and old != field:
            record.pop(old, None)
        fields[name] = field
        record[field] = value if field == name else self._seal(key, field, name, value)

    # -- opening --------------------------------------------------------------------

    def _open_record(
        self, key: str, sealed: Mapping[str, Any] | None
    ) -> serializers.Loaded | None:
        """Decrypt a record the wrapped store answered, remembering it for the update.

        A record read (or written) before and unchanged since is not
        decrypted again: the fields are compared with the remembered ones,
        which costs far less than opening each.
        """
        if sealed is None:
            return None
        known = self._opened.get(key)
        if known is not None and known.sealed == sealed:
            return serializers.Loaded.decode(known.raw)
        opened = self._open_fields(key, sealed)
        if opened is None:
            self._opened.pop(key, None)
            return None
        self._remember(key, opened)
        return serializers.Loaded.decode(opened.raw)

    def _remember(self, key: str, opened: _Opened) -> None:
        """Keep ``opened`` as the record under ``key`` (the oldest go past `_MEMORY`)."""
        _keep(self._opened, key, opened)
        _keep(self._versions, (key, opened.raw), opened)

    def _open_fields(self, key: str, sealed: Mapping[str, Any]) -> _Opened | None:
        """The plaintext of every field, or ``None`` (and a warning) if one does not open.

        A key found under two ids (written under two key versions by two
        processes during a rotation) keeps the newer version's.
        """
        data: dict[str, Any] = {}
        fields: dict[str, str] = {}
        versions: dict[str, int] = {}
        dropped: list[str] = []
        readable = self.readable
        prefix = key.encode("utf-8") + b"\0"
        for field, value in sealed.items():
            if field in readable:
                data[field] = value
                fields[field] = field
                continue
            plaintext = self._open_field(prefix, field, value)
            if plaintext is None:
                self._refused()
                return None
            version, (name, data_value) = plaintext
            if name in versions:  # the older of the two goes at the next write
                if versions[name] > version:
                    dropped.append(field)
                    continue
                dropped.append(fields[name])
            versions[name] = version
            data[name] = data_value
            fields[name] = field
        newest = self._keys.newest
        stale = [name for name, version in versions.items() if version != newest]
        return _Opened(serializers.dumps(data), sealed, fields, stale, dropped)

    def _open_field(self, prefix: bytes, field: str, value: Any) -> tuple[int, Any] | None:
        """The key version and ``[name, value]`` of one sealed field, or ``None``."""
        if not field.startswith(FIELD_MARK) or not isinstance(value, str):
            return None
        try:
            token = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return None
        plaintext = self._keys.open(token, prefix + field.encode("utf-8", "replace"))
        if plaintext is None:
            return None
        pair = orjson.loads(plaintext)
        return token[0], pair

    def _refused(self) -> None:
        logger.warning(
            "an EncryptedStore record holds a field that does not decrypt (tampered, written "
            "without encryption, or under a key no longer listed): it reads as a missing session"
        )
