#!/usr/bin/env bash
# Runs the C ABI tests (the `ffi::` unit tests in src/ffi/, which hold every
# `unsafe` block of the crate), then the threaded passes
# (tests/miri_threads.rs), under Miri, to catch undefined behaviour and data
# races:
# out-of-bounds or misaligned accesses, aliasing violations, invalid values,
# reads of uninitialised memory.
#
# Needs a nightly toolchain with the miri and rust-src components; installs
# them with rustup when missing. When no such toolchain can be installed
# (offline machine, no rustup), prints a SKIPPED line and exits 0. Any Miri
# failure fails the script.
#
# Flags:
# - `--features libm/force-soft-floats`: libm's x86 `sqrt` is inline
#   assembly, which Miri cannot run; the soft version is also correctly
#   rounded, so the results are the same.
# - `-Zmiri-strict-provenance`: no integer-to-pointer casts anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."

skip() {
    echo "miri: SKIPPED (no nightly toolchain with miri could be installed)"
    exit 0
}

have_miri() {
    cargo +nightly miri --version >/dev/null 2>&1 &&
        rustup component list --installed --toolchain nightly 2>/dev/null | grep -q '^rust-src'
}

if ! have_miri; then
    command -v rustup >/dev/null 2>&1 || skip
    if ! rustup toolchain list | grep -q '^nightly'; then
        rustup toolchain install nightly --profile minimal --component miri,rust-src || skip
    fi
    rustup component add miri rust-src --toolchain nightly || skip
    have_miri || skip
fi

cargo +nightly miri --version
cargo +nightly miri setup
t0=$SECONDS
MIRIFLAGS="${MIRIFLAGS:--Zmiri-strict-provenance}" \
    cargo +nightly miri test -p pcgrad --lib --features capi,half,libm/force-soft-floats ffi::
echo "miri: ffi tests passed in $((SECONDS - t0)) s"

# The threaded passes (feature `parallel`) on 2 and 3 scoped worker
# threads: tests/miri_threads.rs (under Miri `parallel::MIN_WORK` is 256
# elements, so its small problems spawn workers through the one-call API
# too). Miri checks the scoped threads, the per-chunk partial Grams and
# their combination for data races and undefined behaviour.
t0=$SECONDS
# Miri reports one CPU unless told otherwise; the worker count is capped at
# the cores, so it is given 4.
MIRIFLAGS="${MIRIFLAGS:--Zmiri-strict-provenance} -Zmiri-num-cpus=4" \
    cargo +nightly miri test -p pcgrad --features parallel,libm/force-soft-floats --test miri_threads
echo "miri: threaded tests passed in $((SECONDS - t0)) s"
