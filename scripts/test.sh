#!/usr/bin/env bash
# Set up everything the test suite needs on a fresh machine, then run it.
# Usage: scripts/test.sh [pytest arguments]      (README's test command; CI runs it too)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh

setup_python_venv
setup_redis_server
setup_mongo_wire_server

echo "== ruff"
.venv/bin/ruff check .
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
.venv/bin/python -m pytest "$@"
