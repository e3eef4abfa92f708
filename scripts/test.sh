#!/usr/bin/env bash
# Runs the whole test suite: unit tests and the end-to-end tests that start
# the real binaries against a real gopls. Installs the pinned gopls with
# `go install` when none is found, so a machine with Rust and Go needs
# nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."

gopath_bin="$(go env GOPATH)/bin"
export PATH="$PATH:$gopath_bin"
pinned=$(sed -n 's/^pub const PINNED_GOPLS_VERSION: &str = "\(.*\)";$/\1/p' proto/src/lib.rs)
if ! command -v gopls >/dev/null; then
  echo "gopls not found; installing golang.org/x/tools/gopls@$pinned into $gopath_bin" >&2
  go install "golang.org/x/tools/gopls@$pinned"
fi

cargo build --workspace --bins --locked
cargo test --workspace --locked "$@"
