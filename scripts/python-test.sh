#!/usr/bin/env bash
# The Python suite: the shared virtual environment (scripts/python-env.sh),
# `pip install ./python` (maturin builds libpcgrad from the capi crate into the
# wheel), then pytest over python/tests, which ends with the line
# `python conformance: K cases passed`. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=$(scripts/python-env.sh)
# The package goes into this checkout's target directory, not into the shared
# environment, so checkouts (and concurrent runs) never replace each other's
# build; PYTHONPATH puts it first, also for the processes the tests spawn.
site=${CARGO_TARGET_DIR:-target}/python-site
case $site in /*) ;; *) site=$PWD/$site ;; esac
rm -rf "$site"
"$venv/bin/python" -m pip install --quiet --no-deps --target "$site" ./python
# From the repository root, so `import pcgrad` is the installed package.
PYTHONPATH=$site "$venv/bin/python" -m pytest -q -p no:cacheprovider python/tests "$@"
