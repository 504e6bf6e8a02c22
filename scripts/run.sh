#!/usr/bin/env bash
# Set up the project on a fresh machine, then run an example app.
# Usage: scripts/run.sh [EXAMPLE] [--flag=value ...]   (README's run command)
#   EXAMPLE is a module of examples/ (default: login); flags go to the app,
#   e.g. scripts/run.sh counter --port=9000
# Installs only what the example needs (not the test tools); the app prints the URL to open.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh

example="login"
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
    example="$1"
    shift
fi
if [ ! -f "examples/$example.py" ]; then
    echo "error: no example '$example'; the examples are:" \
         "$(cd examples && ls -- *.py | grep -v '^_' | sed 's/\.py$//' | tr '\n' ' ')" >&2
    exit 2
fi
# The login app keeps its data in MongoDB when given a URI: then it needs PyMongo too.
extra=""
case " $* " in
    *" --mongodb_uri="* | *" --mongodb-uri="*) extra="mongo" ;;
esac
[ -n "${MONGODB_URI:-}" ] && [ "$example" = "login" ] && extra="mongo"
setup_app_venv "$extra"
exec .venv/bin/python -m "examples.$example" "$@"
