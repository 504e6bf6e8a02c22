"""MemoryStore's memory stays flat under 200,000 distinct sessions when ``max_entries`` bounds it.

The work runs in a subprocess (this file, run as a script), which reports its
resident set size (``VmRSS``) as it goes, so nothing else of the test process
blurs the figure.  Two ways:

* ``store``: 200,000 sessions written straight into the store, as the
  lifecycle writes them (a fresh 256-bit id, its hash as the key, login-like
  data): the default run.  A control run without the bound shows the probe
  does see growth.
* ``http`` (slow): a counter app on MemoryStore in the subprocess, and 200,000
  requests without a cookie sent to it over loopback, each creating a session.

Run the long one with ``.venv/bin/python -m pytest -m slow tests/test_load_memory.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SESSIONS = 200_000
BOUND = 10_000


def rss_kib(pid: int | str = "self") -> int:
    """Resident set size of a process, in KiB (Linux /proc)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS line")


async def fill_store(sessions: int, bound: int | None, samples: int) -> dict[str, Any]:
    from tornado_session.serializers import hash_session_id
    from tornado_session.stores import MemoryStore

    store = MemoryStore(max_entries=bound)
    points = [[0, rss_kib()]]
    started = time.monotonic()
    step = sessions // samples
    for number in range(1, sessions + 1):
        key = hash_session_id(secrets.token_urlsafe(32))
        data = {"user_id": str(number), "username": f"user{number}",
                "login_at": 1_760_000_000 + number, "flash": [["info", "Welcome back."]]}
        await store.set(key, data, 86400)
        if number % step == 0:
            points.append([number, rss_kib()])
    return {"samples": points, "entries": await store.count(),
            "seconds": round(time.monotonic() - started, 2)}


def serve(bound: int) -> None:
    """The counter app on a bounded MemoryStore; prints its port, serves until killed."""
    import tornado.httpserver
    import tornado.ioloop
    import tornado.netutil

    from examples import counter
    from tornado_session import SessionOptions
    from tornado_session.stores import MemoryStore

    async def main() -> None:
        app = counter.make_app(
            cookie_secret="memory-soak-" + "m" * 40,
            session=SessionOptions(store=MemoryStore(max_entries=bound)),
        )
        sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
        server = tornado.httpserver.HTTPServer(app)
        server.add_sockets(sockets)
        print(sockets[0].getsockname()[1], flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


def run_script(*args: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, __file__, *args], cwd=ROOT, capture_output=True, text=True,
        timeout=600, check=True,
    )
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


def growth_mib(samples: list[list[int]], after: int) -> float:
    """RSS growth from the first sample at or past ``after`` sessions to the last."""
    start = next(rss for number, rss in samples if number >= after)
    return (samples[-1][1] - start) / 1024


def test_memory_is_flat_over_200k_sessions_with_max_entries() -> None:
    from tests.load_users import report

    bounded = run_script("store", str(SESSIONS), str(BOUND))
    assert bounded["entries"] == BOUND
    # After the bound is reached (and a little more), memory must stop growing.
    growth = growth_mib(bounded["samples"], 4 * BOUND)
    peak = max(rss for _, rss in bounded["samples"]) / 1024
    assert growth < 2.0, bounded["samples"]
    # And what the bound holds costs what the data weighs (about 300 bytes a
    # session here), not several times more.
    per_session = growth_mib(bounded["samples"], 0) * 1024 * 1024 / BOUND
    assert per_session < 1024, f"{per_session:.0f} bytes per session"
    # The control: without the bound the same work grows the process a lot.
    unbounded = run_script("store", str(SESSIONS // 4), "0")
    unbounded_growth = growth_mib(unbounded["samples"], 0)
    assert unbounded["entries"] == SESSIONS // 4
    assert unbounded_growth > 10 * max(growth, 1.0), unbounded["samples"]
    report("memory_store_rss", sessions=SESSIONS, max_entries=BOUND,
           growth_after_40k_mib=round(growth, 2), peak_rss_mib=round(peak, 1),
           bytes_per_session=round(per_session),
           seconds=bounded["seconds"], unbounded_sessions=SESSIONS // 4,
           unbounded_growth_mib=round(unbounded_growth, 1))


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_memory_is_flat_over_200k_sessions_created_over_http() -> None:
    from tests.load_users import report

    sessions = int(os.environ.get("MEMORY_SESSIONS", str(SESSIONS)))
    server = subprocess.Popen(
        [sys.executable, __file__, "serve", str(BOUND)], cwd=ROOT, stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        samples, seconds = asyncio.run(_drive(port, server.pid, sessions))
    finally:
        server.terminate()
        server.wait(10)
        if server.stdout is not None:
            server.stdout.close()
    growth = growth_mib(samples, min(4 * BOUND, sessions // 2))
    assert growth < 4.0, samples
    report("memory_store_rss_http", sessions=sessions, max_entries=BOUND,
           growth_after_40k_mib=round(growth, 2),
           peak_rss_mib=round(max(rss for _, rss in samples) / 1024, 1),
           seconds=round(seconds, 1), rps=round(sessions / seconds))


async def _drive(port: int, pid: int, sessions: int) -> tuple[list[list[int]], float]:
    """``sessions`` cookie-less requests, 32 at a time; samples the server's RSS."""
    from tornado.httpclient import AsyncHTTPClient

    client = AsyncHTTPClient(force_instance=True, max_clients=32)
    url = f"http://127.0.0.1:{port}/"
    samples: list[list[int]] = []
    done = 0
    step = sessions // 20
    started = time.monotonic()

    async def worker(count: int) -> None:
        nonlocal done
        for _ in range(count):
            response = await client.fetch(url)
            assert response.code == 200 and response.body == b"1"
            assert "Set-Cookie" in response.headers
            done += 1
            if done % step == 0:
                samples.append([done, rss_kib(pid)])

    per_worker, extra = divmod(sessions, 32)
    await asyncio.gather(*(worker(per_worker + (n < extra)) for n in range(32)))
    client.close()
    return samples, time.monotonic() - started


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["store", "serve"])
    parser.add_argument("numbers", nargs="*", type=int)
    arguments = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    if arguments.mode == "store":
        count, bound = arguments.numbers
        print(json.dumps(asyncio.run(fill_store(count, bound or None, 20))))
    else:
        serve(arguments.numbers[0])
