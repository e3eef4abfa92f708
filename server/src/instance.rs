//! One running gopls process serving one workspace: start, readiness,
//! per-session socket connections, exit tracking and stop.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::watch;

use crate::cgroup::{InstanceGroup, MemoryUsage};
use crate::launcher::LaunchSpec;

/// Number of gopls stderr lines kept to explain a failed start.
const STDERR_TAIL_LINES: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error("failed to create runtime directory {path}: {source}")]
    RuntimeDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to start gopls {path}: {source}")]
    Spawn {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("gopls was OOM-killed during start ({status}): the memory limit is too low for this workspace")]
    OomKilledDuringStart { status: String, oom_kills: u64 },
    #[error("gopls exited during start ({status}); last stderr lines:\n{stderr}")]
    ExitedDuringStart { status: String, stderr: String },
    #[error("gopls did not open its socket {socket} within {timeout:?}")]
    StartTimeout { socket: PathBuf, timeout: Duration },
    #[error("gopls (pid {pid}) is not running")]
    NotRunning { pid: u32 },
    #[error("{0}")]
    Degraded(String),
    #[error("failed to set up the memory cgroup: {0}")]
    Cgroup(String),
    #[error("failed to connect to gopls socket {socket}: {source}")]
    Connect {
        socket: PathBuf,
        source: std::io::Error,
    },
}

/// Exit status of a gopls process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitInfo {
    /// `exit status: N` or `signal: N (SIGKILL)` as the standard library prints it.
    pub status: String,
    pub signal: Option<i32>,
}

impl ExitInfo {
    /// Describes the result of waiting for a child process.
    pub fn from_wait(result: std::io::Result<std::process::ExitStatus>) -> ExitInfo {
        match result {
            Ok(status) => ExitInfo {
                status: status.to_string(),
                signal: std::os::unix::process::ExitStatusExt::signal(&status),
            },
            Err(e) => ExitInfo {
                status: format!("wait failed: {e}"),
                signal: None,
            },
        }
    }
}

/// A running (or exited) gopls process.
#[derive(Debug)]
pub struct Instance {
    pub workspace: String,
    pub pid: u32,
    pub socket: PathBuf,
    pub spec: LaunchSpec,
    pub started_at: Instant,
    /// Sessions currently connected.
    sessions: AtomicUsize,
    idle_since: Mutex<Option<Instant>>,
    /// The instance's memory cgroup (or its fallback record); taken out when
    /// the group is removed.
    group: Mutex<Option<InstanceGroup>>,
    exit: watch::Receiver<Option<ExitInfo>>,
    /// Set once [`Instance::stop`] runs, so an exit can be distinguished from a crash.
    stop_requested: AtomicBool,
    /// The 0700 directory holding the socket; removed when the instance is dropped.
    _runtime_dir: tempfile::TempDir,
}

impl Instance {
    /// Starts gopls and waits until its socket accepts connections.
    pub async fn start(
        mut spec: LaunchSpec,
        group: InstanceGroup,
        run_dir: &std::path::Path,
        start_timeout: Duration,
    ) -> Result<Arc<Instance>, InstanceError> {
        let runtime_dir = make_runtime_dir(run_dir, &spec.workspace)?;
        spec.socket = runtime_dir.path().join("gopls.sock");

        let mut child =
            spec.command(Some(&group))
                .spawn()
                .map_err(|source| InstanceError::Spawn {
                    path: spec.gopls.clone(),
                    source,
                })?;
        let pid = child.id().unwrap_or_default();

        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(log_stderr(
                spec.workspace.clone(),
                pid,
                stderr,
                stderr_tail.clone(),
            ));
        }

        let (exit_tx, exit_rx) = watch::channel(None);
        let workspace = spec.workspace.clone();
        tokio::spawn(async move {
            // Waiting here also reaps the child, so it never stays a zombie.
            let info = ExitInfo::from_wait(child.wait().await);
            tracing::info!(workspace.name = %workspace, gopls.pid = pid, status = %info.status, "gopls exited");
            let _ = exit_tx.send(Some(info));
        });

        let instance = Arc::new(Instance {
            workspace: spec.workspace.clone(),
            pid,
            socket: spec.socket.clone(),
            spec,
            started_at: Instant::now(),
            sessions: AtomicUsize::new(0),
            idle_since: Mutex::new(Some(Instant::now())),
            group: Mutex::new(Some(group)),
            exit: exit_rx,
            stop_requested: AtomicBool::new(false),
            _runtime_dir: runtime_dir,
        });

        if let Err(e) = instance.wait_ready(start_timeout).await {
            let e = match e {
                InstanceError::ExitedDuringStart { status, .. } => {
                    let lines: Vec<String> = stderr_tail.lock().unwrap().iter().cloned().collect();
                    InstanceError::ExitedDuringStart {
                        status,
                        stderr: lines.join("\n"),
                    }
                }
                other => other,
            };
            instance.kill_group(libc::SIGKILL);
            let oom_kills = match instance.usage() {
                Some(Ok(usage)) => usage.oom_kills,
                _ => 0,
            };
            instance.release_group().await;
            return Err(match e {
                InstanceError::ExitedDuringStart { status, .. } if oom_kills > 0 => {
                    InstanceError::OomKilledDuringStart { status, oom_kills }
                }
                other => other,
            });
        }
        Ok(instance)
    }

    /// Reads the memory usage of the instance's cgroup, or of its process
    /// tree in fallback mode. `None` once the group was released.
    pub fn usage(&self) -> Option<Result<MemoryUsage, crate::cgroup::Error>> {
        let group = self.group.lock().unwrap();
        group.as_ref().map(|g| g.usage(Some(self.pid)))
    }

    /// Returns the cgroup directory, if the instance has one.
    pub fn cgroup_path(&self) -> Option<PathBuf> {
        let group = self.group.lock().unwrap();
        group.as_ref().and_then(|g| g.path().map(PathBuf::from))
    }

    /// Removes the instance's cgroup, killing anything left in it. Removal
    /// can block for a few seconds, so it runs on the blocking pool.
    pub async fn release_group(&self) {
        let group = self.group.lock().unwrap().take();
        let Some(group) = group else { return };
        let workspace = self.workspace.clone();
        let result = tokio::task::spawn_blocking(move || group.remove()).await;
        match result {
            Ok(Ok(())) => tracing::debug!(workspace.name = %workspace, "removed gopls cgroup"),
            Ok(Err(e)) => {
                tracing::warn!(workspace.name = %workspace, error = %e, "failed to remove gopls cgroup")
            }
            Err(e) => {
                tracing::warn!(workspace.name = %workspace, error = %e, "cgroup removal task failed")
            }
        }
    }

    async fn wait_ready(&self, timeout: Duration) -> Result<(), InstanceError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(info) = self.exit_info() {
                return Err(InstanceError::ExitedDuringStart {
                    status: info.status,
                    stderr: String::new(),
                });
            }
            if let Ok(stream) = UnixStream::connect(&self.socket).await {
                drop(stream);
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(InstanceError::StartTimeout {
                    socket: self.socket.clone(),
                    timeout,
                });
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Opens a new connection to gopls: one per session, so each session gets
    /// its own gopls server state on top of the shared cache.
    pub async fn connect(&self) -> Result<UnixStream, InstanceError> {
        if !self.is_running() {
            return Err(InstanceError::NotRunning { pid: self.pid });
        }
        UnixStream::connect(&self.socket)
            .await
            .map_err(|source| InstanceError::Connect {
                socket: self.socket.clone(),
                source,
            })
    }

    pub fn is_running(&self) -> bool {
        self.exit.borrow().is_none()
    }

    pub fn exit_info(&self) -> Option<ExitInfo> {
        self.exit.borrow().clone()
    }

    /// Waits until the process has exited and been reaped.
    pub async fn wait_exit(&self) -> ExitInfo {
        let mut exit = self.exit.clone();
        let result = exit.wait_for(Option::is_some).await;
        match result {
            Ok(info) => info.clone().expect("wait_for returned a value"),
            Err(_) => ExitInfo {
                status: "unknown".to_owned(),
                signal: None,
            },
        }
    }

    pub fn session_opened(&self) -> usize {
        *self.idle_since.lock().unwrap() = None;
        self.sessions.fetch_add(1, Ordering::SeqCst) + 1
    }

    pub fn session_closed(&self) -> usize {
        let remaining = self.sessions.fetch_sub(1, Ordering::SeqCst) - 1;
        if remaining == 0 {
            *self.idle_since.lock().unwrap() = Some(Instant::now());
        }
        remaining
    }

    /// When the last session left, or `None` while sessions are attached.
    pub fn idle_since(&self) -> Option<Instant> {
        *self.idle_since.lock().unwrap()
    }

    pub fn sessions(&self) -> usize {
        self.sessions.load(Ordering::SeqCst)
    }

    /// Stops gopls: SIGTERM to its process group, then SIGKILL after `grace`.
    pub async fn stop(&self, grace: Duration) -> ExitInfo {
        self.stop_requested.store(true, Ordering::SeqCst);
        if self.is_running() {
            tracing::info!(workspace.name = %self.workspace, gopls.pid = self.pid, "stopping gopls");
            self.kill_group(libc::SIGTERM);
            if tokio::time::timeout(grace, self.wait_exit()).await.is_err() {
                tracing::warn!(workspace.name = %self.workspace, gopls.pid = self.pid, ?grace, "gopls ignored SIGTERM, sending SIGKILL");
                self.kill_group(libc::SIGKILL);
            }
        }
        // Children such as `go list` may outlive gopls in its process group.
        self.kill_group(libc::SIGKILL);
        let info = self.wait_exit().await;
        self.release_group().await;
        info
    }

    /// Whether the server asked this instance to stop.
    pub fn stop_requested(&self) -> bool {
        self.stop_requested.load(Ordering::SeqCst)
    }

    fn kill_group(&self, signal: i32) {
        if self.pid == 0 {
            return;
        }
        // SAFETY: kill has no memory-safety preconditions. The child leads its
        // own process group (`process_group(0)`), so -pid addresses that group.
        unsafe {
            libc::kill(-(self.pid as i32), signal);
        }
    }
}

fn make_runtime_dir(
    run_dir: &std::path::Path,
    workspace: &str,
) -> Result<tempfile::TempDir, InstanceError> {
    use std::os::unix::fs::PermissionsExt;
    let fail = |source| InstanceError::RuntimeDir {
        path: run_dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(run_dir).map_err(fail)?;
    std::fs::set_permissions(run_dir, std::fs::Permissions::from_mode(0o700)).map_err(fail)?;
    let dir = tempfile::Builder::new()
        .prefix(&format!("{workspace}-"))
        .tempdir_in(run_dir)
        .map_err(fail)?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).map_err(fail)?;
    Ok(dir)
}

async fn log_stderr(
    workspace: String,
    pid: u32,
    stderr: tokio::process::ChildStderr,
    tail: Arc<Mutex<VecDeque<String>>>,
) {
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::debug!(workspace.name = %workspace, gopls.pid = pid, "gopls stderr: {line}");
        let mut tail = tail.lock().unwrap();
        if tail.len() == STDERR_TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
}
