#!/usr/bin/env bash
# On-device training on an emulated Cortex-M4F (QEMU mps2-an386), in Rust and
# in C, and the library's footprint.
#
# Installs what it needs (scripts/setup.sh: the thumbv7em-none-eabihf target,
# QEMU and the arm-none-eabi toolchain), then for opt-level "s" and "3":
#   - builds the Rust firmware (examples/cortex-m4) with PCGrad and, for the
#     footprint, a baseline build whose merge is a plain sum without the
#     library; at opt-level "s" also the UPGrad variant (feature `upgrad`,
#     `pcgrad::methods::aggregate`);
#   - builds libpcgrad.a (package pcgrad-capi, no default features) and the
#     C firmware (c_examples/cortex-m4), with and without the library;
#   - runs each PCGrad firmware in QEMU under `timeout` and checks its exit
#     status and its "result: PASS" line (every task's loss must fall);
# and prints the footprint table (flash by section diff against the
# baseline, the part of it that is the compiler's soft-float/integer
# run-time, static RAM, workspace bytes by T, stack high-water mark).
#
# Environment: CARGO_TARGET_DIR (default: target/ at the repository root),
# FIRMWARE_TIMEOUT (seconds per QEMU run, default 120), FIRMWARE_SKIP_SETUP=1.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

[ "${FIRMWARE_SKIP_SETUP:-}" = 1 ] || scripts/setup.sh

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$CARGO_TARGET_DIR" in /*) ;; *) CARGO_TARGET_DIR="$ROOT/$CARGO_TARGET_DIR" ;; esac
OUT="$CARGO_TARGET_DIR/firmware"
mkdir -p "$OUT"
TRIPLE=thumbv7em-none-eabihf
TIMEOUT=${FIRMWARE_TIMEOUT:-120}
QEMU=(qemu-system-arm -machine mps2-an386 -cpu cortex-m4 -nographic -monitor none
    -serial none -semihosting-config enable=on,target=native)
OPTS=(s 3)

# --- lint ---------------------------------------------------------------------

# The firmware crate is not a workspace member, so the project's fmt and
# clippy steps do not see it.
echo "--- fmt and clippy of the Rust firmware (with and without the library)"
(cd examples/cortex-m4 &&
    cargo fmt --check &&
    cargo clippy --release --quiet -- -D warnings &&
    cargo clippy --release --quiet --features upgrad -- -D warnings &&
    cargo clippy --release --quiet --no-default-features -- -D warnings)

# --- builds -------------------------------------------------------------------

build_rust() { # OPT VARIANT(pcgrad|base) [NAME [FEATURE...]]
    local opt=$1 variant=$2 name=${3:-rust} feat=(--features "${*:4}")
    [ "$variant" = base ] && feat+=(--no-default-features)
    (cd examples/cortex-m4 &&
        CARGO_PROFILE_RELEASE_OPT_LEVEL=$opt cargo build --release --quiet "${feat[@]}")
    cp "$CARGO_TARGET_DIR/$TRIPLE/release/pcgrad-firmware-cortex-m4" "$OUT/$name-$opt-$variant.elf"
}

build_c() { # OPT VARIANT(pcgrad|base)
    local opt=$1 variant=$2 base=0
    [ "$variant" = base ] && base=1
    make -s -B -C c_examples/cortex-m4 OPT="$opt" BASELINE=$base OUT="$OUT" \
        ELF="c-$opt-$variant.elf" PCGRAD_LIB="$OUT/libpcgrad-$opt.a" >/dev/null
}

for opt in "${OPTS[@]}"; do
    echo "--- building the Rust firmware, opt-level $opt"
    build_rust "$opt" pcgrad
    build_rust "$opt" base
    if [ "$opt" = s ]; then
        # The same with a panic handler that prints no location: what the
        # location records of the library's bounds checks cost.
        build_rust s pcgrad rust-quiet quiet-panic
        build_rust s base rust-quiet quiet-panic
        build_rust s pcgrad rust-upgrad upgrad
    fi
    echo "--- building libpcgrad.a and the C firmware, opt-level $opt"
    # The `firmware` profile (root Cargo.toml): release with LTO, so that the
    # staticlib keeps none of core's panic formatting. `--crate-type
    # staticlib`: cargo applies no LTO to a crate that also builds an rlib
    # (pcgrad-capi does, for the Python wheel), and without it core's
    # formatting code and all its location strings stay in (about 7 KiB).
    CARGO_PROFILE_FIRMWARE_OPT_LEVEL=$opt cargo rustc --profile firmware --quiet -p pcgrad-capi \
        --no-default-features --target $TRIPLE --crate-type staticlib
    cp "$CARGO_TARGET_DIR/$TRIPLE/firmware/libpcgrad.a" "$OUT/libpcgrad-$opt.a"
    build_c "$opt" pcgrad
    build_c "$opt" base
done

# --- runs ---------------------------------------------------------------------

run_fw() { # NAME: runs $OUT/NAME.elf in QEMU, checks the status and the output
    local name=$1 rc=0
    echo "--- running $name in QEMU (mps2-an386, limit ${TIMEOUT} s)"
    timeout "$TIMEOUT" "${QEMU[@]}" -kernel "$OUT/$name.elf" >"$OUT/$name.log" 2>&1 || rc=$?
    sed 's/^/    /' "$OUT/$name.log"
    if [ "$rc" -eq 124 ]; then
        echo "FAIL: $name did not finish within $TIMEOUT s" >&2
        return 1
    fi
    if [ "$rc" -ne 0 ] || ! grep -q '^result: PASS$' "$OUT/$name.log"; then
        echo "FAIL: $name exited with status $rc" >&2
        return 1
    fi
    if ! grep -q '^stack_bytes=[0-9]*$' "$OUT/$name.log"; then
        echo "FAIL: $name reported no stack high-water mark" >&2
        return 1
    fi
}

for fw in rust-s rust-3 rust-quiet-s rust-upgrad-s c-s c-3; do
    run_fw "$fw-pcgrad"
done

# --- footprint ----------------------------------------------------------------

# Bytes of the named sections of an ELF.
sections() { # ELF SECTION...
    local elf=$1
    shift
    arm-none-eabi-size -A "$elf" | awk -v want=" $* " '
        index(want, " " $1 " ") { s += $2 } END { print s + 0 }'
}

# Sizes (decimal) of the code and read-only data symbols of the compiler's
# run-time (soft-float f64, integer division, memset/memcpy) that appear in
# ELF but not in BASE. Weak symbols count too (types W, w): in a C firmware
# the `__aeabi_*` entry points of the Rust static library are weak (in the
# Rust firmware the same functions are local, type t); each address counts
# once.
runtime_bytes() { # ELF BASE
    arm-none-eabi-nm -t d -S -C "$2" | awk '{ print $NF }' | sort -u >"$OUT/.base-names"
    arm-none-eabi-nm -t d -S -C "$1" | awk -v names="$OUT/.base-names" '
        BEGIN { while ((getline n < names) > 0) base[n] = 1 }
        NF >= 4 && $3 ~ /^[tTrRwW]$/ {
            name = $4; for (i = 5; i <= NF; i++) name = name " " $i
            if (name in base || $1 in seen) next
            if (name ~ /^(__aeabi_|__[a-z]+[sd]f[0-9]|__[a-z]+[sd]i[0-9]|compiler_builtins::|mem(set|cpy|move|clr))/ ||
                name ~ /^__(u?divmod|u?div|u?mod|clz|ctz|popcount)/) {
                s += $2 + 0
                seen[$1] = 1
            }
        }
        END { print s + 0 }'
}

# The biggest symbols of ELF that are new or grown against BASE.
big_symbols() { # ELF BASE COUNT
    arm-none-eabi-nm -t d -S -C "$2" | awk 'NF >= 4 { n = $4; for (i = 5; i <= NF; i++) n = n " " $i; print ($2 + 0) "\t" n }' >"$OUT/.base-syms"
    arm-none-eabi-nm -t d -S -C "$1" | awk -v f="$OUT/.base-syms" '
        BEGIN { while ((getline l < f) > 0) { split(l, p, "\t"); base[p[2]] = p[1] } }
        NF >= 4 && $3 ~ /^[tTrRwW]$/ {
            n = $4; for (i = 5; i <= NF; i++) n = n " " $i
            if (n ~ /^\.L/) next
            d = ($2 + 0) - ((n in base) ? base[n] : 0)
            if (d > 0) printf "%6d  %s%s\n", d, n, (n in base) ? "  (grown)" : ""
        }' | sort -rn | head -n "$3"
}

# Bytes of the .data/.bss symbols of ELF that are not in BASE, less the
# caller-owned buffers the firmware declares for the library (the workspace,
# reported by T below, and the C firmware's PRNG state): the library's own
# static RAM, without alignment padding.
lib_ram() { # ELF BASE
    arm-none-eabi-nm -t d -S -C "$2" | awk 'NF >= 4 { n = $4; for (i = 5; i <= NF; i++) n = n " " $i; print n }' |
        sort -u >"$OUT/.base-ram"
    arm-none-eabi-nm -t d -S -C "$1" | awk -v names="$OUT/.base-ram" '
        BEGIN { while ((getline n < names) > 0) base[n] = 1 }
        NF >= 4 && $3 ~ /^[bBdD]$/ {
            name = $4; for (i = 5; i <= NF; i++) name = name " " $i
            if (name in base || name ~ /(^|::)(WS|workspace|merge_rng)$/) next
            s += $2 + 0
        }
        END { print s + 0 }'
}

stack_of() { sed -n 's/^stack_bytes=//p' "$OUT/$1.log"; }

echo
echo "=== footprint (Cortex-M4F, thumbv7em-none-eabihf; sequential PCGrad, merge path, T=3, N=67)"
echo
echo "| firmware | opt-level | library flash (.text+.rodata) | of which compiler run-time | PCGrad code | library static RAM | stack per call |"
echo "|---|---|---|---|---|---|---|"
for fw in rust-s rust-3 rust-quiet-s c-s c-3; do
    lang=${fw%-*} opt=${fw##*-}
    elf="$OUT/$fw-pcgrad.elf" base="$OUT/$fw-base.elf"
    flash=$(($(sections "$elf" .text .rodata .ARM.exidx) - $(sections "$base" .text .rodata .ARM.exidx)))
    rt=$(runtime_bytes "$elf" "$base")
    ram=$(lib_ram "$elf" "$base")
    case $lang in
    rust) lname=Rust ;;
    rust-quiet) lname="Rust, panic handler without location" ;;
    *) lname=C ;;
    esac
    echo "| $lname | $opt | $flash B ($((flash * 10 / 1024 / 10)).$((flash * 10 / 1024 % 10)) KiB) | $rt B | $((flash - rt)) B | $ram B | $(stack_of "$fw-pcgrad") B |"
done
echo
echo "Workspace (pcgrad::workspace_len, doubles of 8 bytes, independent of N), reported by the firmware:"
echo
echo "| T | doubles | bytes |"
echo "|---|---|---|"
sed -n 's/^workspace T=\([0-9]*\) doubles=\([0-9]*\) bytes=\([0-9]*\)$/| \1 | \2 | \3 |/p' "$OUT/rust-s-pcgrad.log"
echo
echo "Largest new or grown symbols, Rust firmware, opt-level s (bytes):"
big_symbols "$OUT/rust-s-pcgrad.elf" "$OUT/rust-s-base.elf" 15
echo
echo "Largest new or grown symbols, C firmware, opt-level s (bytes):"
big_symbols "$OUT/c-s-pcgrad.elf" "$OUT/c-s-base.elf" 15
echo
echo "firmware tests passed"
