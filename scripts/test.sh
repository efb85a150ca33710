#!/usr/bin/env bash
# Runs every test of the project on a fresh machine: installs what it needs
# first (rustup targets and components, Debian packages), then runs each suite
# and prints a summary. Exits non-zero on the first failing suite.
set -euo pipefail
cd "$(dirname "$0")/.."

summary=()
step() { # step NAME COMMAND...
    local name=$1; shift
    echo "==> $name"
    local t0=$SECONDS
    "$@"
    summary+=("ok   $name ($((SECONDS - t0)) s)")
}

# --- setup -----------------------------------------------------------------
scripts/setup.sh

# --- Rust core ---------------------------------------------------------------
step "fmt" cargo fmt --all -- --check
step "clippy" cargo clippy --all-targets -- -D warnings
step "unit, conformance and property tests" cargo test --release
step "docs (missing docs are errors)" env RUSTDOCFLAGS="-D warnings" cargo doc --no-deps
step "no_std link check (thumbv7em-none-eabihf, no allocator)" \
    cargo build --release --manifest-path tests/no_std_link/Cargo.toml --target thumbv7em-none-eabihf

# --- more suites are added below this line ------------------------------------
step "parallel feature: clippy" cargo clippy --all-targets --features parallel -- -D warnings
step "parallel feature: every test, threads bitwise equal for 1/2/3/7" cargo test --release --features parallel
step "scalar kernels (the Cortex-M path) on the host: every test" \
    env RUSTFLAGS="--cfg pcgrad_scalar" CARGO_TARGET_DIR=target/scalar cargo test --release
step "roofline benchmark, quick set (runs only, asserts nothing on time)" \
    cargo run --release --features parallel --example roofline -- --quick
step "benches compile" cargo bench --no-run --features parallel
step "C examples: sanitizers, valgrind, C++, pkg-config" make -C c_examples test
step "Cortex-M4 firmware in QEMU (Rust and C), footprint table" scripts/firmware-test.sh
step "Miri over the FFI tests and the threaded passes (2 and 3 workers)" scripts/miri.sh
step "ThreadSanitizer: parallel tests, concurrent C callers, train.c" scripts/tsan.sh
step "fuzz targets (ASan, libFuzzer), 20 s each from the seed corpora" scripts/fuzz.sh 20

echo
echo "test summary:"
printf '  %s\n' "${summary[@]}"
echo "all ${#summary[@]} suites passed"
