"""docs/operations.md's shutdown program, run as written: it serves, and a SIGTERM stops it cleanly
(requests answered, the store closed, the process gone with status 0 and nothing on stderr)."""

from __future__ import annotations

import http.cookiejar
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request
from pathlib import Path

from tests.redis_server import RedisServerCase, free_port

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "operations.md"


def shutdown_program() -> str:
    """The guide's one Python block that installs a signal handler."""
    blocks = re.findall(r"```python\n(.*?)```", GUIDE.read_text(encoding="utf-8"), re.S)
    programs = [block for block in blocks if "add_signal_handler" in block]
    assert len(programs) == 1, "docs/operations.md shows one program wired to signals"
    return programs[0]


class TestTheGuidesShutdown(RedisServerCase, unittest.TestCase):
    def start(self, tmp: Path) -> tuple[subprocess.Popen[str], int]:
        source = shutdown_program()
        self.assertIn('"redis://localhost:6379/0"', source)
        self.assertIn("app.listen(8888)", source)
        port = free_port()
        source = source.replace('"redis://localhost:6379/0"', repr(self.redis_server.url))
        source = source.replace("app.listen(8888)", f"app.listen({port}, '127.0.0.1')")
        program = tmp / "shutdown_example.py"
        program.write_text(source, encoding="utf-8")
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        # An unclosed client or socket warns on stderr; so does a task left pending.
        process = subprocess.Popen(
            [sys.executable, "-W", "default::ResourceWarning", str(program)], cwd=tmp, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.addCleanup(lambda: process.poll() is None and process.kill())
        return process, port

    def test_sigterm_closes_the_store_and_exits_cleanly(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            process, port = self.start(Path(tmp))
            opener = urllib.request.build_opener(
                urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
            )
            url = f"http://127.0.0.1:{port}/"
            deadline = time.monotonic() + 20
            while True:
                try:
                    first = opener.open(url, timeout=5).read()
                    break
                except OSError:
                    if process.poll() is not None:
                        self.fail(f"the example exited: {process.communicate()}")
                    self.assertLess(time.monotonic(), deadline, "the example never listened")
                    time.sleep(0.05)
            self.assertEqual(first, b"1")
            self.assertEqual(opener.open(url, timeout=5).read(), b"2")
            with self.redis_server.admin() as admin:
                self.assertEqual(admin.dbsize(), 1)  # the session is in Redis

            started = time.monotonic()
            process.send_signal(signal.SIGTERM)
            stdout, stderr = process.communicate(timeout=15)
            self.assertEqual(process.returncode, 0, stderr)
            self.assertLess(time.monotonic() - started, 10)
            self.assertEqual(stderr, "")
            self.assertEqual(stdout, "")
