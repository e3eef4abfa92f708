//! Running `remote-gopls-server check-config` on configuration text.

use std::path::PathBuf;
use std::process::{Command, Output};

/// Returns the server binary next to the test executable (`target/<profile>`).
pub fn binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executables live in target/<profile>/deps");
    let path = profile_dir.join("remote-gopls-server");
    assert!(
        path.is_file(),
        "{} not found: build it first with `cargo build --workspace --bins`",
        path.display()
    );
    path
}

/// Runs `check-config --skip-path-checks` on `text`, without the tokens
/// variable of the environment the tests run in, and with `envs` added.
pub fn check_config(text: &str, envs: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().expect("temporary directory");
    let file = dir.path().join("server.toml");
    std::fs::write(&file, text).expect("write server.toml");
    Command::new(binary())
        .args(["check-config", "--skip-path-checks"])
        .arg(&file)
        .env_remove("REMOTE_GOPLS_SERVER_TOKENS")
        .envs(envs.iter().copied())
        .output()
        .expect("run remote-gopls-server check-config")
}
