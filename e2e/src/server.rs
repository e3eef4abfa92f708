//! A `remote-gopls-server` process for one test, with its log captured.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A running server. Dropping it kills the process.
pub struct ServerProcess {
    pub child: Child,
    pub pid: u32,
    /// `127.0.0.1:PORT` of the gRPC listener.
    pub grpc_addr: String,
    /// `127.0.0.1:PORT` of the HTTP listener (WebSocket, health, metrics).
    pub http_addr: String,
    /// Every stderr line so far.
    pub log: Arc<Mutex<Vec<String>>>,
    /// This server's own cgroup parent (relative to the hierarchy root),
    /// removed with everything below it when the value is dropped.
    pub cgroup_parent: Option<String>,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe {
            libc::kill(self.pid as i32, libc::SIGKILL);
        }
        if let Some(parent) = &self.cgroup_parent {
            crate::cgroups::remove_tree(&crate::cgroups::group_dir(parent));
        }
    }
}

impl ServerProcess {
    /// Starts the server on a free loopback port with `args` added, and waits
    /// until it listens.
    pub async fn start(data_dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> ServerProcess {
        let own_cgroup_choice = args
            .iter()
            .any(|a| a.starts_with("--cgroup-parent") || *a == "--no-cgroups");
        let cgroup_parent = if own_cgroup_choice {
            None
        } else {
            crate::cgroups::unique_parent()
        };
        let mut command = Command::new(crate::binary("remote-gopls-server"));
        if let Some(parent) = &cgroup_parent {
            command.arg("--cgroup-parent").arg(parent);
        }
        if !args.contains(&"--gopls") {
            command.arg("--gopls").arg(crate::gopls_binary());
        }
        if !args.contains(&"--listen") {
            command.arg("--listen").arg("127.0.0.1:0");
        }
        if !args.contains(&"--http-listen") {
            command.arg("--http-listen").arg("127.0.0.1:0");
        }
        command
            .arg("--data-dir")
            .arg(data_dir)
            .args(args)
            .env("REMOTE_GOPLS_LOG", "info,remote_gopls_server=debug")
            .env_remove("REMOTE_GOPLS_SERVER_TOKENS")
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("start remote-gopls-server");
        let pid = child.id().unwrap();

        let log = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, mut addr_rx) = tokio::sync::mpsc::unbounded_channel();
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                for listener in ["gRPC", "HTTP"] {
                    if !line.contains(&format!("{listener} listening")) {
                        continue;
                    }
                    if let Some(addr) = line.split("address=").nth(1) {
                        let addr = addr.split_whitespace().next().unwrap_or_default();
                        let _ = addr_tx.send((listener, addr.to_owned()));
                    }
                }
                if std::env::var_os("REMOTE_GOPLS_TEST_ECHO").is_some() {
                    eprintln!("[server] {line}");
                }
                sink.lock().unwrap().push(line);
            }
        });

        let (mut grpc_addr, mut http_addr) = (None, None);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        while grpc_addr.is_none() || http_addr.is_none() {
            match tokio::time::timeout_at(deadline, addr_rx.recv()).await {
                Ok(Some(("gRPC", addr))) => grpc_addr = Some(addr),
                Ok(Some((_, addr))) => http_addr = Some(addr),
                _ => panic!(
                    "server did not start listening; log:\n{}",
                    log.lock().unwrap().join("\n")
                ),
            }
        }
        ServerProcess {
            child,
            pid,
            grpc_addr: grpc_addr.unwrap(),
            http_addr: http_addr.unwrap(),
            log,
            cgroup_parent,
        }
    }

    /// Returns the gRPC URL for the client.
    pub fn url(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }

    /// Returns the WebSocket URL for the client.
    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.http_addr)
    }

    /// Returns the whole log so far.
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Waits until a log line contains `needle`.
    pub async fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        crate::eventually(timeout, || {
            self.log
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains(needle))
                .then_some(())
        })
        .await
        .is_some()
    }

    /// gopls processes started by this server (its direct children).
    pub fn gopls_children(&self) -> Vec<u32> {
        crate::children(self.pid)
            .into_iter()
            .filter(|&pid| crate::cmdline(pid).contains("gopls"))
            .collect()
    }

    /// Panics if a child of the server (or of its gopls) is a zombie.
    pub fn assert_no_zombies(&self) {
        for pid in crate::children(self.pid) {
            for process in std::iter::once(pid).chain(crate::children(pid)) {
                let state = crate::proc_stat(process).map(|s| s.0);
                assert_ne!(
                    state,
                    Some('Z'),
                    "process {process} ({}) is a zombie",
                    crate::cmdline(process)
                );
            }
        }
    }

    /// Runs `remote-gopls-server status --json` against this server.
    pub async fn status(&self) -> serde_json::Value {
        let output = Command::new(crate::binary("remote-gopls-server"))
            .args(["status", "--json", "--server", &self.url()])
            .output()
            .await
            .expect("run remote-gopls-server status");
        assert!(
            output.status.success(),
            "status failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).expect("status prints JSON")
    }

    /// Returns the status entry of one workspace.
    pub async fn workspace_status(&self, name: &str) -> serde_json::Value {
        let report = self.status().await;
        report["workspaces"]
            .as_array()
            .and_then(|w| w.iter().find(|w| w["name"] == name).cloned())
            .unwrap_or_else(|| panic!("workspace {name} in {report}"))
    }

    /// Returns the pid of a workspace's running gopls, if any.
    pub async fn gopls_pid(&self, workspace: &str) -> Option<u32> {
        let status = self.workspace_status(workspace).await;
        let instance = &status["instance"];
        (instance["state"] == "running").then(|| instance["pid"].as_u64().unwrap() as u32)
    }

    /// Sends SIGTERM and waits for the exit status.
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        self.signal_term();
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("server exits within 30 s of SIGTERM")
            .expect("wait for server")
    }

    /// Sends SIGTERM without waiting.
    pub fn signal_term(&self) {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe {
            libc::kill(self.pid as i32, libc::SIGTERM);
        }
    }
}
