#!/bin/sh
# The README's first command: install abonent into .venv and run `abonent
# demo` (arguments go to it, e.g. ./demo.sh --cabinet-port 8081).
#
# Works as root (a fresh container: no sudo there) and as a user: python3-venv
# is installed with apt-get only when a virtual environment cannot be made,
# through sudo only when we are not root.
set -eu
cd "$(dirname "$0")"
PYTHON="${PYTHON:-python3}"

if [ ! -x .venv/bin/pip ]; then
    rm -rf .venv
    if ! "$PYTHON" -m venv .venv >/dev/null 2>&1; then
        rm -rf .venv
        if [ "$(id -u)" = 0 ]; then
            SUDO=""
        elif command -v sudo >/dev/null 2>&1; then
            SUDO="sudo"
        else
            echo "demo.sh: python3-venv is missing, and installing it needs root; run this as root, or install sudo or python3-venv first" >&2
            exit 1
        fi
        echo "demo.sh: installing python3-venv" >&2
        $SUDO apt-get update -qq
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
        "$PYTHON" -m venv .venv
    fi
fi
.venv/bin/pip install -q -e .
exec .venv/bin/abonent demo "$@"
