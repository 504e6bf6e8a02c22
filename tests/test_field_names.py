"""Session keys as document field names: escaped losslessly, never colliding."""

from __future__ import annotations

import unittest
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tornado_session.stores.mongo import (
    escape_field_name,
    escape_field_names,
    unescape_field_name,
    unescape_field_names,
)


def is_field_name(name: str) -> bool:
    """What MongoDB takes as a field name in a path: no dot, no leading $, no NUL, not empty."""
    return bool(name) and "." not in name and "\0" not in name and not name.startswith("$")


class TestFieldNames(unittest.TestCase):
    def test_plain_keys_are_kept_as_they_are(self) -> None:
        for key in ("views", "user_id", "a$b", "ключ", "🎉", " "):
            self.assertEqual(escape_field_name(key), key)

    def test_unfit_keys_are_escaped(self) -> None:
        cases = {
            "a.b": "a%2Eb", "$where": "%24where", "$": "%24", "": "%", "nul\0": "nul%00",
            "50%": "50%25", "%2E": "%252E", "$a.b%": "%24a%2Eb%25",
        }
        for key, escaped in cases.items():
            with self.subTest(key=key):
                self.assertEqual(escape_field_name(key), escaped)
                self.assertEqual(unescape_field_name(escaped), key)

    def test_nested_dicts_in_lists_are_escaped_and_restored(self) -> None:
        data: dict[str, Any] = {"a.b": [{"$c": {"": 1}}, 2, "x.y"], "d": {"e.f": None}}
        escaped = escape_field_names(data)
        self.assertEqual(escaped, {"a%2Eb": [{"%24c": {"%": 1}}, 2, "x.y"], "d": {"e%2Ef": None}})
        self.assertEqual(unescape_field_names(escaped), data)

    def test_a_key_that_is_not_a_string_is_refused(self) -> None:
        with self.assertRaises(TypeError):
            escape_field_names({"a": {1: "x"}})

    def test_leaf_converter_sees_every_value_but_containers(self) -> None:
        seen: list[Any] = []
        unescape_field_names({"a": [1, {"b": "x"}]}, lambda value: seen.append(value) or value)
        self.assertEqual(seen, [1, "x"])

    @given(st.text())
    def test_any_key_round_trips_to_a_valid_field_name(self, key: str) -> None:
        escaped = escape_field_name(key)
        self.assertTrue(is_field_name(escaped), escaped)
        self.assertEqual(unescape_field_name(escaped), key)

    @given(st.text(), st.text())
    def test_two_different_keys_never_share_a_field_name(self, first: str, second: str) -> None:
        if first != second:
            self.assertNotEqual(escape_field_name(first), escape_field_name(second))
