"""Throughput of 1, 2 and 4 Tornado processes behind nginx, sharing one store.

``python -m benchmarks.scaling [--seconds 3] [--stores redis cluster]`` starts,
for each store and each process count, the processes of the multi-process tests
(``tests.multiprocess_app``: the login example on the store) behind Debian's
nginx (``tests.nginx``: round robin, no sticky sessions), logs one user in, and
runs ``wrk -t1 -c16`` through nginx with that user's cookie on ``/count-read``
(a session read) and ``/count`` (a session change), then ``/ping`` (a handler
that never touches the session: the ceiling of the setup).  It writes
``benchmarks/scaling.md`` and ``benchmarks/scaling.json``.

Nothing is pinned: nginx, the Tornado processes, Redis and wrk share the
machine's cores, as they would on one host.  On the project's 2-core machines
more processes than cores cannot add throughput; the figures show how far N
processes get on the cores there are, and that sharing a store costs nothing
in correctness (tests/test_multiprocess.py proves that part).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from tornado.httpclient import AsyncHTTPClient

from tests.load_users import User
from tests.nginx import Nginx, TornadoProcesses
from tests.redis_cluster import RedisCluster
from tests.redis_server import RedisServer

HERE = Path(__file__).resolve().parent
LUA = HERE / "wrk" / "bench.lua"
PATHS = ("/count-read", "/count", "/ping")


def wrk(url: str, cookie: str, seconds: int) -> float:
    """Requests per second wrk gets on ``url`` with ``cookie``; any error fails the run."""
    output = subprocess.run(
        ["wrk", "-t1", "-c16", f"-d{seconds}s", "--timeout", "5s", "-s", str(LUA),
         "-H", f"Cookie: {cookie}", url],
        capture_output=True, text=True, check=True,
    ).stdout
    summary = json.loads(output.strip().splitlines()[-1])
    errors = {k: v for k, v in summary.items() if k not in ("requests", "duration_us") and v}
    if errors:
        raise RuntimeError(f"wrk on {url}: {errors}")
    return float(summary["requests"] * 1e6 / summary["duration_us"])


async def measure(kind: str, url: str, processes: int, seconds: int) -> dict[str, float]:
    """Req/s of each path through nginx over ``processes`` processes."""
    tornados = TornadoProcesses(processes, kind, url, users=1)
    tornados.start()
    nginx = Nginx(tornados.ports)
    try:
        nginx.start()
        client = AsyncHTTPClient(force_instance=True)
        user = User(nginx.url, "user0", client)
        await user.log_in()
        client.close()
        cookie = "; ".join(f"{k}={v}" for k, v in user.jar.items())
        return {path: round(wrk(nginx.url + path, cookie, seconds)) for path in PATHS}
    finally:
        nginx.stop()
        tornados.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--stores", nargs="+", default=["redis", "cluster"])
    args = parser.parse_args()
    results: list[dict[str, Any]] = []
    for kind in args.stores:
        backend: Any = RedisCluster() if kind == "cluster" else RedisServer()
        backend.start()
        try:
            for processes in (1, 2, 4):
                figures = await measure(kind, backend.url, processes, args.seconds)
                results.append({"store": kind, "processes": processes, **figures})
                print(results[-1], flush=True)
        finally:
            backend.remove()
    write(results, args.seconds)


def write(results: list[dict[str, Any]], seconds: int) -> None:
    meta = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "platform": platform.platform(), "cpus": os.cpu_count(), "seconds": seconds,
        "load": os.getloadavg()[0],
    }
    (HERE / "scaling.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    lines = [
        "# Throughput behind nginx: 1, 2 and 4 Tornado processes",
        "",
        f"Recorded by `python -m benchmarks.scaling` on {meta['date']}, {meta['cpus']} cores, "
        f"load average {meta['load']:.1f} at the end; wrk -t1 -c16, {seconds} s a run, "
        "nothing pinned (see the module docstring).  Requests per second:",
        "",
        "| store | processes | read (/count-read) | change (/count) | no session (/ping) |",
        "|---|---|---|---|---|",
    ]
    for row in results:
        lines.append(
            f"| {row['store']} | {row['processes']} | {row['/count-read']} | "
            f"{row['/count']} | {row['/ping']} |"
        )
    (HERE / "scaling.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
