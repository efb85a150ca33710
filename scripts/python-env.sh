#!/usr/bin/env bash
# Creates (or reuses) the virtual environment of the Python suites and prints
# its directory. The environment is keyed by a hash of
# python/requirements-test.txt, so every checkout and every rerun with the same
# pins shares one environment (torch and tensorflow-cpu are large: ~3 GB, a
# few minutes the first time), and a change of pins builds a new one.
#
#   venv=$(scripts/python-env.sh) && "$venv/bin/python" -m pytest python/tests
#
# PCGRAD_VENV_ROOT (default ~/.cache/pcgrad) chooses where environments live;
# PYTHON (default python3.11, else python3) the interpreter they are made from.
# Concurrent runs wait for each other on a lock file beside the environment.
set -euo pipefail
cd "$(dirname "$0")/.."

req=python/requirements-test.txt
hash=$(sha256sum "$req" | cut -c1-16)
root=${PCGRAD_VENV_ROOT:-$HOME/.cache/pcgrad}
venv=$root/venv-$hash
mkdir -p "$root"

build() {
    local py=${PYTHON:-}
    if [ -z "$py" ]; then
        if command -v python3.11 >/dev/null 2>&1; then py=python3.11; else py=python3; fi
    fi
    # A half-built environment (an interrupted install) is rebuilt from scratch.
    rm -rf "$venv"
    echo "python-env: creating $venv from $req with $py" >&2
    "$py" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip >&2
    "$venv/bin/python" -m pip install --quiet -r "$req" >&2
    touch "$venv/.complete"
}

if [ ! -f "$venv/.complete" ]; then
    if command -v flock >/dev/null 2>&1; then
        exec 9>"$venv.lock"
        flock 9
        [ -f "$venv/.complete" ] || build
        flock -u 9
    else
        build
    fi
fi
echo "$venv"
