"""A real redis-server for the tests: our own process, on a free loopback port.

`RedisServer` starts Debian's ``redis-server`` (installed by scripts/setup.sh)
with persistence off unless asked, and stops it by its PID.  ``KEYS``,
``FLUSHDB`` and ``FLUSHALL`` are renamed away in every instance, so a store
that used them would fail its tests; the fixture clears the database with its
own renamed ``FLUSHDB``.

`RedisServerCase` is a mixin for test classes: one server per class, started in
``setUpClass`` and stopped at class clean-up even when a test fails.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import ClassVar

import redis

FLUSHDB = "fixture-flushdb"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """One redis-server process, restartable on the same port and directory."""

    def __init__(self, *, appendonly: bool = False, replica_of: RedisServer | None = None) -> None:
        self.appendonly = appendonly
        #: The primary this server replicates (``--replicaof``), if any.
        self.replica_of = replica_of
        self.port = free_port()
        self.directory = tempfile.mkdtemp(prefix="tornado-session-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log_path(self) -> str:
        return os.path.join(self.directory, "redis.log")

    def start(self) -> None:
        """Start the server and wait until it answers PING (10 s at most)."""
        assert self.process is None, "already running"
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed: run scripts/test.sh (setup_redis_server)"
        args = [
            binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", self.directory,
            "--logfile", self.log_path,
            "--daemonize", "no",
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--rename-command", "KEYS", "",
            "--rename-command", "FLUSHALL", "",
            "--rename-command", "FLUSHDB", FLUSHDB,
        ]
        if self.replica_of is not None:
            args += ["--replicaof", "127.0.0.1", str(self.replica_of.port)]
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            if self.process.poll() is not None:
                self.process = None
                raise RuntimeError(f"redis-server exited at start: {self.log_tail()}")
            try:
                with self.admin() as client:
                    if client.ping():
                        return
            except redis.exceptions.RedisError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not answer in 10 s: {self.log_tail()}")
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop the server by its PID (SIGTERM: a clean shutdown, the AOF flushed)."""
        process, self.process = self.process, None
        if process is None:
            return
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def remove(self) -> None:
        """Stop the server and delete its directory."""
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def admin(self) -> redis.Redis:
        """A blocking client for the test's own checks (never used by a store)."""
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def flush(self) -> None:
        """Empty the database (the renamed FLUSHDB, which no store can call)."""
        with self.admin() as client:
            client.execute_command(FLUSHDB)

    def log_tail(self) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as log:
                return log.read()[-2000:]
        except OSError:
            return "(no log)"


class RedisServerCase:
    """Mixin: ``cls.redis_server`` runs for the whole test class."""

    redis_server: ClassVar[RedisServer]
    appendonly: ClassVar[bool] = False

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()  # type: ignore[misc]
        server = RedisServer(appendonly=cls.appendonly)
        cls.addClassCleanup(server.remove)  # type: ignore[attr-defined]
        server.start()
        cls.redis_server = server

    def setUp(self) -> None:
        if self.redis_server.process is None:  # a test stopped it
            self.redis_server.start()
        self.redis_server.flush()
        super().setUp()  # type: ignore[misc]
