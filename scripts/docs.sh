#!/usr/bin/env bash
# Build the user guide into docs/_build/html/ (warnings are errors, as in CI).
# Usage: scripts/docs.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh

setup_python_venv
setup_docs
build_docs
echo "docs/_build/html/index.html"
