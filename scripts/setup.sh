#!/usr/bin/env bash
# Installs what the demo and the tests need on a fresh Debian machine with
# rustup: Rust targets and components, and Debian packages. Idempotent.
set -euo pipefail

rustup target add thumbv7em-none-eabihf
rustup component add rustfmt clippy
# The declared minimum Rust version (rust-version in Cargo.toml: 1.89, as `wide` 1.7.1 needs), for the
# MSRV build step.
rustup toolchain install 1.89 --profile minimal

need_pkgs=()
for p in $(cat "$(dirname "$0")/debian-packages.txt" 2>/dev/null | grep -v '^#'); do
    dpkg -s "$p" >/dev/null 2>&1 || need_pkgs+=("$p")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_pkgs[@]}"
fi
