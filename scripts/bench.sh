#!/usr/bin/env bash
# Run the benchmarks (README's benchmark command): set up what they need on a fresh machine
# (wrk, redis-server, .venv-bench with requirements-bench.txt, the MongoDB wire server), then
# write benchmarks/results.md and benchmarks/results.json. Takes about 4 minutes on 2 cores.
# Usage: scripts/bench.sh [--repeats N] [--only KIND...] [--skip-extras]   (see benchmarks/run.py)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh

apt_install wrk
setup_redis_server
setup_mongo_wire_server

if [ ! -x .venv-bench/bin/python ]; then
    "$PYTHON_FOR_VENV" -m venv .venv-bench
fi
.venv-bench/bin/python -m pip install -q --disable-pip-version-check -r requirements-bench.txt -e . 2>&1 \
    | grep -v "is ignored: it is neither a file nor a directory" || true

echo "load before the run: $(uptime)"
exec .venv-bench/bin/python -m benchmarks.run "$@"
