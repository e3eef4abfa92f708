#!/usr/bin/env bash
# Runs the whole test suite: unit tests, the end-to-end tests that start the
# real binaries against a real gopls, the chart tests and the benchmark smoke
# run. Installs what is missing first (the pinned gopls and helm with
# `go install`, the Node packages of the WebSocket interop test with
# `npm ci`), so a machine with Rust, Go and Node needs nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."

gopath_bin="$(go env GOPATH)/bin"
export PATH="$PATH:$gopath_bin"
pinned=$(sed -n 's/^pub const PINNED_GOPLS_VERSION: &str = "\(.*\)";$/\1/p' proto/src/lib.rs)
if ! command -v gopls >/dev/null; then
  echo "gopls not found; installing golang.org/x/tools/gopls@$pinned into $gopath_bin" >&2
  go install "golang.org/x/tools/gopls@$pinned"
fi

helm_module=helm.sh/helm/v4
helm_version=v4.3.2
if ! command -v helm >/dev/null; then
  echo "helm not found; installing $helm_module/cmd/helm@$helm_version into $gopath_bin (about 5 minutes)" >&2
  go install "$helm_module/cmd/helm@$helm_version"
fi

if [ ! -d e2e/node/node_modules ]; then
  npm ci --prefix e2e/node --no-audit --no-fund
fi

cargo build --workspace --bins --locked
cargo test --workspace --locked "$@"
