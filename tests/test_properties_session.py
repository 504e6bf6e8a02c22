"""`Session` behaves as a dict, and ``changed`` says exactly whether the data changed.

A Hypothesis state machine applies the same random operations (the mapping API
and in-place mutation of nested lists and dicts) to a `Session` and to a plain
dict, and after each step compares them.  ``changed`` is checked against a
strict comparison of the dict with the data as loaded (or last saved): types
count (``1`` is not ``1.0`` nor ``True``), key order does not.
"""

from __future__ import annotations

import copy
import math
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from tornado_session import Session

KEYS = st.sampled_from(["a", "b", "c", "cart", "user", "é", ""])
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=8),
)
VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(st.text(max_size=3, alphabet="xyz"), children, max_size=3),
    ),
    max_leaves=8,
)


def same(a: Any, b: Any) -> bool:
    """Equal as JSON: same types all the way down, dict key order ignored."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


class SessionMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.model: dict[str, Any] = {}
        self.loaded: dict[str, Any] = {}
        self.session = Session()

    @rule(data=st.dictionaries(KEYS, VALUES, max_size=4))
    def load(self, data: dict[str, Any]) -> None:
        """Start over from a session loaded with ``data``."""
        self.session = Session(copy.deepcopy(data), id="x", is_new=False)
        self.model = copy.deepcopy(data)
        self.loaded = copy.deepcopy(data)
        assert not self.session.changed

    @rule(key=KEYS, value=VALUES)
    def set_item(self, key: str, value: Any) -> None:
        self.session[key] = copy.deepcopy(value)
        self.model[key] = value

    @rule(key=KEYS)
    def get_item(self, key: str) -> None:
        if key in self.model:
            assert same(self.session[key], self.model[key])
        else:
            try:
                self.session[key]
            except KeyError:
                pass
            else:
                raise AssertionError(f"session[{key!r}] did not raise KeyError")

    @rule(key=KEYS)
    def del_item(self, key: str) -> None:
        if key in self.model:
            del self.session[key]
            del self.model[key]
        else:
            try:
                del self.session[key]
            except KeyError:
                pass
            else:
                raise AssertionError(f"del session[{key!r}] did not raise KeyError")

    @rule(key=KEYS, default=SCALARS)
    def pop(self, key: str, default: Any) -> None:
        assert same(self.session.pop(key, default), self.model.pop(key, default))

    @rule(key=KEYS, default=SCALARS)
    def get(self, key: str, default: Any) -> None:
        assert same(self.session.get(key, default), self.model.get(key, default))

    @rule(key=KEYS, value=VALUES)
    def setdefault(self, key: str, value: Any) -> None:
        got = self.session.setdefault(key, copy.deepcopy(value))
        assert same(got, self.model.setdefault(key, value))

    @rule(other=st.dictionaries(KEYS, VALUES, max_size=3))
    def update(self, other: dict[str, Any]) -> None:
        self.session.update(copy.deepcopy(other))
        self.model.update(other)

    @precondition(lambda self: bool(self.model))
    @rule()
    def popitem(self) -> None:
        assert self.session.popitem() == self.model.popitem()

    @rule()
    def clear(self) -> None:
        self.session.clear()
        self.model.clear()

    @rule(key=KEYS, value=VALUES)
    def mutate_nested(self, key: str, value: Any) -> None:
        """Change a list or dict in place, through the value the session handed out."""
        ours, theirs = self.session.get(key), self.model.get(key)
        if isinstance(theirs, list):
            ours.append(copy.deepcopy(value))
            theirs.append(value)
        elif isinstance(theirs, dict):
            ours["n"] = copy.deepcopy(value)
            theirs["n"] = value

    @rule()
    def commit(self) -> None:
        """What a successful save does: the saved data is the new baseline."""
        self.session._stage(self.session.dump())
        self.session._mark_saved()
        self.loaded = copy.deepcopy(self.model)
        assert not self.session.changed

    @invariant()
    def is_the_dict(self) -> None:
        session, model = self.session, self.model
        assert len(session) == len(model)
        assert list(session) == list(model)  # insertion order, as a dict
        assert list(session.keys()) == list(model.keys())
        assert all(same(a, b) for a, b in zip(session.values(), model.values(), strict=True))
        assert session == model and model == dict(session)
        for key in ("a", "zz"):
            assert (key in session) == (key in model)

    @invariant()
    def changed_is_exact(self) -> None:
        assert self.session.changed == (not same(self.model, self.loaded)), (
            self.model, self.loaded
        )


TestSessionIsADict = SessionMachine.TestCase
