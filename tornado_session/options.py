"""SessionOptions: every setting of the session layer, checked when built.

The names and defaults follow koa-session and koa-generic-session, in seconds
rather than milliseconds.  A wrong name, type or value raises
`SessionOptionError` naming the option, the value given and what is accepted,
when the options are built: where ``SessionOptions(...)`` is called, not on the
first request that needs them.  A dict given as the application's ``session``
setting is built into options when the mixin first reads it (the first
request), unless ``SessionMixin.configure_application(app)`` reads it at
start-up: Tornado has no start-up hook that could.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Literal

from ._checks import check_seconds
from .crypto import check_keys, check_package
from .errors import SessionOptionError
from .events import EventEmitter
from .serializers import ON_CONFLICT

if TYPE_CHECKING:
    from .session import Session
    from .stores.base import Store

#: When a session has no ``max_age`` of its own (a browser-session cookie) and the
#: options give none either, the server still forgets it after this many seconds.
DEFAULT_SERVER_MAX_AGE = 86400.0

#: The values of the cookie's ``SameSite`` attribute, as browsers spell them.
#: `SessionOptions` accepts them in any case at run time and keeps this spelling.
SameSite = Literal["Strict", "Lax", "None"]

_COOKIE_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_SAMESITE: dict[str, SameSite] = {"strict": "Strict", "lax": "Lax", "none": "None"}


@dataclass(frozen=True, kw_only=True, slots=True)
class SessionOptions:
    """How sessions are kept: pass as ``Application(session=SessionOptions(...))``.

    A plain dict with the same field names is accepted too.  Times are in
    seconds.  Every field is described in the docs' options page; in short:

    ``store``: where data lives (`None`: in the signed cookie itself).
    ``key``: the cookie's name.  ``max_age``: lifetime of a session (`None`: a
    browser-session cookie).  ``auto_commit``: commit when the response
    finishes.  ``rolling``: reset the expiry on every request.  ``renew``:
    reset it when less than half remains.  ``lazy``: load only on
    ``await handler.load_session()``.  ``save_uninitialized``: give a new,
    empty session a cookie.  ``signed``: sign the cookie with the application's
    ``cookie_secret``.  ``httponly``/``secure``/``samesite``/``domain``/``path``:
    cookie attributes (``secure=None`` follows the request's protocol;
    ``samesite`` is ``"Strict"``, ``"Lax"``, ``"None"`` or `None`, typed as
    `SameSite`; another case is accepted and kept in this spelling).
    ``prefix``: prepended to store keys.  ``genid(handler)``: makes session ids.
    ``valid(handler, data)``: return false to refuse a loaded session.
    ``before_save(handler, session)``: called before every save.
    ``encode``/``decode``: custom cookie payload codec.  ``reconnect_timeout``:
    how long a request waits for a disconnected store before a 503.
    ``touch_after``: with ``rolling``, write an unchanged session's expiry to the
    store at most once per this many seconds.  ``absolute_max_age``: a session
    ends this many seconds after it began (after login: regeneration restarts
    the count), however active it is.  ``on_conflict``: what a store write does
    with a key that a parallel request of the same session changed after this
    one loaded it: ``"last_write_wins"`` (this request's value),
    ``"first_write_wins"`` (the stored value stays) or ``"fail"`` (nothing of
    this request is written, and it is answered with 409); each such write
    emits ``session:conflict``.  ``events``: the emitter of
    ``session:missed``, ``session:invalid``, ``session:expired`` and
    ``session:conflict``.
    ``clock``: where the time comes from (tests pass a fake one).
    ``encryption_keys``: ``{version: secret}``; cookie sessions are then
    encrypted (AES-GCM) instead of signed, the newest version encrypting (see
    the docs' "Encrypted sessions"; needs the ``[crypto]`` extra).
    """

    store: Store | None = None
    key: str = "tornado.sess"
    max_age: float | None = 86400
    auto_commit: bool = True
    rolling: bool = False
    renew: bool = False
    lazy: bool = False
    save_uninitialized: bool = False
    signed: bool = True
    httponly: bool = True
    secure: bool | None = None
    samesite: SameSite | None = "Lax"
    domain: str | None = None
    path: str = "/"
    prefix: str = ""
    genid: Callable[[Any], str] | None = None
    valid: Callable[[Any, dict[str, Any]], bool] | None = None
    before_save: Callable[[Any, Session], object] | None = None
    encode: Callable[[dict[str, Any]], str | bytes] | None = None
    decode: Callable[[str], dict[str, Any]] | None = None
    reconnect_timeout: float = 10.0
    touch_after: float | None = None
    absolute_max_age: float | None = None
    on_conflict: str = "last_write_wins"
    events: EventEmitter = field(default_factory=EventEmitter)
    clock: Callable[[], float] = time.time
    encryption_keys: Mapping[int, str | bytes] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._check_store()
        if not isinstance(self.key, str) or not _COOKIE_NAME.match(self.key):
            _fail("key", self.key, "a non-empty cookie name (letters, digits and !#$%&'*+-.^_`|~)")
        check_seconds("session option max_age", self.max_age, allow_none=True)
        for name in ("auto_commit", "rolling", "renew", "lazy", "save_uninitialized", "signed",
                     "httponly"):
            if not isinstance(getattr(self, name), bool):
                _fail(name, getattr(self, name), "True or False")
        if self.secure is not None and not isinstance(self.secure, bool):
            _fail("secure", self.secure, "True, False, or None to follow the request's protocol")
        self._check_samesite()
        if self.domain is not None and (
            not isinstance(self.domain, str) or not self.domain or re.search(r"[\s;,]", self.domain)
        ):
            _fail("domain", self.domain, "None or a domain name")
        if not isinstance(self.path, str) or not self.path.startswith("/") or re.search(
            r"[\s;]", self.path
        ):
            _fail("path", self.path, "a URL path starting with '/'")
        if not isinstance(self.prefix, str):
            _fail("prefix", self.prefix, "a string prepended to store keys")
        for name in ("genid", "valid", "before_save", "encode", "decode"):
            if getattr(self, name) is not None and not callable(getattr(self, name)):
                _fail(name, getattr(self, name), "None or a callable")
        if (self.encode is None) != (self.decode is None):
            given = "encode" if self.encode is not None else "decode"
            _fail(given, getattr(self, given), "encode and decode given together")
        if not self.signed and self.encode is None:
            _fail("signed", False, "True, unless encode/decode are given that authenticate the "
                  "cookie themselves: an unsigned cookie is whatever the client sends (a cookie "
                  "session would load any data, {'is_admin': true} included; a store session "
                  "any expiry)")
        check_seconds("session option reconnect_timeout", self.reconnect_timeout, allow_zero=True)
        self._check_touch_after()
        check_seconds("session option absolute_max_age", self.absolute_max_age, allow_none=True)
        if self.on_conflict not in ON_CONFLICT:
            _fail("on_conflict", self.on_conflict, " or ".join(map(repr, ON_CONFLICT)))
        if not isinstance(self.events, EventEmitter):
            _fail("events", self.events, "a tornado_session.events.EventEmitter")
        if not callable(self.clock):
            _fail("clock", self.clock, "a callable returning the time in seconds")
        self._check_encryption_keys()

    @classmethod
    def coerce(cls, value: SessionOptions | Mapping[str, Any] | None) -> SessionOptions:
        """Return ``value`` as `SessionOptions`; a dict's names are checked too.

        ``None`` (no ``session`` setting) gives the defaults: signed cookie
        sessions.
        """
        if isinstance(value, SessionOptions):
            return value
        if value is None:
            return cls()
        if not isinstance(value, Mapping):
            raise SessionOptionError(
                f"the application setting 'session' is {value!r}; "
                "expected SessionOptions(...) or a dict of its fields"
            )
        known = {f.name for f in fields(cls)}
        unknown = sorted(str(name) for name in value if name not in known)
        if unknown:
            raise SessionOptionError(
                f"unknown session option {unknown[0]!r}; known options: {', '.join(sorted(known))}"
            )
        return cls(**value)

    def server_max_age(self, max_age: float | None) -> float:
        """How long the server keeps a session whose cookie has ``max_age``.

        A browser-session cookie (``None``) still ends on the server: after the
        options' ``max_age``, or a day when that is ``None`` too.
        """
        if max_age is not None:
            return max_age
        return self.max_age if self.max_age is not None else DEFAULT_SERVER_MAX_AGE

    # -- checks -----------------------------------------------------------

    def _check_store(self) -> None:
        store = self.store
        if store is None:
            return
        for method in ("get", "set", "destroy"):
            if not callable(getattr(store, method, None)):
                _fail("store", store, "None or a store (tornado_session.stores.Store)")

    def _check_samesite(self) -> None:
        samesite = self.samesite
        if samesite is None:
            return
        if not isinstance(samesite, str) or samesite.lower() not in _SAMESITE:
            _fail("samesite", samesite, "'Strict', 'Lax', 'None' or None")
        canonical = _SAMESITE[samesite.lower()]
        object.__setattr__(self, "samesite", canonical)
        if canonical == "None" and self.secure is False:
            _fail("samesite", samesite, "'Strict' or 'Lax' when secure=False "
                  "(browsers reject SameSite=None cookies that are not Secure)")

    def _check_touch_after(self) -> None:
        touch_after = self.touch_after
        if touch_after is None:
            return
        check_seconds("session option touch_after", touch_after, allow_zero=True)
        if not self.rolling:
            _fail("touch_after", touch_after, "None unless rolling=True (it limits rolling writes)")
        if self.max_age is not None and touch_after >= self.max_age:
            _fail("touch_after", touch_after, f"fewer seconds than max_age ({self.max_age})")


    def _check_encryption_keys(self) -> None:
        """Keys of the right kind and length, a cookie session, and the package to use them.

        The keys are kept as a copy of bytes: editing the dict given has no
        effect (rotation is a restart with the new dict).
        """
        keys = self.encryption_keys
        if keys is None:
            return
        option = "session option encryption_keys"
        checked = check_keys(option, keys)
        if self.store is not None:
            raise SessionOptionError(
                f"{option} encrypts cookie sessions (store=None); to encrypt a store's data "
                "at rest wrap the store: store=EncryptedStore(store, keys=...)"
            )
        if self.encode is not None:
            _fail("encode", self.encode, "None with encryption_keys (the payload is encrypted "
                  "as JSON; one codec per cookie)")
        try:
            check_package()
        except SessionOptionError as exc:
            raise SessionOptionError(f"{option} is given, but {exc}") from exc.__cause__
        object.__setattr__(self, "encryption_keys", checked)


def _fail(name: str, value: Any, accepted: str) -> None:
    raise SessionOptionError(f"session option {name}={value!r} is invalid; expected {accepted}")
