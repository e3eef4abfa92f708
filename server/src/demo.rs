//! The demo workspace: a small Go module written into the data directory
//! when no workspace is configured, so a new server has something to serve.

use std::path::{Path, PathBuf};

const FILES: [(&str, &str); 3] = [
    ("go.mod", include_str!("../demo/go.mod")),
    ("main.go", include_str!("../demo/main.go")),
    ("greet/greet.go", include_str!("../demo/greet/greet.go")),
];

/// Writes the demo module under `<data_dir>/workspaces/demo` unless it
/// exists, and returns its path. Existing files are left as the user edited them.
pub fn ensure(data_dir: &Path) -> std::io::Result<PathBuf> {
    let root = data_dir
        .join("workspaces")
        .join(crate::config::DEMO_WORKSPACE);
    for (name, text) in FILES {
        let path = root.join(name);
        if path.exists() {
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, text)?;
    }
    root.canonicalize()
}
