"""A MongoDB wire-protocol server for the tests: mongoeco, in a subprocess.

MongoDB itself cannot be installed here, so the MongoStore tests talk over TCP
to ``mongoeco``'s ``AsyncMongoEcoProxyServer``.  It needs Python 3.13, so it
lives in its own venv (``.venv-mongo``, made by ``scripts/setup.sh``'s
``setup_mongo_wire_server``) and runs as a subprocess: this file is both the
server (``python tests/mongo_server.py --port N --path DB``, under that venv)
and, imported, `MongoWireServer`, which starts, stops and restarts it.  Data
lives in a SQLite file, so a restart on the same port keeps every session.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVER_PYTHON = ROOT / ".venv-mongo" / "bin" / "python"
READY = "mongo-wire-server ready"


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class MongoWireServer:
    """The server subprocess: `start`, `stop` (by PID) and start again on the same port."""

    def __init__(self, *, persistent: bool = False) -> None:
        if not SERVER_PYTHON.exists():
            raise RuntimeError(
                f"{SERVER_PYTHON} is missing: run `. scripts/setup.sh && setup_mongo_wire_server` "
                "(scripts/test.sh does it)"
            )
        self.port = free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="mongo-wire-")
        #: The SQLite file holding the data (survives a restart), or ``None``: in memory.
        self.path = os.path.join(self._dir.name, "data.sqlite") if persistent else None
        self.process: subprocess.Popen[str] | None = None

    @property
    def uri(self) -> str:
        """The connection string of this server."""
        return f"mongodb://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        """Start the server and wait until it accepts connections."""
        assert self.process is None, "already running"
        command = [str(SERVER_PYTHON), __file__, "--port", str(self.port)]
        if self.path is not None:
            command += ["--path", self.path]
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        line = self.process.stdout.readline()  # blocks until the server says it is ready
        if READY not in line:
            self.stop()
            raise RuntimeError(f"the mongo wire server did not start: {line!r}")
        while time.monotonic() < deadline:  # and it answers on the port
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the mongo wire server did not listen on {self.port} in {timeout} s")

    def stop(self) -> None:
        """Stop the server (SIGTERM to its PID, SIGKILL if it lingers); data stays on disk."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()
        if process.stdout is not None:
            process.stdout.close()

    def close(self) -> None:
        """Stop the server and delete its data."""
        self.stop()
        self._dir.cleanup()


async def _serve(port: int, path: str | None) -> None:  # under .venv-mongo's Python 3.13
    from mongoeco.engines.memory import MemoryEngine  # type: ignore[import-not-found]
    from mongoeco.engines.sqlite import SQLiteEngine  # type: ignore[import-not-found]
    from mongoeco.wire import AsyncMongoEcoProxyServer  # type: ignore[import-not-found]

    engine = MemoryEngine() if path is None else SQLiteEngine(path)
    server = AsyncMongoEcoProxyServer(engine=engine, host="127.0.0.1", port=port)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(READY, flush=True)
    await stop.wait()
    await server.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", help="SQLite file holding the data (default: in memory)")
    args = parser.parse_args()
    asyncio.run(_serve(args.port, args.path))
    sys.exit(0)
