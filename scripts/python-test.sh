#!/usr/bin/env bash
# The Python suite: the shared virtual environment (scripts/python-env.sh),
# `pip install ./python` (maturin builds libpcgrad from the capi crate into the
# wheel), then pytest over python/tests, which ends with the line
# `python conformance: K cases passed`. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=$(scripts/python-env.sh)
"$venv/bin/python" -m pip install --quiet --force-reinstall --no-deps ./python
# From the repository root, so `import pcgrad` is the installed package.
"$venv/bin/python" -m pytest -q -p no:cacheprovider python/tests "$@"
