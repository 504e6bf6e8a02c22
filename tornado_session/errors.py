"""The exception types of tornado-session.

Every error this package raises derives from `SessionError`, so an application
catches ours and never a database driver's.
"""

from __future__ import annotations


class SessionError(Exception):
    """Base class of every error raised by tornado-session."""


class SessionOptionError(SessionError, TypeError, ValueError):
    """A session option has a wrong name, type or value.

    Raised when `SessionOptions` is built, or when an application's ``session``
    setting (a dict) or ``cookie_secret`` is first read: by
    ``SessionMixin.configure_application(app)`` at start-up, else by the first
    request that needs the session.  The message names the option, the value
    given and what is accepted.  It is both a `TypeError` and a `ValueError` so
    that code written against either keeps working.
    """


class StoreUnavailableError(SessionError):
    """The store's backend cannot be reached.

    Raised by a store when its server does not answer (connection refused,
    time-out, server selection failure) and by the lifecycle when a store stayed
    disconnected for longer than ``reconnect_timeout``.  `SessionMixin` answers
    such a request with ``503 Service Unavailable`` and a ``Retry-After`` header,
    never by silently starting a new session.
    """


class SessionNotLoadedError(SessionError):
    """``handler.session`` was touched before the session was loaded.

    With lazy loading (``lazy=True``, or the handler's ``session_lazy = True``)
    a handler must ``await self.load_session()`` before it reads or writes
    ``self.session``.  Otherwise ``SessionMixin.prepare()`` loads it: a
    handler's own ``prepare()`` must ``await super().prepare()`` before it uses
    the session.  The message names the handler and what to change.
    """


class SessionConflictError(SessionError):
    """A parallel request changed keys this request changed too (``on_conflict="fail"``).

    The store wrote nothing of this request; `SessionMixin` answers it with
    ``409 Conflict``.  The message and `keys` name the keys, never their values.
    """

    def __init__(self, message: str, keys: tuple[str, ...]) -> None:
        super().__init__(message)
        #: The session keys whose stored value changed after this request loaded them.
        self.keys = keys


class SessionSerializationError(SessionError, TypeError):
    """A session value cannot be serialised to JSON.

    The message names the top-level key that holds the value, so the bug can be
    found without a debugger.  Nothing is written when this is raised: what the
    store held before the request is untouched.
    """

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        #: The top-level session key whose value could not be serialised.
        self.key = key


class CookieTooLargeError(SessionError):
    """A cookie session grew past what browsers store (4093 bytes).

    Browsers drop such a cookie without a word, which would lose the session;
    the commit fails loudly instead.  Keep less in the session, or use a store.
    """

    def __init__(self, message: str, size: int) -> None:
        super().__init__(message)
        #: The size in bytes the ``name=value`` pair would have had.
        self.size = size
