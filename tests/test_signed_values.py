"""SignedValues makes and reads exactly Tornado's version-2 signed values."""

from __future__ import annotations

import string

import pytest
import tornado.web
from hypothesis import given
from hypothesis import strategies as st

from tornado_session.cookies import SignedValues

SECRET = "signed-values-secret-" + "k" * 40
ROTATION = {1: "old-secret-" + "a" * 40, 2: "new-secret-" + "b" * 40}
NOW = 1_790_000_000.5
NAME = "tornado.sess"
COOKIE_NAMES = st.text(alphabet=string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~",
                       min_size=1, max_size=20)


def clock() -> float:
    return NOW


def tornado_sign(name: str, value: bytes, secret: object = SECRET,
                 key_version: int | None = None) -> bytes:
    return tornado.web.create_signed_value(
        secret, name, value, version=2, clock=clock, key_version=key_version  # type: ignore[arg-type]
    )


def tornado_unsign(name: str, value: str | bytes, secret: object = SECRET) -> bytes | None:
    return tornado.web.decode_signed_value(
        secret, name, value, max_age_days=float("inf"), min_version=2, clock=clock  # type: ignore[arg-type]
    )


@given(COOKIE_NAMES, st.binary(max_size=300))
def test_sign_gives_the_bytes_tornado_gives(name: str, value: bytes) -> None:
    assert SignedValues(SECRET, clock=clock).sign(name, value) == tornado_sign(name, value)


@given(COOKIE_NAMES, st.binary(max_size=300))
def test_unsign_reads_what_tornado_signed(name: str, value: bytes) -> None:
    signed = tornado_sign(name, value).decode()
    assert SignedValues(SECRET, clock=clock).unsign(name, signed) == value


def test_rotation_signs_with_the_current_version_and_reads_every_version() -> None:
    signer = SignedValues(ROTATION, key_version=2, clock=clock)
    assert signer.sign(NAME, b"x") == tornado_sign(NAME, b"x", ROTATION, key_version=2)
    old = tornado_sign(NAME, b"old", ROTATION, key_version=1).decode()
    assert signer.unsign(NAME, old) == b"old"
    assert tornado_unsign(NAME, signer.sign(NAME, b"new"), ROTATION) == b"new"


def test_a_key_version_no_longer_in_the_secrets_is_refused() -> None:
    retired = tornado_sign(NAME, b"x", {3: "gone-" + "c" * 40}, key_version=3).decode()
    assert SignedValues(ROTATION, key_version=2, clock=clock).unsign(NAME, retired) is None


def test_a_key_version_missing_from_the_secrets_fails_at_construction() -> None:
    with pytest.raises(ValueError, match="key_version 5"):
        SignedValues(ROTATION, key_version=5)


def test_another_secret_another_name_or_version_1_is_refused() -> None:
    signer = SignedValues(SECRET, clock=clock)
    assert signer.unsign(NAME, tornado_sign(NAME, b"x", "other-" + "z" * 40).decode()) is None
    assert signer.unsign(NAME, tornado_sign("other", b"x").decode()) is None
    version_1 = tornado.web.create_signed_value(SECRET, NAME, b"x", version=1, clock=clock)
    assert signer.unsign(NAME, version_1.decode()) is None


def test_every_single_character_change_is_refused_as_tornado_refuses_it() -> None:
    signer = SignedValues(SECRET, clock=clock)
    signed = tornado_sign(NAME, b'{"e": 1, "d": {"user": 42}}').decode()
    for index in range(len(signed)):
        for replacement in ("0", "|", ":", "A", "é"):
            if signed[index] == replacement:
                continue
            tampered = signed[:index] + replacement + signed[index + 1:]
            assert signer.unsign(NAME, tampered) is None
            assert tornado_unsign(NAME, tampered.encode()) is None
    for cut in range(len(signed)):
        assert signer.unsign(NAME, signed[:cut]) is None


@given(st.text(max_size=200))
def test_any_text_reads_as_tornado_reads_it(value: str) -> None:
    expected = tornado_unsign(NAME, value.encode("utf-8", "surrogatepass"))
    assert SignedValues(SECRET, clock=clock).unsign(NAME, value) == expected


@given(st.lists(st.sampled_from(["2|", "1:0|", "10:1790000000|", "12:tornado.sess|", "4:eHg=|",
                                 "0:|", "x", ":", "|", "99:"]), max_size=8))
def test_near_misses_of_the_format_read_as_tornado_reads_them(parts: list[str]) -> None:
    value = "".join(parts)
    assert SignedValues(SECRET, clock=clock).unsign(NAME, value) == tornado_unsign(NAME, value)
