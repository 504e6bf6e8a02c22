"""README's run command on a fresh checkout: the example runs with only what it needs.

``scripts/run.sh`` is run in a copy of the project that has no ``.venv/``, as
on a fresh machine: it must make one with Tornado and orjson (not the test
tools), start the example and print the URL that answers; and refuse an old
Python with a message that says what to do.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
import unittest
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROJECT_FILES = ("pyproject.toml", "setup.py", "README.md", "LICENSE", "requirements.txt")
PROJECT_DIRS = ("tornado_session", "examples", "scripts")


def pyenv_python(version: str) -> str | None:
    """The path of pyenv's Python ``version`` (``"3.10"``), or None without pyenv."""
    try:
        names = subprocess.run(["pyenv", "versions", "--bare"], capture_output=True,
                               text=True, check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        return None
    matching = [name for name in names if re.fullmatch(rf"{re.escape(version)}\.\d+", name)]
    if not matching:
        return None
    prefix = subprocess.run(["pyenv", "prefix", matching[-1]], capture_output=True, text=True,
                            check=True).stdout.strip()
    return f"{prefix}/bin/python{version}"


class RunScriptTest(unittest.TestCase):
    """``scripts/run.sh`` in a fresh copy of the project."""

    def setUp(self) -> None:
        self.checkout = Path(tempfile.mkdtemp(prefix="tornado-session-run-"))
        self.addCleanup(shutil.rmtree, self.checkout, True)
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
        for name in PROJECT_FILES:
            shutil.copy2(ROOT / name, self.checkout / name)
        for name in PROJECT_DIRS:
            shutil.copytree(ROOT / name, self.checkout / name, ignore=ignore)

    def run_script(self, *args: str, python: str = "python3") -> subprocess.Popen[str]:
        env = {**os.environ, "PYTHON_FOR_VENV": python}
        env.pop("MONGODB_URI", None)
        process = subprocess.Popen(
            ["bash", "scripts/run.sh", *args], cwd=self.checkout, env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.addCleanup(self.stop, process)
        return process

    @staticmethod
    def stop(process: subprocess.Popen[str]) -> None:
        if process.poll() is None:
            os.killpg(process.pid, 15)
        process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()

    def test_the_counter_runs_from_a_fresh_checkout_without_the_test_tools(self) -> None:
        process = self.run_script("counter", "--port=0")
        assert process.stdout is not None
        deadline = time.monotonic() + 240
        output = []
        url = None
        while url is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            output.append(line)
            found = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
            url = found.group(1) if found else None
        self.assertIsNotNone(url, "".join(output))
        with urllib.request.urlopen(url, timeout=10) as response:
            self.assertEqual(response.status, 200)
            self.assertEqual(response.read(), b"1")
        freeze = subprocess.run(
            [str(self.checkout / ".venv/bin/python"), "-m", "pip", "list", "--format=freeze"],
            capture_output=True, text=True, check=True,
        ).stdout.lower()
        installed = {line.split("==")[0] for line in freeze.split()}
        self.assertLessEqual({"tornado", "orjson", "tornado-async-session"}, installed)
        for tool in ("mypy", "ruff", "selenium", "pytest", "hypothesis", "pymongo", "redis"):
            self.assertNotIn(tool, installed)

    def test_an_unknown_example_is_named_with_the_ones_there_are(self) -> None:
        process = self.run_script("countr")
        output, _ = process.communicate(timeout=60)
        self.assertEqual(process.returncode, 2)
        self.assertIn("no example 'countr'", output)
        self.assertIn("counter", output)
        self.assertFalse((self.checkout / ".venv").exists())

    def test_an_old_python_is_refused_with_what_to_do(self) -> None:
        old = pyenv_python("3.10")
        if old is None:
            self.fail("this test needs pyenv's Python 3.10, which the image has")
        process = self.run_script("counter", python=old)
        output, _ = process.communicate(timeout=60)
        self.assertEqual(process.returncode, 1)
        self.assertIn("is Python 3.10", output)
        self.assertIn("needs Python 3.11 or newer", output)
        self.assertIn("PYTHON_FOR_VENV", output)
        self.assertFalse((self.checkout / ".venv").exists())

    def test_a_missing_python_is_named(self) -> None:
        process = self.run_script("counter", python="/nonexistent/python3")
        output, _ = process.communicate(timeout=60)
        self.assertEqual(process.returncode, 1)
        self.assertIn("no Python at '/nonexistent/python3'", output)
