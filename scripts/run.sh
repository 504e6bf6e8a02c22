#!/usr/bin/env bash
# Set up the project on a fresh machine, then run an example app.
# Usage: scripts/run.sh [EXAMPLE] [--flag=value ...]   (README's run command)
#   EXAMPLE is a module of examples/ (default: login); flags go to the app,
#   e.g. scripts/run.sh counter --port=9000
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh

example="login"
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
    example="$1"
    shift
fi
setup_python_venv
exec .venv/bin/python -m "examples.$example" "$@"
