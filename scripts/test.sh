#!/usr/bin/env bash
# Set up everything the test suite needs on a fresh machine, then run it.
# Usage: scripts/test.sh [pytest arguments]      (README's test command; CI runs it too)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh

setup_python_venv
setup_redis_server
setup_nginx
setup_mongo_wire_server
setup_chromium
setup_docs

echo "== ruff"
.venv/bin/ruff check .
echo "== mypy"
.venv/bin/mypy
echo "== docs"
build_docs
echo "== pytest (Python $(.venv/bin/python -c 'import platform; print(platform.python_version())'))"
.venv/bin/python -m pytest "$@"
# The other supported Pythons run the same suite, but for the tests that start a Redis Cluster or
# nginx over several processes (marked "topology": minutes, and nothing there depends on the
# Python version); EXTRA_PYTHONS="" skips them.
for version in ${EXTRA_PYTHONS-3.12 3.13}; do
    setup_python_venv "$version"
    echo "== pytest (Python $version)"
    ".venv-$version/bin/python" -m pytest -m "not slow and not topology" "$@"
done
