#!/usr/bin/env bash
# Line coverage of src/ (LLVM source-based coverage, nightly's llvm-tools):
#
#  1. the Rust tests: `cargo llvm-cov` over the core crate's tests with
#     `--features parallel,capi`, over the C library crate's tests and over
#     the core crate's tests in the scalar-kernel build (`--cfg
#     pcgrad_scalar`, `--features parallel`);
#  2. the fuzz corpora: `cargo fuzz coverage` of every target over its seeds
#     (fuzz/seeds/) and, when present, the campaign corpus (fuzz/corpus/,
#     not in git, so this part depends on the campaigns run on the machine);
#  3. both together (a line counts as covered when either covers it).
#
# Prints one table: lines covered / lines with code, per file of src/ffi/
# and src/engine.rs, and all of src/. Not run by scripts/test.sh. Needs
# the nightly toolchain with llvm-tools-preview and cargo-llvm-cov and
# cargo-fuzz (pinned below; installed when missing).
#
#   scripts/coverage.sh [--no-fuzz]
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_LLVM_COV_VERSION=0.9.1
CARGO_FUZZ_VERSION=0.13.2
fuzz=1
[ "${1:-}" = --no-fuzz ] && fuzz=0

if ! rustup component list --toolchain nightly --installed 2>/dev/null | grep -q '^llvm-tools'; then
    rustup component add --toolchain nightly llvm-tools-preview
fi
if [ "$(cargo llvm-cov --version 2>/dev/null)" != "cargo-llvm-cov $CARGO_LLVM_COV_VERSION" ]; then
    cargo install cargo-llvm-cov --locked --version "$CARGO_LLVM_COV_VERSION"
fi
if [ $fuzz = 1 ] && [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
    cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
fi

sysroot=$(rustc +nightly --print sysroot)
host=$(rustc +nightly -vV | sed -n 's/^host: //p')
llvm_bin="$sysroot/lib/rustlib/$host/bin"
out="${CARGO_TARGET_DIR:-target}/coverage-report"
mkdir -p "$out"
root=$(pwd)

# --- 1. the Rust tests --------------------------------------------------------
echo "==> coverage: Rust tests (pcgrad --features parallel,capi; pcgrad-capi; pcgrad --cfg pcgrad_scalar)"
cargo +nightly llvm-cov clean --workspace
cargo +nightly llvm-cov --no-report --release -p pcgrad --features parallel,capi
cargo +nightly llvm-cov --no-report --release -p pcgrad-capi
# The scalar kernels' build (what Cortex-M runs): the Gram pass's
# compile-time pair path exists only there.
RUSTFLAGS="--cfg pcgrad_scalar" cargo +nightly llvm-cov --no-report --release -p pcgrad --features parallel
# One export per test binary, joined by the table below: `cargo llvm-cov
# report` hands llvm-cov every binary at once, and llvm-cov then keeps one
# record of each unmangled `#[no_mangle]` function (the first binary's,
# where it is never called), so every C entry point would show as uncovered.
cov_target="${CARGO_TARGET_DIR:-target}/llvm-cov-target"
cargo +nightly llvm-cov report --release --summary-only >/dev/null # merges the profiles
profdata=$(ls "$cov_target"/*.profdata | head -n 1)
: >"$out/tests.lcov"
for obj in "$cov_target"/release/build/pcgrad*/*/out/* "$cov_target"/release/deps/*; do
    [ -f "$obj" ] && [ -x "$obj" ] || continue
    [ "$(head -c 4 "$obj" | od -An -c | tr -d ' ')" = '177ELF' ] || continue
    "$llvm_bin/llvm-cov" export -format=lcov -instr-profile="$profdata" "$obj" \
        >>"$out/tests.lcov" 2>/dev/null || true
done

# --- 2. the fuzz corpora ------------------------------------------------------
lcovs=("$out/tests.lcov")
if [ $fuzz = 1 ]; then
    for t in ffi_flat ffi_vars ffi_phases rust_api differential; do
        echo "==> coverage: fuzz target $t (seeds and campaign corpus)"
        dirs=("seeds/$t")
        if [ -d "fuzz/corpus/$t" ] && [ -n "$(ls -A "fuzz/corpus/$t")" ]; then
            dirs=("corpus/$t" "seeds/$t")
        fi
        (cd fuzz && cargo +nightly fuzz coverage "$t" "${dirs[@]}" >"$root/$out/fuzz-$t.log" 2>&1) || {
            tail -n 40 "$out/fuzz-$t.log"
            echo "coverage: fuzz target $t FAILED"
            exit 1
        }
        bin="fuzz/target/$host/coverage/$host/release/$t"
        "$llvm_bin/llvm-cov" export -format=lcov \
            -instr-profile="fuzz/coverage/$t/coverage.profdata" "$bin" >"$out/fuzz-$t.lcov"
        lcovs+=("$out/fuzz-$t.lcov")
    done
fi

# --- 3. the table ---------------------------------------------------------------
python3 - "$root" $fuzz "${lcovs[@]}" <<'EOF'
import sys
from collections import defaultdict

root, fuzz, files = sys.argv[1] + "/src/", sys.argv[2] == "1", sys.argv[3:]


def read(path):
    """{file under src/: {line: hit}} of one lcov report."""
    cov = defaultdict(dict)
    name = None
    for line in open(path):
        if line.startswith("SF:"):
            f = line[3:].strip()
            name = f[len(root):] if f.startswith(root) else None
            # Library code only: not the unit-test modules.
            if name and ("tests" in name.split("/")[:-1] or name.endswith("tests.rs")):
                name = None
        elif line.startswith("DA:") and name:
            n, hits = line[3:].split(",")[:2]
            cov[name][int(n)] = cov[name].get(int(n), False) or int(hits) > 0
    return cov


def union(reports):
    out = defaultdict(dict)
    for r in reports:
        for f, lines in r.items():
            for n, hit in lines.items():
                out[f][n] = out[f].get(n, False) or hit
    return out


tests = read(files[0])
parts = [("Rust tests", tests)]
if fuzz:
    fz = union(read(p) for p in files[1:])
    parts += [("fuzz corpora", fz), ("both", union([tests, fz]))]
rows = sorted(f for f in union(p for _, p in parts) if f.startswith("ffi/") or f == "engine.rs")


def cell(cov, files):
    lines = [h for f in files for h in cov.get(f, {}).values()]
    if not lines:
        return "-"
    return f"{sum(lines)}/{len(lines)} ({100 * sum(lines) / len(lines):.1f}%)"


every = sorted(union(p for _, p in parts))
print("| file | " + " | ".join(n for n, _ in parts) + " |")
print("|------|" + "|".join("---" for _ in parts) + "|")
for f in rows:
    print(f"| `src/{f}` | " + " | ".join(cell(c, [f]) for _, c in parts) + " |")
print("| all of `src/` | " + " | ".join(cell(c, every) for _, c in parts) + " |", flush=True)
# The lines no part covers, for the files of the table.
both = parts[-1][1]
for f in rows:
    miss = sorted(n for n, h in both.get(f, {}).items() if not h)
    if miss:
        print(f"uncovered src/{f}: {miss}", file=sys.stderr)
EOF
