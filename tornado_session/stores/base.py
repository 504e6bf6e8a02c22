"""The store protocol, and what every store shares.

A store keeps session data under a key (the ``prefix`` plus a hash of the
session id, computed by the lifecycle: stores never see a live id).  Every
call returns an awaitable: a coroutine, or a `Ready` when the answer is at hand
without I/O.  A store raises `StoreUnavailableError` when its backend cannot be
reached, and reports its connection state with ``connect`` / ``disconnect``
events, which the lifecycle uses to hold requests while a server restarts.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Generator, Mapping
from typing import Any, Generic, TypeVar

from ..errors import SessionOptionError, StoreUnavailableError
from ..events import EventEmitter, Listener

_T = TypeVar("_T")


class Ready(Generic[_T]):
    """An answer a store has at hand: awaitable, but awaiting it never waits.

    Store methods return awaitables.  A store that can answer without I/O
    (`MemoryStore` always, any store with a cached answer) returns
    ``Ready(value)`` rather than a coroutine.  ``await`` works on it as on a
    coroutine; the lifecycle sees it and carries on in the same turn of the
    event loop, with no task and no extra turn.  An error is raised by the
    call itself, before there is anything to await.
    """

    __slots__ = ("value",)

    def __init__(self, value: _T) -> None:
        self.value = value

    def __await__(self) -> Generator[Any, None, _T]:
        yield from ()
        return self.value

    def __repr__(self) -> str:
        return f"Ready({self.value!r})"


#: Where every store gets the time from: injectable, so expiry is tested
#: with a fake clock instead of ``sleep``.
Clock = Callable[[], float]


class Store(abc.ABC):
    """Base class of the session stores.

    Subclasses implement `get`, `set` and `destroy` (and, where the backend
    makes it cheap, `touch`); they call `_mark_connected` / `_mark_disconnected`
    when the backend comes and goes.  The store contract suite,
    `tornado_session.testing.StoreContract`, says in tests what each call must
    do; subclass it to test your own store.

    A store whose server can come back on its own implements `ping` and calls
    `_connection_lost` when a call fails for want of the server: the store
    then pings (after 0.05 s, backing off to every ``probe_interval`` seconds)
    until the server answers, and emits ``connect``, so requests held during
    an outage are released even when none of them reaches the server.
    """

    #: The name of the backend in log lines ("Redis", "MongoDB").
    backend = "the store's backend"

    def __init__(self, *, clock: Clock = time.time, probe_interval: float = 1.0) -> None:
        if isinstance(probe_interval, bool) or not isinstance(probe_interval, (int, float)) or (
            not 0 < probe_interval < math.inf
        ):
            raise SessionOptionError(
                f"{type(self).__name__}(probe_interval={probe_interval!r}): "
                "expected a positive number of seconds"
            )
        #: The store's events: ``connect`` and ``disconnect``.
        self.events = EventEmitter()
        self.clock = clock
        #: The longest pause, in seconds, between two pings of a server that went away.
        self.probe_interval = float(probe_interval)
        self._connected = True
        self._closed = False
        self._waiters: list[asyncio.Future[None]] = []
        self._probe_task: asyncio.Task[None] | None = None
        #: The module's logger: a store's lines are under its own module's name.
        self._log = logging.getLogger(type(self).__module__)

    # -- events and connection state --------------------------------------

    def on(self, event: str, listener: Listener) -> Listener:
        """Call ``listener(payload)`` on ``connect`` or ``disconnect``."""
        return self.events.on(event, listener)

    def off(self, event: str, listener: Listener) -> None:
        """Remove a listener added with `on`."""
        self.events.off(event, listener)

    @property
    def connected(self) -> bool:
        """Whether the backend is believed reachable (last event was ``connect``)."""
        return self._connected

    def _mark_connected(self, **detail: Any) -> None:
        """Record that the backend answers again; emits ``connect`` on a change.

        Requests waiting in `wait_connected` are released at once.
        """
        if self._connected:
            return
        self._connected = True
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        self.events.emit("connect", {"key": type(self).__name__, "store": self, **detail})

    def _mark_disconnected(self, **detail: Any) -> None:
        """Record that the backend is gone; emits ``disconnect`` on a change."""
        if not self._connected:
            return
        self._connected = False
        self.events.emit("disconnect", {"key": type(self).__name__, "store": self, **detail})

    async def wait_connected(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the store to be connected.

        Returns at once when it is; returns ``False`` when the time ran out.
        Nothing is left behind either way: the waiter is removed on time-out.
        """
        if self._connected:
            return True
        self._start_probe()  # while disconnected the lifecycle sends no calls: only it can tell
        if timeout <= 0:
            return False
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            return False
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
        return True

    async def ping(self) -> None:
        """Ask the backend whether it answers; raise `StoreUnavailableError` if not.

        Stores whose server can come back on its own override it; the probe
        that runs while the store is disconnected calls it.  The default has no
        server to ask: such a store comes back only by `_mark_connected` (as
        `MemoryStore.open` does).
        """
        raise NotImplementedError

    def _connection_lost(self, exc: BaseException) -> None:
        """A call failed for want of the backend: disconnected until a ping is answered."""
        if self._connected:
            self._log.warning(
                "%s cannot be reached (%s: %s): requests that need a session wait up to "
                "reconnect_timeout for it, then get 503; probing until it answers",
                self.backend, type(exc).__name__, exc,
            )
        self._mark_disconnected(reason=type(exc).__name__, error=str(exc))
        self._start_probe()

    def _start_probe(self) -> None:
        """Start pinging until the backend answers, unless a probe runs or cannot."""
        if self._connected or self._closed or type(self).ping is Store.ping:
            return
        if self._probe_task is None or self._probe_task.done():
            self._probe_task = asyncio.get_running_loop().create_task(self._probe_until_back())

    async def _probe_until_back(self) -> None:
        delay = min(0.05, self.probe_interval)
        ping_timeout = max(1.0, 2 * self.probe_interval)
        while not self._connected and not self._closed:
            await asyncio.sleep(delay)
            if self._connected or self._closed:
                return
            try:
                await asyncio.wait_for(self.ping(), ping_timeout)
            except Exception as exc:  # anything but an answer: try again later
                if not isinstance(exc, (StoreUnavailableError, TimeoutError, OSError)):
                    self._log.warning("the %s probe failed unexpectedly: %r", self.backend, exc)
                delay = min(delay * 2, self.probe_interval)
                continue
            if not self._connected:  # (another signal, a heartbeat, may have said so already)
                self._log.info("%s answers again", self.backend)
                self._mark_connected(reason="probe")

    async def _stop_probe(self) -> None:
        """Mark the store closed and cancel the probe (for `close`): nothing is left running."""
        self._closed = True
        probe, self._probe_task = self._probe_task, None
        if probe is not None and not probe.done():
            probe.cancel()
            await asyncio.gather(probe, return_exceptions=True)

    # -- the protocol -----------------------------------------------------
    #
    # ``get``, ``set``, ``touch`` and ``destroy`` are declared as plain methods
    # returning an awaitable, so that both an ``async def`` and a method that
    # returns a `Ready` implement them.

    @abc.abstractmethod
    def get(self, key: str) -> Awaitable[dict[str, Any] | None]:
        """Return a copy of the data stored under ``key``, or ``None``.

        ``None`` when there is no record or when it has expired: an expired
        record must never read as live, even if the backend has not removed it
        yet.  Reading never extends the expiry (`touch` does).  A store that
        keeps the canonical JSON of the data may return a
        `tornado_session.serializers.Loaded`, which carries those bytes.
        """

    @abc.abstractmethod
    def set(
        self,
        key: str,
        data: Mapping[str, Any],
        max_age: float,
        *,
        previous: Mapping[str, Any] | None = None,
    ) -> Awaitable[bool]:
        """Store ``data`` under ``key`` for ``max_age`` seconds; ``True`` when written.

        ``previous=None``: a new or regenerated session; whatever is under
        ``key`` is replaced.  Otherwise ``previous`` is the data as the request
        loaded it (the lifecycle passes a `tornado_session.serializers.Loaded`,
        a plain mapping must work too).  The record must then still exist and
        be live: a session that a concurrent request destroyed (a logout) or
        that expired is not brought back, nothing is written and `set` returns
        ``False``.  Only the top-level keys whose values differ from
        ``previous`` are applied (`tornado_session.serializers.changed_keys`),
        so two requests of one session that change different keys both keep
        their writes; when the record is still exactly ``previous``
        (``serializers.raw_json(previous)`` equals the stored canonical JSON)
        writing ``data`` whole gives the same result.  The expiry becomes
        ``max_age`` from now either way.
        """

    def touch(self, key: str, max_age: float) -> Awaitable[bool]:
        """Extend the record's expiry to ``max_age`` seconds from now.

        The one way to extend a session without changing it.  Returns
        ``False`` when there is no live record (nothing is created).  The
        default reads the record with `get` and writes it back with `set`;
        stores override it with one call.
        """
        return self._touch_by_rewrite(key, max_age)

    async def _touch_by_rewrite(self, key: str, max_age: float) -> bool:
        data = await self.get(key)
        if data is None:
            return False
        return await self.set(key, data, max_age, previous=data)

    @abc.abstractmethod
    def destroy(self, key: str) -> Awaitable[None]:
        """Delete the record under ``key``; a missing record is not an error."""

    async def close(self) -> None:
        """Release the backend's resources (a client this store created)."""

    async def destroy_all(self, **match: Any) -> int:
        """Destroy every session whose data has these top-level values.

        ``await store.destroy_all(user_id=42)`` logs a user out everywhere.
        Returns how many sessions were destroyed.
        """
        raise NotImplementedError(f"{type(self).__name__} does not support destroy_all()")

    async def count(self) -> int:
        """Return how many live sessions the store holds."""
        raise NotImplementedError(f"{type(self).__name__} does not support count()")

    async def clear(self) -> None:
        """Delete every session of this store."""
        raise NotImplementedError(f"{type(self).__name__} does not support clear()")

    # -- shared helpers for subclasses -------------------------------------

    def expires_at(self, max_age: float) -> float:
        """The epoch time at which a record written now with ``max_age`` expires."""
        return self.clock() + max_age

    @staticmethod
    def matches(data: Mapping[str, Any], match: Mapping[str, Any]) -> bool:
        """Whether ``data`` has every top-level value in ``match`` (for `destroy_all`)."""
        return all(key in data and data[key] == value for key, value in match.items())
