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
import time
from collections.abc import Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from .. import serializers
from .._checks import check_seconds
from ..errors import SessionError, SessionOptionError, StoreUnavailableError
from ..events import EventEmitter, Listener

_T = TypeVar("_T")


class Ready(Awaitable[_T]):
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


#: A user id in the user index: a str or an int (never a bool), as the session holds it.
UserId = str | int


def check_user(user: Any, what: str = "user") -> UserId:
    """``user`` if it can name a user in the index, else `SessionError` naming ``what``.

    A str or an int: what applications keep as a user id.  A float, a bool, a
    list or a dict could be equal to another type's value (``1 == 1.0 ==
    True``), so two users could share one index entry; they are refused.
    """
    if isinstance(user, bool) or not isinstance(user, (str, int)):
        raise SessionError(
            f"{what} = {user!r}: a session's user must be a str or an int "
            f"(got {type(user).__name__})"
        )
    return user


@dataclass(frozen=True, slots=True)
class Owner:
    """Whose session a record is, and the device it came from.

    Kept by the store beside the session's data, never inside it: the index
    stays readable when the data is encrypted, and the data stays the
    application's.  The lifecycle passes one to `Store.set` when the user
    changes (a login, a logout, a new session of a user); `Store.touch` and
    the other writes keep it, and move its expiry with the record's.
    """

    #: The user (``None``: the record is no user's: it leaves the index).
    user: UserId | None
    #: When the session was created (epoch seconds).
    created: float
    #: When the session was last written or touched (epoch seconds).
    seen: float
    #: The browser's ``User-Agent``, truncated.
    agent: str = ""
    #: The client's network, coarsened (``203.0.113.0/24``, ``2001:db8:1::/48``).
    address: str = ""

    def __post_init__(self) -> None:
        if self.user is not None:
            check_user(self.user, "Owner.user")


@dataclass(frozen=True, slots=True)
class UserRecord:
    """One live session of a user, as the index answers it (`Store.user_sessions`)."""

    #: The store key (a hash of the session id, never the id).
    key: str
    #: When the record expires (epoch seconds).
    expires: float
    #: Its owner: the user and the device.
    owner: Owner


#: Told how far a long walk of the store (`Store.count`, `Store.clear`) has got.
Progress = Callable[[int], None]


class Written:
    """What an update (`Store.set` with ``previous``) did, when there is more to say than yes/no.

    A store answers `Store.set` with ``True`` or ``False``, or with a
    `Written` when the write met a parallel request's changes: it names the
    keys in conflict and gives the values the store computed for
    `~tornado_session.Session.increment` and
    `~tornado_session.Session.append`.  It is true when the record was
    written, like the ``True`` it stands for.
    """

    __slots__ = ("conflicts", "values", "written")

    def __init__(
        self,
        written: bool,
        conflicts: tuple[str, ...] = (),
        values: Mapping[str, Any] | None = None,
    ) -> None:
        #: Whether the record was written (``False``: gone, or ``on_conflict="fail"``).
        self.written = written
        #: The keys this request changed whose stored value had changed since it loaded them.
        self.conflicts = conflicts
        #: The values the store holds now for the keys of this request's increments and appends.
        self.values: Mapping[str, Any] = values or {}

    @classmethod
    def of(cls, merged: serializers.Merged) -> bool | Written:
        """The answer for what `serializers.merge_changes` made (``True`` when nothing to say)."""
        if merged.data is None:
            return cls(False, tuple(merged.conflicts))
        if merged.conflicts or merged.values:
            return cls(True, tuple(merged.conflicts), merged.values)
        return True

    def __bool__(self) -> bool:
        return self.written

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Written):
            return NotImplemented
        return (self.written, self.conflicts, dict(self.values)) == (
            other.written, other.conflicts, dict(other.values))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:  # key names only: values may be private
        names = sorted(self.values)
        return f"Written({self.written}, conflicts={self.conflicts!r}, values={names})"


#: Where every store gets the time from: injectable, so expiry is tested
#: with a fake clock instead of ``sleep``.
Clock = Callable[[], float]


class Store(abc.ABC):
    """Base class of the session stores.

    Subclasses implement `get`, `set` and `destroy` (and, where the backend
    makes it cheap, `touch`).  The store contract suite,
    `tornado_session.testing.StoreContract`, says in tests what each call must
    do; subclass it to test your own store.

    The connection state lives here, once for every store, and a store of your
    own keeps it through the public methods below.  A store that talks
    to a server sends each request through `call_backend`, which bounds it by
    ``timeout``, turns the driver's errors into ours (`translate_error`, the
    one method a subclass overrides to name its driver's exceptions) and keeps
    the state: a call that finds the server gone marks the store
    disconnected, and the first answer after that marks it connected again,
    unless the call was sent before the loss (its answer says nothing about
    the server now).  Each change is logged once (a warning on loss, an info
    line on return) and emitted as ``disconnect`` / ``connect``, wherever the
    news comes from: `mark_connected` and `mark_disconnected` are its only two
    doors, and a store with news of its own (a driver's heartbeat) calls them.

    A store whose server can come back on its own also implements `ping`
    (through `ping_backend`): while disconnected, the store pings (after
    0.05 s, backing off to every ``probe_interval`` seconds) until the server
    answers, so requests held during an outage are released even when none of
    them reaches the server.  `close` stops that probe: an override releases
    its own resources and calls ``await super().close()``.
    """

    #: The name of the backend in log lines and errors ("Redis", "MongoDB").
    backend = "the store's backend"

    def __init__(
        self,
        *,
        clock: Clock = time.time,
        probe_interval: float = 1.0,
        timeout: float | None = None,
        user_key: str | None = None,
    ) -> None:
        name = type(self).__name__
        if user_key is not None and (not isinstance(user_key, str) or not user_key):
            raise SessionOptionError(
                f"{name}(user_key={user_key!r}): expected the session key that holds the "
                "user id (a non-empty str, such as 'user_id'), or None for no user index"
            )
        #: The session key that names the user (``None``: the store keeps no
        #: user index).  The lifecycle reads it to tell the store whose session
        #: it writes; `destroy_all` by this key uses the index.
        self.user_key = user_key
        #: The store's events: ``connect`` and ``disconnect``.
        self.events = EventEmitter()
        self.clock = clock
        #: The longest pause, in seconds, between two pings of a server that went away.
        self.probe_interval = check_seconds(f"{name} option probe_interval", probe_interval)
        #: Seconds a call through `call_backend` may take before it counts as an outage
        #: (``None``: only the driver's own time-outs apply).
        self.timeout = check_seconds(f"{name} option timeout", timeout, allow_none=True)
        self._connected = True
        self._closed = False
        #: How many times the backend was lost: a call remembers it when sent,
        #: so an answer read before a later loss does not report the backend back.
        self._outages = 0
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

    def mark_connected(self, **detail: Any) -> None:
        """Record that the backend answers again: on a change, log, emit ``connect``.

        Requests waiting in `wait_connected` are released at once.  ``detail``
        goes into the event (``reason``: what said so).  `call_backend` and the
        reconnect probe call it; a store calls it itself when it has news of
        its own (a driver's heartbeat, `MemoryStore.open`).  Nothing happens
        when the store is connected already.
        """
        if self._connected:
            return
        self._connected = True
        self._log.info("%s answers again (%s)", self.backend, detail.get("reason", "reported"))
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        self.events.emit("connect", {"key": type(self).__name__, "store": self, **detail})

    def mark_disconnected(self, **detail: Any) -> None:
        """Record that the backend is gone: on a change, log, emit ``disconnect``.

        ``detail`` goes into the event (``reason``, and ``error`` for a failed
        call).  `call_backend` calls it for a call that finds the backend gone;
        a store calls it itself when it has news of its own (a driver's
        heartbeat, `MemoryStore.close`).  Nothing happens when the store is
        disconnected already.
        """
        if not self._connected:
            return
        self._connected = False
        self._outages += 1
        reason = detail.get("reason", "reported")
        if detail.get("error"):
            reason = f"{reason}: {detail['error']}"
        self._log.warning(
            "%s cannot be reached (%s): requests that need a session wait up to "
            "reconnect_timeout for it, then get 503%s",
            self.backend, reason, "" if self._cannot_ping() else "; probing until it answers",
        )
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

        Stores whose server can come back on its own override it, sending
        their backend's cheapest command through `ping_backend`; the probe
        that runs while the store is disconnected calls it.  The default has
        no server to ask: such a store comes back only by `mark_connected` (as
        `MemoryStore.open` does).
        """
        raise NotImplementedError

    # -- backend calls ----------------------------------------------------

    async def call_backend(
        self, command: Callable[..., Awaitable[_T]], *args: Any, **kwargs: Any
    ) -> _T:
        """Run ``await command(*args, **kwargs)`` against the backend, and keep the state.

        Every request a store sends to its server goes through here.  Bounded
        by ``timeout``.  An error the backend raises comes out as ours (see
        `translate_error`); one meaning it cannot be reached also marks the
        store disconnected and starts the reconnect probe.  An answer marks a
        disconnected store connected again, unless the backend was lost after
        the call was sent: that answer was read before the loss (another call
        saw the server go first) and says nothing about the server now.  After
        `close` it raises `StoreUnavailableError` without calling ``command``.
        """
        if self._closed:
            raise StoreUnavailableError(f"{type(self).__name__} is closed")
        outages = self._outages
        try:
            if self.timeout is None:
                result = await command(*args, **kwargs)
            else:
                async with asyncio.timeout(self.timeout):
                    result = await command(*args, **kwargs)
        except SessionError:
            raise
        except Exception as exc:
            error = self.translate_error(exc)
            if error is None:
                raise
            if isinstance(error, StoreUnavailableError):
                self._connection_lost(exc)
            raise error from exc
        if not self._connected and self._outages == outages:
            self.mark_connected(reason="operation succeeded")
        return result

    async def ping_backend(
        self, command: Callable[..., Awaitable[_T]], *args: Any, **kwargs: Any
    ) -> _T:
        """Run ``await command(*args, **kwargs)`` for `ping`: our errors, the state left alone.

        Like `call_backend`, the driver's errors come out as ours
        (`translate_error`), but the connection state is left alone: the
        probe that calls `ping` reports what the answer means, and an answer
        to a ping sent before a later loss must not report the backend back.
        """
        try:
            return await command(*args, **kwargs)
        except SessionError:
            raise
        except Exception as exc:
            error = self.translate_error(exc)
            if error is None:
                raise
            raise error from exc

    def translate_error(self, exc: Exception) -> SessionError | None:
        """Our error for ``exc``, raised by a backend call; subclasses add their driver's.

        Return a `StoreUnavailableError` when ``exc`` means the backend cannot
        be reached (`call_backend` then reports the outage), another `SessionError`
        for a call the backend refused, or ``None`` to let ``exc`` through
        unchanged (a bug is not the backend's answer).  The base knows one
        case, for every store: an `OSError` (a refused connection, a socket
        error, a time-out, the store's own ``timeout`` included) means the
        backend cannot be reached.  An override handles its driver's
        exceptions and ends with ``return super().translate_error(exc)``.
        """
        if isinstance(exc, TimeoutError):
            within = f" within {self.timeout} s" if self.timeout is not None else ""
            return StoreUnavailableError(f"{self.backend} did not answer{within} (timeout)")
        if isinstance(exc, OSError):
            return StoreUnavailableError(f"{self.backend} cannot be reached: {exc}")
        return None

    def _connection_lost(self, exc: BaseException) -> None:
        """A call failed for want of the backend: disconnected until it answers again."""
        self.mark_disconnected(reason=type(exc).__name__, error=str(exc))
        self._start_probe()

    # -- the probe --------------------------------------------------------

    def _cannot_ping(self) -> bool:
        return type(self).ping is Store.ping

    def _start_probe(self) -> None:
        """Start pinging until the backend answers, unless a probe runs or cannot."""
        if self._connected or self._closed or self._cannot_ping():
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
            outages = self._outages
            try:
                await asyncio.wait_for(self.ping(), ping_timeout)
            except Exception as exc:  # anything but an answer: try again later
                if not isinstance(exc, (SessionError, OSError)):  # ours: `translate_error`'s
                    self._log.warning("the %s probe failed unexpectedly: %r", self.backend, exc)
                delay = min(delay * 2, self.probe_interval)
                continue
            # Another signal (a heartbeat) may have said so already; and an
            # answer from before a later loss is stale, like `call_backend`'s.
            if not self._connected and self._outages == outages:
                self.mark_connected(reason="probe")

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
        ops: Mapping[str, serializers.Op] | None = None,
        on_conflict: str = "last_write_wins",
        owner: Owner | None = None,
    ) -> Awaitable[bool | Written]:
        """Store ``data`` under ``key`` for ``max_age`` seconds; true when written.

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

        Conflicts: a key the request changed (or removed) whose stored value is
        no longer its value in ``previous`` (another request wrote it since)
        is in conflict, and ``on_conflict`` says what happens:
        ``"last_write_wins"`` writes this request's value,
        ``"first_write_wins"`` keeps the stored one, ``"fail"`` writes nothing
        at all.  ``ops`` maps keys to the `~tornado_session.Session.increment`
        and `~tornado_session.Session.append` calls that made their new value
        (a `serializers.Increment` or `serializers.Append`): the store applies
        each to the value it holds, atomically, instead of writing the
        request's value (an op the stored value cannot take, such as an
        increment of a string, is a conflict).  All of it happens in the one
        write the store makes anyway (`serializers.merge_changes` is the rule,
        and the merge of a store that merges in Python).  The answer is
        ``True``/``False``, or a `Written` naming the conflicts and giving the
        ops' new values.  With ``previous=None`` there is nothing to conflict
        with: ``ops`` and ``on_conflict`` are ignored.

        ``owner`` keeps the user index (stores with a `user_key`).  With
        ``previous=None`` the record belongs to ``owner`` (``None``: to no
        user).  With ``previous``, ``owner=None`` keeps the record's owner as
        it is (the common write: no extra work), and an `Owner` replaces it
        (the user logged in, changed or, with ``Owner.user=None``, logged
        out).  Whatever the write, an indexed record's index entry expires
        with it, and its ``seen`` becomes now.
        """

    def touch(self, key: str, max_age: float) -> Awaitable[bool]:
        """Extend the record's expiry to ``max_age`` seconds from now.

        The one way to extend a session without changing it.  Returns
        ``False`` when there is no live record (nothing is created).  An
        indexed record's entry moves with it and its ``seen`` becomes now:
        with ``touch_after`` that is when the user was last seen, to that
        precision.  The default reads the record with `get` and writes it
        back with `set`; stores override it with one call.
        """
        return self._touch_by_rewrite(key, max_age)

    async def _touch_by_rewrite(self, key: str, max_age: float) -> bool:
        data = await self.get(key)
        if data is None:
            return False
        return bool(await self.set(key, data, max_age, previous=data))

    @abc.abstractmethod
    def destroy(self, key: str) -> Awaitable[bool]:
        """Delete the record under ``key``; return whether a live one was there.

        A missing or expired record is not an error (``False``).  The answer
        lets a regeneration tell that a concurrent request destroyed the
        session first (a logout), so that it does not bring the data back.
        """

    async def close(self) -> None:
        """Close the store: later `call_backend` calls raise `StoreUnavailableError`.

        The base marks the store closed and cancels the reconnect probe, so
        nothing is left running.  A store that holds resources (a client it
        created, a file) overrides it to release them, and calls ``await
        super().close()``.  Call it when the application shuts down.
        """
        self._closed = True
        probe, self._probe_task = self._probe_task, None
        if probe is not None and not probe.done():
            probe.cancel()
            await asyncio.gather(probe, return_exceptions=True)

    async def destroy_all(self, **match: Any) -> int:
        """Destroy every session whose data has these top-level values.

        ``await store.destroy_all(user_id=42)`` logs a user out everywhere.
        Returns how many sessions were destroyed.  When ``match`` is the
        store's `user_key` alone, the user index answers (`destroy_user`): the
        cost is that user's sessions, not the store's; any other match scans.
        """
        if self.user_key is not None and len(match) == 1 and self.user_key in match:
            return await self.destroy_user(check_user(match[self.user_key], self.user_key))
        return await self.destroy_matching(match)

    async def destroy_matching(self, match: Mapping[str, Any]) -> int:
        """Destroy every live session whose data has the values in ``match`` (a scan).

        `destroy_all` calls it for a match the user index cannot answer.
        """
        raise NotImplementedError(f"{type(self).__name__} does not support destroy_all()")

    async def destroy_user(self, user: UserId) -> int:
        """Destroy every session of ``user`` through the index; how many were live.

        Costs in proportion to that user's sessions.  Needs a `user_key`.
        """
        raise NotImplementedError(f"{type(self).__name__} keeps no user index")

    async def user_sessions(self, user: UserId) -> list[UserRecord]:
        """The live sessions of ``user``, oldest first, with their owner.

        An expired or destroyed session is never in the answer.  Costs in
        proportion to that user's sessions.  Needs a `user_key`.
        """
        raise NotImplementedError(f"{type(self).__name__} keeps no user index")

    def _needs_user_key(self) -> None:
        """Raise `SessionError` when the store was built without a `user_key`."""
        if self.user_key is None:
            raise SessionError(
                f"{type(self).__name__} keeps no user index: build it with "
                "user_key='<the session key holding the user id>'"
            )

    async def count(self, *, progress: Progress | None = None) -> int:
        """Return how many live sessions the store holds.

        ``progress``, if given, is called with how many keys were looked at
        so far, as a long walk goes (a command line's progress bar).
        """
        raise NotImplementedError(f"{type(self).__name__} does not support count()")

    async def clear(self, *, progress: Progress | None = None) -> None:
        """Delete every session of this store.

        ``progress``, if given, is called with how many keys were deleted so far.
        """
        raise NotImplementedError(f"{type(self).__name__} does not support clear()")

    # -- shared helpers for subclasses -------------------------------------

    def expires_at(self, max_age: float) -> float:
        """The epoch time at which a record written now with ``max_age`` expires."""
        return self.clock() + max_age

    @staticmethod
    def matches(data: Mapping[str, Any], match: Mapping[str, Any]) -> bool:
        """Whether ``data`` has every top-level value in ``match`` (for `destroy_all`)."""
        return all(key in data and data[key] == value for key, value in match.items())
