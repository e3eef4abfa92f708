//! Test harness for the end-to-end tests: runs the real `remote-gopls-server`
//! and `remote-gopls` binaries against a real gopls and real Go modules.
//!
//! The binaries must be built first (`cargo build --workspace --bins`); the
//! tests find them next to their own executable.

pub mod cgroups;
pub mod fixture;
pub mod grpc;
pub mod http;
pub mod lsp;
pub mod scenario;
pub mod server;
pub mod transport;
pub mod ws;

use std::path::PathBuf;
use std::time::Duration;

/// Timeout for one LSP request in the tests. gopls answers in milliseconds
/// once loaded; the first request may wait for the workspace load.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Directory holding the workspace's built binaries (`target/debug` or
/// `target/release`). Test executables live in its `deps` subdirectory;
/// binaries such as the benchmark harness live in it directly.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().expect("executable directory");
    if dir.file_name().is_some_and(|name| name == "deps") {
        dir.parent().expect("profile directory").to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// Path of a workspace binary, with a clear failure when it was not built.
pub fn binary(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.is_file(),
        "{} not found: build the binaries first with `cargo build --workspace --bins`",
        path.display()
    );
    path
}

/// Returns the gopls binary the tests run: `REMOTE_GOPLS_TEST_GOPLS`, else `gopls`
/// on PATH, else `$(go env GOPATH)/bin/gopls`.
pub fn gopls_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("REMOTE_GOPLS_TEST_GOPLS") {
        return PathBuf::from(path);
    }
    if let Some(path) = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("gopls"))
            .find(|c| c.is_file())
    }) {
        return path;
    }
    let gopath = std::process::Command::new("go")
        .args(["env", "GOPATH"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let path = PathBuf::from(gopath).join("bin").join("gopls");
    assert!(
        path.is_file(),
        "gopls not found: install it with `go install golang.org/x/tools/gopls@v0.23.0` or set REMOTE_GOPLS_TEST_GOPLS"
    );
    path
}

/// Returns the GOROOT of the machine's Go, which gopls on the server uses.
pub fn goroot() -> PathBuf {
    let out = std::process::Command::new("go")
        .args(["env", "GOROOT"])
        .output()
        .expect("go env GOROOT");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// Process ids of the direct children of `pid`.
pub fn children(pid: u32) -> Vec<u32> {
    let mut result = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return result;
    };
    for entry in entries.flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if proc_stat(child).is_some_and(|(_, ppid)| ppid == pid) {
            result.push(child);
        }
    }
    result
}

/// Process state letter and parent pid from `/proc/<pid>/stat`.
pub fn proc_stat(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 2..];
    let mut fields = after_comm.split(' ');
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Returns the command line of a process, arguments joined by spaces.
pub fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            String::from_utf8_lossy(&b)
                .replace('\0', " ")
                .trim()
                .to_owned()
        })
        .unwrap_or_default()
}

/// Polls `check` every 50 ms until it returns `Some` or `timeout` passes.
pub async fn eventually<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
