"""Sessions for Tornado: ``self.session`` in every handler, kept in a store or a signed cookie."""

from .errors import SessionError, SessionNotLoadedError, StoreUnavailableError
from .mixin import SessionMixin
from .options import SessionOptions
from .session import Session
from .users import UserSession

__all__ = [
    "Session",
    "SessionError",
    "SessionMixin",
    "SessionNotLoadedError",
    "SessionOptions",
    "StoreUnavailableError",
    "UserSession",
]
