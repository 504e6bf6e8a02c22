"""`Signer` and `SetCookieLine` make exactly what Tornado makes, byte for byte.

Hypothesis draws cookie names, values, secrets (str, bytes, non-ASCII, dicts of
key versions), key versions, fake-clock timestamps (whole, fractional, just
below a whole second, large) and every cookie attribute.  Each example is
compared with Tornado's own code: ``create_signed_value`` for a signed value,
which ``decode_signed_value`` must then read back; and, for a ``Set-Cookie``
line, what a real `tornado.web.RequestHandler` queues in ``set_cookie``
(``handler._new_cookie[name].OutputString(None)``, the line ``flush()``
sends).  Where Tornado raises, ours must raise the same exception type.  One
`Signer` or `SetCookieLine` serves several calls in a row, as in an
application, so what they remember between calls is tested too.
"""

from __future__ import annotations

import http.cookies
import math
import re
import string
from collections.abc import Callable
from typing import Any

import pytest
import tornado.web
from hypothesis import given, settings
from hypothesis import strategies as st
from tornado.httputil import HTTPConnection, HTTPHeaders, HTTPServerRequest, RequestStartLine

from tornado_session.cookies import CookieCodec, SetCookieLine, Signer
from tornado_session.errors import SessionOptionError
from tornado_session.testing import FakeClock

#: At least 500 examples a property, more under the "long" Hypothesis profile.
EXAMPLES = max(500, settings().max_examples)
INF = float("inf")

#: The characters of a cookie name (RFC 6265's token, and ":" that Python allows).
TOKEN = string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~:"
#: Names `http.cookies` keeps for attributes: a cookie may not be called so.
RESERVED = {"expires", "path", "comment", "domain", "max-age", "secure", "httponly",
            "version", "samesite"}
PRINTABLE = "".join(map(chr, range(0x21, 0x7F)))

token_names = st.text(alphabet=TOKEN, min_size=1, max_size=16).filter(
    lambda name: name.lower() not in RESERVED
)
any_text = st.text(alphabet=st.characters(exclude_categories=[]), max_size=16)


def below_a_second(second: int, steps: int) -> float:
    """The float ``steps`` representable values below ``second``."""
    value = float(second)
    for _ in range(steps):
        value = math.nextafter(value, -INF)
    return value


#: Timestamps: whole, fractional, a few floats below a whole second (rounded up
#: to that second by `datetime`), near 2038 and year 9999, negative, large.
timestamps = st.one_of(
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(min_value=-1e11, max_value=1e12, allow_nan=False),
    st.builds(below_a_second, st.integers(min_value=-(2**35), max_value=2**35),
              st.integers(min_value=1, max_value=8)),
    st.floats(min_value=1_700_000_000, max_value=1_700_000_003),
    st.sampled_from([0, 0.0, -0.0, 0.5, 1_700_000_000.9999996, 1_700_000_000.9999995,
                     1_700_000_000.9999994, 1_699_999_999.999999, 2**31 - 0.5, 2**32 + 0.9999999,
                     253_402_300_799, 253_402_300_799.9999, 253_402_300_800,
                     -62_135_596_800, -62_135_596_801, 10**20]),
)


# Signed values ------------------------------------------------------------------------------

single_secrets = st.one_of(st.text(max_size=64), st.binary(max_size=80))
key_versions = st.integers(min_value=-3, max_value=2**40)
#: (secret, key_version) as an application's settings give them.
secrets = st.one_of(
    st.tuples(single_secrets, st.one_of(st.none(), st.just(0), key_versions)),
    st.dictionaries(st.one_of(st.just(0), key_versions), single_secrets,
                    min_size=1, max_size=4).flatmap(
        lambda versions: st.tuples(st.just(versions), st.sampled_from(sorted(versions)))
    ),
)
signing_names = st.one_of(token_names, st.text(max_size=12))


def tornado_sign(secret: Any, key_version: int | None, name: str, value: bytes,
                 clock: Callable[[], float]) -> bytes:
    """What Tornado's ``RequestHandler.create_signed_value`` makes for these settings."""
    return tornado.web.create_signed_value(
        secret, name, value, version=2,
        key_version=key_version if isinstance(secret, dict) else None, clock=clock,
    )


def tornado_unsign(secret: Any, name: str, value: bytes, clock: Callable[[], float]) -> Any:
    return tornado.web.decode_signed_value(
        secret, name, value, min_version=2, max_age_days=INF, clock=clock
    )


@settings(max_examples=EXAMPLES)
@given(secrets, st.lists(st.tuples(signing_names, st.binary(max_size=300), timestamps),
                         min_size=1, max_size=5))
def test_sign_gives_tornados_bytes_and_tornado_reads_them(
    secret_and_version: tuple[Any, int | None], calls: list[tuple[str, bytes, float]]
) -> None:
    secret, key_version = secret_and_version
    clock = FakeClock(0)
    signer = Signer(secret, key_version=key_version, clock=clock)
    for name, value, now in calls:
        clock.now = now
        ours = signer.sign(name, value)
        assert ours == tornado_sign(secret, key_version, name, value, clock)
        # Tornado counts a name's length in characters but reads it in bytes, and
        # finds the version with a regex whose "." stops at a newline: a name
        # with a non-ASCII character or a newline makes a value it cannot read.
        expected = value if name.isascii() and "\n" not in name else None
        assert tornado_unsign(secret, name, ours, clock) == expected


@settings(max_examples=EXAMPLES)
@given(st.sampled_from(["s", b"s", "sécret ✓", {0: "a", 7: b"b"}]),
       st.sampled_from([INF, -INF, math.nan, 1e300, 2**1000]))
def test_a_clock_tornado_cannot_read_fails_as_tornado_fails(secret: Any, now: float) -> None:
    key_version = 7 if isinstance(secret, dict) else None
    signer = Signer(secret, key_version=key_version, clock=lambda: now)
    assert outcome(signer.sign, "sid", b"v") == outcome(
        tornado_sign, secret, key_version, "sid", b"v", lambda: now
    )


def test_the_second_written_is_truncated_not_rounded() -> None:
    clock = FakeClock(1_700_000_000.9999996)
    signer = Signer("secret", clock=clock)
    assert b"|10:1700000000|" in signer.sign("sid", b"v")
    clock.now = 1_700_000_001.0
    assert signer.sign("sid", b"v") == tornado_sign("secret", None, "sid", b"v", clock)


@pytest.mark.parametrize("key_version", [None, 3])
def test_a_dict_secret_without_the_signing_version_fails_when_built(
    key_version: int | None,
) -> None:
    with pytest.raises(SessionOptionError, match=f"key_version={key_version}"):
        Signer({1: "old", 2: "new"}, key_version=key_version)


def test_a_codec_signing_with_a_signer_writes_what_it_wrote_with_tornado() -> None:
    clock = FakeClock(1_790_000_000.25)
    secret = {1: "old-" + "a" * 40, 2: "new-" + "b" * 40}
    ours = CookieCodec("tornado.sess", sign=Signer(secret, key_version=2, clock=clock).sign)
    theirs = CookieCodec(
        "tornado.sess", sign=lambda name, value: tornado_sign(secret, 2, name, value, clock)
    )
    payload = {"user": "ada", "cart": [1, 2, 3], "é": None}
    assert ours.dumps(payload) == theirs.dumps(payload)


# Set-Cookie lines ---------------------------------------------------------------------------

#: A fake connection, and an application: all a `RequestHandler` needs to set cookies.
APPLICATION = tornado.web.Application()


class _Connection(HTTPConnection):
    def set_close_callback(self, callback: Callable[[], None] | None) -> None:
        pass


def tornado_line(name: str, value: str, **attributes: Any) -> Any:
    """The ``Set-Cookie`` line Tornado's ``flush()`` sends after ``set_cookie``.

    Or the type of the exception ``set_cookie`` (or the line) raises.
    """
    request = HTTPServerRequest(start_line=RequestStartLine("GET", "/", "HTTP/1.1"),
                                headers=HTTPHeaders({"Host": "localhost"}),
                                connection=_Connection())
    handler = tornado.web.RequestHandler(APPLICATION, request)

    def set_cookie() -> str:
        handler.set_cookie(name, value, **attributes)
        return handler._new_cookie[name].OutputString(None)

    return outcome(set_cookie)


def outcome(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """What ``function(*args, **kwargs)`` returns, or the type of what it raises."""
    try:
        return function(*args, **kwargs)
    except Exception as error:  # compared by type with Tornado's
        return type(error)


SIGNED = ("2|1:0|10:1795547360|12:tornado.sess|8:eyJlIjox|02184fa4c4ad3c51f5b656c70751736a1a7a"
          "bc00daf8973d51")
#: Values: bare, needing quotes (base64's "=" and "/"), needing escapes ('"', "\\",
#: ",", ";", DEL, non-ASCII), and refused (spaces, control characters).
cookie_values = st.one_of(
    st.text(alphabet=PRINTABLE, max_size=40),
    st.text(alphabet=string.ascii_letters + string.digits + "+/=|:-_", max_size=60),
    any_text,
    st.sampled_from([SIGNED, SIGNED.replace("eyJlIjox", "eyJlIj=="), "", '"', "\\", ",", ";",
                     "\x7f", "é", "\u2713", " ", "\t", "a b", "\x00", "=", "/", '"quoted"',
                     "\udcff"]),
)
expires_values = st.one_of(st.none(), st.just(0), timestamps,
                           st.sampled_from([INF, -INF, math.nan]))
max_ages = st.one_of(st.none(), st.just(0), st.just(0.0),
                     st.integers(min_value=-(10**6), max_value=10**12),
                     st.floats(min_value=-1e6, max_value=1e12), st.floats())
domains = st.one_of(st.none(), st.just(""),
                    st.text(alphabet=string.ascii_lowercase + string.digits + ".-", max_size=20))
paths = st.one_of(st.none(), st.sampled_from(["", "/", "/app"]),
                  st.text(alphabet=PRINTABLE.replace(";", ""), max_size=20))
samesites = st.one_of(st.none(), st.sampled_from(["", "Strict", "Lax", "None", "lax"]),
                      st.text(alphabet=TOKEN, max_size=8))
#: One write: (value, expires, max_age, secure).
writes = st.tuples(cookie_values, expires_values, max_ages, st.booleans())


@settings(max_examples=EXAMPLES)
@given(token_names, domains, paths, st.booleans(), samesites,
       st.lists(writes, min_size=1, max_size=6))
def test_the_line_is_tornados_for_any_value_and_attributes(
    name: str, domain: str | None, path: str | None, httponly: bool, samesite: str | None,
    calls: list[tuple[str, float | None, float | None, bool]],
) -> None:
    line = SetCookieLine(name, domain=domain, path=path, httponly=httponly, samesite=samesite)
    for value, expires, max_age, secure in calls:
        ours = outcome(line.format, value, expires=expires, max_age=max_age, secure=secure)
        theirs = tornado_line(
            name, value, domain=domain, expires=expires, path=path, max_age=max_age,
            httponly=httponly, secure=secure, samesite=samesite,
        )
        assert ours == theirs


@settings(max_examples=EXAMPLES)
@given(st.one_of(token_names, any_text, st.sampled_from(sorted(RESERVED | {"Path", "a=b"}))),
       st.one_of(st.none(), any_text), st.one_of(st.none(), any_text),
       st.one_of(st.none(), any_text))
def test_a_name_or_attribute_tornado_refuses_fails_with_its_error_when_built(
    name: str, domain: str | None, path: str | None, samesite: str | None
) -> None:
    theirs = tornado_line(name, "v", domain=domain, path=path, samesite=samesite)
    try:
        line = SetCookieLine(name, domain=domain, path=path, samesite=samesite)
    except http.cookies.CookieError:
        assert theirs is http.cookies.CookieError
        return
    assert line.format("v", expires=None, max_age=None, secure=False) == theirs


@settings(max_examples=EXAMPLES)
@given(st.lists(st.one_of(timestamps, st.floats(min_value=1e9, max_value=1e9 + 4)),
                min_size=1, max_size=12))
def test_the_date_is_tornados_when_seconds_repeat_and_round_up(stamps: list[float]) -> None:
    line = SetCookieLine("sid")
    for expires in stamps:
        ours = outcome(line.format, "v", expires=expires, max_age=None, secure=False)
        assert ours == tornado_line("sid", "v", expires=expires)


def test_the_date_near_a_second_end_is_the_next_second_as_in_tornado() -> None:
    line = SetCookieLine("sid")
    for expires in (1_700_000_000.2, 1_700_000_000.9999994, 1_700_000_000.9999996,
                    1_700_000_000.5, 1_700_000_001.0, 1_700_000_000.9999996):
        ours = line.format("v", expires=expires, max_age=None, secure=False)
        assert ours == tornado_line("sid", "v", expires=expires)
    assert "expires=Tue, 14 Nov 2023 22:13:21 GMT" in line.format(
        "v", expires=1_700_000_000.9999996, max_age=None, secure=False
    )


def _with_2026_morsel_checks(
    original: Callable[..., None],
) -> Callable[..., None]:
    """`Morsel.set` as the Feb 2026 security releases made it: control characters refused."""

    def morsel_set(self: http.cookies.Morsel[str], key: str, val: str, coded_val: str) -> None:
        if any(re.search(r"[\x00-\x1f\x7f]", str(text)) for text in (key, val, coded_val)):
            raise http.cookies.CookieError("Control characters are not allowed in cookies")
        original(self, key, val, coded_val)

    return morsel_set


@pytest.mark.parametrize("value", ["del\x7f", "\x7f", "é\x7f", "é", "ok", "a=b", ""])
def test_a_python_with_the_2026_morsel_checks_refuses_what_tornado_refuses(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setattr(http.cookies.Morsel, "set",
                        _with_2026_morsel_checks(http.cookies.Morsel.set))
    line = SetCookieLine("sid", httponly=True, samesite="Lax")
    theirs = tornado_line("sid", value, httponly=True, samesite="Lax", secure=True)
    ours = outcome(line.format, value, expires=None, max_age=None, secure=True)
    assert ours == theirs
    assert (theirs is http.cookies.CookieError) == ("\x7f" in value)
