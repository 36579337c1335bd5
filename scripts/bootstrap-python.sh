#!/bin/sh
# Makes sure `$PYTHON -m venv` works before `make venv` runs it: Python >= 3.11
# with the venv and ensurepip modules. Debian's python3 lacks them until its
# python3.X-venv package is installed; as root this script installs that (and
# python3 itself if missing) with apt-get. What it cannot fix, it explains and fails.
set -eu

PYTHON="${1:-python3}"

say() { echo "bootstrap-python: $*" >&2; }

apt_install() {
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        say "missing $*; install it (Debian: sudo apt-get install -y $*) and rerun"
        exit 1
    fi
    say "installing $* (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if ! command -v "$PYTHON" >/dev/null 2>&1; then
    if [ "$PYTHON" != python3 ]; then
        say "$PYTHON not found; set PYTHON to a Python 3.11+ interpreter"
        exit 1
    fi
    apt_install python3 python3-venv
fi

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    say "$PYTHON is Python $("$PYTHON" -c 'import platform; print(platform.python_version())'); Lethe needs 3.11 or newer: install one and run \`make PYTHON=/path/to/python3.11 test\`"
    exit 1
fi

if ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    prefix=$("$PYTHON" -c 'import sys; print(sys.base_prefix)')
    version=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    if [ "$prefix" != /usr ]; then
        say "$PYTHON (under $prefix) has no venv/ensurepip module; reinstall it with them"
        exit 1
    fi
    apt_install "python${version}-venv"
    "$PYTHON" -c 'import ensurepip, venv'
fi
