"""Session: the data of one visitor, used like a dict.

Change detection compares the canonical JSON of the data at load with the data
at commit, so ``session["cart"].append(item)`` is seen without any call: nested
mutation is the common case and must not be lost.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

from . import serializers
from ._checks import check_seconds

_EMPTY = b"{}"


class Session(MutableMapping[str, Any]):
    """The session of the current request: a mutable mapping of JSON values.

    Keys are strings; values are anything orjson serialises (dicts, lists,
    str, int, float, bool, None, ...).  Besides the mapping it has:

    ``is_new``: no session was loaded for this request (no cookie, or one that
    was refused).  ``id``: the session id, ``None`` for cookie sessions and
    before the first save.  ``max_age``: this session's lifetime in seconds,
    settable ("remember me"); ``None`` means a browser-session cookie.
    ``save()``: save this request even if nothing changed.  ``changed``: whether
    the data differs from what was loaded.  ``increment()`` and ``append()``:
    a counter and a capped list that parallel requests of one session update
    without losing each other's changes (the store applies them atomically).
    """

    __slots__ = ("_data", "_force", "_id", "_is_new", "_loaded", "_max_age", "_ops", "_staged")

    def __init__(
        self,
        data: Mapping[str, Any] | None = None,
        *,
        id: str | None = None,
        is_new: bool = True,
        max_age: float | None = None,
        loaded: bytes | None = None,
    ) -> None:
        self._data: dict[str, Any] = dict(data) if data else {}
        self._id = id
        self._is_new = is_new
        self._max_age = max_age
        self._force = False
        self._staged: bytes | None = None
        #: What `increment` and `append` did, by key (``None`` until one is called).
        self._ops: dict[str, serializers.Op] | None = None
        if loaded is None:
            loaded = serializers.dumps(self._data) if self._data else _EMPTY
        self._loaded = loaded

    # -- the mapping --------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._data[key] = value

    def __delitem__(self, key: str) -> None:
        del self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def get(self, key: str, default: Any = None) -> Any:
        """Return the value for ``key``, or ``default``."""
        return self._data.get(key, default)

    def clear(self) -> None:
        """Remove every key (the session itself lives on; see destroy)."""
        self._data.clear()

    def popitem(self) -> tuple[str, Any]:
        """Remove and return the last inserted ``(key, value)``, as `dict.popitem` does."""
        return self._data.popitem()

    def __repr__(self) -> str:
        # Never the id: session ids must not reach logs.
        state = "new" if self._is_new else "loaded"
        return f"<Session {state}, {len(self._data)} keys>"

    # -- updates the store carries out atomically ----------------------------

    def increment(self, key: str, by: int = 1) -> None:
        """Add ``by`` to the integer under ``key`` (a missing key counts as 0).

        Unlike ``session[key] = session.get(key, 0) + 1``, parallel requests
        of one session do not lose each other's increments: the store adds
        ``by`` to the value it holds when this request commits (Redis in its
        update script, MongoDB with ``$inc``, `MemoryStore` directly), instead
        of writing this request's total over another's.  ``session[key]``
        shows this request's total at once; after the commit (``await
        self.commit_session()``, or the automatic one) it holds the total the
        store computed, which counts the parallel requests' increments too.
        In a cookie session, which nothing else shares, it is a plain update.

        Raises `TypeError` when ``by`` is not an int or the value under
        ``key`` is not one (a bool is neither).
        """
        if type(by) is not int:
            raise TypeError(f"session.increment({key!r}, by={by!r}): by must be an int")
        current = self._data.get(key, 0)
        if type(current) is not int:
            raise TypeError(
                f"session.increment({key!r}): the value under {key!r} is a "
                f"{type(current).__name__}, not an int"
            )
        self._data[key] = current + by
        self._record(key, serializers.Increment(by))

    def append(self, key: str, value: Any, *, limit: int) -> None:
        """Append ``value`` to the list under ``key``, keeping its newest ``limit`` items.

        For lists that grow by one item per request, such as flash messages or
        recently viewed pages: parallel requests of one session keep all of
        their items, because the store appends to the list it holds when this
        request commits (MongoDB's ``$push`` with ``$slice``, Redis's update
        script, `MemoryStore` directly), and the list never grows past
        ``limit``.  A missing key starts a new list.  As with `increment`,
        ``session[key]`` shows this request's list at once and, after the
        commit, the list the store holds.

        Raises `TypeError` when the value under ``key`` is not a list or
        ``limit`` is not an int, `ValueError` when ``limit`` is below 1, and
        `SessionSerializationError` when ``value`` is not JSON.
        """
        if type(limit) is not int:
            raise TypeError(f"session.append({key!r}, limit={limit!r}): limit must be an int")
        if limit < 1:
            raise ValueError(f"session.append({key!r}, limit={limit!r}): limit must be 1 or more")
        current = self._data.get(key, serializers.MISSING)
        if current is not serializers.MISSING and type(current) is not list:
            raise TypeError(
                f"session.append({key!r}): the value under {key!r} is a "
                f"{type(current).__name__}, not a list"
            )
        serializers.dumps({key: value})  # not JSON: raises naming the key, changes nothing
        items: list[Any] = [value] if current is serializers.MISSING else current
        if current is not serializers.MISSING:
            items.append(value)
        if len(items) > limit:
            del items[: len(items) - limit]
        self._data[key] = items
        self._record(key, serializers.Append((value,), limit))

    def _record(self, key: str, op: serializers.Op) -> None:
        """Remember ``op``, after what this request already did to ``key``."""
        ops = self._ops
        if ops is None:
            ops = self._ops = {}
        before = ops.get(key)
        ops[key] = before.then(op) if type(before) is type(op) else op  # type: ignore[arg-type]

    def pending_ops(self, previous: Mapping[str, Any]) -> dict[str, serializers.Op] | None:
        """The `increment` and `append` calls that still describe the change of their key.

        ``previous`` is the data as loaded.  A key the request also changed in
        another way (assigned, deleted) is left out: it is written as a plain
        value.  ``None`` when neither method was called (the common case).
        """
        if self._ops is None:
            return None
        return serializers.ops_that_hold(self._ops, previous, self._data) or None

    def _adopt(self, values: Mapping[str, Any]) -> None:
        """Take the values the store computed for `increment` and `append` keys."""
        self._data.update(values)
        if self._staged is not None:
            self._staged = self.dump()

    # -- session state ------------------------------------------------------

    @property
    def is_new(self) -> bool:
        """Whether this session was created for this request."""
        return self._is_new

    @property
    def id(self) -> str | None:
        """The session id (store sessions), ``None`` for cookie sessions and before saving."""
        return self._id

    @property
    def max_age(self) -> float | None:
        """The session's lifetime in seconds; ``None`` for a browser-session cookie.

        Setting it saves the session with the new lifetime this request.
        """
        return self._max_age

    @max_age.setter
    def max_age(self, value: float | None) -> None:
        check_seconds("session.max_age", value, allow_none=True)
        if value != self._max_age:
            self._max_age = value
            self._force = True

    def save(self) -> None:
        """Save this session when the request ends, even if nothing changed."""
        self._force = True

    @property
    def forced(self) -> bool:
        """Whether `save` was called or ``max_age`` changed during this request."""
        return self._force

    @property
    def changed(self) -> bool:
        """Whether the data differs from what was loaded (nested changes included).

        Raises `SessionSerializationError` naming the key of a value that
        cannot be serialised.
        """
        return self.differs(self.dump())

    def dump(self) -> bytes:
        """The data as canonical JSON (what change detection compares).

        Raises `SessionSerializationError` naming the key of a value that
        cannot be serialised.
        """
        return serializers.dumps(self._data) if self._data else _EMPTY

    def differs(self, current: bytes) -> bool:
        """Whether ``current`` (a `dump` of the data) differs from what was loaded."""
        return current != self._loaded

    @property
    def baseline(self) -> bytes:
        """The canonical JSON of the data as loaded (or last saved) by this request."""
        return self._loaded

    def loaded_data(self) -> serializers.Loaded:
        """A copy of the data as it was loaded (or last saved), with its JSON as ``raw``."""
        return serializers.Loaded.decode(self._loaded)

    def data(self) -> dict[str, Any]:
        """The live dict behind the mapping (for the lifecycle and stores; copy to keep)."""
        return self._data

    # -- the commit's bookkeeping (called by the lifecycle) -----------------

    def _stage(self, current: bytes) -> None:
        """Remember ``current``, the `dump` about to be saved."""
        self._staged = current

    def staged_data(self) -> serializers.Loaded:
        """The data to write, with the staged JSON as ``raw`` (a shallow copy)."""
        data = serializers.Loaded(self._data)
        data.raw = self._staged if self._staged is not None else self.dump()
        return data

    def _unstage(self) -> None:
        """The save did not happen: forget the staged JSON."""
        self._staged = None

    def _mark_saved(self) -> None:
        """Record a successful save: the staged data is the new baseline."""
        if self._staged is not None:
            self._loaded = self._staged
            self._staged = None
        self._force = False
        self._ops = None

    def _assign_id(self, session_id: str) -> None:
        """Give a new session its id, just before its first store write."""
        self._id = session_id

    def _renew_identity(self) -> None:
        """Forget the id, so the next save creates a new one (regeneration)."""
        self._id = None
        self._force = True
