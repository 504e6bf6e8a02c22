"""SetCookieFormat writes the Set-Cookie line Tornado's set_cookie writes."""

from __future__ import annotations

import string
from typing import Any

import pytest
import tornado.web
from hypothesis import given
from hypothesis import strategies as st
from tornado.httputil import HTTPHeaders, HTTPServerRequest, RequestStartLine

from tornado_session.cookies import SetCookieFormat
from tornado_session.errors import SessionOptionError


class _Connection:
    def set_close_callback(self, callback: Any) -> None:
        pass


def tornado_line(name: str, value: str, **kwargs: Any) -> str:
    """What Tornado's set_cookie queues for these arguments, as flush() writes it."""
    request = HTTPServerRequest(start_line=RequestStartLine("GET", "/", "HTTP/1.1"),
                                headers=HTTPHeaders({"Host": "localhost"}),
                                connection=_Connection())  # type: ignore[arg-type]
    handler = tornado.web.RequestHandler(tornado.web.Application(), request)
    handler.set_cookie(name, value, **kwargs)
    return handler._new_cookie[name].OutputString(None)


def our_line(name: str, value: str, *, domain: str | None, path: str | None, httponly: bool,
             samesite: str | None, expires: float | None, max_age: int | None,
             secure: bool) -> str:
    cookie_format = SetCookieFormat(name, domain=domain, path=path, httponly=httponly,
                                    samesite=samesite)
    return cookie_format.line(value, expires=expires, max_age=max_age, secure=secure)


SIGNED = ('2|1:0|10:1795547360|12:tornado.sess|8:eyJlIjox|02184fa4c4ad3c51f5b656c70751736a1a7a'
          'bc00daf8973d51')
VALUES = st.one_of(
    st.sampled_from([SIGNED, SIGNED.replace("eyJlIjox", "eyJlIj=="), "", "abc-_09",
                     'with"quote', "back\\slash", "caf\u00e9", "semi;colon", "comma,here",
                     "del\x7f"]),
    st.text(alphabet=string.ascii_letters + string.digits + "+/=|:-_.!~*'()", max_size=60),
)
OPTIONS = {
    "domain": st.sampled_from([None, "example.com", ".example.org"]),
    "path": st.sampled_from([None, "/", "/app"]),
    "httponly": st.booleans(),
    "samesite": st.sampled_from([None, "Lax", "Strict", "None"]),
    "expires": st.one_of(st.none(), st.just(86400.0),
                         st.floats(min_value=1e9, max_value=4e9, allow_nan=False)),
    "max_age": st.sampled_from([None, 0, 1, 86400, 3600 * 24 * 365]),
    "secure": st.booleans(),
}


@given(st.sampled_from(["tornado.sess", "sid", "a!b"]), VALUES, st.fixed_dictionaries(OPTIONS))
def test_the_line_is_tornados(name: str, value: str, options: dict[str, Any]) -> None:
    assert our_line(name, value, **options) == tornado_line(name, value, **options)


@pytest.mark.parametrize("value", ["has space", "tab\there", "nul\x00"])
def test_a_value_tornado_refuses_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="Invalid cookie"):
        tornado_line("sid", value)
    with pytest.raises(ValueError, match="Invalid cookie"):
        SetCookieFormat("sid").line(value, expires=None, max_age=None, secure=False)


@pytest.mark.parametrize(("option", "text"), [("domain", "a;b"), ("path", "/a\x01"),
                                              ("samesite", "Lax;x")])
def test_an_attribute_that_would_break_the_header_names_the_option(option: str,
                                                                   text: str) -> None:
    with pytest.raises(SessionOptionError, match=f"session option {option}="):
        SetCookieFormat("sid", **{option: text})


def test_the_date_is_right_across_seconds_and_near_a_second_end() -> None:
    cookie_format = SetCookieFormat("sid")
    for expires in (1_800_000_000.2, 1_800_000_000.7, 1_800_000_001.1, 1_800_000_001.9999996,
                    1_800_000_002.0, 1_800_000_001.5):
        assert cookie_format.line("v", expires=expires, max_age=None, secure=False) == (
            tornado_line("sid", "v", expires=expires, path="/", httponly=True, samesite="Lax")
        )
