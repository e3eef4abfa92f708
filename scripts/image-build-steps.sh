#!/usr/bin/env bash
# Runs the build steps of the Dockerfile outside Docker, so that CI still
# catches a broken step although it has no Docker engine. The steps are the
# server build in a copy of the Docker build context (so files that
# .dockerignore leaves out are missing), the gopls install at the pinned
# version, the Debian packages of the runtime stage, and the telemetry
# setting. Then it runs the assembled binaries and checks the image's
# server.toml.
#
# It uses the local Rust and Go toolchains, and warns when their versions
# differ from the Dockerfile's. It reuses the cargo target directory, and
# skips building gopls when the pinned version is already on PATH (it
# still resolves the module and plans the build with `go install -n`).
#
# Usage: scripts/image-build-steps.sh
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
fail() {
  printf 'image-build-steps: %s\n' "$*" >&2
  exit 1
}

# The default of `ARG NAME=VALUE` in the Dockerfile.
dockerfile_arg() {
  local value
  value=$(sed -n "s/^ARG $1=\(.*\)$/\1/p" Dockerfile | head -n 1)
  [ -n "$value" ] || fail "no default for ARG $1 in the Dockerfile"
  printf '%s' "$value"
}

rust_version=$(dockerfile_arg RUST_VERSION)
go_version=$(dockerfile_arg GO_VERSION)
gopls_version=$(dockerfile_arg GOPLS_VERSION)
target_dir=$(realpath -m "${CARGO_TARGET_DIR:-target}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"
mkdir -p "$rootfs/usr/local/bin" "$rootfs/etc/remote-gopls"

step "toolchains (Dockerfile: Rust $rust_version, Go $go_version, gopls $gopls_version)"
rustc --version
go version
[[ "$(rustc --version)" == "rustc $rust_version "* ]] ||
  warn "the Dockerfile builds with Rust $rust_version, this machine has $(rustc --version)"
[ "$(go env GOVERSION)" = "go$go_version" ] ||
  warn "the Dockerfile builds with Go $go_version, this machine has $(go env GOVERSION)"

# Matches a path against one .dockerignore pattern of the forms this
# repository uses. NAME and GLOB are anchored at the context root, as in
# Docker, and **/NAME matches at any depth. A match covers everything below.
ignored_by() {
  local path=$1 pattern=$2
  case $pattern in
    '**/'*)
      local name=${pattern#'**/'}
      # shellcheck disable=SC2053 # the name may be a glob
      [[ "/$path/" == */$name/* ]]
      ;;
    *)
      # shellcheck disable=SC2053
      [[ "${path%%/*}" == $pattern ]] || [[ "$path" == $pattern ]] || [[ "$path" == $pattern/* ]]
      ;;
  esac
}

step "server stage: cargo build in the Docker build context"
mapfile -t patterns < <(grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' .dockerignore)
for pattern in "${patterns[@]}"; do
  case $pattern in
    '!'* | *'['* | *'?'*) fail ".dockerignore pattern '$pattern' is not supported by this script; extend ignored_by" ;;
  esac
done
# A fixed directory, so that cargo finds unchanged sources (cp -p keeps
# their times) and rebuilds only what changed since the last run.
context="$target_dir/image-build-context"
rm -rf "$context"
mkdir -p "$context"
kept=0
while IFS= read -r -d '' path; do
  skip=false
  for pattern in "${patterns[@]}"; do
    if ignored_by "$path" "$pattern"; then
      skip=true
      break
    fi
  done
  if ! $skip; then
    cp -p --parents "$path" "$context/"
    kept=$((kept + 1))
  fi
done < <(git ls-files -z --cached --others --exclude-standard)
echo "$kept files in the build context"
(
  cd "$context"
  CARGO_TARGET_DIR="$target_dir" cargo build --release --locked -p remote-gopls-server
)
install -D "$target_dir/release/remote-gopls-server" "$rootfs/usr/local/bin/remote-gopls-server"

step "gopls stage: go install golang.org/x/tools/gopls@$gopls_version"
gopath_bin="$(go env GOPATH)/bin"
installed=""
for candidate in "$(command -v gopls || true)" "$gopath_bin/gopls"; do
  if [ -x "$candidate" ]; then
    installed=$candidate
    break
  fi
done
if [ -n "$installed" ] && "$installed" version | grep -qF "golang.org/x/tools/gopls $gopls_version"; then
  echo "gopls $gopls_version is installed at $installed; planning the build only (go install -n)"
  GOTOOLCHAIN=local go install -n "golang.org/x/tools/gopls@${gopls_version}" 2>/dev/null
  cp "$installed" "$rootfs/usr/local/bin/gopls"
else
  GOBIN="$rootfs/usr/local/bin" GOTOOLCHAIN=local go install "golang.org/x/tools/gopls@${gopls_version}"
fi

step "runtime stage: Debian packages and Go telemetry"
packages=$(sed -n 's/.*apt-get install -y --no-install-recommends \(.*\) \\$/\1/p' Dockerfile)
[ -n "$packages" ] || fail "no apt-get install line found in the Dockerfile"
if command -v apt-get >/dev/null; then
  # The package lists may be missing on a fresh machine; a simulated
  # install needs them. This checks names against the machine's Debian
  # release, which may be older than the image's.
  # shellcheck disable=SC2086 # one word per package
  if ! apt-cache show $packages >/dev/null 2>&1; then
    apt-get update -qq
  fi
  # shellcheck disable=SC2086
  apt-get install -s -qq --no-install-recommends $packages >/dev/null
  echo "apt-get can install: $packages"
else
  warn "apt-get not found; the runtime stage's packages ($packages) were not checked"
fi
XDG_CONFIG_HOME="$rootfs/usr/local/share/remote-gopls/config" go telemetry off
mode=$(cat "$rootfs/usr/local/share/remote-gopls/config/go/telemetry/mode")
[[ "$mode" == off* ]] || fail "go telemetry off wrote mode '$mode'"
install -m 0644 docker/server.toml "$rootfs/etc/remote-gopls/server.toml"

step "the assembled image files"
"$rootfs/usr/local/bin/remote-gopls-server" --version
"$rootfs/usr/local/bin/gopls" version
# /data does not exist here, so the paths the image's config names are not
# opened. The image listens beyond loopback and so requires tokens, which
# `docker run -e REMOTE_GOPLS_SERVER_TOKENS=...` provides.
REMOTE_GOPLS_SERVER_TOKENS="image-build-steps-token *" \
  "$rootfs/usr/local/bin/remote-gopls-server" check-config --skip-path-checks "$rootfs/etc/remote-gopls/server.toml"
echo "image build steps passed"
