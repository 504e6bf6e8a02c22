"""The package as the index shows it: its name, version, licence, classifiers and page.

Read from the installed distribution's metadata (the editable install that
``scripts/setup.sh`` makes builds it from ``pyproject.toml``), so a field that
setuptools would drop or the index would refuse fails here, not at upload.
"""

from __future__ import annotations

import re
import unittest
from importlib import metadata
from pathlib import Path

from trove_classifiers import classifiers as known_classifiers

import tornado_session

ROOT = Path(__file__).resolve().parent.parent
DISTRIBUTION = "tornado-async-session"


class DistributionMetadataTest(unittest.TestCase):
    """``pip install tornado-async-session`` gets this project, described in full."""

    def setUp(self) -> None:
        self.meta = metadata.metadata(DISTRIBUTION)

    def test_the_distribution_provides_the_tornado_session_module(self) -> None:
        # From the distribution's top_level.txt (or, without one, its file names).
        providers = metadata.packages_distributions().get("tornado_session", [])
        self.assertIn(DISTRIBUTION, providers)

    def test_version_is_the_module_version(self) -> None:
        self.assertEqual(self.meta["Version"], tornado_session.__version__)
        self.assertRegex(tornado_session.__version__, r"^\d+\.\d+\.\d+$")

    def test_licence_is_an_spdx_expression_with_its_file(self) -> None:
        self.assertEqual(self.meta["License-Expression"], "MIT")
        self.assertIn("LICENSE", self.meta.get_all("License-File") or [])
        self.assertIn("MIT License", (ROOT / "LICENSE").read_text())

    def test_every_classifier_is_one_the_index_accepts(self) -> None:
        classifiers = self.meta.get_all("Classifier") or []
        unknown = [c for c in classifiers if c not in known_classifiers]
        self.assertEqual(unknown, [])
        for wanted in (
            "Programming Language :: Python :: 3 :: Only",
            "Framework :: AsyncIO",
            "Topic :: Internet :: WWW/HTTP :: Session",
            "Typing :: Typed",
        ):
            self.assertIn(wanted, classifiers)
        self.assertTrue(any(c.startswith("Development Status ::") for c in classifiers))

    def test_authors_keywords_urls_and_extras(self) -> None:
        self.assertIn("tornado-session authors", self.meta["Author"] or "")
        self.assertIn("tornado", self.meta["Keywords"])
        urls = dict(
            entry.split(", ", 1) for entry in self.meta.get_all("Project-URL") or []
        )
        wanted_urls = {"Homepage", "Documentation", "Source", "Issues", "Changelog"}
        self.assertLessEqual(wanted_urls, set(urls))
        self.assertTrue(all(url.startswith("https://") for url in urls.values()), urls)
        extras = set(self.meta.get_all("Provides-Extra") or [])
        self.assertLessEqual({"mongo", "motor", "redis"}, extras)
        self.assertEqual(self.meta["Requires-Python"], ">=3.11")

    def test_the_changelog_has_this_version(self) -> None:
        changelog = (ROOT / "CHANGELOG.md").read_text()
        self.assertRegex(changelog, rf"(?m)^## {re.escape(tornado_session.__version__)} ")


class PackagePageTest(unittest.TestCase):
    """The README is the package's page: its links must work away from the repository."""

    def test_the_readme_is_the_long_description(self) -> None:
        meta = metadata.metadata(DISTRIBUTION)
        self.assertEqual(meta["Description-Content-Type"], "text/markdown")
        self.assertIn("pip install tornado-async-session", meta.get_payload())  # type: ignore[attr-defined]

    def test_every_readme_link_is_absolute(self) -> None:
        readme = (ROOT / "README.md").read_text()
        targets = re.findall(r"\]\(([^)\s]+)\)", readme)
        self.assertTrue(targets)
        relative = [t for t in targets if not t.startswith(("https://", "http://", "#"))]
        self.assertEqual(relative, [])

    def test_no_install_command_names_the_unrelated_package(self) -> None:
        pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
        wrong = re.compile(r"pip install \"?tornado-session\b")
        for page in pages:
            with self.subTest(page=page.name):
                self.assertIsNone(wrong.search(page.read_text()))
