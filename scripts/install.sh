#!/usr/bin/env bash
# Builds the C library in release mode and installs it:
#
#   scripts/install.sh [PREFIX]        # default PREFIX: /usr/local
#   DESTDIR=/tmp/stage scripts/install.sh /usr
#
# Installs PREFIX/lib/libpcgrad.a, PREFIX/lib/libpcgrad.so.0 (with the
# symlink PREFIX/lib/libpcgrad.so),
# PREFIX/include/pcgrad.h, PREFIX/lib/pkgconfig/pcgrad.pc (shared) and
# PREFIX/lib/pkgconfig/pcgrad-static.pc (static), each under
# $DESTDIR when it is set (for packaging: the .pc file names PREFIX, not
# DESTDIR). Honours CARGO and CARGO_TARGET_DIR.
#
# Then:  cc app.c $(pkg-config --cflags --libs pcgrad)          # shared
#        cc app.c $(pkg-config --cflags --libs pcgrad-static)   # static
# (PKG_CONFIG_PATH=PREFIX/lib/pkgconfig when PREFIX is not a system prefix).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

prefix=${1:-/usr/local}
case $prefix in
/*) ;;
*) echo "install.sh: PREFIX must be an absolute path, got '$prefix'" >&2; exit 2 ;;
esac
prefix=${prefix%/}
destdir=${DESTDIR:-}
cargo=${CARGO:-cargo}

"$cargo" build --release -p pcgrad-capi

target_dir=${CARGO_TARGET_DIR:-target}
case $target_dir in /*) ;; *) target_dir=$root/$target_dir ;; esac
libdir=$target_dir/release

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
if [ -z "$version" ]; then
    echo "install.sh: no version in Cargo.toml" >&2
    exit 1
fi

# The system libraries a Rust static library needs (Libs.private). They
# come from the standard library only (the crate's dependencies are pure
# Rust), so an empty staticlib built by the same rustc prints the same list
# as `cargo rustc -p pcgrad-capi --release -- --print native-static-libs`,
# without disturbing cargo's build cache.
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
: >"$probe/empty.rs"
native=$(rustc --crate-type staticlib --crate-name probe --print native-static-libs \
    -o "$probe/libprobe.a" "$probe/empty.rs" 2>&1 |
    sed -n 's/^note: native-static-libs: //p' | head -n 1)
if [ -z "$native" ]; then
    native="-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc"
    echo "install.sh: could not ask rustc for the native libraries; using: $native" >&2
fi

dest=$destdir$prefix
install -d "$dest/lib/pkgconfig" "$dest/include"
install -m 644 "$libdir/libpcgrad.a" "$dest/lib/libpcgrad.a"
# The static library holds the object files of Rust's std, core, alloc and
# compiler_builtins (a Rust staticlib bundles them; the linker keeps only
# what a program calls), about 22 of its 23 MB, most of it their debug
# information. Without that the installed archive is about 14 MB; programs
# linked against it are the same.
if command -v strip >/dev/null 2>&1; then
    strip --strip-debug "$dest/lib/libpcgrad.a"
fi
# The file carries the SONAME (capi/build.rs); libpcgrad.so is the
# link-time name.
install -m 755 "$libdir/libpcgrad.so" "$dest/lib/libpcgrad.so.0"
ln -sf libpcgrad.so.0 "$dest/lib/libpcgrad.so"
install -m 644 include/pcgrad.h "$dest/include/pcgrad.h"
# pcgrad.pc links the shared library (`-lpcgrad`: the linker prefers the
# .so beside the .a, with or without --static); pcgrad-static.pc names the
# archive.
for pc in pcgrad pcgrad-static; do
    sed -e "s|@PREFIX@|$prefix|" -e "s|@VERSION@|$version|" -e "s|@LIBS_PRIVATE@|$native|" \
        "capi/$pc.pc.in" >"$dest/lib/pkgconfig/$pc.pc"
    chmod 644 "$dest/lib/pkgconfig/$pc.pc"
done

echo "installed pcgrad $version into $dest:"
echo "  lib/libpcgrad.a lib/libpcgrad.so.0 lib/libpcgrad.so include/pcgrad.h"
echo "  lib/pkgconfig/pcgrad.pc lib/pkgconfig/pcgrad-static.pc"
