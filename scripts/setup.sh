# Functions that install what the project needs; sourced by scripts/*.sh.
# Each is idempotent: a second run on the same machine does next to nothing.

PYTHON_FOR_VENV="${PYTHON_FOR_VENV:-python3}"

apt_install() {
    # apt_install PACKAGE...: install Debian packages that are missing (we run as root here).
    local missing=()
    for pkg in "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

pip_install() {
    # pip_install PYTHON ARGS...: a quiet pip install whose failure fails the script.
    # This image's pip configuration names local package folders that may be absent;
    # pip's warning about each is noise, and is the only output dropped here.
    local python="$1"
    shift
    "$python" -m pip install -q --disable-pip-version-check "$@" 2>&1 \
        | { grep -v "is ignored: it is neither a file nor a directory" || true; }
    return "${PIPESTATUS[0]}"
}

check_python_version() {
    # check_python_version PYTHON: stop with a clear message unless it is Python 3.11 or newer.
    local python="$1" found
    if ! found="$("$python" -c 'import platform; print(platform.python_version())' 2>/dev/null)"; then
        echo "error: no Python at '$python'; tornado-session needs Python 3.11 or newer" \
             "(set PYTHON_FOR_VENV=/path/to/python3.11)" >&2
        exit 1
    fi
    if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
        echo "error: $python is Python $found; tornado-session needs Python 3.11 or newer" \
             "(set PYTHON_FOR_VENV=/path/to/python3.11)" >&2
        exit 1
    fi
}

setup_app_venv() {
    # setup_app_venv [EXTRA]: .venv with the project (editable) and only what it needs to run
    # (Tornado, orjson, and the driver of EXTRA: mongo or redis), at the versions
    # requirements.txt pins: read as constraints, it installs nothing by itself.
    check_python_version "$PYTHON_FOR_VENV"
    if [ ! -x .venv/bin/python ]; then
        "$PYTHON_FOR_VENV" -m venv .venv
    fi
    pip_install .venv/bin/python -c requirements.txt -e ".${1:+[$1]}"
}

setup_python_venv() {
    # setup_python_venv [X.Y]: the project (editable) and the pinned test dependencies,
    # in .venv (the default Python) or in .venv-X.Y (that pyenv Python: the supported others).
    local dir=.venv python="$PYTHON_FOR_VENV"
    if [ $# -gt 0 ]; then
        dir=".venv-$1"
        python="$(pyenv prefix "$(pyenv versions --bare | grep -E "^$1\.[0-9]+$" | tail -n 1)")/bin/python$1"
    fi
    check_python_version "$python"
    if [ ! -x "$dir/bin/python" ]; then
        "$python" -m venv "$dir"
    fi
    pip_install "$dir/bin/python" -r requirements.txt -e .
}

setup_redis_server() {
    # Debian's redis-server; the tests start their own instance on a free port.
    command -v redis-server >/dev/null 2>&1 || apt_install redis-server
    # The package starts a system instance on 6379; the tests do not use it.
}

setup_nginx() {
    # Debian's nginx, the balancer of the multi-process tests (tests/nginx.py runs its own
    # instance in the foreground with its own config; the package's system instance is not used).
    command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || apt_install nginx
}

setup_mongo_wire_server() {
    # The MongoDB wire-protocol server the MongoStore tests start (tests/mongo_server.py):
    # mongoeco, which needs Python 3.13, in its own venv .venv-mongo, pinned by
    # requirements-mongo-server.txt.  PYTHON313 overrides where Python 3.13 is found.
    local python="${PYTHON313:-}"
    if [ -z "$python" ]; then
        if command -v pyenv >/dev/null 2>&1 && pyenv prefix 3.13.0 >/dev/null 2>&1; then
            python="$(pyenv prefix 3.13.0)/bin/python3.13"
        else
            python="$(command -v python3.13)"
        fi
    fi
    if [ ! -x .venv-mongo/bin/python ]; then
        "$python" -m venv .venv-mongo
    fi
    if ! cmp -s requirements-mongo-server.txt .venv-mongo/.installed 2>/dev/null; then
        pip_install .venv-mongo/bin/python -r requirements-mongo-server.txt
        .venv-mongo/bin/python -c "import mongoeco.wire, mongoeco.engines.sqlite"
        cp requirements-mongo-server.txt .venv-mongo/.installed
    fi
}

setup_chromium() {
    # Debian's Chromium and its WebDriver, for the browser test (tests/test_browser.py).
    apt_install chromium chromium-driver
}

setup_docs() {
    # The pinned documentation tools (Sphinx, furo, MyST), in .venv.
    pip_install .venv/bin/python -r docs/requirements.txt
}

build_docs() {
    # The user guide as HTML in docs/_build/html; any Sphinx warning fails the build.
    rm -rf docs/_build/doctrees
    .venv/bin/python -m sphinx -W --keep-going -q -b html -d docs/_build/doctrees docs docs/_build/html
}
