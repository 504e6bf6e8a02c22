"""Load, decide, commit: the life of a session within one request.

This is koa-session's ``context.js`` for Tornado, and it knows nothing of
Tornado: the mixin hands a `SessionContext` the cookie values and what the
response did, and turns its answer into a ``Set-Cookie`` header.

1. `SessionContext.load` reads the cookie and, for store sessions, the store.
   A missing, tampered, expired or unknown cookie gives a fresh session and an
   event; it never becomes an error.
2. `decide` is a pure function of the session's state, the options, what the
   request did and the time.  It answers with a `Decision`: skip, save,
   touch, destroy or regenerate, and why.  Unit-test it without HTTP.
3. `SessionContext.commit` carries the decision out: the store calls it needs,
   then the cookie to send (`CookieUpdate`).

The cookie always carries a small signed payload: for cookie sessions the data
(``d``), for store sessions the id (``i``); and in both the server-side expiry
(``e``) and the session's own ``max_age`` (``m``).  So an expired session is
refused without a store round trip, `renew` and `touch_after` know when the
store was last written, and a per-session ``max_age`` survives across requests.

Stores answer with awaitables; one that has the answer at hand returns
`~tornado_session.stores.base.Ready`.  `SessionContext.commit` runs as far as
it can in the caller's turn of the event loop, so a commit whose store answers
at once (`MemoryStore`, cookie sessions) is over before ``finish()`` returns:
no task, no extra turn.  Only a store call that must wait moves the rest of
the commit into a task.
"""

from __future__ import annotations

import enum
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine, Generator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

import orjson

from . import serializers
from .config import MAX_ID_LENGTH, CookiePayload, SessionConfig
from .errors import SessionConflictError, SessionError, StoreUnavailableError
from .options import SessionOptions
from .session import Session
from .stores.base import Owner, Ready, Store, Written, check_user
from .users import coarse_address, short_agent

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

#: The event each store call is reported with, to whoever listens on ``options.events``
#: (`SessionContext.call_store`).
STORE_EVENT = "session:store"

#: The ``operation`` of a store call's event, by the name of the store method.
_OPERATIONS = {"get": "load", "set": "save", "touch": "touch", "destroy": "destroy"}

#: How many values of the session cookie one request may make us check: a browser
#: sends one or two; a request with more is not given a signature check (and a
#: store read) for each.
_MOST_COOKIE_VALUES = 4


class Action(enum.Enum):
    """What the commit does with the session."""

    SKIP = "skip"
    SAVE = "save"
    TOUCH = "touch"
    DESTROY = "destroy"
    REGENERATE = "regenerate"


class Decision(NamedTuple):
    """The answer of `decide`: an action, the reason for it, and what it touches.

    (A named tuple: one is made for every request that has a session.)
    """

    #: What the commit does.
    action: Action
    #: Why, in a few words (for logs and tests).
    reason: str
    #: The commit makes a store call.
    uses_store: bool = False
    #: A ``Set-Cookie`` header goes out.
    send_cookie: bool = True
    #: A cookie was due but the headers were already sent: the commit warns.
    lost_cookie: bool = False


@dataclass(slots=True)
class SessionState:
    """What the lifecycle knows of a session besides its data."""

    #: The request carried a session cookie (valid or not).
    cookie_sent: bool = False
    #: Server-side expiry of the loaded session (epoch seconds).
    expires: float | None = None
    #: When the store's expiry was last written (epoch seconds).
    written_at: float | None = None
    #: When the session began (``absolute_max_age`` counts from it); ``None``: now.
    created: float | None = None
    #: The cookie is not in the codec's current form (an older key, or signed
    #: where cookies are now encrypted): it is written again even unchanged.
    stale: bool = False
    #: Store key of a record this request retired by destroy or regeneration.
    retired_key: str | None = None
    destroyed: bool = False
    regenerated: bool = False


@dataclass(frozen=True, slots=True)
class CookieUpdate:
    """A cookie to send: a value with its lifetime, or an order to expire it (``max_age`` 0)."""

    value: str
    max_age: float | None
    expires: float | None


def decide(
    session: Session,
    state: SessionState,
    options: SessionOptions,
    *,
    now: float,
    status: int = 200,
    save: bool | None = None,
    headers_sent: bool = False,
    current: bytes | None = None,
) -> Decision:
    """Decide what the commit does; a pure function, in koa-session's order.

    ``save`` is the handler's ``session_save`` (``None``: decide here, ``True``:
    force a save, ``False``: write nothing).  A response of 500 or more writes
    nothing, as half-done work is not persisted, but destroying fails closed:
    see `_after_server_error`.  ``current`` is the canonical JSON of the
    session's data, when the caller has it (else it is made here).
    """
    if save is False:
        return Decision(Action.SKIP, "session_save is False")
    if status >= 500:
        decision = _after_server_error(state, options)
        if headers_sent and decision.action is not Action.SKIP:
            return _after_headers(decision, session, state, options)
        return decision
    decision = _decide_action(session, state, options, now=now, save=save, current=current)
    if headers_sent and decision.action is not Action.SKIP:
        return _after_headers(decision, session, state, options)
    return decision


def _after_server_error(state: SessionState, options: SessionOptions) -> Decision:
    """A failed response writes nothing, but a logout in it still happens.

    A handler that logs the user out and then fails must not leave the session
    alive (a logout undone by an unrelated error), and one that regenerated
    must not leave the old id usable: the old record is destroyed, and the
    cookie that named it expired.  Nothing else is written.
    """
    if state.destroyed or state.regenerated:
        reason = "destroyed" if state.destroyed else "regenerated"
        return Decision(Action.DESTROY, f"{reason} in a failed response",
                        uses_store=options.store is not None and bool(state.retired_key))
    return Decision(Action.SKIP, "server error response")


def _decide_action(
    session: Session, state: SessionState, options: SessionOptions, *, now: float,
    save: bool | None, current: bytes | None,
) -> Decision:
    store = options.store is not None
    if state.regenerated or (state.destroyed and len(session)):
        return Decision(Action.REGENERATE, "regenerated", uses_store=store)
    if state.destroyed:
        return Decision(Action.DESTROY, "destroyed", uses_store=store and bool(state.retired_key))
    if save or session.forced:
        return Decision(Action.SAVE, "forced", uses_store=store)
    if session.is_new and not len(session):
        if options.save_uninitialized:
            return Decision(Action.SAVE, "uninitialized", uses_store=store)
        if state.cookie_sent:
            return Decision(Action.DESTROY, "refused cookie")
        return Decision(Action.SKIP, "new and empty")
    if session.changed if current is None else session.differs(current):
        return Decision(Action.SAVE, "changed", uses_store=store)
    if state.stale:
        return Decision(Action.SAVE, "stale cookie", uses_store=store)
    if options.rolling:
        due = (
            options.touch_after is None
            or state.written_at is None
            or now - state.written_at >= options.touch_after
        )
        return Decision(Action.TOUCH, "rolling", uses_store=store and due)
    if options.renew and state.expires is not None and not _at_deadline(state, options):
        lifetime = options.server_max_age(session.max_age)
        if state.expires - now < lifetime / 2:
            return Decision(Action.SAVE, "renew", uses_store=store)
    return Decision(Action.SKIP, "unchanged")


def _at_deadline(state: SessionState, options: SessionOptions) -> bool:
    """Whether the session's expiry is already its ``absolute_max_age`` deadline."""
    if options.absolute_max_age is None or state.created is None or state.expires is None:
        return False
    return state.expires >= state.created + options.absolute_max_age - 1


def _after_headers(
    decision: Decision, session: Session, state: SessionState, options: SessionOptions
) -> Decision:
    """Headers are gone: no cookie can be sent, but a known id's record can be written."""
    id_known = options.store is not None and session.id is not None and not state.regenerated
    if decision.action in (Action.SAVE, Action.TOUCH) and id_known:
        return Decision(decision.action, decision.reason, decision.uses_store,
                        send_cookie=False, lost_cookie=decision.action is Action.SAVE)
    if decision.action is Action.DESTROY:
        return Decision(Action.DESTROY, decision.reason, decision.uses_store,
                        send_cookie=False, lost_cookie=state.cookie_sent)
    return Decision(Action.SKIP, f"{decision.reason}, but headers were already sent",
                    lost_cookie=True)


def _past_absolute_lifetime(payload: CookiePayload, options: SessionOptions, now: float) -> bool:
    """Whether a cookie's session began more than ``absolute_max_age`` ago."""
    limit = options.absolute_max_age
    return limit is not None and payload.created is not None and payload.created + limit <= now


def _outcome(result: Any) -> str:
    """The ``outcome`` of a store call that answered ``result`` (`SessionContext.call_store`)."""
    if result is None or result is False:
        return "miss"
    if type(result) is Written and not result.written:
        return "conflict" if result.conflicts else "miss"
    return "ok"


class _MustWait:
    """Awaited by `SessionContext.call_store` before its first real wait under `run_now`."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        yield self


_MUST_WAIT = _MustWait()


class _Rest(Awaitable[_T]):
    """The rest of a coroutine that `SessionContext.run_now` stopped at its first wait.

    Awaiting it resumes the coroutine where it stopped, in the awaiting task.
    """

    __slots__ = ("_coroutine",)

    def __init__(self, coroutine: Coroutine[Any, Any, _T]) -> None:
        self._coroutine = coroutine

    def __await__(self) -> Generator[Any, None, _T]:
        return self._coroutine.__await__()


class _Stopwatch:
    """When an observed store call started (`SessionContext._observed_call`)."""

    __slots__ = ("started",)

    def __init__(self) -> None:
        self.started = time.perf_counter()

    def restart(self) -> None:
        """Start again from now: what went before was not the store's time."""
        self.started = time.perf_counter()


class SessionContext:
    """The session of one request, from load to commit: the one owner of its state.

    ``handler`` is passed to the ``genid``, ``valid`` and ``before_save`` hooks
    and in event payloads, as an opaque value (the mixin passes itself);
    ``name`` is used in warnings.
    """

    __slots__ = ("_running_now", "committed", "config", "cookie_line", "cookie_values", "device",
                 "finishing", "flashes", "handler", "name", "outage", "session", "state",
                 "stopped", "store_key", "touched")

    def __init__(
        self, config: SessionConfig, cookie_values: Sequence[str] = (), *, handler: Any = None,
        name: str = "handler", device: Callable[[], tuple[str | None, str | None]] | None = None,
    ) -> None:
        self.config = config
        #: The values of every session cookie the request carried, in header order.
        self.cookie_values = tuple(filter(None, cookie_values))
        self.handler = handler
        self.name = name
        #: Gives the request's ``User-Agent`` and client address, for a store
        #: with a user index (called only when a session's user changes).
        self.device = device
        #: The session, once loaded (or started fresh).
        self.session: Session | None = None
        self.state = SessionState()
        #: The store key of the session's id, computed once per id.
        self.store_key: str | None = None
        #: The handler read or changed the session: the response varies on the cookie.
        self.touched = False
        #: A store outage answered this request (503 with ``Retry-After``).
        self.outage = False
        #: A commit ran (a second one writes only what changed since).
        self.committed = False
        #: A commit failed: the error response goes out without another.
        self.stopped = False
        #: The response's finish, when it waits for a commit (a second call returns it).
        self.finishing: Any = None
        #: The ``Set-Cookie`` line sent for the session, if any (a second one replaces it).
        self.cookie_line: str | None = None
        #: The request's flash messages, once it uses them (a `tornado_session.flash.Flashes`).
        self.flashes: Any = None
        self._running_now = False

    # -- load ----------------------------------------------------------------

    async def load(self) -> Session:
        """Load the session from the cookie (and the store); idempotent.

        Only a request that carries a session cookie reaches the store.  A
        browser can hold two cookies of one name (another path or domain,
        perhaps planted by a sibling subdomain) and sends the most specific
        first: the session is the first whose signature verifies *and* whose
        session is alive, so a planted dead cookie neither shadows a live one
        nor gets it deleted.  Each dead one emits its event (``expired``,
        ``missed``, ``invalid``).  Raises `StoreUnavailableError` when the
        store stays down past ``reconnect_timeout``.
        """
        session = self.session
        if session is not None:
            return session
        if not self.cookie_values:
            return self.start_new()
        self.state.cookie_sent = True
        config = self.config
        options = config.options
        store = options.store
        now = options.clock()
        verified = False
        ended_key: str | None = None
        for value in self.cookie_values[:_MOST_COOKIE_VALUES]:
            payload = config.read_cookie(value)
            if payload is None:
                continue
            verified = True
            if _past_absolute_lifetime(payload, options, now):
                self._refused("expired", "absolute lifetime")
                ended_key = ended_key or payload.store_key
                continue
            if payload.expires <= now:
                self._refused("expired", "expired")
                continue
            if store is None:
                assert payload.data is not None
                data: dict[str, Any] | None = serializers.loads(payload.data)
                baseline: bytes | None = payload.data
            else:
                assert payload.store_key is not None
                data = await self.call_store(store.get, payload.store_key)
                if data is None:
                    self._refused("missed", "unknown session id")
                    continue
                baseline = data.raw if type(data) is serializers.Loaded else None
            assert data is not None
            if options.valid is not None and not options.valid(self.handler, data):
                self._refused("invalid", "refused by valid()")
                continue
            self.state.expires = payload.expires
            self.state.written_at = payload.expires - options.server_max_age(payload.max_age)
            self.state.created = payload.created
            if payload.stale:
                self.state.stale = True
            self.store_key = payload.store_key
            session = self.session = Session(
                data, id=payload.session_id, is_new=False, max_age=payload.max_age,
                loaded=baseline,
            )
            return session
        if not verified:
            self._refused("invalid", "bad cookie")
        if ended_key is not None:  # its record goes at the commit, as after a logout
            self.state.retired_key = ended_key
            self.state.destroyed = True
        return self.start_new()

    def start_new(self) -> Session:
        """Start a fresh, empty session (no cookie, or none that was alive)."""
        session = self.session = Session(max_age=self.config.options.max_age)
        return session

    def _refused(self, event: str, reason: str) -> None:
        """Emit the event that says why a cookie was refused."""
        options = self.config.options
        options.events.emit(
            f"session:{event}", {"key": options.key, "reason": reason, "handler": self.handler}
        )

    # -- what the handler did --------------------------------------------------

    def destroy(self) -> Session:
        """Mark the session destroyed and give the handler a fresh, empty one."""
        self._retire()
        self.state.created = None
        self.state.destroyed = True
        self.state.regenerated = False
        return self.start_new()

    def regenerate(self) -> None:
        """Keep the data under a new id; the old record goes at the commit."""
        assert self.session is not None
        self._retire()
        self.state.created = None  # (absolute_max_age counts from the login)
        self.state.regenerated = True
        self.session._renew_identity()

    def _retire(self) -> None:
        """Remember the store key of the current id: the commit deletes that record."""
        if self.store_key is not None:
            self.state.retired_key = self.store_key
            self.store_key = None

    # -- decide and commit -------------------------------------------------------

    @property
    def needs_commit(self) -> bool:
        """Whether a commit has anything to consider (a second one only what changed since)."""
        session = self.session
        if session is None or self.stopped:
            return False
        if not self.committed:
            return True
        state = self.state
        return state.destroyed or state.regenerated or session.forced or session.changed

    def plan(self, *, status: int, save: bool | None, headers_sent: bool) -> Decision:
        """`decide` what the commit does, running ``before_save`` before any save."""
        session = self.session
        if session is None:  # lazy, never loaded: nothing to do
            return Decision(Action.SKIP, "not loaded")
        options = self.config.options
        now = options.clock()
        current = None if save is False or status >= 500 else session.dump()
        decision = decide(session, self.state, options, now=now, status=status, save=save,
                          headers_sent=headers_sent, current=current)
        if options.before_save is not None and decision.action in (
            Action.SAVE, Action.TOUCH, Action.REGENERATE
        ):
            options.before_save(self.handler, session)
            current = session.dump()
            decision = decide(session, self.state, options, now=now, status=status, save=save,
                              headers_sent=headers_sent, current=current)
        if decision.action in (Action.SAVE, Action.REGENERATE):
            assert current is not None
            session._stage(current)
        return decision

    def commit(
        self, *, status: int, save: bool | None, headers_sent: bool
    ) -> Awaitable[CookieUpdate | None]:
        """Decide, write what the decision needs, and give the cookie to send.

        Returns `Ready` when the commit is over (no store call, or the store
        answered at once); otherwise an awaitable of the rest, which a store
        call is waiting for.  Raises what the commit raises before its first
        wait (a value that is not JSON, a cookie too large).
        """
        decision = self.plan(status=status, save=save, headers_sent=headers_sent)
        if not decision.uses_store or self.config.options.store is None:
            return Ready(self.complete(decision))
        return self.run_now(self._write(decision))

    async def _write(self, decision: Decision) -> CookieUpdate | None:
        """Carry out the store part of ``decision``, then `complete` it.

        When a concurrent request destroyed the session (a logout), the update
        is not written and the answer becomes "destroy": logout wins.
        """
        store = self.config.options.store
        session = self.session
        assert store is not None and session is not None
        state = self.state
        if decision.action is Action.DESTROY:
            if state.retired_key:
                await self.call_store(store.destroy, state.retired_key)
                state.retired_key = None
            return self.complete(decision)
        options = self.config.options
        now = options.clock()
        lifetime = self._lifetime(now)
        written: bool | Written
        if decision.action is Action.TOUCH:
            assert self.store_key is not None
            written = await self.call_store(store.touch, self.store_key, lifetime)
        else:
            written = await self._retire_first() if state.retired_key else True
            if written:
                previous: serializers.Loaded | None = None
                ops = None
                if session.id is None:  # new or regenerated: a record of its own
                    session_id = self._new_id()
                    session._assign_id(session_id)
                    self.store_key = self.config.store_key(session_id)
                else:
                    previous = session.loaded_data()
                    ops = session.pending_ops(previous)
                assert self.store_key is not None
                data = session.staged_data()
                owner = None if store.user_key is None else self._owner(
                    store.user_key, data, previous, now
                )
                if owner is None:  # (a store without a user index takes no owner)
                    written = await self.call_store(
                        store.set, self.store_key, data, lifetime,
                        previous=previous, ops=ops, on_conflict=options.on_conflict,
                    )
                else:
                    written = await self.call_store(
                        store.set, self.store_key, data, lifetime,
                        previous=previous, ops=ops, on_conflict=options.on_conflict, owner=owner,
                    )
                if type(written) is Written:
                    self._met_parallel_writes(written)
        if not written:
            state.cookie_sent = True
            decision = Decision(Action.DESTROY, "destroyed by a concurrent request",
                                send_cookie=decision.send_cookie)
        else:
            state.written_at = now
            state.expires = round(now + lifetime, 3)
        return self.complete(decision)

    def _owner(
        self, user_key: str, data: serializers.Loaded, previous: serializers.Loaded | None,
        now: float,
    ) -> Owner | None:
        """The `Owner` to give the store's user index, or ``None`` when it has nothing to change.

        A new session of a user, or a write that changes the user (a login,
        another user, a logout), gives the record its owner: the user, now,
        and the request's device.  Any other write gives ``None``, which the
        store takes as "as it was", so a request that leaves the user alone
        costs the index nothing.
        """
        user = data.get(user_key)
        if previous is None:
            if user is None:
                return None
        else:
            before = previous.get(user_key)
            if type(before) is type(user) and before == user:
                return None
        if user is not None:
            check_user(user, f"session[{user_key!r}]")
        agent, address = self.device() if self.device is not None else (None, None)
        return Owner(user, now, now, short_agent(agent), coarse_address(address))

    def _met_parallel_writes(self, written: Written) -> None:
        """Report the keys in conflict, and take the values the store computed.

        ``session:conflict`` names the keys, never their values (they may be
        private).  With ``on_conflict="fail"`` nothing was written: the
        request fails with `SessionConflictError` (409 from the mixin).
        """
        options = self.config.options
        session = self.session
        assert session is not None
        if written.conflicts:
            options.events.emit("session:conflict", {
                "key": options.key, "names": list(written.conflicts),
                "on_conflict": options.on_conflict, "written": written.written,
                "handler": self.handler,
            })
        if not written.written and written.conflicts:
            session._unstage()
            names = ", ".join(map(repr, written.conflicts))
            raise SessionConflictError(
                f"a parallel request of this session changed {names} after this one loaded "
                "it; nothing was written (on_conflict='fail')", written.conflicts,
            )
        if written.values:
            session._adopt(written.values)

    async def _retire_first(self) -> bool:
        """Delete the record a regeneration (or destroy) retired, before the new one is written.

        Returns whether the new record may be written: not when the retired
        session was regenerated and a concurrent request (a logout) destroyed
        it first, as writing its data under a new id would bring it back.  A
        session the handler destroyed and filled anew holds new data: that is
        written either way.  (Should the process die between the two calls,
        the user is logged out: the failure is closed.)
        """
        state = self.state
        store = self.config.options.store
        assert store is not None and state.retired_key is not None
        alive = await self.call_store(store.destroy, state.retired_key)
        state.retired_key = None
        return alive or not state.regenerated

    def complete(self, decision: Decision) -> CookieUpdate | None:
        """Finish the commit: update the session's baseline, return the cookie to send.

        For cookie sessions this is where the data is written (into the cookie);
        it raises `CookieTooLargeError` when it does not fit.
        """
        session = self.session
        options = self.config.options
        self.committed = True
        if decision.lost_cookie:
            logger.warning(
                "%s changed its session after the response headers were sent (flush()); "
                "the session cookie could not be updated. Change the session before flush().",
                self.name,
            )
        if session is None or decision.action is Action.SKIP:
            return None
        if decision.action is Action.DESTROY:
            cookie_sent = self.state.cookie_sent
            self._reset_state()
            session._unstage()
            if not decision.send_cookie or not cookie_sent:
                return None
            return CookieUpdate("", 0, 0)
        session._mark_saved()
        now = options.clock()
        if options.store is None:
            expires = round(now + self._lifetime(now), 3)
            payload: dict[str, Any] = {"e": expires, "m": session.max_age}
            if options.encode is None:
                payload["d"] = orjson.Fragment(session.baseline)
            else:
                payload["d"] = session.loaded_data()
            self.state.expires = expires
        else:
            assert session.id is not None and self.state.expires is not None
            payload = {"e": self.state.expires, "m": session.max_age, "i": session.id}
        if options.absolute_max_age is not None:
            if self.state.created is None:
                self.state.created = now
            payload["c"] = self.state.created
        self._reset_state()
        if not decision.send_cookie:
            return None
        value = self.config.codec.dumps(payload)
        expires_at = None if session.max_age is None else now + session.max_age
        return CookieUpdate(value, session.max_age, expires_at)

    def _lifetime(self, now: float) -> float:
        """Seconds the session lives from ``now``: its ``max_age``, cut at the absolute deadline."""
        options = self.config.options
        assert self.session is not None
        lifetime = options.server_max_age(self.session.max_age)
        if options.absolute_max_age is not None:
            created = self.state.created if self.state.created is not None else now
            lifetime = min(lifetime, max(created + options.absolute_max_age - now, 0.001))
        return lifetime

    def _reset_state(self) -> None:
        self.state.stale = False
        self.state.destroyed = False
        self.state.regenerated = False
        self.state.retired_key = None

    # -- running without a task --------------------------------------------------

    def run_now(self, coroutine: Coroutine[Any, Any, _T]) -> Awaitable[_T]:
        """Run ``coroutine`` until it is done or must wait for the store.

        Returns `Ready` with its result when it never had to wait.  Otherwise
        the coroutine stopped before its first real wait (`call_store` sees to
        that), and the awaitable returned resumes it where it stopped: the
        store's own code, its time-outs included, then runs in the task that
        awaits it, never in the caller's turn.  An exception raised before the
        first wait propagates from here.
        """
        self._running_now = True
        try:
            signal = coroutine.send(None)
        except StopIteration as done:
            return Ready(done.value)
        finally:
            self._running_now = False
        if signal is not _MUST_WAIT:  # (only call_store may stop it)
            coroutine.close()
            raise RuntimeError(f"a session coroutine yielded {signal!r} under run_now")
        return _Rest(coroutine)

    # -- store access -------------------------------------------------------------

    def call_store(
        self, method: Callable[..., Awaitable[_T]], *args: Any, **kwargs: Any
    ) -> Awaitable[_T]:
        """Call a store method, waiting up to ``reconnect_timeout`` for an outage to end.

        A store that reports itself disconnected is given that long to emit
        ``connect``; a call that fails because the backend just went away is
        tried once more after the reconnect.  Past that, `StoreUnavailableError`.
        An answer at hand (`Ready`) is taken without awaiting anything.

        Every store call of the lifecycle passes here, so this is where they
        are observed: when ``options.events`` has a listener of
        ``session:store`` (`STORE_EVENT`), each call is timed and reported to
        it (`_observed_call`); when nobody listens nothing is timed.
        """
        if self.config.options.events.listened(STORE_EVENT):
            return self._observed_call(method, args, kwargs)
        return self._call_store(None, method, args, kwargs)

    async def _call_store(
        self, watch: _Stopwatch | None, method: Callable[..., Awaitable[_T]],
        args: tuple[Any, ...], kwargs: dict[str, Any],
    ) -> _T:
        store: Store = self.config.options.store  # type: ignore[assignment]
        if store.connected:
            try:
                answer = method(*args, **kwargs)
                if type(answer) is Ready:
                    return answer.value  # type: ignore[no-any-return]
                if self._running_now:
                    await _MUST_WAIT
                    if watch is not None:  # the store's work starts now, in the task
                        watch.restart()
                return await answer
            except StoreUnavailableError:
                if store.connected:
                    raise
        await self._wait_for_store(store, watch)
        return await method(*args, **kwargs)

    async def _observed_call(
        self, method: Callable[..., Awaitable[_T]], args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> _T:
        """`_call_store`, timed, and reported as a ``session:store`` event.

        The payload: ``key`` (the cookie name), ``operation`` (``"load"``,
        ``"save"``, ``"touch"`` or ``"destroy"``), ``outcome`` (``"ok"``;
        ``"miss"``: the store answered that there is no live record;
        ``"conflict"``: a save that ``on_conflict="fail"`` refused;
        ``"unavailable"``: the store could not be reached within
        ``reconnect_timeout``; ``"error"``: anything else went wrong),
        ``seconds`` (from the call to its answer, a wait for a reconnect
        included; a call that must wait is timed from when its task runs it,
        not from the turn that handed it over), ``store`` (the store's class
        name), ``error`` (the exception, or ``None``) and ``handler``.
        """
        watch = _Stopwatch()
        outcome = "error"
        error: BaseException | None = None
        try:
            result = await self._call_store(watch, method, args, kwargs)
        except StoreUnavailableError as exc:
            outcome, error = "unavailable", exc
            raise
        except Exception as exc:
            error = exc
            raise
        else:
            outcome = _outcome(result)
            return result
        finally:
            seconds = time.perf_counter() - watch.started
            options = self.config.options
            name = getattr(method, "__name__", "")
            options.events.emit(STORE_EVENT, {
                "key": options.key, "operation": _OPERATIONS.get(name, name),
                "outcome": outcome, "seconds": seconds,
                "store": type(options.store).__name__, "error": error, "handler": self.handler,
            })

    async def _wait_for_store(self, store: Store, watch: _Stopwatch | None = None) -> None:
        if self._running_now:
            await _MUST_WAIT
            if watch is not None:
                watch.restart()
        timeout = self.config.options.reconnect_timeout
        if not await store.wait_connected(timeout):
            raise StoreUnavailableError(
                f"{type(store).__name__} stayed disconnected for {timeout} s (reconnect_timeout)"
            )

    def _new_id(self) -> str:
        genid = self.config.options.genid
        if genid is None:
            return secrets.token_urlsafe(32)  # 256 bits
        session_id = genid(self.handler)
        if not isinstance(session_id, str) or not 0 < len(session_id) <= MAX_ID_LENGTH:
            raise SessionError(
                f"genid returned {type(session_id).__name__} of length "
                f"{len(session_id) if isinstance(session_id, str) else '-'}; "
                f"expected a non-empty str of at most {MAX_ID_LENGTH} characters"
            )
        return session_id
