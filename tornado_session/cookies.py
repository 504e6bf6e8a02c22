"""The cookie codec: a payload dict in, a cookie value out, and back.

The payload is JSON (orjson), or whatever the ``encode``/``decode`` options
make of it.  Signing is Tornado's own signed-value format (version 2, with key
versions for rotation; `SignedValues` makes and checks it), bound to the
application's secret by the mixin, so this module needs nothing from
`tornado.web`.  Every way a cookie can be bad (tampered, truncated, oversized,
not JSON, not an object) reads as ``None``: bad input is never an exception
here.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import hashlib
import hmac
import http.cookies
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from .errors import CookieTooLargeError, SessionOptionError

#: The most a browser keeps of one cookie's ``name=value`` (RFC 6265 asks for
#: at least 4096 bytes including attributes; 4093 is what browsers agree on).
MAX_COOKIE_SIZE = 4093

#: Cookie values longer than this are refused before any decoding work.
_MAX_INPUT = MAX_COOKIE_SIZE * 2

Sign = Callable[[str, bytes], bytes]
Unsign = Callable[[str, str], bytes | None]


class CookieCodec:
    """Turns payloads into cookie values and cookie values back into payloads.

    ``sign``/``unsign`` are Tornado's ``create_signed_value`` /
    ``decode_signed_value`` bound to the application's secret (``None`` for
    unsigned cookies).  ``encode``/``decode`` replace the JSON step.
    """

    __slots__ = ("_decode", "_encode", "_sign", "_unsign", "name")

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
            raw = self._unsign(self.name, value)
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


class SignedValues:
    """Tornado's signed values, version 2: `sign` and `unsign` for one secret.

    ``secret`` is a str, or ``{key_version: secret}`` with ``key_version`` the
    one to sign with (every version in the dict is accepted when reading).  A
    value is byte for byte what ``tornado.web.create_signed_value(secret, name,
    value, version=2, key_version=...)`` makes, and `unsign` accepts exactly
    the values ``decode_signed_value(..., min_version=2)`` accepts: cookies
    written by either are read by the other, and key rotation works as in
    Tornado.  Tornado's timestamp is written but, as with
    ``max_age_days=inf``, not checked: the expiry inside the payload is.

    Why not Tornado's functions themselves: they cost 5 to 7 µs a call (field
    parsing in Python and a new `hmac.HMAC` object), on every request that
    carries or sets a session cookie; this is a copy of an HMAC keyed once (the
    key's pads are not hashed again) and a few slices.
    """

    __slots__ = ("_clock", "_key", "_keys", "_version_field")

    def __init__(
        self,
        secret: str | bytes | Mapping[int, str | bytes],
        *,
        key_version: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self._keys: dict[int, hmac.HMAC] | None = None
        if isinstance(secret, Mapping):
            self._keys = {version: _keyed(key) for version, key in secret.items()}
            if key_version is None or key_version not in self._keys:
                raise ValueError(f"key_version {key_version!r} is not a key of the secret dict")
            self._key = self._keys[key_version]
        else:
            self._key = _keyed(secret)
        version = str(key_version or 0).encode("ascii")
        self._version_field = b"%d:%b|" % (len(version), version)

    def sign(self, name: str, value: bytes) -> bytes:
        """Sign ``value`` for the cookie ``name``."""
        timestamp = b"%d" % int(self._clock())
        encoded = base64.b64encode(value)
        name_bytes = name.encode("utf-8")
        to_sign = b"2|%b%d:%b|%d:%b|%d:%b|" % (
            self._version_field, len(timestamp), timestamp, len(name_bytes), name_bytes,
            len(encoded), encoded,
        )
        return to_sign + _hexdigest(self._key, to_sign)

    def unsign(self, name: str, value: str) -> bytes | None:
        """The value signed in ``value`` for the cookie ``name``, or ``None``."""
        try:
            raw = value.encode("utf-8")
        except UnicodeEncodeError:
            return None
        parsed = _fields_v2(raw)
        if parsed is None:
            return None
        fields, position = parsed
        key = self._key
        if self._keys is not None:
            if not fields[0].isdigit():
                return None
            found = self._keys.get(int(fields[0]))
            if found is None:
                return None
            key = found
        expected = _hexdigest(key, raw[:position])
        if not hmac.compare_digest(raw[position:], expected):
            return None
        if fields[2] != name.encode("utf-8"):
            return None
        try:
            return base64.b64decode(fields[3])
        except (binascii.Error, ValueError):
            return None


def _fields_v2(raw: bytes) -> tuple[list[bytes], int] | None:
    """The fields of a version-2 signed value and where its signature starts.

    The fields are the key version, timestamp, name and value; ``None`` when
    ``raw`` is not a version-2 signed value.  Each field is ``length:bytes|``.
    When no field holds a ``|`` (the usual case) one split finds them all;
    otherwise they are read one by one.
    """
    if raw[:2] != b"2|":
        return None
    parts = raw.split(b"|")
    if len(parts) == 6:
        fields = []
        for part in parts[1:5]:
            length, _, data = part.partition(b":")
            if not length.isdigit() or int(length) != len(data):
                break
            fields.append(data)
        else:
            return fields, len(raw) - len(parts[5])
    fields = []
    position = 2
    for _ in range(4):
        colon = raw.find(b":", position)
        length = raw[position:colon]
        if colon < 0 or not length.isdigit():
            return None
        end = colon + 1 + int(length)
        if raw[end:end + 1] != b"|":
            return None
        fields.append(raw[colon + 1:end])
        position = end + 1
    return fields, position


def _keyed(secret: str | bytes) -> hmac.HMAC:
    """An HMAC-SHA256 keyed with ``secret`` and fed nothing: `_hexdigest` copies it."""
    return hmac.new(secret if isinstance(secret, bytes) else secret.encode("utf-8"),
                    digestmod=hashlib.sha256)


def _hexdigest(keyed: hmac.HMAC, message: bytes) -> bytes:
    mac = keyed.copy()
    mac.update(message)
    return mac.hexdigest().encode("ascii")


#: What Tornado's ``set_cookie`` refuses in a value, and in an attribute.
_CONTROL = re.compile(r"[\x00-\x20]")
_NOT_IN_ATTRIBUTE = re.compile(r"[\x00-\x20;\x7f]")
_QUOTER = http.cookies.SimpleCookie()
_PRINTABLE = [chr(code) for code in range(33, 127)]
#: The characters `http.cookies` writes without quotes, and those it puts between
#: quotes as they are: asked, not assumed, as the sets have changed between
#: Python versions.
_LEGAL_CHARS = "".join(char for char in _PRINTABLE if _QUOTER.value_encode(char)[1] == char)
_AS_IS_CHARS = "".join(
    char for char in _PRINTABLE if _QUOTER.value_encode(" " + char)[1] == f'" {char}"'
)
_LEGAL_VALUE = re.compile(f"[{re.escape(_LEGAL_CHARS)}]+")
_QUOTED_AS_IS = re.compile(f"[{re.escape(_AS_IS_CHARS)}]*")


class SetCookieFormat:
    """``Set-Cookie`` lines of one cookie, as Tornado's ``set_cookie`` writes them.

    The result is character for character what ``RequestHandler.set_cookie(name,
    value, domain=..., expires=..., path=..., max_age=..., httponly=...,
    secure=..., samesite=...)`` followed by `http.cookies.Morsel.OutputString`
    gives (tests compare the two), for a small part of the cost: the attributes
    that never change are joined once, the date is formatted once a second,
    and no `~http.cookies.Morsel` is filled attribute by attribute.
    """

    __slots__ = ("_date", "_date_second", "_domain", "_name", "_tail_flags")

    def __init__(
        self, name: str, *, domain: str | None = None, path: str | None = "/",
        httponly: bool = True, samesite: str | None = "Lax",
    ) -> None:
        for option, text in (("key", name), ("domain", domain), ("path", path),
                             ("samesite", samesite)):
            if text is not None and _NOT_IN_ATTRIBUTE.search(text):
                raise SessionOptionError(
                    f"session option {option}={text!r} is invalid; a cookie attribute "
                    "cannot hold control characters, spaces or ';'"
                )
        self._name = name
        self._domain = f"; Domain={domain}" if domain else ""
        tail = []  # the attributes after Max-Age, in Morsel's (sorted) order
        if path:
            tail.append(f"Path={path}")
        if samesite:
            tail.append(f"SameSite={samesite}")
        self._tail_flags = (
            ("; HttpOnly" if httponly else ""),
            "".join("; " + part for part in tail),
        )
        self._date_second = -1
        self._date = ""

    def line(
        self, value: str, *, expires: float | None, max_age: float | None, secure: bool
    ) -> str:
        """The header line for ``value``: the cookie and its attributes.

        ``max_age`` of ``0`` or ``None`` writes no ``Max-Age`` (as Tornado);
        ``expires`` is epoch seconds.  Raises `ValueError` for a value with
        control characters or spaces, as ``set_cookie`` does.
        """
        if _QUOTED_AS_IS.fullmatch(value):  # a signed value: base64 may add "=", "/", "+"
            coded = value if value and _LEGAL_VALUE.fullmatch(value) else f'"{value}"'
        elif _CONTROL.search(value):
            raise ValueError(f"Invalid cookie {self._name!r}: {value!r}")
        else:
            coded = _QUOTER.value_encode(value)[1]
        httponly, tail = self._tail_flags
        parts = [self._name, "=", coded, self._domain]
        if expires:
            parts += ("; expires=", self._format_date(expires))
        parts.append(httponly)
        if max_age:
            parts += ("; Max-Age=", str(int(max_age)))
        parts.append(tail)
        if secure:
            parts.append("; Secure")
        return "".join(parts)

    def _format_date(self, timestamp: float) -> str:
        second = int(timestamp)
        if second != self._date_second or timestamp - second >= 0.999:
            # (near a second's end the formatter may round up: format it anew)
            self._date = email.utils.formatdate(timestamp, usegmt=True)
            self._date_second = second if timestamp - second < 0.999 else -1
        return self._date
