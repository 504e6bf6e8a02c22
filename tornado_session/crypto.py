"""Authenticated encryption for sessions: versioned keys, AES-256-GCM, unique nonces.

Two things use it: encrypted cookie sessions (`EncryptedCookieCodec`, chosen by
the session option ``encryption_keys``) and data encrypted at rest in any store
(`tornado_session.stores.EncryptedStore`).  Both take keys the way Tornado's
``cookie_secret`` takes them, as ``{version: secret}``: the newest version
encrypts, every listed version decrypts.

Why AES-GCM and not Fernet (what aiohttp-session uses): measured here with
``cryptography`` 50, AES-GCM seals or opens a session-sized payload in about
1.6 us, Fernet in about 18 us (AES-CBC, then a separate HMAC, then base64 in
Python), and MultiFernet tries each key in turn, so an old-key token costs
more still.  AES-GCM adds 29 bytes to the plaintext (key version 1, nonce 12,
tag 16), Fernet 57 plus up to 16 of padding; and GCM authenticates associated
data, so the cookie's name and expiry are bound to the token without being
encrypted.  In base64 a small session's encrypted cookie is shorter than the
same session's signed cookie, whose hex signature alone is 64 characters.

Nonces: GCM must never see one nonce twice under one key.  Each `Keyring`
starts at a random 96-bit nonce and counts up, so one process never repeats
one, and two processes (or two forks: the counter is drawn anew in a child)
would have to start within the count of each other's messages out of 2**96.
Independent random nonces would instead reach the birthday bound NIST sets
(2**32 messages per key) within days on a busy site.

``cryptography`` is imported when keys are given, not when this module is, so
``import tornado_session`` works without it; keys without it fail at start-up
naming the ``[crypto]`` extra.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
import struct
import weakref
from collections.abc import Mapping
from typing import Any

import orjson

from .errors import CookieTooLargeError, SessionOptionError

#: The fewest bytes a secret may have: 256 bits when it is random bytes.
MIN_KEY_BYTES = 32

#: What the ``[crypto]`` extra installs; said by every error about a missing package.
INSTALL_HINT = (
    'encryption needs the cryptography package: pip install "tornado-async-session[crypto]"'
)

_NONCE_BYTES = 12
_TAG_BYTES = 16
_NONCE_SPACE = 1 << (8 * _NONCE_BYTES)

#: Every keyring of this process, so that a forked child draws new nonce counters.
_KEYRINGS: weakref.WeakSet[Keyring] = weakref.WeakSet()


def _reseed_after_fork() -> None:
    for keyring in list(_KEYRINGS):
        keyring._reseed()


os.register_at_fork(after_in_child=_reseed_after_fork)


def check_keys(option: str, keys: Any) -> dict[int, bytes]:
    """Return ``keys`` as ``{version: secret bytes}``, or raise `SessionOptionError`.

    ``option`` is the setting as its user knows it (``"session option
    encryption_keys"``).  Versions are ints from 0 to 255 (one byte of the
    token names the key); secrets are str or bytes of at least
    `MIN_KEY_BYTES` bytes, such as ``secrets.token_urlsafe(32)``.  Checked
    before the package is: a key that is wrong says so even where
    ``cryptography`` is missing.
    """
    if not isinstance(keys, Mapping) or not keys:
        raise SessionOptionError(
            f"{option}={_redacted(keys)} is invalid; expected {{version: secret}} with at "
            "least one key, e.g. {1: secrets.token_urlsafe(32)}"
        )
    checked: dict[int, bytes] = {}
    for version, secret in keys.items():
        if isinstance(version, bool) or not isinstance(version, int) or not 0 <= version <= 255:
            raise SessionOptionError(
                f"{option}: key version {version!r} is invalid; expected an int from 0 to 255"
            )
        if not isinstance(secret, str | bytes):
            raise SessionOptionError(
                f"{option}: the key of version {version} is a {type(secret).__name__}; "
                "expected str or bytes"
            )
        raw = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
        if len(raw) < MIN_KEY_BYTES:
            raise SessionOptionError(
                f"{option}: the key of version {version} is {len(raw)} bytes, too short; "
                f"expected at least {MIN_KEY_BYTES} (make one with secrets.token_urlsafe(32))"
            )
        checked[version] = raw
    return checked


def _redacted(keys: Any) -> str:
    """How a bad ``keys`` value is named in an error: never a secret's text."""
    if isinstance(keys, Mapping):
        return "{}" if not keys else "{...}"
    return f"<{type(keys).__name__}>" if isinstance(keys, str | bytes) else repr(keys)


def check_package() -> None:
    """Raise `SessionOptionError` naming the ``[crypto]`` extra when ``cryptography`` is missing."""
    _aead_modules()


def _aead_modules() -> tuple[Any, Any, Any, Any]:
    """``AESGCM``, ``HKDF``, ``SHA256`` and ``InvalidTag``, or an error naming the extra."""
    try:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        from cryptography.hazmat.primitives.hashes import SHA256
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF
    except ImportError as exc:
        raise SessionOptionError(INSTALL_HINT) from exc
    return AESGCM, HKDF, SHA256, InvalidTag


class Keyring:
    """The keys of one use (``purpose``): the newest seals, every version opens.

    A sealed token is ``version (1 byte) | nonce (12) | ciphertext | tag (16)``.
    Each secret is stretched with HKDF-SHA256 into an AES-256 key of its own
    for ``purpose``, so one secret given to the cookie and to a store never
    encrypts both under the same key.  ``associated`` data given to `seal`
    must be given again to `open`: it is authenticated, not encrypted (the
    cookie's name and expiry, the store key).
    """

    __slots__ = ("__weakref__", "_ciphers", "_counter", "_invalid", "newest")

    def __init__(self, keys: Mapping[int, str | bytes], *, purpose: bytes) -> None:
        aesgcm, hkdf, sha256, invalid_tag = _aead_modules()
        #: The version that seals (the highest).
        self.newest = max(keys)
        self._ciphers = {
            version: aesgcm(
                hkdf(algorithm=sha256(), length=32, salt=None,
                     info=b"tornado-session/" + purpose).derive(secret)
            )
            for version, secret in check_keys("keys", keys).items()
        }
        self._invalid: type[Exception] = invalid_tag
        self._counter = 0
        self._reseed()
        _KEYRINGS.add(self)

    def _reseed(self) -> None:
        """Start the nonce counter at a random point (at start-up and in a forked child)."""
        self._counter = secrets.randbits(8 * _NONCE_BYTES)

    def next_nonce(self) -> bytes:
        """A nonce this process has not used with these keys (the counter, plus one)."""
        counter = self._counter = (self._counter + 1) % _NONCE_SPACE
        return counter.to_bytes(_NONCE_BYTES, "big")

    def seal(self, plaintext: bytes, associated: bytes) -> bytes:
        """Encrypt and authenticate ``plaintext`` under the newest key."""
        newest = self.newest
        nonce = self.next_nonce()
        sealed: bytes = self._ciphers[newest].encrypt(nonce, plaintext, associated)
        return bytes((newest,)) + nonce + sealed

    def open(self, token: bytes, associated: bytes) -> bytes | None:
        """The plaintext of ``token``, or ``None``: tampered, unknown key, other ``associated``."""
        if len(token) < 1 + _NONCE_BYTES + _TAG_BYTES:
            return None
        cipher = self._ciphers.get(token[0])
        if cipher is None:
            return None
        try:
            plaintext: bytes = cipher.decrypt(token[1:13], token[13:], associated)
        except self._invalid:
            return None
        return plaintext

    def is_newest(self, token: bytes) -> bool:
        """Whether ``token`` was sealed under the newest key (else reseal it at its next write)."""
        return bool(token) and token[0] == self.newest


#: The expiry in an encrypted cookie's header: epoch seconds, a big-endian double.
_EXPIRY = struct.Struct(">d")
#: What an encrypted cookie value starts with: tells it from a signed one (``2|...``).
ENCRYPTED_PREFIX = "e1."
_MAX_INPUT = 4093 * 2


class EncryptedCookieCodec:
    """The cookie codec of encrypted cookie sessions (the option ``encryption_keys``).

    A value is ``e1.`` and the URL-safe base64 (unpadded) of the expiry (8
    bytes) and the sealed payload.  The associated data is the cookie's name
    and that expiry: a token moved to a cookie of another name, or given
    another expiry, does not open.  The payload's other fields (the data, the
    session's ``max_age``) are encrypted.

    ``signed`` is the application's signed-cookie codec when it has a
    ``cookie_secret``: a value that is a signed cookie (``2|...``) is read
    with it, so that users of an application that switched from signed to
    encrypted cookies keep their sessions; `is_current` says it must be
    written again, and the lifecycle does so on that very response.
    """

    __slots__ = ("_associated", "_keys", "_signed", "name")

    def __init__(
        self, name: str, keys: Mapping[int, str | bytes] | Keyring, *, signed: Any = None
    ) -> None:
        self.name = name
        self._keys = keys if isinstance(keys, Keyring) else Keyring(keys, purpose=b"cookie")
        self._signed = signed
        self._associated = b"tornado-session cookie\0" + name.encode("utf-8") + b"\0"

    def renamed(self, name: str) -> EncryptedCookieCodec:
        """A codec for the cookie ``name`` (the flash cookie), encrypting as this one does.

        The name is authenticated, so a value made for one cookie never opens
        as the other's; the key ring (and its nonce counter) is shared.
        """
        signed = self._signed.renamed(name) if self._signed is not None else None
        return EncryptedCookieCodec(name, self._keys, signed=signed)

    def dumps(self, payload: dict[str, Any]) -> str:
        """Return the encrypted cookie value for ``payload`` (which must hold ``"e"``).

        Raises `CookieTooLargeError` naming the size when ``name=value``
        would pass 4093 bytes, as signed cookies do.
        """
        payload = dict(payload)
        header = _EXPIRY.pack(payload.pop("e"))
        token = self._keys.seal(orjson.dumps(payload), self._associated + header)
        value = ENCRYPTED_PREFIX + base64.urlsafe_b64encode(header + token).rstrip(b"=").decode(
            "ascii"
        )
        size = len(self.name) + 1 + len(value)
        if size > 4093:
            raise CookieTooLargeError(
                f"the encrypted session cookie {self.name!r} would be {size} bytes, more "
                "than the 4093 bytes browsers keep; store less in the session or use a store",
                size=size,
            )
        return value

    def loads(self, value: str) -> dict[str, Any] | None:
        """Return the payload of an encrypted (or, migrating, signed) value; else ``None``."""
        if not value or len(value) > _MAX_INPUT:
            return None
        if not value.startswith(ENCRYPTED_PREFIX):
            return self._signed.loads(value) if self._signed is not None else None
        text = value[len(ENCRYPTED_PREFIX):]
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            return None
        header, token = raw[:_EXPIRY.size], raw[_EXPIRY.size:]
        if len(header) < _EXPIRY.size:
            return None
        plaintext = self._keys.open(token, self._associated + header)
        if plaintext is None:
            return None
        try:
            payload = orjson.loads(plaintext)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(payload, dict):
            return None
        payload["e"] = _EXPIRY.unpack(header)[0]
        return payload

    def is_current(self, value: str) -> bool:
        """Whether ``value`` is encrypted under the newest key (else: write it again).

        A signed cookie being migrated is not; nor is one under an older key.
        Called once per value that verified (its answer is remembered).
        """
        if not value.startswith(ENCRYPTED_PREFIX):
            return False
        text = value[len(ENCRYPTED_PREFIX):len(ENCRYPTED_PREFIX) + 16]
        try:
            raw = base64.urlsafe_b64decode(text)
        except (binascii.Error, ValueError):
            return False
        return self._keys.is_newest(raw[_EXPIRY.size:])
