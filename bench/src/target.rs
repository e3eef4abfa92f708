//! The four ways an editor can reach gopls that the harness compares, each
//! started as real processes: gopls on stdio, the gopls `-remote`
//! forwarder with a gopls daemon, and remote-gopls over gRPC or WebSocket.
//!
//! A [`Backend`] is what runs behind the editor-side stdio program; the
//! scenarios pick the client (a full LSP client or a raw byte pump) that
//! talks to [`Backend::stdio_command`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use remote_gopls_e2e::server::ServerProcess;
use tokio::process::{Child, Command};

use crate::cgroup::MemoryCgroup;

/// Name of the workspace on the remote-gopls server.
pub const WORKSPACE_NAME: &str = "gen";
/// How long a gopls daemon may take to create its socket.
const DAEMON_START_TIMEOUT: Duration = Duration::from_secs(30);
/// Go runtime variables that differ between the default and the tuned runs;
/// removed from the inherited environment so "default" means Go's defaults.
pub const RUNTIME_VARS: [&str; 4] = ["GOGC", "GOMAXPROCS", "GOFLAGS", "GOMEMLIMIT"];

/// Route from the editor to gopls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Transport {
    /// gopls started by the editor, LSP on its stdin and stdout.
    #[serde(rename = "stdio")]
    Direct,
    /// `gopls -remote=unix;SOCKET` forwarding stdio to a `gopls serve` daemon.
    #[serde(rename = "gopls-remote")]
    Forwarder,
    /// The `remote-gopls` client over gRPC to `remote-gopls-server`.
    #[serde(rename = "grpc")]
    Grpc,
    /// The `remote-gopls` client over WebSocket to `remote-gopls-server`.
    #[serde(rename = "websocket")]
    WebSocket,
}

impl Transport {
    pub const ALL: [Transport; 4] = [
        Transport::Direct,
        Transport::Forwarder,
        Transport::Grpc,
        Transport::WebSocket,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Transport::Direct => "gopls stdio",
            Transport::Forwarder => "gopls -remote",
            Transport::Grpc => "remote-gopls gRPC",
            Transport::WebSocket => "remote-gopls WebSocket",
        }
    }
}

/// Settings shared by every backend: the gopls binary, the directory for
/// sockets, and the environment gopls runs with.
#[derive(Debug, Clone)]
pub struct Launch {
    pub gopls: PathBuf,
    /// Directory for sockets, server data and the gopls configuration home.
    pub scratch: PathBuf,
    /// Variables set for gopls; [`RUNTIME_VARS`] not listed here are unset.
    pub gopls_env: Vec<(String, String)>,
}

impl Launch {
    /// Returns the remote-gopls server's default gopls environment (tuned
    /// runtime), so every transport runs the same gopls settings.
    pub fn tuned(gopls: &Path, scratch: &Path) -> Launch {
        Launch {
            gopls: gopls.to_owned(),
            scratch: scratch.to_owned(),
            gopls_env: remote_gopls_server::config::DEFAULT_GOPLS_ENV
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    /// Builds a gopls command with this launch's environment: Go runtime
    /// defaults cleared, the requested values set, and Go telemetry off as
    /// the server sets it, so no telemetry sidecar runs next to any gopls.
    pub fn gopls_command(&self) -> anyhow::Result<Command> {
        let mut command = Command::new(&self.gopls);
        self.apply_env(&mut command)?;
        Ok(command)
    }

    /// gopls's on-disk cache of type-checking results (`GOPLSCACHE`). Each
    /// backend gets an empty one, so no run starts warmer than another.
    pub fn cache_dir(&self) -> PathBuf {
        self.scratch.join("gopls-cache")
    }

    fn apply_env(&self, command: &mut Command) -> anyhow::Result<()> {
        for var in RUNTIME_VARS {
            command.env_remove(var);
        }
        let telemetry = remote_gopls_server::launcher::telemetry_off_env(&self.scratch)
            .context("failed to prepare the gopls configuration home")?;
        command.envs(telemetry);
        command.env("GOPLSCACHE", self.cache_dir());
        command.envs(self.gopls_env.iter().map(|(k, v)| (k, v)));
        die_with_parent(command);
        Ok(())
    }

    /// Runs gopls on stdio inside `cgroup`: a shell joins the cgroup, then
    /// replaces itself with gopls, so gopls and every `go list` it starts
    /// are charged to the cgroup from their first page.
    pub fn gopls_in_cgroup(&self, cgroup: &MemoryCgroup) -> anyhow::Result<Command> {
        let mut command = Command::new("/bin/sh");
        command
            .arg("-c")
            .arg("echo $$ > \"$0\" && exec \"$@\"")
            .arg(cgroup.procs_file())
            .arg(&self.gopls);
        self.apply_env(&mut command)?;
        Ok(command)
    }
}

/// Sends SIGKILL to the child when the harness thread that started it dies,
/// so a killed harness leaves no gopls behind.
fn die_with_parent(command: &mut Command) {
    // SAFETY: the closure runs between fork and exec and only calls prctl,
    // which is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// The processes behind one editor-side stdio program.
pub struct Backend {
    pub transport: Transport,
    launch: Launch,
    /// The gopls daemon of the forwarder transport.
    daemon: Option<Child>,
    socket: Option<PathBuf>,
    /// remote-gopls-server, for the gRPC and WebSocket transports.
    pub server: Option<ServerProcess>,
    ws_url: Option<String>,
    _scratch: tempfile::TempDir,
}

impl Backend {
    /// Starts what `transport` needs behind the editor: nothing for stdio,
    /// a daemon for the forwarder, a server for gRPC and WebSocket.
    /// `workspace` is the server's copy of the module.
    pub async fn start(
        transport: Transport,
        launch: &Launch,
        workspace: &Path,
    ) -> anyhow::Result<Backend> {
        let scratch = tempfile::Builder::new()
            .prefix("backend-")
            .tempdir_in(&launch.scratch)
            .context("failed to create a backend directory")?;
        let mut launch = launch.clone();
        launch.scratch = scratch.path().to_owned();
        let mut backend = Backend {
            transport,
            launch,
            daemon: None,
            socket: None,
            server: None,
            ws_url: None,
            _scratch: scratch,
        };
        match transport {
            Transport::Direct => {}
            Transport::Forwarder => backend.start_daemon(workspace).await?,
            Transport::Grpc => {
                backend.server = Some(start_server(&backend.launch, workspace, &[]).await?)
            }
            Transport::WebSocket => {
                // A server or client without WebSocket support fails here or
                // at initialize, and the scenario reports the transport as
                // not available instead of failing the run.
                let server = start_server(&backend.launch, workspace, &[]).await?;
                backend.ws_url = Some(server.ws_url());
                backend.server = Some(server);
            }
        }
        Ok(backend)
    }

    async fn start_daemon(&mut self, workspace: &Path) -> anyhow::Result<()> {
        let socket = self.launch.scratch.join("gopls.sock");
        let mut command = self.launch.gopls_command()?;
        command
            .arg("serve")
            .arg(format!("-listen=unix;{}", socket.display()))
            .arg("-listen.timeout=0")
            .current_dir(workspace)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true);
        let mut daemon = command
            .spawn()
            .context("failed to start the gopls daemon")?;

        let deadline = tokio::time::Instant::now() + DAEMON_START_TIMEOUT;
        while !socket.exists() {
            if let Some(status) = daemon.try_wait()? {
                bail!("gopls daemon exited during start: {status}");
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "gopls daemon did not create {} within {DAEMON_START_TIMEOUT:?}",
                    socket.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.daemon = Some(daemon);
        self.socket = Some(socket);
        Ok(())
    }

    /// Stops the server with SIGTERM, so it stops and reaps its gopls, and
    /// kills the daemon. Dropping a backend kills both instead.
    pub async fn stop(mut self) {
        if let Some(mut server) = self.server.take() {
            // terminate() panics when the server outlives its grace period;
            // the task turns that into a warning, and the drop kills it.
            let stopped = tokio::spawn(async move {
                server.terminate().await;
            });
            if let Err(e) = stopped.await {
                eprintln!(
                    "warning: remote-gopls-server did not stop: {}",
                    crate::panic_message(e)
                );
            }
        }
        if let Some(mut daemon) = self.daemon.take() {
            let _ = daemon.start_kill();
            let _ = daemon.wait().await;
        }
    }

    /// Builds the command of the program the editor starts and talks LSP to
    /// over stdio.
    pub fn stdio_command(&self) -> anyhow::Result<Command> {
        match self.transport {
            Transport::Direct => self.launch.gopls_command(),
            Transport::Forwarder => {
                let socket = self.socket.as_ref().context("daemon not started")?;
                let mut command = self.launch.gopls_command()?;
                command.arg(format!("-remote=unix;{}", socket.display()));
                Ok(command)
            }
            Transport::Grpc | Transport::WebSocket => {
                let server = self.server.as_ref().context("server not started")?;
                let url = match &self.ws_url {
                    Some(url) => url.clone(),
                    None => server.url(),
                };
                let mut command = Command::new(remote_gopls_e2e::binary("remote-gopls"));
                command
                    .env("REMOTE_GOPLS_SERVER", url)
                    .env("REMOTE_GOPLS_WORKSPACE", WORKSPACE_NAME)
                    .env_remove("REMOTE_GOPLS_TOKEN")
                    .env_remove("REMOTE_GOPLS_LOCAL_ROOT");
                die_with_parent(&mut command);
                Ok(command)
            }
        }
    }

    /// gopls processes serving this backend; `editor_pid` is the pid of
    /// the stdio program, which is gopls itself for the stdio transport.
    pub fn gopls_pids(&self, editor_pid: Option<u32>) -> Vec<u32> {
        match self.transport {
            Transport::Direct => editor_pid.into_iter().collect(),
            Transport::Forwarder => self
                .daemon
                .as_ref()
                .and_then(Child::id)
                .into_iter()
                .collect(),
            Transport::Grpc | Transport::WebSocket => self
                .server
                .as_ref()
                .map(ServerProcess::gopls_children)
                .unwrap_or_default(),
        }
    }

    /// Processes that only carry messages: the forwarder, or the
    /// remote-gopls client and server.
    pub fn bridge_pids(&self, editor_pid: Option<u32>) -> Vec<u32> {
        match self.transport {
            Transport::Direct => Vec::new(),
            Transport::Forwarder => editor_pid.into_iter().collect(),
            Transport::Grpc | Transport::WebSocket => editor_pid
                .into_iter()
                .chain(self.server.as_ref().map(|s| s.pid))
                .collect(),
        }
    }
}

/// Starts remote-gopls-server serving `workspace` as [`WORKSPACE_NAME`]
/// with the launch's gopls environment, logging at info level (the e2e
/// default of debug would log every message and slow the tunnel down).
pub async fn start_server(
    launch: &Launch,
    workspace: &Path,
    extra: &[&str],
) -> anyhow::Result<ServerProcess> {
    let workspace_arg = format!("{WORKSPACE_NAME}={}", workspace.display());
    let mut args = vec!["--workspace".to_owned(), workspace_arg];
    let cache = (
        "GOPLSCACHE".to_owned(),
        launch.cache_dir().display().to_string(),
    );
    for (key, value) in launch.gopls_env.iter().chain([&cache]) {
        args.push("--gopls-env".to_owned());
        args.push(format!("{key}={value}"));
    }
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let data = launch.scratch.join("server-data");
    // ServerProcess::start panics when the server does not come up; run it
    // as a task so that becomes an error for this one backend. It passes
    // `--gopls` from `remote_gopls_e2e::gopls_binary()`, which main points
    // at the harness's gopls.
    let started = tokio::spawn(async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ServerProcess::start(&data, &args, &[("REMOTE_GOPLS_LOG", "info")]).await
    })
    .await;
    started.map_err(|e| anyhow::anyhow!(crate::panic_message(e)))
}
