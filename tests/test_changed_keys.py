"""changed_keys finds exactly the keys whose canonical JSON differs."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tornado_session import serializers

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=5),
                    st.sampled_from([0, 1, 0.0, -0.0, 1.0, True, False, "", "1"]))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.tuples(inner, inner),
    st.dictionaries(st.text(max_size=3), inner, max_size=3)), max_leaves=6)
SESSIONS = st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), VALUES, max_size=4)


def reference(previous: dict[str, Any], data: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The definition: a key changed when its canonical JSON changed."""
    to_set = {key: value for key, value in data.items()
              if key not in previous
              or serializers.value_bytes(previous[key]) != serializers.value_bytes(value)}
    return to_set, [key for key in previous if key not in data]


@given(SESSIONS, SESSIONS)
def test_changed_keys_is_the_json_difference(previous: dict[str, Any],
                                             data: dict[str, Any]) -> None:
    assert serializers.changed_keys(previous, data) == reference(previous, data)


def test_values_equal_in_python_but_not_in_json_are_changed() -> None:
    previous = {"flag": 1, "zero": 0.0, "n": 1, "list": [1]}
    data = {"flag": True, "zero": -0.0, "n": 1.0, "list": [True]}
    assert serializers.changed_keys(previous, data) == (data, [])


def test_a_tuple_equal_in_json_to_the_loaded_list_is_unchanged() -> None:
    assert serializers.changed_keys({"pair": [1, 2]}, {"pair": (1, 2)}) == ({}, [])
