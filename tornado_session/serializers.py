"""Serialisation of session data: orjson in and out, and the hashes built on it.

Session data is JSON (never pickle: a store writable by someone else must not be
a way to run code).  `dumps` is canonical (keys sorted), so the same data always
gives the same bytes: that is what change detection and the per-key diffs of
the stores compare.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

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
