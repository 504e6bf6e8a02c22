from tests.base import SessionTestCase


class TestCounter(SessionTestCase):
    def test_counts(self) -> None:
        self.assertEqual(self.fetch("/count").body, b"1")
        self.assertEqual(self.fetch("/count").body, b"2")
        self.assertEqual(self.fetch("/read").body, b"2")
