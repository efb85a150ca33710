#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ for SECONDS each (default 60), with
# AddressSanitizer (cargo-fuzz's default), starting from the seed corpora in
# fuzz/seeds/ and the special-float dictionary fuzz/floats.dict. New inputs
# go to fuzz/corpus/<target>/ (not in git), crashes to fuzz/artifacts/.
# The differential target also runs as a build with `--cfg pcgrad_scalar`
# (the Cortex-M kernels). Fails on the first crash, timeout or leak.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#   scripts/fuzz.sh check [TARGET...]
#
# SECONDS = 0 runs every seed input of every target once and stops.
#
# `check` is the run of the test command: every seed input once, then a
# bounded search for new inputs from the seeds alone, a fixed number of
# executions per target (CHECK_RUNS below, about 20 s each on a 2-core
# machine) with a fixed libFuzzer seed (CHECK_SEED): a bounded run with
# the same mutation sequence every time (the inputs it explores can still
# differ a little between runs, since coverage feedback depends on where
# the buffers land). New inputs go to a temporary directory that is
# removed afterwards (the campaign corpus is not read).
#
# Needs a nightly toolchain and cargo-fuzz (pinned below); installs both
# when missing. Prints the executions of each target and the total.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
# The check run: executions per target (seed inputs included) and the
# libFuzzer seed.
declare -A CHECK_RUNS=(
    [ffi_flat]=10000
    [ffi_vars]=15000
    [ffi_phases]=10000
    [rust_api]=20000
    [differential]=15000
    [differential-scalar]=15000
)
CHECK_SEED=20260101
secs=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(ffi_flat ffi_vars ffi_phases rust_api differential differential-scalar)

if ! rustup toolchain list | grep -q '^nightly'; then
    rustup toolchain install nightly --profile minimal
fi
if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
    cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
fi

cd fuzz
total=0
report=()
for t in "${targets[@]}"; do
    bin=$t
    env=()
    if [ "$t" = differential-scalar ]; then
        bin=differential
        env=(RUSTFLAGS="--cfg pcgrad_scalar" CARGO_TARGET_DIR=target/scalar)
    fi
    log=$(mktemp)
    tmp=
    # -timeout: one input taking over 10 s is a hang; -rss_limit_mb: 2 GiB.
    if [ "$secs" = 0 ]; then
        echo "==> fuzz $t: the seeds once"
        dirs=("seeds/$bin")
        limit=(-runs=0)
    elif [ "$secs" = check ]; then
        runs=${CHECK_RUNS[$t]:?no CHECK_RUNS entry for $t}
        echo "==> fuzz $t: the seeds, then up to $runs executions in all (libFuzzer seed $CHECK_SEED)"
        tmp=$(mktemp -d)
        dirs=("$tmp" "seeds/$bin")
        limit=(-runs="$runs" -seed="$CHECK_SEED")
    else
        echo "==> fuzz $t for $secs s"
        mkdir -p "corpus/$t"
        dirs=("corpus/$t" "seeds/$bin")
        limit=(-max_total_time="$secs")
    fi
    if ! env "${env[@]}" cargo +nightly fuzz run "$bin" "${dirs[@]}" -- \
        -dict=floats.dict "${limit[@]}" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 >"$log" 2>&1; then
        # The assertion message comes before the long stack trace.
        grep -m1 -A4 'panicked at' "$log" || true
        tail -n 60 "$log"
        echo "fuzz: target $t FAILED (input in fuzz/artifacts/$bin/)"
        [ -z "$tmp" ] || rm -rf "$tmp"
        exit 1
    fi
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 || true)
    rm -f "$log"
    [ -z "$tmp" ] || rm -rf "$tmp"
    total=$((total + runs))
    report+=("$t: $runs executions ($cov)")
    # At once too, so that a later failure does not lose the count.
    echo "    $t: $runs executions ($cov)"
done
printf '  %s\n' "${report[@]}"
echo "fuzz: all ${#targets[@]} targets passed, $total executions in total"
