"""Profile one scenario's hot path: the server under pyinstrument, loaded by wrk.

``.venv-bench/bin/python -m benchmarks.profile ts-memory read [--seconds 5]`` prints
pyinstrument's text report of the server process (the time spent per call
tree while wrk keeps it busy).  How the README's before/after numbers were found.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .run import ROOT, free_port, get, pinned, seed, start_redis, wait_port, wrk


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("kind")
    parser.add_argument("scenario")
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--interval", type=float, default=0.0001, help="sampling interval (s)")
    args = parser.parse_args(argv)
    port = free_port()
    redis = None
    command = [sys.executable, "-m", "benchmarks.servers", args.kind, "--port", str(port),
               "--exit-after", str(args.seconds + 3)]
    if "redis" in args.kind:
        from .run import Processes

        procs = Processes()
        redis = procs
        found = start_redis(procs)
        if found is None:
            print("no redis-server (scripts/bench.sh installs it)", file=sys.stderr)
            return 1
        command += ["--redis-url", found[0]]
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "profile.txt"
        server = subprocess.Popen(pinned(0, [
            sys.executable, "-m", "pyinstrument", "-i", str(args.interval), "-r", "text",
            "--show-all", "-o", str(report), *command[1:],
        ]), cwd=ROOT)
        try:
            if not wait_port(port, 20):
                print("the server did not start", file=sys.stderr)
                return 1
            started = time.monotonic()
            cookie = seed(port)
            if args.scenario == "regenerate":
                raise SystemExit("profile regenerate through `run` instead (it needs a chain)")
            if args.scenario == "unused":
                get(port, "/unused")
            run = wrk(port, f"/{args.scenario}", seconds=args.seconds,
                      cookie=None if args.scenario == "unused" else cookie)
            print(f"{run.rps:,.0f} req/s under the profiler", file=sys.stderr)
            server.wait(args.seconds + 30 - (time.monotonic() - started))
            print(report.read_text())
        finally:
            if server.poll() is None:
                server.terminate()
            if redis is not None:
                redis.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
