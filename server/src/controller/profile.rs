//! Heap profiles from gopls's debug server, captured before a memory
//! restart so the cause can be studied later, and pruned to the newest few.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

/// Default number of heap profiles kept per workspace.
pub const DEFAULT_PROFILES_KEPT: usize = 5;
/// How long fetching one profile may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("failed to fetch the heap profile from {addr}: {detail}")]
    Fetch { addr: SocketAddr, detail: String },
    #[error("timed out after {FETCH_TIMEOUT:?} fetching the heap profile from {addr}")]
    Timeout { addr: SocketAddr },
    #[error("failed to write heap profile {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Fetches `/debug/pprof/heap` from gopls's debug server and writes it to
/// `<dir>/heap-<unix seconds>-<pid>.pb.gz`, then removes all but the newest
/// `keep` profiles in `dir`. Returns the new file.
pub async fn capture(
    addr: SocketAddr,
    dir: &Path,
    pid: u32,
    keep: usize,
) -> Result<PathBuf, ProfileError> {
    let body = tokio::time::timeout(FETCH_TIMEOUT, fetch(addr, "/debug/pprof/heap"))
        .await
        .map_err(|_| ProfileError::Timeout { addr })??;

    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let path = dir.join(format!("heap-{seconds}-{pid}.pb.gz"));
    let write = |source| ProfileError::Write {
        path: path.clone(),
        source,
    };
    tokio::fs::create_dir_all(dir).await.map_err(write)?;
    tokio::fs::write(&path, &body).await.map_err(write)?;

    prune(dir, keep);
    Ok(path)
}

async fn fetch(addr: SocketAddr, path: &str) -> Result<Bytes, ProfileError> {
    let fail = |detail: String| ProfileError::Fetch { addr, detail };
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| fail(e.to_string()))?;
    tokio::spawn(connection);

    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, addr.to_string())
        .body(Empty::<Bytes>::new())
        .map_err(|e| fail(e.to_string()))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| fail(e.to_string()))?;
    if !response.status().is_success() {
        return Err(fail(format!("HTTP status {}", response.status())));
    }
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| fail(e.to_string()))?;
    Ok(body.to_bytes())
}

/// Heap profiles in `dir`, newest first.
pub fn list(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut profiles: Vec<(std::time::SystemTime, PathBuf)> = entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("heap-"))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    profiles.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| b.1.cmp(&a.1)));
    profiles.into_iter().map(|(_, path)| path).collect()
}

fn prune(dir: &Path, keep: usize) {
    for old in list(dir).into_iter().skip(keep) {
        if let Err(e) = std::fs::remove_file(&old) {
            tracing::warn!(path = %old.display(), error = %e, "failed to remove an old heap profile");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_keeps_newest() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..4 {
            let path = dir.path().join(format!("heap-{i}-1.pb.gz"));
            std::fs::write(&path, b"x").unwrap();
            let time = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_000 + i);
            std::fs::File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(time)
                .unwrap();
        }
        std::fs::write(dir.path().join("other.txt"), b"x").unwrap();
        prune(dir.path(), 2);
        let names: Vec<String> = list(dir.path())
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["heap-3-1.pb.gz", "heap-2-1.pb.gz"]);
        assert!(dir.path().join("other.txt").exists());
    }
}
