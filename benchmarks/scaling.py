"""Throughput of 1, 2 and 4 Tornado processes behind nginx, sharing one store.

``python -m benchmarks.scaling [--seconds 4] [--stores redis cluster mongo]`` starts,
for each store and each process count, the processes of the multi-process tests
(``tests.multiprocess_app``: the login example on the store) behind Debian's
nginx (``tests.nginx``: round robin, no sticky sessions), logs one user in, and
runs ``wrk -t1 -c16`` through nginx with that user's cookie on ``/count-read``
(a session read) and ``/count`` (a session change), then ``/ping`` (a handler
that never touches the session: the ceiling of the setup), ``--repeats`` times
in turn.  It writes ``benchmarks/scaling.md`` and ``benchmarks/scaling.json``:
the median requests per second, and the median CPU time per request of the
whole server side (every Tornado process, nginx and its workers, the store's
servers), read from ``/proc/PID/task/*/schedstat`` as benchmarks/run.py does.

Nothing is pinned: nginx, the Tornado processes, Redis and wrk share the
machine's cores, as they would on one host.  Requests per second move with
whatever else the machine runs (the load average is recorded); CPU time per
request moves less, but on a crowded machine it grows too (cache and
scheduler effects), so compare the rows of one run.  The requests per second N
processes can give is about (cores available to them) / (CPU per request).  On
the project's 2-core machines more processes than cores cannot add
throughput.  That sharing a store loses nothing is tests/test_multiprocess.py's
part.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import statistics
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tornado.httpclient import AsyncHTTPClient

from benchmarks.run import cpu_ns
from tests.load_users import User
from tests.mongo_server import MongoWireServer
from tests.nginx import Nginx, TornadoProcesses
from tests.redis_cluster import RedisCluster
from tests.redis_server import RedisServer

HERE = Path(__file__).resolve().parent
LUA = HERE / "wrk" / "bench.lua"
PATHS = ("/count-read", "/count", "/ping")


def server_pids(roots: Sequence[int]) -> list[int]:
    """``roots`` and all their descendants (nginx's workers)."""
    pids, queue = [], list(roots)
    while queue:
        pid = queue.pop()
        pids.append(pid)
        for task in Path(f"/proc/{pid}/task").glob("*/children"):
            queue.extend(int(child) for child in task.read_text().split())
    return pids


def wrk(url: str, cookie: str, seconds: int, pids: Sequence[int]) -> tuple[float, float]:
    """Requests per second on ``url`` with ``cookie``, and CPU µs per request of ``pids``.

    Any error (a non-2xx/3xx answer, a socket error) fails the run.
    """
    before = cpu_ns(pids)[0]
    output = subprocess.run(
        ["wrk", "-t1", "-c16", f"-d{seconds}s", "--timeout", "5s", "-s", str(LUA),
         "-H", f"Cookie: {cookie}", url],
        capture_output=True, text=True, check=True,
    ).stdout
    summary = json.loads(output.strip().splitlines()[-1])
    errors = {k: v for k, v in summary.items() if k not in ("requests", "duration_us") and v}
    if errors:
        raise RuntimeError(f"wrk on {url}: {errors}")
    cpu_us = (cpu_ns(pids)[0] - before) / 1000 / summary["requests"]
    return summary["requests"] * 1e6 / summary["duration_us"], cpu_us


async def measure(
    kind: str, url: str, processes: int, seconds: int, repeats: int, backend_pids: list[int]
) -> dict[str, Any]:
    """Median req/s and CPU µs per request of each path, through nginx over N processes."""
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
        assert nginx.process is not None
        pids = server_pids(
            [nginx.process.pid, *(p.pid for p in tornados.processes), *backend_pids]
        )
        runs: dict[str, list[tuple[float, float]]] = {path: [] for path in PATHS}
        for _ in range(repeats):
            for path in PATHS:
                runs[path].append(wrk(nginx.url + path, cookie, seconds, pids))
        figures: dict[str, Any] = {}
        for path in PATHS:
            figures[path] = round(statistics.median(rps for rps, _ in runs[path]))
            figures[path + " cpu_us"] = round(statistics.median(us for _, us in runs[path]))
        return figures
    finally:
        nginx.stop()
        tornados.stop()


def start_backend(kind: str) -> tuple[str, list[int], Any]:
    """Start the store's server(s): its URL, the PIDs whose CPU counts, and how to stop it."""
    if kind == "mongo":
        mongo = MongoWireServer()
        mongo.start()
        assert mongo.process is not None
        return mongo.uri, [mongo.process.pid], mongo.close
    if kind == "cluster":
        cluster = RedisCluster()
        cluster.start()
        return cluster.url, [p.pid for p in cluster.processes.values()], cluster.remove
    redis = RedisServer()
    redis.start()
    assert redis.process is not None
    return redis.url, [redis.process.pid], redis.remove


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--stores", nargs="+", default=["redis", "cluster", "mongo"],
        choices=["redis", "cluster", "mongo"],
    )
    args = parser.parse_args()
    results: list[dict[str, Any]] = []
    for kind in args.stores:
        url, backend_pids, stop = start_backend(kind)
        try:
            for processes in (1, 2, 4):
                figures = await measure(
                    kind, url, processes, args.seconds, args.repeats, backend_pids
                )
                results.append({"store": kind, "processes": processes, **figures})
                print(results[-1], flush=True)
        finally:
            stop()
    meta = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "platform": platform.platform(), "cpus": os.cpu_count(), "seconds": args.seconds,
        "repeats": args.repeats, "load": os.getloadavg()[0],
    }
    (HERE / "scaling.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    write_markdown(results, meta)


def write_markdown(results: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    """benchmarks/scaling.md from the figures (``python -m benchmarks.scaling`` writes both)."""
    seconds, repeats = meta["seconds"], meta["repeats"]
    lines = [
        "# Throughput behind nginx: 1, 2 and 4 Tornado processes",
        "",
        f"Recorded by `python -m benchmarks.scaling` on {meta['date']}, {meta['cpus']} cores, "
        f"load average {meta['load']:.1f} at the end; wrk -t1 -c16, {seconds} s a run, "
        f"medians of {repeats}, nothing pinned (see the module docstring).  Requests per "
        "second, and in brackets the CPU time per request of the whole server side in µs "
        "(Tornado processes, nginx, the store's servers).  Both move with the machine's "
        "other load: compare the rows of one run, and each path with `/ping` (the same "
        "stack, the session never touched).",
        "",
        "| store | processes | read (/count-read) | change (/count) | no session (/ping) |",
        "|---|---|---|---|---|",
    ]
    for row in results:
        cells = [f"{row[path]} ({row[path + ' cpu_us']} µs)" for path in PATHS]
        lines.append(f"| {row['store']} | {row['processes']} | " + " | ".join(cells) + " |")
    (HERE / "scaling.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
