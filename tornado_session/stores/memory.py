"""MemoryStore: sessions in the process's memory, bounded and expiring.

For development, tests and single-process deployments.  Data is held as
canonical JSON bytes, so what goes in and what comes out are copies: a handler
that mutates its dict after the commit does not change the store.  Its calls do
no I/O, so `get`, `set`, `touch` and `destroy` answer with a `Ready` (no
coroutine, no task), and raise their errors from the call itself.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from .. import serializers
from .._checks import check_seconds
from ..errors import SessionOptionError, StoreUnavailableError
from .base import Clock, Ready, Store

# The answers MemoryStore gives most, made once: awaiting a `Ready` does not change it.
_NONE: Ready[Any] = Ready(None)
_TRUE: Ready[Any] = Ready(True)
_FALSE: Ready[Any] = Ready(False)


class MemoryStore(Store):
    """Keeps sessions in a dict, least-recently-used first.

    ``max_entries`` bounds memory: past it the least recently used session is
    evicted.  Expired entries never read as live and are swept away every
    ``sweep_interval`` seconds (during a write, so no timer is left running), so
    memory does not grow with abandoned sessions.

    `close` takes the store down (every call raises `StoreUnavailableError`
    and ``disconnect`` is emitted) and `open` brings it back (``connect``),
    which is how tests rehearse an outage without a server.
    """

    backend = "MemoryStore"

    def __init__(
        self,
        *,
        max_entries: int | None = 100_000,
        sweep_interval: float = 60.0,
        clock: Clock = time.time,
    ) -> None:
        if max_entries is not None and (
            isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1
        ):
            raise SessionOptionError(
                f"MemoryStore(max_entries={max_entries!r}): expected a positive int or None"
            )
        super().__init__(clock=clock)
        self.max_entries = max_entries
        self.sweep_interval = check_seconds("MemoryStore option sweep_interval", sweep_interval)
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._last_sweep = clock()

    def get(self, key: str) -> Ready[dict[str, Any] | None]:
        """Return a copy of the live data under ``key`` (a `serializers.Loaded`), or ``None``."""
        entry = self._live_entry(key)
        if entry is None:
            return _NONE
        return Ready(serializers.Loaded.decode(entry[1]))

    def set(
        self,
        key: str,
        data: Mapping[str, Any],
        max_age: float,
        *,
        previous: Mapping[str, Any] | None = None,
    ) -> Ready[bool]:
        """Store a copy of ``data``; see `Store.set`."""
        self._check_open()
        raw = serializers.dumps(data)  # first: a value that is not JSON writes nothing
        if previous is not None:
            entry = self._live_entry(key)
            if entry is None:
                return _FALSE
            if serializers.raw_json(previous) != entry[1]:
                # A concurrent request of the same session wrote since this one
                # loaded: apply only this request's changes, so its writes stay.
                # (Unchanged since the load, the merge would give ``data`` itself.)
                to_set, to_unset = serializers.changed_keys(previous, data)
                merged: dict[str, Any] = serializers.loads(entry[1])
                merged.update(to_set)
                for name in to_unset:
                    merged.pop(name, None)
                raw = serializers.dumps(merged)
        # A copy of exactly its size: orjson's bytes keep the few KiB buffer they
        # were written in (measured: ~4 KiB a session instead of ~150 bytes).
        self._entries[key] = (self.expires_at(max_age), bytes(memoryview(raw)))
        self._entries.move_to_end(key)
        self._evict()
        return _TRUE

    def touch(self, key: str, max_age: float) -> Ready[bool]:
        """Extend the expiry of a live record; ``False`` when there is none."""
        entry = self._live_entry(key)
        if entry is None:
            return _FALSE
        self._entries[key] = (self.expires_at(max_age), entry[1])
        return _TRUE

    def destroy(self, key: str) -> Ready[None]:
        """Delete the record under ``key``."""
        self._check_open()
        self._entries.pop(key, None)
        return _NONE

    async def destroy_all(self, **match: Any) -> int:
        """Destroy every live session whose data has these top-level values."""
        self._check_open()
        now = self.clock()
        doomed = [
            key
            for key, (expires, raw) in self._entries.items()
            if expires > now and self.matches(serializers.loads(raw), match)
        ]
        for key in doomed:
            del self._entries[key]
        return len(doomed)

    async def count(self) -> int:
        """Return how many live sessions are held."""
        self._check_open()
        now = self.clock()
        return sum(1 for expires, _ in self._entries.values() if expires > now)

    async def clear(self) -> None:
        """Delete every session."""
        self._check_open()
        self._entries.clear()

    async def close(self) -> None:
        """Take the store down: calls fail with `StoreUnavailableError`."""
        self._mark_disconnected(reason="closed")

    async def open(self) -> None:
        """Bring a closed store back (data kept) and emit ``connect``."""
        self._mark_connected(reason="opened")

    # -- internals --------------------------------------------------------

    def _check_open(self) -> None:
        if not self._connected:
            raise StoreUnavailableError("MemoryStore is closed; call open() to serve again")

    def _live_entry(self, key: str) -> tuple[float, bytes] | None:
        """The entry under ``key`` if it has not expired (an expired one is dropped)."""
        self._check_open()
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= self.clock():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry

    def _evict(self) -> None:
        """Drop expired entries now and then, and the least recently used past the bound."""
        now = self.clock()
        if now - self._last_sweep >= self.sweep_interval:
            self._last_sweep = now
            expired = [key for key, (expires, _) in self._entries.items() if expires <= now]
            for key in expired:
                del self._entries[key]
        if self.max_entries is not None:
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
