#!/bin/sh
# Builds the `price` function into dist/bootstrap (an x86_64 Linux binary for Lambda's
# provided.al2023 runtime) with cargo-lambda, which links with zig against an old glibc.
# `vendor-portal release build` runs this script (consign.toml names it) and zips dist/; the same
# source, Cargo.lock, Rust toolchain and cargo-lambda give the same bytes, wherever the folder is
# and whatever CARGO_TARGET_DIR says.
set -eu
cd "$(dirname "$0")"
command -v cargo-lambda >/dev/null 2>&1 || {
    echo 'cargo-lambda is not on PATH: pip install cargo-lambda==1.9.2 (the version scripts/requirements-test.txt pins; in a Consign checkout scripts/test installs it, and PATH="$PWD/.venv/bin:$PATH" finds it)' >&2
    exit 1
}
# Absolute paths of crates in the registry would otherwise end up in panic messages, and make the
# binary depend on where CARGO_HOME is.
registry="${CARGO_HOME:-$HOME/.cargo}/registry/src"
target="${CARGO_TARGET_DIR:-target}"
mkdir -p "$target"
build() {
    RUSTFLAGS="--remap-path-prefix=$registry=/crates" \
        cargo lambda build --release --locked --quiet
    rm -rf dist
    mkdir dist
    cp "$target/lambda/price/bootstrap" dist/bootstrap
}
# Builds of copies of this folder that share one CARGO_TARGET_DIR take turns, so that each copies
# the binary it built.
if command -v flock >/dev/null 2>&1; then
    exec 9>"$target/.price-build.lock"
    flock 9
fi
build
