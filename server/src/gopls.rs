//! Finding the gopls binary and its version: an explicit path, else `gopls`
//! on PATH, else a previous install in the data directory, else the pinned
//! version installed there with `go install`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::Command;

/// The gopls version installed when no gopls binary is found.
pub use remote_gopls_proto::PINNED_GOPLS_VERSION;
/// Module path of gopls, for `go install`.
pub const GOPLS_MODULE: &str = "golang.org/x/tools/gopls";

const VERSION_TIMEOUT: Duration = Duration::from_secs(30);
const INSTALL_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// A usable gopls binary.
#[derive(Debug, Clone)]
pub struct GoplsBinary {
    pub path: PathBuf,
    /// Module version reported by `gopls version -json`, such as `v0.23.0`.
    pub version: String,
}

#[derive(Debug, thiserror::Error)]
pub enum GoplsError {
    #[error("failed to run {path}: {source}")]
    Spawn {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{path} version -json` timed out after {VERSION_TIMEOUT:?}")]
    VersionTimeout { path: PathBuf },
    #[error("`{path} version -json` failed: {detail}")]
    Version { path: PathBuf, detail: String },
    #[error("gopls not found on PATH and `go install {GOPLS_MODULE}@{PINNED_GOPLS_VERSION}` failed: {detail}; install gopls or pass --gopls PATH")]
    Install { detail: String },
}

/// Returns the first executable file called `name` in the PATH directories.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Resolves the gopls binary, installing the pinned version when needed.
pub async fn resolve(explicit: Option<&Path>, data_dir: &Path) -> Result<GoplsBinary, GoplsError> {
    let installed = data_dir.join("bin").join("gopls");
    let path = if let Some(path) = explicit {
        path.to_path_buf()
    } else if let Some(path) = find_on_path("gopls") {
        path
    } else if is_executable(&installed) {
        installed
    } else {
        install(data_dir).await?
    };

    let version = version(&path).await?;
    Ok(GoplsBinary { path, version })
}

/// Installs the pinned gopls into `<data_dir>/bin` with `go install`.
async fn install(data_dir: &Path) -> Result<PathBuf, GoplsError> {
    let bin = data_dir.join("bin");
    let target = format!("{GOPLS_MODULE}@{PINNED_GOPLS_VERSION}");
    tracing::info!(gobin = %bin.display(), module = %target, "gopls not found on PATH, installing it with go install");

    let mut command = Command::new("go");
    command
        .args(["install", &target])
        .env("GOBIN", &bin)
        .kill_on_drop(true);
    let output = tokio::time::timeout(INSTALL_TIMEOUT, command.output())
        .await
        .map_err(|_| GoplsError::Install {
            detail: format!("timed out after {INSTALL_TIMEOUT:?}"),
        })?
        .map_err(|e| GoplsError::Install {
            detail: format!("cannot run `go`: {e}"),
        })?;
    if !output.status.success() {
        return Err(GoplsError::Install {
            detail: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }

    let path = bin.join("gopls");
    tracing::info!(path = %path.display(), "installed gopls");
    Ok(path)
}

/// Reads the module version from `gopls version -json`.
pub async fn version(path: &Path) -> Result<String, GoplsError> {
    let mut command = Command::new(path);
    command.args(["version", "-json"]).kill_on_drop(true);
    let output = tokio::time::timeout(VERSION_TIMEOUT, command.output())
        .await
        .map_err(|_| GoplsError::VersionTimeout {
            path: path.to_path_buf(),
        })?
        .map_err(|source| GoplsError::Spawn {
            path: path.to_path_buf(),
            source,
        })?;
    let fail = |detail: String| GoplsError::Version {
        path: path.to_path_buf(),
        detail,
    };
    if !output.status.success() {
        return Err(fail(
            String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        ));
    }

    let info: serde_json::Value =
        serde_json::from_slice(&output.stdout).map_err(|e| fail(format!("invalid JSON: {e}")))?;
    let version = info["Version"]
        .as_str()
        .or_else(|| info["Main"]["Version"].as_str());
    version
        .map(str::to_owned)
        .ok_or_else(|| fail("no Version or Main.Version in the output".to_owned()))
}
