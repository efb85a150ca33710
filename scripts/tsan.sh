#!/usr/bin/env bash
# ThreadSanitizer over the threaded code:
#  1. the `parallel` feature's tests (tests/threads.rs, whose passes run on
#     1, 2, 3 and 7 workers, and the library's unit tests), built with
#     -Zsanitizer=thread and a TSan-instrumented std (-Zbuild-std);
#  2. a TSan build of the C library (libpcgrad.a) linked into C programs
#     compiled with -fsanitize=thread: c_examples/concurrent.c (several
#     pthreads calling the library at once, each call on 2 library worker
#     threads) and c_examples/train.c.
# Any data race report fails the script. Needs nightly with rust-src
# (installed when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! rustup toolchain list | grep -q '^nightly'; then
    rustup toolchain install nightly --profile minimal
fi
rustup component add rust-src --toolchain nightly

host=$(rustc -vV | sed -n 's/^host: //p')
export RUSTFLAGS="-Zsanitizer=thread"
export RUSTDOCFLAGS="-Zsanitizer=thread"
export CARGO_TARGET_DIR=target/tsan
export TSAN_OPTIONS="halt_on_error=1 exitcode=66"
# The release profile aborts on panic; the test harness needs unwinding, and
# with -Zbuild-std two different std builds would then collide.
export CARGO_PROFILE_RELEASE_PANIC=unwind

t0=$SECONDS
cargo +nightly test -Zbuild-std --target "$host" --release --features parallel \
    -p pcgrad --lib --test threads
echo "tsan: Rust tests passed in $((SECONDS - t0)) s"

t0=$SECONDS
cargo +nightly rustc -Zbuild-std --target "$host" --release -p pcgrad-capi --crate-type staticlib
lib="$CARGO_TARGET_DIR/$host/release/libpcgrad.a"
# The TSan runtime of the Rust toolchain (a current compiler-rt): the Rust
# code calls entry points (__tsan_memcpy, ...) that GCC 12's libtsan lacks.
# The C code is still instrumented by cc -fsanitize=thread.
rt="$(rustc +nightly --print sysroot)/lib/rustlib/$host/lib/librustc-nightly_rt.tsan.a"
out="$CARGO_TARGET_DIR/c"
mkdir -p "$out"
for prog in concurrent train; do
    cc -std=c99 -Wall -Wextra -Werror -pedantic -O1 -g -fsanitize=thread -Iinclude \
        -c "c_examples/$prog.c" -o "$out/$prog.o"
    cc -no-pie "$out/$prog.o" "$lib" -Wl,--whole-archive "$rt" -Wl,--no-whole-archive \
        -lpthread -ldl -lm -lstdc++ -o "$out/$prog"
    "$out/$prog" >"$out/$prog.log"
    tail -n 1 "$out/$prog.log"
done
echo "tsan: C programs passed in $((SECONDS - t0)) s"
