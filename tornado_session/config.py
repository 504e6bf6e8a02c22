"""The per-application part of sessions: options, the cookie codec, verified cookies.

`SessionConfig` is built once per application (by the mixin, from the
application's settings) and shared by every request's
`~tornado_session.lifecycle.SessionContext`.  It reads session cookies:
`SessionConfig.read_cookie` turns a cookie value into its checked fields and
remembers the values that verified, so a returning cookie costs one lookup.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, NamedTuple

from . import serializers
from ._checks import is_seconds
from .cookies import CookieCodec, SetCookieLine

if TYPE_CHECKING:
    from .crypto import EncryptedCookieCodec
from .errors import SessionError
from .options import SessionOptions

#: How many verified cookie values an application remembers (see `SessionConfig.read_cookie`).
COOKIE_MEMORY = 2048

#: The longest session id a cookie may carry (``genid`` may make its own).
MAX_ID_LENGTH = 256


class CookiePayload(NamedTuple):
    """The fields of a verified session cookie, as `SessionConfig.read_cookie` remembers them."""

    #: Server-side expiry (epoch seconds).
    expires: float
    #: The session's own ``max_age`` (``None``: a browser-session cookie).
    max_age: float | None
    #: Store sessions: the session id, and the store key made from it.
    session_id: str | None
    store_key: str | None
    #: Cookie sessions: the data as canonical JSON (a fresh dict is decoded per request).
    data: bytes | None
    #: When the session began (``absolute_max_age``), if the cookie says.
    created: float | None = None
    #: Not in the codec's current form (an older key, or a signed cookie being
    #: migrated to encryption): the lifecycle writes it again.
    stale: bool = False


class SessionConfig:
    """The per-application part: options, the cookie codec, and the cookies it verified.

    Built once per application (the mixin keeps it on the application).
    ``cookie_line`` writes the ``Set-Cookie`` line (for the mixin).
    """

    __slots__ = ("_cookies", "_flash_codec", "_flash_line", "codec", "cookie_line", "keys",
                 "options", "retry_after")

    def __init__(
        self, options: SessionOptions, codec: CookieCodec | EncryptedCookieCodec, *,
        keys: Any = None,
    ) -> None:
        self.options = options
        self.codec = codec
        #: What ``codec`` signs with (the mixin compares it with the application's settings).
        self.keys = keys
        self.cookie_line = SetCookieLine(
            options.key, domain=options.domain, path=options.path, httponly=options.httponly,
            samesite=options.samesite,
        )
        #: ``Retry-After`` seconds for a 503 caused by a store outage.
        self.retry_after = max(1, math.ceil(options.reconnect_timeout))
        self._cookies: dict[str, CookiePayload] = {}
        self._flash_codec: CookieCodec | EncryptedCookieCodec | None = None
        self._flash_line: SetCookieLine | None = None

    def use_codec(self, codec: CookieCodec | EncryptedCookieCodec, *, keys: Any) -> None:
        """Sign and verify with ``codec`` from now on; forget what the old one verified.

        Called when the signing keys change: a cookie verified with a key that
        is gone must not be accepted from memory.
        """
        self.codec = codec
        self.keys = keys
        self._cookies = {}
        self._flash_codec = None

    @property
    def flash_cookie(self) -> str:
        """The name of the cookie that carries the flash messages of a visitor without a session."""
        return self.options.key + ".flash"

    @property
    def flash_codec(self) -> CookieCodec | EncryptedCookieCodec:
        """The codec of the flash cookie: the session's signing (or encryption), under its name."""
        codec = self._flash_codec
        if codec is None:
            codec = self._flash_codec = self.codec.renamed(self.flash_cookie)
        return codec

    @property
    def flash_line(self) -> SetCookieLine:
        """Writes the flash cookie's ``Set-Cookie`` line, with the session cookie's attributes."""
        line = self._flash_line
        if line is None:
            options = self.options
            line = self._flash_line = SetCookieLine(
                self.flash_cookie, domain=options.domain, path=options.path,
                httponly=options.httponly, samesite=options.samesite,
            )
        return line

    def read_cookie(self, value: str) -> CookiePayload | None:
        """The fields of a cookie value that is ours and untampered, else ``None``.

        A browser sends the same cookie on every request until the session
        changes, so the fields of the last `COOKIE_MEMORY` values that passed
        the codec (Tornado's signature check) are remembered, keyed by the
        whole value: a returning cookie costs one dict lookup, not an HMAC, a
        JSON decode and a SHA-256.  Only values that verified are remembered,
        so garbage cannot fill the memory; the expiry in them is checked on
        every request by the caller.
        """
        payload = self._cookies.get(value)
        if payload is None:
            payload = self._parse_cookie(value)
            if payload is not None:
                cookies = self._cookies
                if len(cookies) >= COOKIE_MEMORY:
                    del cookies[next(iter(cookies))]
                cookies[value] = payload
        return payload

    def _parse_cookie(self, value: str) -> CookiePayload | None:
        fields = _payload_fields(self.codec.loads(value), store=self.options.store is not None)
        if fields is None:
            return None
        expires, max_age, body, created = fields
        stale = not self.codec.is_current(value)
        if isinstance(body, str):
            store_key = self.store_key(body)
            return CookiePayload(expires, max_age, body, store_key, None, created, stale)
        try:
            data = serializers.dumps(body)
        except SessionError:  # (a custom decode can give anything)
            return None
        return CookiePayload(expires, max_age, None, None, data, created, stale)

    def store_key(self, session_id: str) -> str:
        """The store key of a session id: the prefix and a hash, never the id itself."""
        return self.options.prefix + serializers.hash_session_id(session_id)


def _payload_fields(
    payload: dict[str, Any] | None, *, store: bool
) -> tuple[float, float | None, dict[str, Any] | str, float | None] | None:
    """Check a decoded cookie payload's shape; ``None`` when it is not ours."""
    if payload is None:
        return None
    expires: Any = payload.get("e")
    max_age: Any = payload.get("m")
    created: Any = payload.get("c")
    if not is_seconds(expires) or (max_age is not None and not is_seconds(max_age)):
        return None
    if created is not None and not is_seconds(created):
        return None
    if store:
        body: Any = payload.get("i")
        if not isinstance(body, str) or not 0 < len(body) <= MAX_ID_LENGTH:
            return None
    else:
        body = payload.get("d")
        if not isinstance(body, dict):
            return None
    return float(expires), max_age, body, created
