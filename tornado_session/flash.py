"""Flash messages: a message for the next page, shown once.

Where a message waits depends on the visitor, so that a flash never creates a
stored session on its own:

- a visitor who has a session (one that was loaded, or a new one the request
  put data in, a login say) keeps the messages in it, under `FLASH_KEY`;
- a visitor who has none keeps them in a small cookie of its own (the session
  cookie's name plus ``.flash``), signed like the session cookie, with its
  expiry inside, and living `FLASH_COOKIE_MAX_AGE` seconds at most.  No store
  is touched and no session cookie is sent, however often it happens.  Once
  the visitor has a session, the next flash moves the cookie's messages into
  it (and expires the cookie): the messages are in one place again.

Reading the messages takes them all, from both places, and they are gone:
the session key is removed, the cookie expired.  At most the limit the
handler gives (`tornado_session.SessionMixin.flash_max`) are kept, the oldest
dropped first.

This module knows nothing of Tornado: the mixin hands `Flashes` the flash
cookie's values and sends the cookie it asks for (`Flashes.cookie_update`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._checks import is_seconds
from .config import SessionConfig
from .errors import CookieTooLargeError
from .lifecycle import CookieUpdate
from .session import Session

#: The session key that holds the flash messages of a visitor who has a session.
FLASH_KEY = "_flashes"

#: How long, in seconds, the flash cookie of a visitor without a session keeps
#: messages that were not shown: long enough for a redirect, and for a page
#: left open a while, not for a message to greet a visitor the next day.
FLASH_COOKIE_MAX_AGE = 600

#: A message and its category, as they are kept (JSON has no tuples).
Message = list[str]


def _messages(value: Any) -> list[Message]:
    """The well-formed ``[category, message]`` pairs of a stored list (anything else: none)."""
    if not isinstance(value, list):
        return []
    return [
        [item[0], item[1]] for item in value
        if isinstance(item, list) and len(item) == 2
        and isinstance(item[0], str) and isinstance(item[1], str)
    ]


class Flashes:
    """The flash messages of one request (its `~tornado_session.lifecycle.SessionContext` has it).

    ``cookie_values`` are the values of the flash cookie the request carried.
    """

    __slots__ = ("_changed", "_config", "_cookie_values", "_held", "_taken", "_value")

    def __init__(self, config: SessionConfig, cookie_values: Sequence[str]) -> None:
        self._config = config
        self._cookie_values = tuple(filter(None, cookie_values))
        #: What the visitor's flash cookie holds: the request's, then as this request left it.
        self._held: list[Message] | None = None
        #: This request changed the flash cookie (`cookie_update` sends it, or expires it).
        self._changed = False
        #: The flash cookie's new value, when it holds messages.
        self._value = ""
        #: What `take` gave, once called: a second call gives the same.
        self._taken: list[Message] | None = None

    def add(self, session: Session | None, message: str, category: str, *, limit: int) -> bool:
        """Keep ``message`` for the next page: in the visitor's session, else the cookie.

        ``session`` is the request's session, if it has one loaded.  The
        visitor has a session when it was loaded from a cookie, or is new and
        holds data that the request will save (a login): only then does the
        message go into it, together with the messages the cookie held.  A
        new, empty session stays empty: a session record, or a session cookie,
        must not exist only for a flash.  Returns whether the session was
        used.  Raises `CookieTooLargeError` when the message alone does not
        fit in a cookie.
        """
        if not isinstance(message, str) or not isinstance(category, str):
            raise TypeError(
                f"flash() takes a str message and category, not {type(message).__name__} "
                f"and {type(category).__name__}"
            )
        held = self._cookie_messages()
        if session is None or (session.is_new and not len(session)):
            self._hold([*held, [category, message]][-limit:])
            return False
        session[FLASH_KEY] = [*held, *_messages(session.get(FLASH_KEY)),
                              [category, message]][-limit:]
        if held or self._cookie_values:
            self._hold([])
        return True

    def take(self, session: Session | None) -> list[Message]:
        """Every message waiting for this page, oldest first; they are then gone.

        A second call in the same request gives the same messages (and none
        flashed since: those are for the next page).
        """
        if self._taken is not None:
            return self._taken
        messages = list(self._cookie_messages())
        if messages or self._cookie_values:
            self._hold([])
        if session is not None and FLASH_KEY in session:
            messages += _messages(session.pop(FLASH_KEY))
        self._taken = messages
        return messages

    def cookie_update(self) -> CookieUpdate | None:
        """The flash cookie to send at the end of the request, or ``None`` to leave it as it is."""
        if not self._changed:
            return None
        if self._held:
            return CookieUpdate(self._value, FLASH_COOKIE_MAX_AGE,
                                self._config.options.clock() + FLASH_COOKIE_MAX_AGE)
        return CookieUpdate("", 0, 0) if self._cookie_values else None

    def _hold(self, messages: list[Message]) -> None:
        """Make ``messages`` what the flash cookie holds after this request."""
        self._value = self._encode(messages) if messages else ""
        self._held = messages
        self._changed = True

    def _cookie_messages(self) -> list[Message]:
        """The messages the flash cookie holds now: the request's, as this request left them."""
        if self._held is None:
            self._held = self._read_cookie()
        return self._held

    def _read_cookie(self) -> list[Message]:
        """The messages of the first flash cookie value that verifies and has not expired."""
        codec = self._config.flash_codec
        now = self._config.options.clock()
        for value in self._cookie_values[:4]:
            payload = codec.loads(value)
            if payload is None:
                continue
            expires: Any = payload.get("e")
            if is_seconds(expires) and expires > now:
                return _messages(payload.get("f"))
        return []

    def _encode(self, messages: list[Message]) -> str:
        """The flash cookie's value for ``messages``, dropping the oldest until it fits."""
        codec = self._config.flash_codec
        expires = round(self._config.options.clock() + FLASH_COOKIE_MAX_AGE, 3)
        while True:
            try:
                return codec.dumps({"f": messages, "e": expires})
            except CookieTooLargeError:
                if len(messages) <= 1:
                    raise
                del messages[0]
