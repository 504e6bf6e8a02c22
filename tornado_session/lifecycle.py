"""Load, decide, commit: the life of a session within one request.

This is koa-session's ``context.js`` for Tornado, and it knows nothing of
Tornado: the mixin hands it the cookie value and what the response did, and
turns its answer into a ``Set-Cookie`` header.

1. `SessionContext.load` reads the cookie and, for store sessions, the store.
   A missing, tampered, expired or unknown cookie gives a fresh session and an
   event; it never becomes an error.
2. `decide` is a pure function of the session's state, the options, what the
   request did and the time.  It answers with a `Decision`: skip, save,
   touch, destroy or regenerate, and why.  Unit-test it without HTTP.
3. `SessionContext.write_store` carries out the store part of a decision and
   `SessionContext.complete` gives the cookie to send.

The cookie always carries a small signed payload: for cookie sessions the data
(``d``), for store sessions the id (``i``); and in both the server-side expiry
(``e``) and the session's own ``max_age`` (``m``).  So an expired session is
refused without a store round trip, `renew` and `touch_after` know when the
store was last written, and a per-session ``max_age`` survives across requests.
"""

from __future__ import annotations

import enum
import logging
import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from . import serializers
from .cookies import CookieCodec
from .errors import SessionError, StoreUnavailableError
from .options import SessionOptions
from .session import Session
from .stores.base import Store

logger = logging.getLogger(__name__)

_MAX_ID_LENGTH = 256


class Action(enum.Enum):
    """What the commit does with the session."""

    SKIP = "skip"
    SAVE = "save"
    TOUCH = "touch"
    DESTROY = "destroy"
    REGENERATE = "regenerate"


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer of `decide`: an action, the reason for it, and what it touches.

    ``write_store``: the commit makes a store call.  ``send_cookie``: a
    ``Set-Cookie`` header goes out.  ``lost_cookie``: a cookie was due but the
    headers were already sent, which the commit reports as a warning.
    """

    action: Action
    reason: str
    write_store: bool = False
    send_cookie: bool = True
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


class SessionConfig:
    """The per-application part: options and the cookie codec, built once."""

    __slots__ = ("codec", "options", "retry_after")

    def __init__(self, options: SessionOptions, codec: CookieCodec) -> None:
        self.options = options
        self.codec = codec
        #: ``Retry-After`` seconds for a 503 caused by a store outage.
        self.retry_after = max(1, math.ceil(options.reconnect_timeout))


def decide(
    session: Session,
    state: SessionState,
    options: SessionOptions,
    *,
    now: float,
    status: int = 200,
    save: bool | None = None,
    headers_sent: bool = False,
) -> Decision:
    """Decide what the commit does; a pure function, in koa-session's order.

    ``save`` is the handler's ``session_save`` (``None``: decide here, ``True``:
    force a save, ``False``: write nothing).  A response of 500 or more writes
    nothing: half-done work is not persisted.
    """
    if save is False:
        return Decision(Action.SKIP, "session_save is False")
    if status >= 500:
        return Decision(Action.SKIP, "server error response")
    decision = _decide_action(session, state, options, now=now, save=save)
    if headers_sent and decision.action is not Action.SKIP:
        return _after_headers(decision, session, state, options)
    return decision


def _decide_action(
    session: Session, state: SessionState, options: SessionOptions, *, now: float,
    save: bool | None,
) -> Decision:
    store = options.store is not None
    if state.regenerated or (state.destroyed and len(session)):
        return Decision(Action.REGENERATE, "regenerated", write_store=store)
    if state.destroyed:
        return Decision(Action.DESTROY, "destroyed", write_store=store and bool(state.retired_key))
    if save or session.forced:
        return Decision(Action.SAVE, "forced", write_store=store)
    if session.is_new and not len(session):
        if options.save_uninitialized:
            return Decision(Action.SAVE, "uninitialized", write_store=store)
        if state.cookie_sent:
            return Decision(Action.DESTROY, "refused cookie")
        return Decision(Action.SKIP, "new and empty")
    if session.changed:
        return Decision(Action.SAVE, "changed", write_store=store)
    if options.rolling:
        due = (
            options.touch_after is None
            or state.written_at is None
            or now - state.written_at >= options.touch_after
        )
        return Decision(Action.TOUCH, "rolling", write_store=store and due)
    if options.renew and state.expires is not None:
        lifetime = options.server_max_age(session.max_age)
        if state.expires - now < lifetime / 2:
            return Decision(Action.SAVE, "renew", write_store=store)
    return Decision(Action.SKIP, "unchanged")


def _after_headers(
    decision: Decision, session: Session, state: SessionState, options: SessionOptions
) -> Decision:
    """Headers are gone: no cookie can be sent, but a known id's record can be written."""
    id_known = options.store is not None and session.id is not None and not state.regenerated
    if decision.action in (Action.SAVE, Action.TOUCH) and id_known:
        return Decision(decision.action, decision.reason, decision.write_store,
                        send_cookie=False, lost_cookie=decision.action is Action.SAVE)
    if decision.action is Action.DESTROY:
        return Decision(Action.DESTROY, decision.reason, decision.write_store,
                        send_cookie=False, lost_cookie=state.cookie_sent)
    return Decision(Action.SKIP, f"{decision.reason}, but headers were already sent",
                    lost_cookie=True)


class SessionContext:
    """The session of one request: load, then decide and commit.

    ``context`` is passed to the ``genid``, ``valid`` and ``before_save`` hooks
    and in event payloads (the mixin passes the handler); ``name`` is used in
    warnings.
    """

    __slots__ = ("_snapshot", "committed", "config", "context", "cookie_values", "name",
                 "session", "state")

    def __init__(
        self, config: SessionConfig, cookie_values: Sequence[str] = (), *, context: Any = None,
        name: str = "handler",
    ) -> None:
        self.config = config
        #: The values of every session cookie the request carried, in header order.
        self.cookie_values = tuple(value for value in cookie_values if value)
        self.context = context
        self.name = name
        self.session: Session | None = None
        self.state = SessionState()
        self.committed = False
        self._snapshot: bytes | None = None

    # -- load ----------------------------------------------------------------

    async def load(self) -> Session:
        """Load the session from the cookie (and the store); idempotent.

        Only a request that carries a session cookie reaches the store.  Raises
        `StoreUnavailableError` when the store stays down past
        ``reconnect_timeout``.
        """
        if self.session is not None:
            return self.session
        session = await self._load()
        self.session = session
        return session

    async def _load(self) -> Session:
        options = self.config.options
        if not self.cookie_values:
            return Session(max_age=options.max_age)
        self.state.cookie_sent = True
        fields = self._first_valid_payload()
        if fields is None:
            return self._refuse("invalid", "bad cookie")
        expires, max_age, body = fields
        now = options.clock()
        if expires <= now:
            return self._refuse("expired", "expired")
        session_id: str | None = None
        if options.store is None:
            assert isinstance(body, dict)
            data: dict[str, Any] | None = body
        else:
            assert isinstance(body, str)
            session_id = body
            data = await self.call(
                options.store.get, self.store_key(body), options.server_max_age(max_age),
                rolling=options.rolling,
            )
            if data is None:
                return self._refuse("missed", "unknown session id")
        assert data is not None
        if options.valid is not None and not options.valid(self.context, data):
            return self._refuse("invalid", "refused by valid()")
        self.state.expires = expires
        self.state.written_at = expires - options.server_max_age(max_age)
        return Session(data, id=session_id, is_new=False, max_age=max_age)

    def _first_valid_payload(self) -> tuple[float, float | None, dict[str, Any] | str] | None:
        """The fields of the first cookie value that is ours and untampered.

        A browser can hold two cookies of one name (another path or domain) and
        sends the most specific first; the first that verifies is the session.
        """
        store = self.config.options.store is not None
        for value in self.cookie_values:
            fields = _payload_fields(self.config.codec.loads(value), store=store)
            if fields is not None:
                return fields
        return None

    def _refuse(self, event: str, reason: str) -> Session:
        """A fresh session for a refused cookie, and the event that says why."""
        options = self.config.options
        options.events.emit(
            f"session:{event}", {"key": options.key, "reason": reason, "handler": self.context}
        )
        return Session(max_age=options.max_age)

    # -- what the handler did --------------------------------------------------

    def destroy(self) -> Session:
        """Mark the session destroyed and give the handler a fresh, empty one."""
        self._retire()
        self.state.destroyed = True
        self.state.regenerated = False
        self.session = Session(max_age=self.config.options.max_age)
        return self.session

    def regenerate(self) -> None:
        """Keep the data under a new id; the old record goes at the commit."""
        assert self.session is not None
        self._retire()
        self.state.regenerated = True
        self.session._renew_identity()

    def _retire(self) -> None:
        session = self.session
        if session is not None and session.id is not None and self.config.options.store:
            self.state.retired_key = self.store_key(session.id)

    # -- decide and commit -------------------------------------------------------

    def decide(self, *, status: int, save: bool | None, headers_sent: bool) -> Decision:
        """Decide what the commit does, running ``before_save`` before any save."""
        session = self.session
        if session is None:  # lazy, never loaded: nothing to do
            return Decision(Action.SKIP, "not loaded")
        options = self.config.options
        now = options.clock()
        decision = decide(session, self.state, options, now=now, status=status, save=save,
                          headers_sent=headers_sent)
        if options.before_save is not None and decision.action in (
            Action.SAVE, Action.TOUCH, Action.REGENERATE
        ):
            options.before_save(self.context, session)
            decision = decide(session, self.state, options, now=now, status=status, save=save,
                              headers_sent=headers_sent)
        if decision.action in (Action.SAVE, Action.REGENERATE):
            self._snapshot = serializers.dumps(session.data())
        return decision

    async def write_store(self, decision: Decision) -> Decision:
        """Carry out the store part of ``decision``; returns the decision to complete.

        When a concurrent request destroyed the session (a logout), the update
        is not written and the answer becomes "destroy": logout wins.
        """
        store = self.config.options.store
        session = self.session
        if not decision.write_store or store is None or session is None:
            return decision
        state = self.state
        if decision.action is Action.DESTROY:
            if state.retired_key:
                await self.call(store.destroy, state.retired_key)
                state.retired_key = None
            return decision
        options = self.config.options
        lifetime = options.server_max_age(session.max_age)
        now = options.clock()
        if decision.action is Action.TOUCH:
            assert session.id is not None
            data = session.data()
            written = await self.call(store.set, self.store_key(session.id), data, lifetime,
                                      rolling=True, changed=False, previous=data)
        else:
            previous = None if session.id is None else session.loaded_data()
            if session.id is None:
                session._assign_id(self._new_id())
            assert session.id is not None
            written = await self.call(store.set, self.store_key(session.id), session.data(),
                                      lifetime, rolling=options.rolling, changed=True,
                                      previous=previous)
            if written and state.retired_key:
                await self.call(store.destroy, state.retired_key)
                state.retired_key = None
        if not written:
            state.cookie_sent = True
            return Decision(Action.DESTROY, "destroyed by a concurrent request",
                            send_cookie=decision.send_cookie)
        state.written_at = now
        state.expires = round(now + lifetime, 3)
        return decision

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
            if not decision.send_cookie or not cookie_sent:
                return None
            return CookieUpdate("", 0, 0)
        snapshot = self._snapshot
        if snapshot is not None:
            session._mark_saved(session.id, snapshot)
        now = options.clock()
        if options.store is None:
            expires = round(now + options.server_max_age(session.max_age), 3)
            payload: dict[str, Any] = {"e": expires, "m": session.max_age}
            if options.encode is None:
                payload["d"] = orjson.Fragment(session._loaded)
            else:
                payload["d"] = session.loaded_data()
            self.state.expires = expires
        else:
            assert session.id is not None and self.state.expires is not None
            payload = {"e": self.state.expires, "m": session.max_age, "i": session.id}
        self._reset_state()
        if not decision.send_cookie:
            return None
        value = self.config.codec.dumps(payload)
        expires_at = None if session.max_age is None else now + session.max_age
        return CookieUpdate(value, session.max_age, expires_at)

    def _reset_state(self) -> None:
        self.state.destroyed = False
        self.state.regenerated = False
        self.state.retired_key = None
        self._snapshot = None

    @property
    def dirty(self) -> bool:
        """Whether the session changed since the last commit (for a second commit)."""
        session = self.session
        if session is None:
            return False
        return (
            self.state.destroyed or self.state.regenerated or session.forced or session.changed
        )

    # -- store access -------------------------------------------------------------

    def store_key(self, session_id: str) -> str:
        """The store key of a session id: the prefix and a hash, never the id itself."""
        return self.config.options.prefix + serializers.hash_session_id(session_id)

    async def call(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        """Call a store method, waiting up to ``reconnect_timeout`` for an outage to end.

        A store that reports itself disconnected is given that long to emit
        ``connect``; a call that fails because the backend just went away is
        tried once more after the reconnect.  Past that, `StoreUnavailableError`.
        """
        store: Store = self.config.options.store  # type: ignore[assignment]
        timeout = self.config.options.reconnect_timeout
        if not store.connected and not await store.wait_connected(timeout):
            raise StoreUnavailableError(
                f"{type(store).__name__} stayed disconnected for {timeout} s (reconnect_timeout)"
            )
        try:
            return await method(*args, **kwargs)
        except StoreUnavailableError:
            if store.connected or not await store.wait_connected(timeout):
                raise
        return await method(*args, **kwargs)

    def _new_id(self) -> str:
        genid = self.config.options.genid
        if genid is None:
            return secrets.token_urlsafe(32)  # 256 bits
        session_id = genid(self.context)
        if not isinstance(session_id, str) or not 0 < len(session_id) <= _MAX_ID_LENGTH:
            raise SessionError(
                f"genid returned {type(session_id).__name__} of length "
                f"{len(session_id) if isinstance(session_id, str) else '-'}; "
                f"expected a non-empty str of at most {_MAX_ID_LENGTH} characters"
            )
        return session_id


def _payload_fields(
    payload: dict[str, Any] | None, *, store: bool
) -> tuple[float, float | None, dict[str, Any] | str] | None:
    """Check a decoded cookie payload's shape; ``None`` when it is not ours."""
    if payload is None:
        return None
    expires = payload.get("e")
    max_age = payload.get("m")
    if isinstance(expires, bool) or not isinstance(expires, (int, float)):
        return None
    if max_age is not None and (
        isinstance(max_age, bool) or not isinstance(max_age, (int, float)) or max_age <= 0
    ):
        return None
    if store:
        body: Any = payload.get("i")
        if not isinstance(body, str) or not 0 < len(body) <= _MAX_ID_LENGTH:
            return None
    else:
        body = payload.get("d")
        if not isinstance(body, dict):
            return None
    return float(expires), max_age, body
