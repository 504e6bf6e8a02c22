"""The guide's "Testing your application" page (docs/testing.md), run as written.

Its Python blocks are one module: the application, then the test cases a
user would write with `SessionClient` and session transactions.  Every test
case the page defines runs here and must pass; and the same tests fail
against a broken application, so passing means something.
"""

from __future__ import annotations

import re
import sys
import types
import unittest
from pathlib import Path

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "testing.md"


def guide_module() -> types.ModuleType:
    """The Python blocks of docs/testing.md, run as one module."""
    text = GUIDE.read_text(encoding="utf-8")
    blocks = list(re.finditer(r"```python\n(.*?)```", text, re.S))
    assert len(blocks) == 3, "the page has the application and two blocks of tests"
    # Each block on its own lines of the page, so that a traceback points into the page.
    source = ""
    for block in blocks:
        source += "\n" * (text.count("\n", 0, block.start(1)) - source.count("\n"))
        source += block.group(1)
    module = types.ModuleType("testing_guide")
    sys.modules[module.__name__] = module
    try:
        exec(compile(source, str(GUIDE), "exec"), module.__dict__)
    finally:
        del sys.modules[module.__name__]
    return module


def guide_cases(module: types.ModuleType) -> list[type[unittest.TestCase]]:
    return [value for value in vars(module).values()
            if isinstance(value, type) and issubclass(value, unittest.TestCase)
            and value.__module__ == module.__name__]


def run(module: types.ModuleType) -> unittest.TestResult:
    suite = unittest.TestSuite(unittest.defaultTestLoader.loadTestsFromTestCase(case)
                               for case in guide_cases(module))
    result = unittest.TestResult()
    suite.run(result)
    return result


def problems(result: unittest.TestResult) -> list[str]:
    return [f"{test}: {trace}" for test, trace in result.failures + result.errors]


class TestTheTestingGuide(unittest.TestCase):
    def test_every_test_on_the_page_passes(self) -> None:
        module = guide_module()
        self.assertEqual([case.__name__ for case in guide_cases(module)],
                         ["TestProfile", "TestProfileSessions"])
        result = run(module)
        self.assertEqual(problems(result), [])
        # TestProfileSessions runs TestProfile's tests too.
        self.assertEqual(result.testsRun, 2 + 2 + 4)

    def test_the_pages_tests_fail_against_an_application_that_loses_the_session(self) -> None:
        module = guide_module()

        class ProfileWithoutSession(module.Profile):  # type: ignore[name-defined,misc]
            def get(self) -> None:
                self.write("Hello, nobody")

        class LoginThatSavesNothing(module.Login):  # type: ignore[name-defined,misc]
            async def post(self) -> None:
                self.session_save = False
                await super().post()

        module.Profile = ProfileWithoutSession
        self.assertEqual(self.failed(module), {
            "test_a_login_shows_the_profile",
            "test_a_visitor_is_sent_to_the_login_form_with_a_message_shown_once",
            "test_a_client_logged_in_by_the_test",
            "test_inside_a_coroutine",
        })
        module = guide_module()
        module.Login = LoginThatSavesNothing
        self.assertEqual(self.failed(module), {
            "test_a_login_shows_the_profile", "test_the_login_keeps_the_user_in_the_session",
        })

    def failed(self, module: types.ModuleType) -> set[str]:
        result = run(module)
        return {test._testMethodName  # type: ignore[attr-defined]
                for test, _ in result.failures + result.errors}
