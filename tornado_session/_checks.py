"""The one check of "a number of seconds", for every setting that takes one.

`SessionOptions`, `Session.max_age` and the stores' own settings
(``probe_interval``, ``sweep_interval``, ``timeout``) all take seconds, and
each used to check them by hand, each a little differently (one let
``inf`` through, one ``True``).  The rule lives here once.

A module of its own, at the bottom of the package with `errors` (the only
module it imports): the stores import it without importing `options` (the
layer above them), and `errors` stays what its docstring says, the exception
types.  Private: the helper is not part of the public API.
"""

from __future__ import annotations

import math
from typing import Any, Literal, overload

from .errors import SessionOptionError

__all__ = ["check_seconds", "is_seconds"]


def is_seconds(value: Any, *, allow_zero: bool = False) -> bool:
    """Whether ``value`` is a finite number of seconds, above 0 (or 0 with ``allow_zero``).

    An ``int`` or a ``float``, never a ``bool`` (``True`` is not one second),
    never ``inf`` or ``nan``.
    """
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and (value >= 0 if allow_zero else value > 0)
    )


@overload
def check_seconds(
    name: str, value: Any, *, allow_zero: bool = ..., allow_none: Literal[False] = ...
) -> float: ...


@overload
def check_seconds(
    name: str, value: Any, *, allow_zero: bool = ..., allow_none: bool
) -> float | None: ...


def check_seconds(
    name: str, value: Any, *, allow_zero: bool = False, allow_none: bool = False
) -> float | None:
    """Return ``value`` as a ``float`` of seconds, or raise `SessionOptionError`.

    ``name`` is the setting as its user knows it (``"session option max_age"``,
    ``"session.max_age"``, ``"RedisStore option timeout"``): the message says
    it, the value given and what is accepted, e.g. ``session option
    max_age=-1 is invalid; expected a number of seconds > 0 or None``.
    """
    if value is None and allow_none:
        return None
    if not is_seconds(value, allow_zero=allow_zero):
        accepted = "a number of seconds " + (">= 0" if allow_zero else "> 0")
        if allow_none:
            accepted += " or None"
        raise SessionOptionError(f"{name}={value!r} is invalid; expected {accepted}")
    return float(value)
