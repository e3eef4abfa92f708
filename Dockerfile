# syntax=docker/dockerfile:1
#
# Image of remote-gopls-server with gopls and the Go toolchain it runs.
#
#   docker build -t remote-gopls-server .
#   docker run -e REMOTE_GOPLS_SERVER_TOKENS='TOKEN *' -p 7443:7443 \
#     -v "$PWD:/data/workspaces/myrepo" remote-gopls-server
#
# scripts/image-build-steps.sh runs the same build commands outside Docker,
# which is how CI checks them: CI machines have no Docker engine.

# Versions of the toolchains and of gopls. GOPLS_VERSION must equal
# PINNED_GOPLS_VERSION in proto/src/lib.rs, which a test checks.
ARG RUST_VERSION=1.95.0
ARG GO_VERSION=1.26.8
ARG GOPLS_VERSION=v0.23.0
# The Debian release of every stage, so the server binary finds the same
# glibc at run time that it was linked against.
ARG DEBIAN_RELEASE=trixie

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS server
WORKDIR /src
COPY . .
# The cache mounts keep downloaded crates and compiled dependencies between
# builds; the binary is copied out because the target cache is not part of
# the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p remote-gopls-server \
    && install -D target/release/remote-gopls-server /out/remote-gopls-server

FROM golang:${GO_VERSION}-${DEBIAN_RELEASE} AS gopls
ARG GOPLS_VERSION
# GOTOOLCHAIN=local fails the build, instead of downloading another Go,
# when gopls needs a newer Go than GO_VERSION.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    GOBIN=/out GOTOOLCHAIN=local go install "golang.org/x/tools/gopls@${GOPLS_VERSION}"

FROM debian:${DEBIAN_RELEASE}-slim
# git: the go command fetches modules from version control when the module
# proxy does not serve them (GOPRIVATE, GOPROXY=direct). ca-certificates:
# HTTPS to the module proxy and to git hosts. tini: PID 1, which reaps the
# `go list` processes that gopls leaves behind when it is killed, and passes
# SIGTERM on to the server.
# Versions are not pinned: the packages come from the pinned Debian release,
# and pinning them would fail the build whenever Debian ships a security fix.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates git tini \
    && rm -rf /var/lib/apt/lists/*

# uid 10001 is the Helm chart's runAsUser; /data is its volume.
RUN groupadd --gid 10001 gopls \
    && useradd --uid 10001 --gid 10001 --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin gopls

# The Go toolchain: gopls runs `go list` and `go env`. Without a C compiler
# in the image the go command turns cgo off, so gopls analyses files with
# `import "C"` as excluded.
COPY --from=gopls /usr/local/go /usr/local/go
COPY --from=gopls /out/gopls /usr/local/bin/gopls
COPY --from=server /out/remote-gopls-server /usr/local/bin/remote-gopls-server
COPY docker/server.toml /etc/remote-gopls/server.toml

# Every cache the go command and gopls write lives under /data, so one
# volume keeps them across restarts and the root file system can be
# read-only. XDG_CONFIG_HOME points at a read-only directory whose Go
# telemetry mode is "off" (written below); the go command ignores a
# GOTELEMETRY variable. The server also turns telemetry off for every gopls
# it starts, in its own data directory.
ENV PATH=/usr/local/go/bin:$PATH \
    HOME=/data \
    GOPATH=/data/go \
    GOMODCACHE=/data/go/pkg/mod \
    GOCACHE=/data/cache/go-build \
    GOPLSCACHE=/data/cache/gopls \
    XDG_CONFIG_HOME=/usr/local/share/remote-gopls/config

RUN go telemetry off \
    && mkdir -p /data/server /data/workspaces \
    && chown -R 10001:10001 /data

USER 10001:10001
WORKDIR /data
# gRPC, and the HTTP listener (WebSocket, /healthz, /readyz, /metrics).
EXPOSE 7443 7080
ENTRYPOINT ["/usr/bin/tini", "--", "remote-gopls-server", "--config", "/etc/remote-gopls/server.toml"]
