"""MemoryStore: sessions in the process's memory, bounded and expiring.

For development, tests and single-process deployments.  Data is held as
canonical JSON bytes, so what goes in and what comes out are copies: a handler
that mutates its dict after the commit does not change the store.  Its calls do
no I/O, so `get`, `set`, `touch` and `destroy` answer with a `Ready` (no
coroutine, no task), and raise their errors from the call itself.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import weakref
from collections import ChainMap, OrderedDict
from collections.abc import Mapping
from typing import Any

from .. import serializers
from .._checks import check_seconds
from ..errors import SessionOptionError, StoreUnavailableError
from .base import Clock, Ready, Store, Written

logger = logging.getLogger(__name__)

#: Whether this process is a fork of the one that imported this module
#: (``tornado.process.fork_processes``, or any pre-forking server).
_forked = False
#: Every MemoryStore of this process, so that a fork can flag them.
_stores: weakref.WeakSet[MemoryStore] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    """In a forked child: each MemoryStore warns before it serves."""
    global _forked
    _forked = True
    for store in _stores:
        store._warned = False


os.register_at_fork(after_in_child=_after_fork_in_child)

# The answers MemoryStore gives most, made once: awaiting a `Ready` does not change it.
_NONE: Ready[Any] = Ready(None)
_TRUE: Ready[Any] = Ready(True)
_FALSE: Ready[Any] = Ready(False)

#: One record: when it expires (epoch seconds) and its canonical JSON.
_Entry = tuple[float, bytes]


class MemoryStore(Store):
    """Keeps sessions in a dict, bounded by a segmented LRU.

    ``max_entries`` bounds memory.  Past it a session is evicted, and which
    one matters: a page that writes the session, hit by 100,000 requests
    without a cookie (a crawler, a flood), creates 100,000 sessions that are
    never seen again.  Under plain LRU they push every logged-in user out.
    So the store is a segmented LRU (SLRU, as the main space of Caffeine's
    W-TinyLFU): a new record enters the *probation* segment, and a record
    used again (read by `get`, updated with ``previous``, touched, or written
    again under its key) moves to the *protected* segment.  Eviction takes
    the least recently used probation record, and the protected segment only
    when probation is empty.  A flood of one-shot sessions therefore evicts
    only its own kind, while a user who comes back keeps their session.

    The protected segment holds at most ``protected_share`` (80 %) of
    ``max_entries``; past that its least recently used record is demoted to
    the most recent end of probation, where it gets another chance to be used
    before it is evicted.  The bound keeps room for new sessions, so that a
    burst of returning users cannot pin the store forever.

    A regenerated session (at login) is written under a new key with
    ``previous=None``: the store cannot tell it from a new one, so it enters
    probation.  The user's next request reads it and promotes it; until then
    it is as safe as the newest record in probation, which is evicted only
    after all the records written before it.

    Expired entries never read as live and are swept away every
    ``sweep_interval`` seconds (during a write, so no timer is left running),
    so memory does not grow with abandoned sessions.

    `close` takes the store down (every call raises `StoreUnavailableError`
    and ``disconnect`` is emitted) and `open` brings it back (``connect``),
    which is how tests rehearse an outage without a server.

    The sessions live in one process.  Several processes each have their
    own, so behind a balancer a user whose next request lands on another
    process is logged out.  A store built or used in a forked process
    (``tornado.process.fork_processes``, or any pre-forking server) therefore
    logs a warning, once, naming the shared stores to use instead.
    """

    backend = "MemoryStore"

    #: The largest share of ``max_entries`` the protected segment (sessions
    #: used more than once) may hold, read at construction; the rest is kept
    #: for new sessions (always one record at least).
    protected_share = 0.8

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
        # Below max_entries, always: a new record never evicts itself.
        self._protected_max = (
            sys.maxsize
            if max_entries is None
            else min(int(max_entries * self.protected_share), max_entries - 1)
        )
        #: Records written once and not used since, least recently used first.
        self._probation: OrderedDict[str, _Entry] = OrderedDict()
        #: Records used again since they were written, least recently used first.
        self._protected: OrderedDict[str, _Entry] = OrderedDict()
        # Where `_live_entry` leaves the record it found: protected, unless that
        # holds nothing (max_entries=1), when each promotion is undone at once.
        self._found_in = self._protected if self._protected_max > 0 else self._probation
        self._last_sweep = clock()
        # False until the warning about a forked process was logged (or needed not be).
        self._warned = not _forked
        _stores.add(self)

    @property
    def _entries(self) -> ChainMap[str, _Entry]:
        """Every record of both segments, as one read-only mapping (for tests)."""
        return ChainMap(self._protected, self._probation)

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
        ops: Mapping[str, serializers.Op] | None = None,
        on_conflict: str = "last_write_wins",
    ) -> Ready[bool | Written]:
        """Store a copy of ``data``; see `Store.set`.

        With ``previous=None`` a key the store does not hold enters probation;
        any other write is a use of the record, which is then protected.
        Conflicts and ``ops`` are settled by `serializers.merge_changes`,
        within the call: nothing else runs meanwhile.
        """
        self._check_open()
        raw = serializers.dumps(data)  # first: a value that is not JSON writes nothing
        if previous is None:
            # A copy of exactly its size: orjson's bytes keep the few KiB buffer they
            # were written in (measured: ~4 KiB a session instead of ~150 bytes).
            entry = (self.expires_at(max_age), bytes(memoryview(raw)))
            probation = self._probation
            if key in probation or key in self._protected:
                self._write_again(key, entry)
            else:
                probation[key] = entry  # a new key goes in at the recent end
            self._evict()
            return _TRUE
        current = self._live_entry(key)  # promotes it: a record used again
        if current is None:
            return _FALSE
        answer: Ready[Any] = _TRUE
        if serializers.raw_json(previous) != current[1]:
            # A concurrent request of the same session wrote since this one
            # loaded: apply only this request's changes, so its writes stay.
            # (Unchanged since the load, the merge would give ``data`` itself.)
            merged = serializers.merge_changes(
                serializers.loads(current[1]), previous, data, ops=ops, on_conflict=on_conflict
            )
            written = Written.of(merged)
            if merged.data is None:
                return Ready(written)
            raw = serializers.dumps(merged.data)
            if written is not True:
                answer = Ready(written)
        self._found_in[key] = (self.expires_at(max_age), bytes(memoryview(raw)))
        self._evict()
        return answer

    def touch(self, key: str, max_age: float) -> Ready[bool]:
        """Extend the expiry of a live record; ``False`` when there is none."""
        entry = self._live_entry(key)
        if entry is None:
            return _FALSE
        self._found_in[key] = (self.expires_at(max_age), entry[1])
        return _TRUE

    def destroy(self, key: str) -> Ready[bool]:
        """Delete the record under ``key``; whether a live one was there."""
        self._check_open()
        entry = self._protected.pop(key, None) or self._probation.pop(key, None)
        return _TRUE if entry is not None and entry[0] > self.clock() else _FALSE

    async def destroy_all(self, **match: Any) -> int:
        """Destroy every live session whose data has these top-level values."""
        self._check_open()
        now = self.clock()
        destroyed = 0
        for segment in (self._probation, self._protected):
            doomed = [
                key
                for key, (expires, raw) in segment.items()
                if expires > now and self.matches(serializers.loads(raw), match)
            ]
            for key in doomed:
                del segment[key]
            destroyed += len(doomed)
        return destroyed

    async def count(self) -> int:
        """Return how many live sessions are held."""
        self._check_open()
        now = self.clock()
        return sum(
            1
            for segment in (self._probation, self._protected)
            for expires, _ in segment.values()
            if expires > now
        )

    async def clear(self) -> None:
        """Delete every session."""
        self._check_open()
        self._probation.clear()
        self._protected.clear()

    async def close(self) -> None:
        """Take the store down: calls fail with `StoreUnavailableError`.

        Unlike other stores, a closed `MemoryStore` can be opened again (it
        has no probe to stop and nothing to release), so this does not call
        `Store.close`.
        """
        self.mark_disconnected(reason="closed")

    async def open(self) -> None:
        """Bring a closed store back (data kept) and emit ``connect``."""
        self.mark_connected(reason="opened")

    # -- internals --------------------------------------------------------

    def _check_open(self) -> None:
        if not self._warned:
            self._warn_forked()
        if not self._connected:
            raise StoreUnavailableError("MemoryStore is closed; call open() to serve again")

    def _warn_forked(self) -> None:
        """Say once that sessions kept in one of several processes get lost."""
        self._warned = True
        logger.warning(
            "MemoryStore is used in a forked process (pid %d; tornado.process.fork_processes "
            "or another pre-forking server): each process keeps its own sessions, so a user "
            "whose requests land on another process loses theirs. Use a store the processes "
            "share (RedisStore or MongoStore), or serve from one process",
            os.getpid(),
        )

    def _live_entry(self, key: str) -> _Entry | None:
        """The entry under ``key`` if it has not expired (an expired one is dropped).

        Finding it is a use: it becomes the most recently used protected
        record (a probation record is promoted), and is then in `_found_in`.
        """
        self._check_open()
        protected = self._protected
        entry = protected.get(key)
        if entry is not None:
            if entry[0] <= self.clock():
                del protected[key]
                return None
            protected.move_to_end(key)
            return entry
        entry = self._probation.pop(key, None)
        if entry is None or entry[0] <= self.clock():
            return None
        self._promote(key, entry)
        return entry

    def _promote(self, key: str, entry: _Entry) -> None:
        """Put ``key`` (out of probation) at the recent end of protected; demote past the bound."""
        protected = self._protected
        protected[key] = entry
        if len(protected) > self._protected_max:
            demoted, demoted_entry = protected.popitem(last=False)
            self._probation[demoted] = demoted_entry

    def _write_again(self, key: str, entry: _Entry) -> None:
        """Replace the record under ``key`` with ``entry``: a use, like `_live_entry`'s."""
        if key in self._protected:
            self._protected[key] = entry
            self._protected.move_to_end(key)
        else:
            del self._probation[key]
            self._promote(key, entry)

    def _evict(self) -> None:
        """Drop expired entries now and then, and past the bound the LRU of probation first."""
        now = self.clock()
        if now - self._last_sweep >= self.sweep_interval:
            self._last_sweep = now
            for segment in (self._probation, self._protected):
                expired = [key for key, (expires, _) in segment.items() if expires <= now]
                for key in expired:
                    del segment[key]
        max_entries = self.max_entries
        if max_entries is not None:
            probation, protected = self._probation, self._protected
            while len(probation) + len(protected) > max_entries:
                # Protected is bounded below max_entries, so probation is empty
                # here only if max_entries was lowered after construction.
                (probation or protected).popitem(last=False)
