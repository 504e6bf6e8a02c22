"""MemoryStore under several processes: a warning, since each process keeps its own sessions."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import unittest

WARNING = "MemoryStore is used in a forked process"

#: A server started the documented Tornado way: bind, fork, then serve.  Each
#: child makes one store call and exits; the parent exits when both have.
SCRIPT = textwrap.dedent("""
    import logging, os, sys
    import tornado.process
    from tornado_session.stores import MemoryStore

    logging.basicConfig(stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
    store = MemoryStore()          # {where}
    store.set("k", {{"n": 1}}, 60)  # the parent may use it: one process so far
    task = tornado.process.fork_processes({processes}, max_restarts=0)
    if task is not None:
        store = store if "{where}" == "before" else MemoryStore()
        store.set("k", {{"n": 2}}, 60)
        store.get("k")
        sys.stderr.flush()
        os._exit(0)
""")


class TestMemoryStoreUnderForkProcesses(unittest.TestCase):
    def run_server(self, where: str, processes: int = 2) -> str:
        result = subprocess.run(
            [sys.executable, "-c", SCRIPT.format(where=where, processes=processes)],
            capture_output=True, text=True, timeout=60,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        return result.stderr

    def test_a_store_made_before_fork_processes_warns_once_in_each_child(self) -> None:
        stderr = self.run_server("before")
        self.assertEqual(stderr.count(WARNING), 2, stderr)  # one per child, not per call
        self.assertIn("Use a store the processes share (RedisStore or MongoStore)", stderr)
        self.assertIn("WARNING tornado_session.stores.memory", stderr)

    def test_a_store_made_in_each_child_after_the_fork_warns_too(self) -> None:
        stderr = self.run_server("after")
        self.assertEqual(stderr.count(WARNING), 2, stderr)

    def test_one_process_that_never_forks_does_not_warn(self) -> None:
        result = subprocess.run(
            [sys.executable, "-c",
             "from tornado_session.stores import MemoryStore\n"
             "import logging; logging.basicConfig()\n"
             "s = MemoryStore(); s.set('k', {'n': 1}, 60); s.get('k')"],
            capture_output=True, text=True, timeout=60,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertNotIn(WARNING, result.stderr)
