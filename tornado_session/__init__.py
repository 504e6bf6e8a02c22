"""Sessions for Tornado: ``self.session`` in every handler, kept in a store or a signed cookie."""

from .errors import (
    SessionConflictError,
    SessionError,
    SessionNotLoadedError,
    StoreUnavailableError,
)
from .mixin import SessionMixin
from .options import SessionOptions
from .session import Session
from .users import UserSession

#: This release's version; the package's metadata reads it from here.
__version__ = "0.2.0"

__all__ = [
    "Session",
    "SessionConflictError",
    "SessionError",
    "SessionMixin",
    "SessionNotLoadedError",
    "SessionOptions",
    "StoreUnavailableError",
    "UserSession",
]
