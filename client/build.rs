//! Build script that picks the Go version and target names embedded in the Go build-info blob.
//!
//! `src/buildinfo.rs` explains why the blob exists and what vscode-go compares against it.
//! This script only chooses the strings and passes them to the crate as compile-time
//! environment variables:
//!
//! * `REMOTE_GOPLS_EMBEDDED_GOVERSION`: the value of `REMOTE_GOPLS_GOVERSION` if set,
//!   else the output of `go env GOVERSION` on the build machine, else `FALLBACK_GO_VERSION`.
//! * `REMOTE_GOPLS_GOOS` and `REMOTE_GOPLS_GOARCH`: the Rust target mapped to Go's names.

use std::env;
use std::path::Path;
use std::process::Command;

/// Go version embedded when no usable Go toolchain is found at build time. gopls v0.23.0,
/// the pinned gopls release, declares `go 1.26.0` in its go.mod, so no older toolchain can
/// build it, and go1.26.0 is the lowest Go version a real gopls v0.23.0 binary reports.
const FALLBACK_GO_VERSION: &str = "go1.26.0";

/// Environment variable that overrides the detected Go version, for example when packaging
/// on a machine without Go.
const GO_VERSION_OVERRIDE: &str = "REMOTE_GOPLS_GOVERSION";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed={GO_VERSION_OVERRIDE}");
    println!("cargo:rerun-if-env-changed=PATH");

    let go_version = select_go_version();
    println!("cargo:rustc-env=REMOTE_GOPLS_EMBEDDED_GOVERSION={go_version}");

    let target_os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let target_arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let target_endian = env::var("CARGO_CFG_TARGET_ENDIAN").unwrap_or_default();
    println!("cargo:rustc-env=REMOTE_GOPLS_GOOS={}", go_os(&target_os));
    println!(
        "cargo:rustc-env=REMOTE_GOPLS_GOARCH={}",
        go_arch(&target_arch, &target_endian)
    );
}

/// Selects the Go version to embed and warns when it falls back to `FALLBACK_GO_VERSION`.
fn select_go_version() -> String {
    if let Ok(value) = env::var(GO_VERSION_OVERRIDE) {
        if is_release_go_version(&value) {
            return value;
        }
        println!(
            "cargo:warning={GO_VERSION_OVERRIDE}={value:?} is not a Go release version such as \
             go1.26.0; embedding {FALLBACK_GO_VERSION}"
        );
        return FALLBACK_GO_VERSION.to_string();
    }

    match detect_go_version() {
        Some(version) if is_release_go_version(&version) => version,
        Some(version) => {
            println!(
                "cargo:warning=`go env GOVERSION` returned {version:?}, which is not a Go \
                 release version; embedding {FALLBACK_GO_VERSION} (set {GO_VERSION_OVERRIDE} \
                 to choose another)"
            );
            FALLBACK_GO_VERSION.to_string()
        }
        None => {
            println!(
                "cargo:warning=`go env GOVERSION` failed or go is not on PATH; embedding \
                 {FALLBACK_GO_VERSION} (set {GO_VERSION_OVERRIDE} to choose another)"
            );
            FALLBACK_GO_VERSION.to_string()
        }
    }
}

/// Runs `go env GOVERSION GOROOT` and returns the first token of the version line.
///
/// It also emits `rerun-if-changed` for `$GOROOT/VERSION`, so upgrading Go in place updates
/// the embedded version on the next build.
fn detect_go_version() -> Option<String> {
    let output = Command::new("go")
        .args(["env", "GOVERSION", "GOROOT"])
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }

    let stdout = String::from_utf8(output.stdout).ok()?;
    let mut lines = stdout.lines();
    // `go env GOVERSION` can append experiment tags, as in "go1.26.0 X:nodwarf5".
    let version = lines.next()?.split_whitespace().next()?.to_string();

    if let Some(goroot) = lines.next() {
        let version_file = Path::new(goroot.trim()).join("VERSION");
        if version_file.is_file() {
            println!("cargo:rerun-if-changed={}", version_file.display());
        }
    }
    Some(version)
}

/// Reports whether `value` has the form `go<major>.<minor>` or `go<major>.<minor>.<patch>`.
///
/// Beta, rc and devel toolchains are rejected on purpose. vscode-go reports a tool built with
/// a beta or rc as needing recompilation unless the user's `go version` contains that exact
/// string.
fn is_release_go_version(value: &str) -> bool {
    let Some(numbers) = value.strip_prefix("go") else {
        return false;
    };
    let parts: Vec<&str> = numbers.split('.').collect();
    let has_valid_count = parts.len() == 2 || parts.len() == 3;
    has_valid_count
        && parts
            .iter()
            .all(|part| !part.is_empty() && part.bytes().all(|byte| byte.is_ascii_digit()))
}

/// Maps a Rust `target_os` to Go's `GOOS`; names that Go spells the same pass through.
fn go_os(target_os: &str) -> &str {
    match target_os {
        "macos" => "darwin",
        other => other,
    }
}

/// Maps a Rust `target_arch` to Go's `GOARCH`; names that Go spells the same pass through.
fn go_arch<'a>(target_arch: &'a str, target_endian: &str) -> &'a str {
    match (target_arch, target_endian) {
        ("x86_64", _) => "amd64",
        ("x86", _) => "386",
        ("aarch64", _) => "arm64",
        ("loongarch64", _) => "loong64",
        ("powerpc64", "little") => "ppc64le",
        ("powerpc64", _) => "ppc64",
        (other, _) => other,
    }
}
