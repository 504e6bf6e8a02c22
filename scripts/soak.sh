#!/usr/bin/env bash
# The long reliability runs of docs/reliability.md: the property tests with the Hypothesis
# "long" profile, then the slow load, soak, memory and fault tests, on MemoryStore, Redis and
# the MongoDB wire server, and the multi-process runs behind nginx (docs/scaling.md).
# Figures go to a JSON-lines report, printed at the end.
#
# Usage: scripts/soak.sh                 (about 20 minutes on 2 cores)
# Sizes: LOAD_USERS (200) LOAD_REQUESTS (200)  users x /count requests of the load soak
#        FAULT_USERS (40) FAULT_OUTAGES (10)    users and store restarts of the fault soak
#        MEMORY_SESSIONS (200000)               sessions created over HTTP in the memory soak
#        MULTI_USERS (100) MULTI_ROUNDS (60)     users and rounds behind nginx over 4 processes
#        RELIABILITY_REPORT                     where the figures go (default: under /tmp)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh

setup_python_venv
setup_redis_server
setup_nginx
setup_mongo_wire_server

export RELIABILITY_REPORT="${RELIABILITY_REPORT:-${TMPDIR:-/tmp}/tornado-session-reliability-$(date -u +%Y%m%dT%H%M%SZ).jsonl}"
: >"$RELIABILITY_REPORT"
tests="tests/test_properties*.py tests/test_security*.py tests/test_load*.py tests/test_faults*.py
       tests/test_multiprocess.py tests/test_redis_failover.py"
started=$(date +%s)

failed=0
echo "== the default-run sizes (what CI runs)"
# shellcheck disable=SC2086
.venv/bin/python -m pytest -q -p no:cacheprovider $tests || failed=1
echo "== properties, Hypothesis profile 'long'"
HYPOTHESIS_PROFILE=long .venv/bin/python -m pytest -q -p no:cacheprovider -o timeout=3600 \
    tests/test_properties*.py || failed=1
echo "== slow: load soak, memory over HTTP, repeated store restarts under load"
# shellcheck disable=SC2086
.venv/bin/python -m pytest -q -p no:cacheprovider -m slow -o timeout=3600 $tests || failed=1

echo "== figures ($RELIABILITY_REPORT), $(( $(date +%s) - started )) s in all"
cat "$RELIABILITY_REPORT"
[ "$failed" -eq 0 ] || { echo "== some runs FAILED (see above)"; exit 1; }
