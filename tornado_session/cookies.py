"""The cookie codec: a payload dict in, a cookie value out, and back.

The payload is JSON (orjson), or whatever the ``encode``/``decode`` options
make of it.  Signing is Tornado's own signed values (version 2, with key
versions for rotation); the functions that do it are handed in by the mixin,
so this module needs nothing from `tornado.web`.  Every way a cookie can be
bad (tampered, truncated, oversized, not JSON, not an object) reads as
``None``: bad input is never an exception here.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any

import orjson

from .errors import CookieTooLargeError

#: The most a browser keeps of one cookie's ``name=value`` (RFC 6265 asks for
#: at least 4096 bytes including attributes; 4093 is what browsers agree on).
MAX_COOKIE_SIZE = 4093

#: Cookie values longer than this are refused before any decoding work.
_MAX_INPUT = MAX_COOKIE_SIZE * 2

#: How many verified signed values a codec remembers (about 1 MB at most).
VERIFIED_MEMORY = 2048

Sign = Callable[[str, bytes], bytes]
Unsign = Callable[[str, str], bytes | None]


class CookieCodec:
    """Turns payloads into cookie values and cookie values back into payloads.

    ``sign``/``unsign`` are Tornado's ``create_signed_value`` /
    ``decode_signed_value`` bound to the application's secret (``None`` for
    unsigned cookies).  ``encode``/``decode`` replace the JSON step.

    A browser sends the same cookie on every request until the session changes,
    so the codec remembers the last `VERIFIED_MEMORY` values whose signature
    Tornado accepted, keyed by the whole value, and skips the HMAC for them.
    Only values that verified are remembered (garbage cannot fill the memory),
    and the secret cannot change under a codec: the mixin builds one per
    application.
    """

    __slots__ = ("_decode", "_encode", "_sign", "_unsign", "_verified", "name")

    def __init__(
        self,
        name: str,
        *,
        sign: Sign | None = None,
        unsign: Unsign | None = None,
        encode: Callable[[dict[str, Any]], str | bytes] | None = None,
        decode: Callable[[str], dict[str, Any]] | None = None,
    ) -> None:
        self.name = name
        self._sign = sign
        self._unsign = unsign
        self._encode = encode
        self._decode = decode
        self._verified: dict[str, bytes] = {}

    def dumps(self, payload: dict[str, Any]) -> str:
        """Return the cookie value for ``payload``.

        Raises `CookieTooLargeError` when ``name=value`` would pass
        `MAX_COOKIE_SIZE`: a browser would drop it silently and lose the session.
        """
        raw = self._encode_payload(payload)
        if self._sign is not None:
            value = self._sign(self.name, raw).decode("ascii")
        elif self._encode is None:
            value = base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
        else:
            value = raw.decode("utf-8")
        size = len(self.name) + 1 + len(value)
        if size > MAX_COOKIE_SIZE:
            raise CookieTooLargeError(
                f"the session cookie {self.name!r} would be {size} bytes, more than the "
                f"{MAX_COOKIE_SIZE} bytes browsers keep; store less in the session or use a store",
                size=size,
            )
        return value

    def loads(self, value: str) -> dict[str, Any] | None:
        """Return the payload in a cookie value, or ``None`` if it is not a valid one."""
        if not value or len(value) > _MAX_INPUT:
            return None
        raw: bytes | None
        if self._unsign is not None:
            raw = self._verified.get(value)
            if raw is None:
                raw = self._unsign(self.name, value)
                if raw is not None:
                    self._remember(value, raw)
        elif self._encode is None:
            raw = _b64url_decode(value)
        else:
            raw = value.encode("utf-8", "surrogateescape")
        if raw is None:
            return None
        try:
            payload = (
                orjson.loads(raw)
                if self._decode is None
                else self._decode(raw.decode("utf-8", "strict"))
            )
        except Exception:  # any decoder's error means "not a cookie of ours"
            return None
        return payload if isinstance(payload, dict) else None

    def _remember(self, value: str, raw: bytes) -> None:
        """Keep a verified value, forgetting the oldest past `VERIFIED_MEMORY`."""
        verified = self._verified
        if len(verified) >= VERIFIED_MEMORY:
            del verified[next(iter(verified))]
        verified[value] = raw

    def _encode_payload(self, payload: dict[str, Any]) -> bytes:
        if self._encode is None:
            return orjson.dumps(payload)
        encoded = self._encode(payload)
        return encoded.encode("utf-8") if isinstance(encoded, str) else encoded


def _b64url_decode(value: str) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        return None
