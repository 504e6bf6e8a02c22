"""The cookie codec: a payload dict in, a cookie value out, and back.

The payload is JSON (orjson), or whatever the ``encode``/``decode`` options
make of it.  Signing is Tornado's own signed values (version 2, with key
versions for rotation): `Signer` makes them, byte for byte as Tornado's
``create_signed_value`` does, and Tornado's ``decode_signed_value`` checks
them; both are handed in by the mixin, so this module needs nothing from
`tornado.web`.  `SetCookieLine` writes the ``Set-Cookie`` line Tornado's
``set_cookie`` would write.  Every way a cookie can be bad (tampered,
truncated, oversized, not JSON, not an object) reads as ``None``: bad input is
never an exception here.
"""

from __future__ import annotations

import binascii
import email.utils
import hmac
import http.cookies
import math
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
    ``decode_signed_value`` bound to the application's secret; ``sign`` may
    be a `Signer`'s `~Signer.sign`, which makes the same bytes faster.
    ``encode``/``decode`` replace the JSON step.  Without ``sign`` the cookie
    is what ``encode`` makes, as it is: a codec that neither signs nor has an
    ``encode`` of its own (which must then authenticate) is refused, as
    `SessionOptions` refuses ``signed=False`` alone.
    (The values that verified are remembered a level up, with their parsed
    fields: `tornado_session.config.SessionConfig.read_cookie`.)
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
        if sign is None and encode is None:
            raise SessionOptionError(
                f"CookieCodec({name!r}): an unsigned cookie needs encode/decode that "
                "authenticate it; without them it is whatever the client sends"
            )
        self.name = name
        self._sign = sign
        self._unsign = unsign
        self._encode = encode
        self._decode = decode

    def renamed(self, name: str) -> CookieCodec:
        """A codec for the cookie ``name``, signing and encoding as this one does.

        The signature covers the name, so a value made for one cookie never
        verifies as the other's.
        """
        return CookieCodec(name, sign=self._sign, unsign=self._unsign, encode=self._encode,
                           decode=self._decode)

    def dumps(self, payload: dict[str, Any]) -> str:
        """Return the cookie value for ``payload``.

        Raises `CookieTooLargeError` when ``name=value`` would pass
        `MAX_COOKIE_SIZE`: a browser would drop it silently and lose the session.
        """
        raw = self._encode_payload(payload)
        if self._sign is not None:
            value = self._sign(self.name, raw).decode("ascii")
        else:
            value = raw.decode("utf-8")
        size = len(self.name) + 1 + len(value)
        if size > MAX_COOKIE_SIZE:
            raise CookieTooLargeError(
                f"the cookie {self.name!r} would be {size} bytes, more than the "
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

    def is_current(self, value: str) -> bool:
        """Whether ``value`` is in the form this codec writes: signed cookies always are.

        (An encrypted codec answers ``False`` for a value under an older key,
        or a signed one it migrates; the lifecycle then writes it again.)
        """
        return True

    def _encode_payload(self, payload: dict[str, Any]) -> bytes:
        if self._encode is None:
            return orjson.dumps(payload)
        encoded = self._encode(payload)
        return encoded.encode("utf-8") if isinstance(encoded, str) else encoded


class Signer:
    """Makes Tornado's signed values (version 2) with one application's secret.

    ``secret`` and ``key_version`` are the application's ``cookie_secret`` and
    ``key_version`` settings: a str or bytes secret (``key_version`` is then
    ignored, as `tornado.web.RequestHandler` ignores it), or ``{version:
    secret}`` with ``key_version`` the version that signs.  ``clock`` gives
    the timestamp written into each value.

    ``signer.sign(name, value)`` returns exactly what
    ``tornado.web.create_signed_value(secret, name, value, version=2,
    key_version=..., clock=clock)`` returns, so Tornado's
    ``decode_signed_value`` reads it (``tests/test_properties_signing.py``
    compares the two byte for byte).  It is here for speed: Tornado keys a new
    HMAC and formats every field on each call; a `Signer` keys its HMAC once
    and signs a copy of it, and joins the fields before the value once per
    second and cookie name.

    Raises `SessionOptionError` at once for a dict secret that has no
    ``key_version`` key (Tornado fails at the first signature instead).
    """

    __slots__ = ("_clock", "_head", "_key_field", "_mac", "_name", "_second")

    def __init__(
        self,
        secret: str | bytes | Mapping[int, str | bytes],
        *,
        key_version: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if isinstance(secret, str | bytes):
            key, key_version = secret, None
        elif key_version is not None and key_version in secret:
            key = secret[key_version]
        else:
            raise SessionOptionError(
                f"the application setting key_version={key_version!r} is not a key of "
                f"cookie_secret (versions: {sorted(secret)})"
            )
        #: HMAC-SHA256 keyed with the signing secret: each value signs a copy.
        self._mac = hmac.new(_utf8(key), digestmod="sha256")
        #: Gives the timestamp of each value (`time.time`, or a test's fake clock).
        self._clock = clock
        #: The format version and the key version: ``2|1:0|`` for a single secret.
        self._key_field = b"2|" + _field(str(key_version or 0))
        #: The second and cookie name that `_head` was joined for.
        self._second: int | None = None
        self._name: str | None = None
        #: Every field before the value's: version, key version, timestamp, name.
        self._head = b""

    def sign(self, name: str, value: str | bytes) -> bytes:
        """Return ``value`` signed and timestamped for the cookie ``name``."""
        head = self._fields(name)  # first: Tornado reads the clock first
        encoded = binascii.b2a_base64(_utf8(value), newline=False)
        to_sign = b"%b%d:%b|" % (head, len(encoded), encoded)
        mac = self._mac.copy()
        mac.update(to_sign)
        return to_sign + mac.hexdigest().encode("ascii")

    def _fields(self, name: str) -> bytes:
        """The fields before the value's, joined anew when the second or the name changes."""
        second = int(self._clock())
        if second != self._second or name != self._name:
            head = self._key_field + _field(b"%d" % second) + _field(name)
            self._second, self._name, self._head = second, name, head
        return self._head


def _utf8(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


def _field(text: str | bytes) -> bytes:
    """A field of Tornado's signed values: ``length:text|``.

    As in Tornado, the length of a str is counted in characters, not in the
    bytes written: a name with non-ASCII characters makes a value that
    Tornado's ``decode_signed_value`` cannot read back.
    """
    return b"%d:%b|" % (len(text), _utf8(text))


#: What Tornado's ``set_cookie`` refuses in a value (`ValueError`), and in the
#: name and other attributes (`http.cookies.CookieError`).
_BAD_VALUE = re.compile(r"[\x00-\x20]")
_BAD_ATTRIBUTE = re.compile(r"[\x00-\x20;\x7f]")

#: Quotes values as `http.cookies` does when Tornado sets a cookie.
_QUOTER = http.cookies.SimpleCookie()


def _plain_characters() -> tuple[str, str]:
    """The characters `http.cookies` writes as they are, bare and between quotes.

    Asked of the running Python rather than assumed, as `http.cookies` may
    change them (the Feb 2026 security releases added checks to
    `http.cookies.Morsel.set`); only printable ASCII is asked about, any other
    character sends the value through `http.cookies` itself.
    """
    bare, quoted = [], []
    for char in map(chr, range(0x21, 0x7F)):
        coded = _QUOTER.value_encode(char)[1]
        try:
            http.cookies.Morsel[str]().set("k", char, coded)
        except http.cookies.CookieError:
            continue
        if coded == char:
            bare.append(char)
        if coded in (char, f'"{char}"'):
            quoted.append(char)
    return "".join(bare), "".join(quoted)


_BARE, _QUOTED_BARE = _plain_characters()
#: Whether `http.cookies` writes a value as it is, or as it is between quotes.
_is_bare = re.compile(f"[{re.escape(_BARE)}]+").fullmatch
_is_quoted_bare = re.compile(f"[{re.escape(_QUOTED_BARE)}]*").fullmatch

#: How far into its second a timestamp may be for that second's date to serve:
#: `datetime` rounds to the microsecond, half to even, so ``x.9999996`` is
#: already written as second ``x + 1``.
_SAME_SECOND = 0.999999


class SetCookieLine:
    """The ``Set-Cookie`` line of one cookie, as Tornado's ``set_cookie`` writes it.

    Built once per application from the attributes that never change;
    ``line.format(value, expires=..., max_age=..., secure=...)`` returns the
    string ``RequestHandler.set_cookie(name, value, domain=domain,
    expires=expires, path=path, max_age=max_age, httponly=httponly,
    secure=secure, samesite=samesite)`` makes `~tornado.web.RequestHandler.flush`
    send (``tests/test_properties_signing.py`` compares the two character for
    character).  Send it with ``handler.add_header("Set-Cookie", line)``.

    It is here for speed: Tornado fills an `http.cookies.Morsel` attribute by
    attribute and sorts them at every write; here the constant attributes are
    written once, the date once a second, and a value that needs no escaping
    is quoted without `http.cookies`.

    The name and attributes are checked here, with Tornado's and the
    `http.cookies.Morsel` checks: an attribute Tornado would refuse raises
    `http.cookies.CookieError` when the line is built, not at each `format`.
    """

    __slots__ = ("_date", "_date_second", "_domain", "_head", "_httponly", "_name", "_tail")

    def __init__(
        self,
        name: str,
        *,
        domain: str | None = None,
        path: str | None = "/",
        httponly: bool = False,
        samesite: str | None = None,
    ) -> None:
        _check_attributes(name, domain=domain, path=path, samesite=samesite)
        self._name = name
        #: The line's parts in `http.cookies.Morsel`'s order (sorted by attribute):
        #: ``name=``, value, Domain, expires, HttpOnly, Max-Age, Path, SameSite, Secure.
        self._head = f"{name}="
        self._domain = f"; Domain={domain}" if domain else ""
        self._httponly = "; HttpOnly" if httponly else ""
        self._tail = (f"; Path={path}" if path else "") + (
            f"; SameSite={samesite}" if samesite else ""
        )
        #: The last ``expires`` date written, and the second it is the date of.
        self._date = ""
        self._date_second: int | None = None

    def format(
        self, value: str, *, expires: float | None, max_age: float | None, secure: bool
    ) -> str:
        """Return the ``Set-Cookie`` line that sets the cookie to ``value``.

        ``expires`` is epoch seconds (Tornado's time tuples and datetimes are
        not taken) and ``max_age`` seconds, written as ``int(max_age)``; both
        are left out when ``None`` or ``0``, as Tornado leaves them out.  A
        value Tornado refuses raises what ``set_cookie`` raises: `ValueError`
        for control characters or spaces, and `http.cookies.CookieError` for
        what `http.cookies.Morsel` refuses (DEL, since the Feb 2026 security
        releases).
        """
        coded = self._coded(value)  # first: its error is the one Tornado raises first
        expires_part = f"; expires={self._expires(expires)}" if expires else ""
        max_age_part = f"; Max-Age={int(max_age)}" if max_age else ""
        secure_part = "; Secure" if secure else ""
        return (
            f"{self._head}{coded}{self._domain}{expires_part}"
            f"{self._httponly}{max_age_part}{self._tail}{secure_part}"
        )

    def _coded(self, value: str) -> str:
        """``value`` as `http.cookies` writes it: bare, quoted, or quoted and escaped."""
        if _is_bare(value):
            return value
        if _is_quoted_bare(value):
            return f'"{value}"'  # a signed value: base64 has "=" and "/"
        if _BAD_VALUE.search(value):
            raise ValueError(f"Invalid cookie {self._name!r}: {value!r}")
        coded = _QUOTER.value_encode(value)[1]
        # The Morsel's own checks (control characters since the 2026 security releases).
        http.cookies.Morsel[str]().set(self._name, value, coded)
        return coded

    def _expires(self, timestamp: float) -> str:
        """Tornado's ``format_timestamp(timestamp)``, formatted once per second.

        ``timestamp - second`` is exact for a timestamp in the remembered
        second, so the date is reused exactly when `datetime` would give it.
        """
        second = self._date_second
        if second is not None and 0 <= timestamp - second < _SAME_SECOND:
            return self._date
        date = email.utils.formatdate(timestamp, usegmt=True)
        second = math.floor(timestamp)
        if timestamp - second < _SAME_SECOND:
            self._date, self._date_second = date, second
        return date


def _check_attributes(
    name: str, *, domain: str | None, path: str | None, samesite: str | None
) -> None:
    """Raise `http.cookies.CookieError` for a name or attribute Tornado would refuse."""
    for attribute, text in (("name", name), ("domain", domain), ("path", path),
                            ("samesite", samesite)):
        if text is not None and _BAD_ATTRIBUTE.search(text):
            raise http.cookies.CookieError(
                f"Invalid cookie attribute {attribute}={text!r} for cookie {name!r}"
            )
    morsel = http.cookies.Morsel[str]()
    morsel.set(name, "", "")  # refuses a name that is not a token, or is an attribute's
    for attribute, text in (("domain", domain), ("path", path), ("samesite", samesite)):
        if text:
            morsel[attribute] = text
