"""SessionMixin: ``self.session`` for Tornado handlers.

The only module that touches `tornado.web.RequestHandler`.  It is thin: it
hands the lifecycle the session cookie and what the response did, and turns the
lifecycle's answer into a ``Set-Cookie`` header.  Rules about when to save live
in `tornado_session.lifecycle`.

Tornado calls ``finish()`` without awaiting it (after ``get()``, ``redirect()``
and ``send_error()``), so `SessionMixin.finish` stays synchronous.  It commits
first: a commit whose store answers at once (`MemoryStore`, cookie sessions)
is over before ``finish()`` goes on, in the same turn of the loop.  When a store
call must wait, it marks the response as finishing, lets the rest of the commit
run in one task, and returns a future that ends when the response has been
sent.  A second call returns the same future.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sys
import types
from collections.abc import Awaitable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import tornado.web
from tornado.concurrent import Future
from tornado.iostream import StreamClosedError

from .config import SessionConfig
from .cookies import CookieCodec, Signer
from .crypto import EncryptedCookieCodec
from .errors import (
    SessionConflictError,
    SessionNotLoadedError,
    SessionOptionError,
    StoreUnavailableError,
)
from .flash import Flashes
from .lifecycle import CookieUpdate, SessionContext
from .options import SessionOptions
from .session import Session
from .stores.base import Ready

logger = logging.getLogger(__name__)

_CONFIG_ATTRIBUTE = "_tornado_session_config"
_EPOCH_PLUS_A_DAY = 86400.0

#: What `SessionMixin.prepare` returns when there is nothing to load.
_PREPARED: Ready[None] = Ready(None)

if TYPE_CHECKING:
    _HandlerBase = tornado.web.RequestHandler
else:
    _HandlerBase = object


class SessionMixin(_HandlerBase):
    """Gives a `~tornado.web.RequestHandler` a session: ``self.session``.

    Put it before ``RequestHandler`` in the bases::

        class Counter(SessionMixin, tornado.web.RequestHandler):
            def get(self):
                self.session["views"] = self.session.get("views", 0) + 1
                self.write(str(self.session["views"]))

    The options come from the application setting ``session``
    (`SessionOptions`, or a dict of its fields).  A handler that overrides
    ``prepare()`` or ``finish()`` must call the mixin's (``await
    super().prepare()``; ``return super().finish(chunk)``).
    """

    #: Per-request override: ``None`` decides automatically, ``True`` forces a
    #: save, ``False`` skips every session write of this request.
    session_save: bool | None = None

    #: Per-handler override of the ``lazy`` option: ``None`` follows the
    #: option, ``True`` loads only on ``await self.load_session()``, ``False``
    #: loads in ``prepare()`` (for a request that carries a session cookie).
    session_lazy: bool | None = None

    #: How many flash messages wait for the next page at most; past it the
    #: oldest are dropped, so a client that never shows a page (a script
    #: posting again and again) cannot grow a session or a cookie without end.
    flash_max: int = 10

    #: This request's session, from load to commit (made on first need).
    _session_ctx: SessionContext | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Check the handler's `session_lazy` and `flash_max` when the class is defined.

        A wrong value fails at import time, naming the handler, rather than
        misbehaving in a request: ``session_lazy = "yes"`` would read as true,
        ``flash_max = 0`` would keep every message.
        """
        super().__init_subclass__(**kwargs)
        lazy: Any = cls.session_lazy
        if lazy is not None and type(lazy) is not bool:
            raise SessionOptionError(
                f"{cls.__name__}.session_lazy must be None (follow the lazy option), True or "
                f"False, not {lazy!r}"
            )
        limit: Any = cls.flash_max
        if type(limit) is not int or limit < 1:
            raise SessionOptionError(
                f"{cls.__name__}.flash_max must be an int of 1 or more, not {limit!r}"
            )

    # -- configuration ----------------------------------------------------------

    @classmethod
    def configure_application(cls, application: tornado.web.Application) -> SessionOptions:
        """Check the application's session settings now and return its options.

        The mixin does this on the first request; call it when you build the
        application to make a wrong option, or a missing ``cookie_secret``,
        fail at start-up.
        """
        return application_config(application).options

    def _session_context(self, cookie_values: tuple[str, ...] | None = None) -> SessionContext:
        """The `SessionContext` of this request, made on first need."""
        context = self._session_ctx
        if context is None:
            if cookie_values is None:
                cookie_values = self.get_session_cookie()
            context = self._session_ctx = SessionContext(
                _current_config(self.application), cookie_values,
                handler=self, name=type(self).__name__,
            )
        return context

    # -- where the session travels ----------------------------------------------

    def get_session_cookie(self) -> tuple[str, ...]:
        """Every value of the session cookie, in the order the browser sent them.

        Override it together with `set_session_cookie` to carry the session
        somewhere other than a cookie, such as a header for API clients
        (koa-session's ``externalKey``).  The values are checked like cookie
        values: signature, expiry, shape.

        The header is read here rather than through ``get_cookie``: Tornado's
        keeps only the last of two cookies with one name, and builds an
        ``http.cookies.SimpleCookie`` of every cookie of the request, which
        cost more than the rest of loading a session.  Quotes around a value
        are removed (our values never hold escapes; one that did would fail
        its signature check like any other foreign value).
        """
        name = application_config(self.application).options.key
        headers = self.request.headers
        if "Cookie" not in headers:  # (.get() costs an exception when it is missing)
            return ()
        header = headers["Cookie"]
        if name not in header:
            return ()
        return _cookie_values(header, name)

    # -- loading ----------------------------------------------------------------

    def prepare(self) -> Awaitable[Any]:
        """Load the session, unless loading is lazy (`session_lazy`, or ``lazy=True``).

        Only a request that carries a session cookie is read from the store;
        for one that carries none nothing is done until the handler touches
        ``self.session``.  Returns an awaitable (``await super().prepare()``).
        """
        config = application_config(self.application)
        lazy = self.session_lazy
        if config.options.lazy if lazy is None else lazy:
            return _PREPARED
        cookie_values = self.get_session_cookie()
        if not any(cookie_values):  # no context at all: the common anonymous request
            return _PREPARED
        return self._session_context(cookie_values).load()

    def load_session(self) -> Awaitable[Session]:
        """Load the session (needed before ``self.session`` when ``lazy=True``).

        ``session = await self.load_session()``.  Idempotent; raises
        `StoreUnavailableError` (answered with 503) when the store stays
        unreachable past ``reconnect_timeout``.

        The session it returns is the handler's as much as ``self.session``
        is: the response varies on the cookie (``Vary: Cookie``) from here.
        """
        context = self._session_context()
        context.touched = True
        return context.load()

    @property
    def session(self) -> Session:
        """The session of this request (a `Session`, used like a dict).

        Assign ``None`` to destroy it, or a dict to replace its data.
        """
        context = self._session_ctx or self._session_context()
        session = context.session
        if session is None:
            session = self._session_unloaded(context)
        context.touched = True
        return session

    @session.setter
    def session(self, value: Mapping[str, Any] | None) -> None:
        context = self._session_ctx or self._session_context()
        session = context.session
        if session is None:
            session = self._session_unloaded(context)
        if value is None:
            context.destroy()
        elif isinstance(value, Mapping):
            session.clear()
            session.update(value)
        else:
            raise TypeError(
                f"self.session can be set to None (destroy) or a dict, not {type(value).__name__}"
            )
        context.touched = True

    def _session_unloaded(self, context: SessionContext) -> Session:
        """Give a session that needs no loading, or say exactly what to change.

        Loading may need the store, and ``self.session`` cannot wait for it:
        the handler must have awaited the load before.  With the default,
        eager loading that is ``SessionMixin.prepare()``, which has not run
        when this is reached (after it, the session is always loaded): the
        handler's own ``prepare()`` used the session before calling it, or
        never called it.
        """
        name = type(self).__name__
        lazy = self.session_lazy
        if lazy is None and context.config.options.lazy:
            raise SessionNotLoadedError(
                f"{name} touched self.session before loading it; "
                "with lazy=True call `await self.load_session()` first"
            )
        if lazy:
            raise SessionNotLoadedError(
                f"{name} touched self.session before loading it; "
                f"{name}.session_lazy is True: call `await self.load_session()` first"
            )
        if context.cookie_values:
            prepare, method = self._session_user_on_the_stack()
            if prepare is not None or method is None:
                raise SessionNotLoadedError(
                    f"{name} used the session before SessionMixin.prepare() loaded it: "
                    f"call `await super().prepare()` first in {prepare or name + '.prepare'}(), "
                    "before anything that uses the session (self.session, or a current_user "
                    "read from it), or `await self.load_session()` before that use"
                )
            if method.rpartition(".")[2].upper() in self.SUPPORTED_METHODS:
                raise SessionNotLoadedError(
                    f"{name} used the session in {method}(), but SessionMixin.prepare() "
                    f"never loaded it: {type(self).prepare.__qualname__}() must call "
                    "`await super().prepare()`, first"
                )
            raise SessionNotLoadedError(
                f"{name} used the session in {method}(), before SessionMixin.prepare() "
                "loaded it: use it in prepare() after `await super().prepare()`, or in the "
                "handler method, or `await self.load_session()` before that use"
            )
        return context.start_new()

    def _session_user_on_the_stack(self) -> tuple[str | None, str | None]:
        """Which of the handler's methods used the session: its running ``prepare()``, if any.

        Returns the qualified names of the handler's ``prepare()`` on the
        stack and of the innermost method of the handler there (outside this
        module).  The ``prepare()`` to change may be a base class's, and the
        use may be elsewhere (``initialize()``): the error names the one to
        change.  Walked only on that error's path, so it costs nothing else.
        """
        method: str | None = None
        frame: types.FrameType | None = sys._getframe(1)
        while frame is not None:
            code = frame.f_code
            if code.co_filename != __file__ and frame.f_locals.get("self") is self:
                if code.co_name == "prepare":
                    return code.co_qualname, method or code.co_qualname
                method = method or code.co_qualname
            frame = frame.f_back
        return None, method

    # -- what the handler can do --------------------------------------------------

    async def regenerate_session(self) -> None:
        """Keep the session's data under a new id; destroy the old record.

        Call it after login (and any change of privilege) so that an id an
        attacker planted before the login is worth nothing after it.
        """
        context = self._session_context()
        await context.load()
        context.regenerate()
        context.touched = True

    async def destroy_session(self) -> None:
        """Destroy the session: its store record is deleted and its cookie expired."""
        context = self._session_context()
        await context.load()
        context.destroy()
        context.touched = True

    async def commit_session(self) -> None:
        """Commit the session now (needed when ``auto_commit=False``)."""
        context = self._session_ctx
        if context is None or context.session is None:
            return
        commit = context.commit(
            status=self.get_status(), save=self.session_save, headers_sent=self._headers_written
        )
        self._send_session_cookie(commit.value if type(commit) is Ready else await commit)

    # -- flash messages -------------------------------------------------------------

    def flash(self, message: str, category: str = "info") -> None:
        """Keep ``message`` for the next page that shows flash messages, once.

        The usual place is just before a redirect: ``self.flash("Saved.")``,
        then ``self.redirect(...)``; the page redirected to shows it with
        `get_flashed_messages`.  ``category`` is a word of your choosing
        (``"info"``, ``"error"``...) that pages can filter on or style by.

        A visitor who has a session keeps the messages in it (under the key
        ``"_flashes"``); one who has none keeps them in a small signed cookie
        of their own, the session cookie's name plus ``.flash``, so that a
        flash never stores a session for a visitor who has none.  At most
        `flash_max` wait, the oldest dropped first.  Like a session change,
        it is sent at the end of the response: call it before ``flush()``.
        """
        context = self._session_ctx or self._session_context()
        flashes = self._flashes(context)
        if flashes.add(self._flash_session(context), message, category, limit=self.flash_max):
            context.touched = True

    def get_flashed_messages(
        self, with_categories: bool = False, category_filter: Iterable[str] = ()
    ) -> list[Any]:
        """Return the flash messages waiting for this page, oldest first; they are then gone.

        Messages are strings, or ``(category, message)`` pairs with
        ``with_categories=True``.  ``category_filter`` keeps only the messages
        of those categories.  Every waiting message is taken at the first
        call, whatever the filter (as in Flask), and later calls in the same
        request see the same messages, so a page can show its errors and its
        notices in two places::

            {% for text in handler.get_flashed_messages(category_filter=["error"]) %}

        A response that shows them varies on the cookie (``Vary: Cookie``).
        """
        if isinstance(category_filter, str):
            raise TypeError(
                "get_flashed_messages() takes category_filter as a list of categories, "
                f"such as [{category_filter!r}], not a str"
            )
        context = self._session_ctx or self._session_context()
        messages = self._flashes(context).take(self._flash_session(context))
        context.touched = True
        wanted = set(category_filter)
        if wanted:
            messages = [item for item in messages if item[0] in wanted]
        if with_categories:
            return [(category, text) for category, text in messages]
        return [text for _, text in messages]

    def _flashes(self, context: SessionContext) -> Flashes:
        flashes: Flashes | None = context.flashes
        if flashes is None:
            name = context.config.flash_cookie
            header = self.request.headers.get("Cookie", "")
            values = _cookie_values(header, name) if name in header else ()
            flashes = context.flashes = Flashes(context.config, values)
        return flashes

    def _flash_session(self, context: SessionContext) -> Session | None:
        """The loaded session; ``None`` for a visitor without a session cookie."""
        session = context.session
        if session is None and context.cookie_values:  # not loaded: say what to do
            session = self._session_unloaded(context)
        return session

    def _send_flash_cookie(self, flashes: Flashes) -> None:
        update = flashes.cookie_update()
        if update is None:
            return
        config = application_config(self.application)
        secure = config.options.secure
        if secure is None:
            secure = self.request.protocol == "https"
        self._add_session_header("Set-Cookie", config.flash_line.format(
            update.value, expires=_EPOCH_PLUS_A_DAY if update.max_age == 0 else update.expires,
            max_age=update.max_age, secure=secure,
        ))

    # -- finishing ------------------------------------------------------------------

    def finish(self, chunk: str | bytes | dict[str, Any] | None = None) -> Future[None]:
        """Commit the session, then finish the response (see the module's docstring)."""
        context = self._session_ctx
        if context is None:
            return super().finish(chunk)
        if context.finishing is not None:
            return context.finishing  # type: ignore[no-any-return]
        self._session_headers(context)
        if not context.needs_commit or not context.config.options.auto_commit:
            return super().finish(chunk)
        try:
            commit = context.commit(
                status=self.get_status(), save=self.session_save,
                headers_sent=self._headers_written,
            )
        except Exception:
            return self._session_commit_failed(context, sys.exc_info())
        if type(commit) is Ready:
            self._send_session_cookie(commit.value)
            return super().finish(chunk)
        # The store must be waited for.  Tornado checks _finished after
        # prepare() and after the handler method: set it now so a redirect in
        # prepare() stops the request, and clear it just before the real finish.
        self._finished = True
        future = asyncio.ensure_future(self._finish_after_commit(context, commit, chunk))
        context.finishing = future
        return future

    async def _finish_after_commit(
        self, context: SessionContext, commit: Awaitable[CookieUpdate | None], chunk: Any
    ) -> None:
        try:
            cookie = await commit
        except Exception:
            self._finished = False
            context.finishing = None
            self._session_commit_failed(context, sys.exc_info())
            return
        self._finished = False
        self._send_session_cookie(cookie)
        with contextlib.suppress(StreamClosedError):  # the client went away
            await super().finish(chunk)

    def _session_commit_failed(self, context: SessionContext, exc_info: Any) -> Future[None]:
        """Answer a failed commit: 503 for a store outage, 500 for anything else."""
        context.stopped = True
        self.log_exception(*exc_info)
        if self.request.connection is not None and self.request.connection.stream.closed():  # type: ignore[attr-defined]
            self._finished = True
        else:
            self.send_error(500, exc_info=exc_info)
        done: Future[None] = Future()
        done.set_result(None)
        return done

    def _session_headers(self, context: SessionContext) -> None:
        """``Vary: Cookie`` for a response that read the session; ``Retry-After`` for a 503."""
        if self._headers_written:
            return
        if context.touched and (
            "Vary" not in self._headers or "cookie" not in _vary_tokens(self)
        ):
            self._add_session_header("Vary", "Cookie")
        if context.outage and self.get_status() == 503:
            self.set_header("Retry-After", str(context.config.retry_after))
        flashes = context.flashes
        if flashes is not None and self.get_status() < 500 and self.session_save is not False:
            self._send_flash_cookie(flashes)

    def _send_session_cookie(self, cookie: CookieUpdate | None) -> None:
        if cookie is not None:
            self.set_session_cookie(cookie.value, max_age=cookie.max_age, expires=cookie.expires)

    def set_session_cookie(self, value: str, *, max_age: float | None,
                           expires: float | None) -> None:
        """Send the session cookie with the options' attributes.

        ``max_age`` is in seconds (``None``: a browser-session cookie) and
        ``expires`` the same moment as a timestamp; ``value=""`` with
        ``max_age=0`` deletes the cookie.  Override it together with
        `get_session_cookie` to carry the session somewhere else.

        The line is what Tornado's ``set_cookie`` writes with these attributes
        (`tornado_session.cookies.SetCookieLine`), sent with ``add_header``; a
        second commit in one response replaces it.
        """
        config = application_config(self.application)
        secure = config.options.secure
        if secure is None:
            secure = self.request.protocol == "https"
        line = config.cookie_line.format(
            value,
            expires=_EPOCH_PLUS_A_DAY if max_age == 0 else expires,
            max_age=max_age,
            secure=secure,
        )
        context = self._session_context()
        if context.cookie_line is not None:  # a second commit: this line replaces the first
            self._drop_session_cookie_line(context.cookie_line)
        context.cookie_line = line
        self._add_session_header("Set-Cookie", line)

    def _add_session_header(self, name: str, value: str) -> None:
        """``add_header``, through ``set_header`` when there is no such header yet.

        Both are Tornado's public API and check the value; ``add_header``
        checks it twice more (Tornado 6.6), which cost more than the rest of a
        session read.
        """
        if name in self._headers:
            self.add_header(name, value)
        else:
            self.set_header(name, value)

    def _drop_session_cookie_line(self, line: str) -> None:
        """Take back a ``Set-Cookie`` line this mixin added, keeping every other one."""
        kept = list(self._headers.get_list("Set-Cookie"))
        if line in kept:
            kept.remove(line)
        self.clear_header("Set-Cookie")
        for other in kept:
            self.add_header("Set-Cookie", other)

    def clear(self) -> None:
        """Reset the headers (as Tornado does for an error page), keeping the session cookie.

        Tornado keeps the cookies given to ``set_cookie`` across ``clear()``;
        the session cookie, sent with ``add_header``, is kept the same way: the
        store already holds what it names.
        """
        super().clear()
        context = self._session_ctx
        if context is not None and context.cookie_line is not None:
            self._add_session_header("Set-Cookie", context.cookie_line)

    # -- errors ----------------------------------------------------------------------

    def send_error(self, status_code: int = 500, **kwargs: Any) -> None:
        """Answer a store outage with 503 and ``Retry-After``, a refused conflict with 409.

        Anything else as Tornado does.
        """
        exc_info = kwargs.get("exc_info")
        if exc_info is not None:
            if isinstance(exc_info[1], StoreUnavailableError):
                status_code = 503
                self._session_context().outage = True
            elif isinstance(exc_info[1], SessionConflictError):
                status_code = 409
        super().send_error(status_code, **kwargs)

    def log_exception(
        self,
        typ: type[BaseException] | None,
        value: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        """Log a store outage (503) or a refused conflict (409) in one line; else as Tornado."""
        if isinstance(value, StoreUnavailableError):
            logger.warning("%s answered 503: %s", type(self).__name__, value)
            return
        if isinstance(value, SessionConflictError):
            logger.info("%s answered 409: %s", type(self).__name__, value)
            return
        super().log_exception(typ, value, tb)


def _cookie_values(header: str, name: str) -> tuple[str, ...]:
    """Every value of the cookie ``name`` in a ``Cookie`` header, in order, without quotes."""
    values = []
    for chunk in header.split(";"):
        cookie_name, sep, value = chunk.partition("=")
        if sep and cookie_name.strip() == name:
            value = value.strip()
            if len(value) > 1 and value[0] == value[-1] == '"':
                value = value[1:-1]
            values.append(value)
    return tuple(values)


def _vary_tokens(handler: tornado.web.RequestHandler) -> set[str]:
    headers = handler._headers
    return {
        token.strip().lower()
        for value in headers.get_list("Vary")
        for token in value.split(",")
    }


def application_config(application: tornado.web.Application) -> SessionConfig:
    """The application's session configuration, built (and checked) on first use."""
    config: SessionConfig | None = getattr(application, _CONFIG_ATTRIBUTE, None)
    if config is not None:
        return config
    settings = application.settings
    options = SessionOptions.coerce(settings.get("session"))
    config = SessionConfig(options, _codec(settings, options), keys=_signing_keys(settings))
    setattr(application, _CONFIG_ATTRIBUTE, config)
    return config


def _current_config(application: tornado.web.Application) -> SessionConfig:
    """`application_config`, its signing keys brought up to date with the settings.

    Changing ``cookie_secret`` or ``key_version`` in ``application.settings``
    (a new value, or a ``{version: secret}`` dict edited in place) takes
    effect at the next request: a key removed because it leaked verifies
    nothing from then on, not even a cookie it verified before.  Checked
    once per request that has a session (a comparison with a copy).
    """
    config = application_config(application)
    settings = application.settings
    secret, key_version = config.keys
    if settings.get("cookie_secret") != secret or settings.get("key_version") != key_version:
        config.use_codec(_codec(settings, config.options), keys=_signing_keys(settings))
    return config


def _signing_keys(settings: Mapping[str, Any]) -> tuple[Any, Any]:
    """A copy of the settings that signing is made from (a dict secret is copied)."""
    secret = settings.get("cookie_secret")
    return (dict(secret) if isinstance(secret, dict) else secret), settings.get("key_version")


def _codec(
    settings: Mapping[str, Any], options: SessionOptions
) -> CookieCodec | EncryptedCookieCodec:
    if options.encryption_keys is not None:
        return _encrypting(settings, options, options.encryption_keys)
    return CookieCodec(options.key, encode=options.encode, decode=options.decode,
                       **_signing(settings, options))


def _encrypting(
    settings: Mapping[str, Any], options: SessionOptions, keys: Mapping[int, str | bytes]
) -> EncryptedCookieCodec:
    """Encrypted cookies; signed ones are still read while a ``cookie_secret`` is set.

    That is the migration from signed to encrypted cookies: a user's signed
    cookie is read once and answered with an encrypted one, so nobody is
    logged out by the switch.  Remove ``cookie_secret`` (if nothing else
    needs it) once ``max_age`` has passed, and signed cookies are refused.
    """
    signed = None
    if settings.get("cookie_secret") and options.signed:
        signed = CookieCodec(options.key, **_signing(settings, options))
    return EncryptedCookieCodec(options.key, keys, signed=signed)


def _signing(settings: Mapping[str, Any], options: SessionOptions) -> dict[str, Any]:
    """Signing with the application's secret: our `Signer`, Tornado's check.

    `Signer` makes exactly Tornado's ``create_signed_value`` bytes (proven by
    ``tests/test_properties_signing.py``); verifying stays Tornado's
    ``decode_signed_value``, so a signing bug can only make cookies that fail
    verification.
    """
    if not options.signed:
        return {}
    secret = settings.get("cookie_secret")
    key_version = settings.get("key_version")
    if not secret:
        raise SessionOptionError(
            "session option signed=True needs the application setting cookie_secret "
            "(a long random str, or {version: secret} with key_version); "
            "or pass signed=False with an encode/decode that authenticates the cookie"
        )
    signer = Signer(secret, key_version=key_version, clock=options.clock)
    # The expiry travels inside the payload and is checked by the lifecycle;
    # Tornado's own timestamp check must not cut sessions at 31 days.  The
    # secret is a copy, as the signer's is: a change of the settings takes
    # effect through `_current_config`, for both at once.
    unsign = functools.partial(
        tornado.web.decode_signed_value, _signing_keys(settings)[0], max_age_days=float("inf"),
        min_version=2, clock=options.clock,
    )
    return {"sign": signer.sign, "unsign": unsign}
