"""What MemoryStore holds: bytes per 200-byte session, and peak RSS with 100,000 sessions.

``python -m benchmarks.memory [per-session|peak]`` prints one JSON object; `run`
starts each measure in a fresh process so that one's memory does not blur the
other's.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import resource
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

from tornado_session import serializers
from tornado_session.stores import MemoryStore

from .data import SEED

#: The session every measure stores: `SEED`, exactly 200 bytes of canonical JSON.
SESSION_BYTES = len(serializers.dumps(SEED))
COUNT = 10_000
BOUND = 100_000
WRITTEN = 150_000


def key(index: int) -> str:
    """A store key as the lifecycle makes them: the SHA-256 hex of a session id."""
    return serializers.hash_session_id(f"session-{index}")


async def _fill(store: MemoryStore, count: int) -> None:
    for index in range(count):
        await store.set(key(index), SEED, 86400.0)


def per_session() -> dict[str, Any]:
    """Bytes held per session: traced allocations after ``COUNT`` sets, divided."""
    store = MemoryStore(max_entries=None)
    keys = [key(index) for index in range(COUNT)]  # the caller's keys are not the store's cost
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    asyncio.run(_fill_keys(store, keys))
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return {"session_json_bytes": SESSION_BYTES, "sessions": COUNT,
            "bytes_per_session": round((after - before) / COUNT)}


async def _fill_keys(store: MemoryStore, keys: list[str]) -> None:
    for store_key in keys:
        await store.set(store_key, SEED, 86400.0)


def peak() -> dict[str, Any]:
    """Peak RSS of a process writing ``WRITTEN`` sessions into ``max_entries=BOUND``."""
    baseline = _rss_kib()
    store = MemoryStore(max_entries=BOUND)
    asyncio.run(_fill(store, WRITTEN))
    held = asyncio.run(store.count())
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"max_entries": BOUND, "sessions_written": WRITTEN, "sessions_held": held,
            "rss_before_mib": round(baseline / 1024, 1), "peak_rss_mib": round(peak_kib / 1024, 1),
            "peak_over_start_mib": round((peak_kib - baseline) / 1024, 1)}


def _rss_kib() -> int:
    for line in Path(f"/proc/{os.getpid()}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def run(log: Any) -> dict[str, Any]:
    """Both measures, each in its own process."""
    results: dict[str, Any] = {}
    for what in ("per-session", "peak"):
        print(f"memory: {what}", file=log, flush=True)
        out = subprocess.run([sys.executable, "-m", "benchmarks.memory", what],
                             cwd=Path(__file__).resolve().parent.parent,
                             capture_output=True, text=True, check=True).stdout
        results.update(json.loads(out))
    return results


if __name__ == "__main__":
    measure = per_session if sys.argv[1:] == ["per-session"] else peak
    print(json.dumps(measure()))
