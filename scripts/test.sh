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

# The instruction sets the kernel tests must exercise: what this CPU has, by
# /proc/cpuinfo (a check independent of the library's own detection; the
# guard test `expected_instruction_sets_were_detected` fails when the
# library missed one). Set PCGRAD_EXPECT_ISA yourself to override.
if [ -z "${PCGRAD_EXPECT_ISA+x}" ] && [ -r /proc/cpuinfo ]; then
    flags=$(grep -m1 '^flags' /proc/cpuinfo || true)
    has() { case " $flags " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
    PCGRAD_EXPECT_ISA=portable
    if has avx; then PCGRAD_EXPECT_ISA+=,avx; fi
    if has avx && has avx512f && has avx512vl; then PCGRAD_EXPECT_ISA+=,avx512; fi
    export PCGRAD_EXPECT_ISA
    echo "kernel tests expect: $PCGRAD_EXPECT_ISA"
fi
# The scalar-kernel build gets a target directory of its own, below the
# caller's.
scalar_target="${CARGO_TARGET_DIR:-target}/scalar"

# --- Rust core ---------------------------------------------------------------
step "fmt" cargo fmt --all -- --check
step "clippy" cargo clippy --all-targets -- -D warnings
# The core crate alone: `pcgrad-capi` (a default workspace member) turns
# `pcgrad/parallel` on, so a workspace-wide `cargo test` never builds the
# core without it.
# Without std the library has only its compile-time SIMD backend (the
# run-time AVX/AVX-512 kernels need std's CPU detection), so that build
# expects exactly the portable kernels.
step "core without default features (no std, no parallel): every test" \
    env PCGRAD_EXPECT_ISA=portable cargo test --release -p pcgrad --no-default-features
step "core with parallel, the C ABI and half precision: every test, threads bitwise equal for 1/2/3/7" \
    cargo test --release -p pcgrad --features parallel,capi,half
step "C ABI without the diagnostics feature (as the bare-metal build): the matrix is refused" \
    cargo test --release -p pcgrad --no-default-features --features std,capi --lib
step "C library crate: header and ABI tests" cargo test --release -p pcgrad-capi
step "MSRV build (rust-version 1.89)" \
    cargo +1.89 build --locked --release -p pcgrad -p pcgrad-capi --target-dir "${CARGO_TARGET_DIR:-target}/msrv"
step "docs (missing docs are errors)" env RUSTDOCFLAGS="-D warnings" cargo doc --no-deps
step "no_std link check (thumbv7em-none-eabihf, no allocator)" \
    cargo build --release --manifest-path tests/no_std_link/Cargo.toml --target thumbv7em-none-eabihf
step "no_std build with bf16/f16 (feature half, thumbv7em-none-eabihf)" \
    cargo build --release -p pcgrad --no-default-features --features half --target thumbv7em-none-eabihf

# --- more suites are added below this line ------------------------------------
step "core without default features: clippy" \
    cargo clippy -p pcgrad --all-targets --no-default-features -- -D warnings
step "scalar kernels (the Cortex-M path) on the host: every test" \
    env RUSTFLAGS="--cfg pcgrad_scalar" CARGO_TARGET_DIR="$scalar_target" cargo test --release -p pcgrad --features parallel,half
step "roofline benchmark, quick set (runs only, asserts nothing on time)" \
    cargo run --release --features parallel --example roofline -- --quick
step "benches compile" cargo bench --no-run --features parallel,capi
step "C examples: sanitizers, valgrind, C++, pkg-config" make -C c_examples test
step "MPI: sharded PCGrad vs one process on 1-4 ranks, sharded training" make -C c_examples/mpi test
step "Cortex-M4 firmware in QEMU (Rust and C), footprint table" scripts/firmware-test.sh
step "Miri over the FFI tests and the threaded passes (2 and 3 workers)" scripts/miri.sh
step "Python package: pip install ./python, pytest (conformance, API, torch)" scripts/python-test.sh
step "ThreadSanitizer: parallel tests, concurrent C callers, train.c" scripts/tsan.sh
step "fuzz targets (ASan, libFuzzer): every seed once, then a fixed-seed bounded search per target (campaigns: scripts/fuzz.sh SECONDS)" scripts/fuzz.sh check

echo
echo "test summary:"
printf '  %s\n' "${summary[@]}"
echo "all ${#summary[@]} suites passed"
