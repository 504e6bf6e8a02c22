"""Serialisation of session data: orjson in and out, and the hashes built on it.

Session data is JSON (never pickle: a store writable by someone else must not be
a way to run code).  `dumps` is canonical (keys sorted), so the same data always
gives the same bytes: that is what change detection and the per-key diffs of
the stores compare.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, NamedTuple

import orjson

from .errors import SessionSerializationError

_CANONICAL = orjson.OPT_SORT_KEYS

#: Raised by `loads` for bytes that are not JSON.
DecodeError = orjson.JSONDecodeError


def dumps(data: Mapping[str, Any]) -> bytes:
    """Serialise ``data`` to canonical JSON bytes.

    Raises `SessionSerializationError` naming the top-level key whose value
    cannot be serialised (an ``object()``, a ``set``, a non-string dict key...).
    """
    try:
        return orjson.dumps(data, option=_CANONICAL)
    except TypeError as exc:
        raise _name_the_bad_key(data, exc) from exc


class Loaded(dict[str, Any]):
    """Session data decoded from canonical JSON, with those bytes kept as `raw`.

    A store that keeps a session as `dumps` made it may answer ``get`` with a
    `Loaded`: the lifecycle then takes ``raw`` as the baseline of change
    detection instead of serialising the data again.  The lifecycle passes
    the data a request loaded to ``set`` as a `Loaded` (``previous``), so a
    store can tell "nobody wrote since" by comparing bytes.  It is a plain
    ``dict`` in every other way; ``raw`` describes the data as decoded and
    is not updated when the dict is changed.
    """

    __slots__ = ("raw",)

    raw: bytes

    @classmethod
    def decode(cls, raw: bytes) -> Loaded:
        """Decode canonical JSON bytes (raises `DecodeError` for anything else)."""
        loaded = cls(orjson.loads(raw))
        loaded.raw = raw
        return loaded


def raw_json(data: Mapping[str, Any]) -> bytes:
    """The canonical JSON of ``data``: its ``raw`` when it is a `Loaded`, else `dumps`."""
    if type(data) is Loaded:
        return data.raw
    return dumps(data)


def loads(raw: bytes | str) -> Any:
    """Deserialise JSON bytes; raises `DecodeError` for anything else."""
    return orjson.loads(raw)


def value_bytes(value: Any) -> bytes:
    """Canonical JSON of one value, for comparing two versions of a key."""
    return orjson.dumps(value, option=_CANONICAL)


def changed_keys(
    previous: Mapping[str, Any], data: Mapping[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    """Compare two versions of a session, top-level key by key.

    Returns ``(to_set, to_unset)``: the keys whose value is new or different
    with their new value, and the keys that were removed.  A store that can
    write single fields uses it so that two concurrent requests of one user that
    change different keys do not overwrite each other.
    """
    to_set = {
        key: value
        for key, value in data.items()
        if key not in previous or not _same_json(previous[key], value)
    }
    to_unset = [key for key in previous if key not in data]
    return to_set, to_unset


#: Types whose equal values of the same type always have the same JSON (not
#: float: ``-0.0 == 0.0``; not containers: ``[1] == [True]``).
_EQUAL_MEANS_SAME = frozenset({str, int, bool, type(None)})


def _same_json(old: Any, new: Any) -> bool:
    """Whether two values serialise to the same JSON (most keys: without serialising)."""
    kind = type(old)
    if kind is type(new) and kind in _EQUAL_MEANS_SAME:
        return bool(old == new)
    return value_bytes(old) == value_bytes(new)


# -- atomic updates and conflicts ------------------------------------------------
#
# `Session.increment` and `Session.append` record what they did as an
# `Increment` or an `Append`; the store
# applies that to the value it holds when the request commits, instead of
# writing the request's value over it.  `merge_changes` is the one merge of a
# request's changes into a record that changed since the request loaded it,
# which every store that merges in Python shares.


class _Missing:
    """The value of a key that is not there (``None`` is a JSON value)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


#: What `Increment.apply` and `Append.apply` are given for a key that is not there.
MISSING: Any = _Missing()


class Increment(NamedTuple):
    """Add ``by`` to an integer key, in the store (`Session.increment`)."""

    by: int

    def apply(self, value: Any) -> int | None:
        """``value + by`` (``by`` when ``value`` is `MISSING`); ``None`` when it is not an int."""
        if value is MISSING:
            return self.by
        if type(value) is not int:
            return None
        return value + self.by

    def then(self, other: Increment) -> Increment:
        """One increment that does what ``self`` and then ``other`` do."""
        return Increment(self.by + other.by)


class Append(NamedTuple):
    """Append ``values`` to a list key and keep its last ``limit`` items (`Session.append`)."""

    values: tuple[Any, ...]
    #: How many items the list keeps, the newest.
    limit: int

    def apply(self, value: Any) -> list[Any] | None:
        """``value`` with ``values`` appended, cut to ``limit``; ``None`` if it is not a list."""
        if value is MISSING:
            items: list[Any] = list(self.values)
        elif type(value) is list:
            items = [*value, *self.values]
        else:
            return None
        if len(items) > self.limit:
            del items[: len(items) - self.limit]
        return items

    def then(self, other: Append) -> Append:
        """One append that does what ``self`` and then ``other`` do (``other``'s limit)."""
        return Append((*self.values, *other.values), other.limit)


#: What `Session.increment` and `Session.append` record, by key.
Op = Increment | Append

#: The values of the ``on_conflict`` session option (and of `Store.set`'s
#: argument of that name): what a write does with a key whose stored value
#: changed since the request loaded it.
ON_CONFLICT = ("last_write_wins", "first_write_wins", "fail")


def ops_that_hold(
    ops: Mapping[str, Op], previous: Mapping[str, Any], data: Mapping[str, Any]
) -> dict[str, Op]:
    """The ``ops`` that turn the value of ``previous`` into the value of ``data``.

    An op whose key the request also changed in another way (assigned it,
    deleted it, appended to the list in place) does not describe the change
    any more: it is left out, and the key is written as a plain value.
    """
    holding: dict[str, Op] = {}
    for name, op in ops.items():
        if name not in data:
            continue
        expected = op.apply(previous.get(name, MISSING))
        if expected is not None and _same_json(expected, data[name]):
            holding[name] = op
    return holding


class Merged(NamedTuple):
    """What `merge_changes` made of a record: the data to write, and what happened on the way."""

    #: The record to write; ``None`` when nothing may be written (``on_conflict="fail"``).
    data: dict[str, Any] | None
    #: The keys this request changed whose stored value had changed since it loaded them.
    conflicts: list[str]
    #: The new values of the keys an op changed.
    values: dict[str, Any]


def merge_changes(
    current: dict[str, Any],
    previous: Mapping[str, Any],
    data: Mapping[str, Any],
    *,
    ops: Mapping[str, Op] | None = None,
    on_conflict: str = "last_write_wins",
) -> Merged:
    """Apply a request's changes to ``current``, the record as it is now (changed in place).

    The request loaded ``previous`` and wants ``data``.  Each key it changed
    (`changed_keys`) is applied on its own, so concurrent requests that change
    different keys all keep their writes.  A key with an op in ``ops``
    (`Increment`, `Append`) gets the op applied to its current value.  Any
    other changed key whose current value is no longer the one in
    ``previous`` (changed, added or removed by another request meanwhile), and
    an op key whose current value the op cannot take, is a conflict, and
    ``on_conflict`` says what happens: ``"last_write_wins"`` writes this
    request's value, ``"first_write_wins"`` keeps the current one, ``"fail"``
    writes nothing at all (`Merged.data` is ``None``).
    """
    to_set, to_unset = changed_keys(previous, data)
    conflicts: list[str] = []
    values: dict[str, Any] = {}
    for name in (*to_set, *to_unset):
        stored = current.get(name, MISSING)
        op = ops.get(name) if ops else None
        if op is not None:
            new = op.apply(stored)
            if new is not None:
                current[name] = values[name] = new
                continue
        else:
            loaded = previous.get(name, MISSING)
            if stored is MISSING or loaded is MISSING:
                unchanged = stored is loaded
            else:
                unchanged = _same_json(stored, loaded)
            if unchanged:
                _put(current, name, to_set)
                continue
        conflicts.append(name)
        if on_conflict == "last_write_wins":
            _put(current, name, to_set)
    if conflicts and on_conflict == "fail":
        return Merged(None, conflicts, {})
    return Merged(current, conflicts, values)


def _put(record: dict[str, Any], name: str, to_set: Mapping[str, Any]) -> None:
    """Write the request's value of ``name`` into ``record`` (remove it, if it removed it)."""
    if name in to_set:
        record[name] = to_set[name]
    else:
        record.pop(name, None)


def hash_session_id(session_id: str) -> str:
    """The store key part derived from a session id (SHA-256, hex).

    Stores never see a live id: a leaked database gives hashes that are of no
    use as cookies.
    """
    return hashlib.sha256(session_id.encode("utf-8", "surrogatepass")).hexdigest()


def _name_the_bad_key(data: Mapping[str, Any], exc: TypeError) -> SessionSerializationError:
    for key, value in data.items():
        if not isinstance(key, str):
            return SessionSerializationError(
                f"session key {key!r} is not a string; session keys must be str", key=None
            )
        try:
            orjson.dumps(value, option=_CANONICAL)
        except TypeError as inner:
            return SessionSerializationError(
                f"session value for key {key!r} cannot be serialised to JSON: {inner}",
                key=key,
            )
    return SessionSerializationError(f"session data cannot be serialised to JSON: {exc}")
