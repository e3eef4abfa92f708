//! Helpers for the deployment tests: rendering the Helm chart, reading the
//! rendered manifests, and running the real `remote-gopls-server` binary on
//! the configuration the chart and the image ship.
//!
//! The tests need `helm` (on PATH or in `$(go env GOPATH)/bin`) and the
//! server binary (`cargo build --workspace --bins`), and fail with the
//! command that installs whichever is missing.

pub mod helm;
pub mod manifest;
pub mod server;

use std::path::PathBuf;

/// Returns the repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("deploy-tests is one level below the repository root")
        .to_path_buf()
}

/// Returns the chart directory.
pub fn chart_dir() -> PathBuf {
    repo_root().join("charts/remote-gopls")
}

/// Lists the chart's CI scenarios, `ci/*-values.yaml`, sorted by name.
pub fn ci_values_files() -> Vec<PathBuf> {
    let dir = chart_dir().join("ci");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.ends_with("-values.yaml"))
        })
        .collect();
    files.sort();
    files
}
