//! The scripted editor: one LSP client driving a stdio program (gopls, the
//! gopls forwarder or the remote-gopls client) through initialize, opening
//! files, and timed hover, definition, completion and references requests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use remote_gopls_e2e::lsp::LspClient;
use remote_gopls_proto::urimap::Root;
pub use remote_gopls_server::instance::ExitInfo;
use serde_json::{json, Value};
use tokio::process::Command;
use tokio::sync::watch;

use crate::gocode::ProbeKind;
use crate::stats::Summary;
use crate::workspace::Module;

/// A running stdio language server and the client talking to it.
pub struct Editor {
    pub client: LspClient,
    /// The editor's root folder.
    pub root: PathBuf,
    /// Pid of the stdio program.
    pub pid: Option<u32>,
    pub started: Instant,
    exit: watch::Receiver<Option<ExitInfo>>,
    waiter: tokio::task::JoinHandle<()>,
}

impl Editor {
    /// Starts `command` and connects a client to its stdio. `root` is the
    /// folder the editor opens.
    pub fn spawn(command: Command, root: &Path) -> Editor {
        let started = Instant::now();
        let mut client = LspClient::spawn_stdio(command);
        let mut child = client.child.take().expect("spawn_stdio keeps the child");
        let pid = child.id();
        let (exit_tx, exit) = watch::channel(None);
        // Waiting in a task reaps the process and lets requests in flight
        // fail at once when it is gone, instead of at their timeout.
        let waiter = tokio::spawn(async move {
            let info = ExitInfo::from_wait(child.wait().await);
            let _ = exit_tx.send(Some(info));
        });
        Editor {
            client,
            root: root.to_owned(),
            pid,
            started,
            exit,
            waiter,
        }
    }

    /// Returns the exit of the stdio program, once it has exited.
    pub fn exited(&self) -> Option<ExitInfo> {
        self.exit.borrow().clone()
    }

    /// `file://` URI of a file under the root.
    pub fn uri(&self, relative: &str) -> String {
        file_uri(&self.root.join(relative))
    }

    /// Sends a request and waits for its response, for at most `timeout`,
    /// or until the stdio program exits. Returns the response and the round
    /// trip time.
    pub async fn request(
        &self,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> anyhow::Result<(Value, Duration)> {
        let start = Instant::now();
        let mut exit = self.exit.clone();
        tokio::select! {
            response = tokio::time::timeout(timeout, self.client.request_message(method, params)) => {
                let response = response.map_err(|_| anyhow!("no response to {method} within {timeout:?}"))?;
                Ok((response, start.elapsed()))
            }
            _ = exit.wait_for(Option::is_some) => {
                bail!("{} exited during {method}: {}", self.program(), self.exit_text())
            }
        }
    }

    fn program(&self) -> String {
        format!("language server (pid {})", self.pid.unwrap_or_default())
    }

    fn exit_text(&self) -> String {
        self.exited().map(|e| e.status).unwrap_or_default()
    }

    /// Sends `initialize` and `initialized` for the root folder; an error
    /// response (for example from a client that cannot reach its server)
    /// is an error.
    pub async fn initialize(&self, timeout: Duration) -> anyhow::Result<Value> {
        let root = file_uri(&self.root);
        let params = json!({
            "processId": std::process::id(),
            "clientInfo": {"name": "remote-gopls-bench", "version": env!("CARGO_PKG_VERSION")},
            "rootUri": root,
            "rootPath": self.root.to_string_lossy(),
            "workspaceFolders": [{"uri": root, "name": "gen"}],
            "capabilities": remote_gopls_e2e::lsp::editor_capabilities(),
        });
        let (response, _) = self.request("initialize", params, timeout).await?;
        if let Some(error) = response.get("error") {
            bail!("initialize failed: {error}");
        }
        self.client.notify("initialized", json!({})).await;
        Ok(response["result"].clone())
    }

    /// Opens a file with the given text.
    pub async fn open(&self, relative: &str, text: &str) {
        self.client
            .notify(
                "textDocument/didOpen",
                json!({"textDocument": {"uri": self.uri(relative), "languageId": "go", "version": 1, "text": text}}),
            )
            .await;
    }

    /// Waits for the first `publishDiagnostics` of a file (gopls sends one
    /// for every file it diagnoses, an empty list included).
    pub async fn wait_diagnostics(&self, relative: &str, timeout: Duration) -> anyhow::Result<()> {
        let uri = self.uri(relative);
        let mut exit = self.exit.clone();
        let wait = self.client.wait_notification(timeout, |n| {
            n["method"] == "textDocument/publishDiagnostics" && n["params"]["uri"] == uri.as_str()
        });
        tokio::select! {
            found = wait => match found {
                Some(_) => Ok(()),
                None => bail!("no diagnostics for {relative} within {timeout:?}"),
            },
            _ = exit.wait_for(Option::is_some) => {
                bail!("{} exited before diagnosing {relative}: {}", self.program(), self.exit_text())
            }
        }
    }

    /// Sends `shutdown` and `exit`, and gives the program `timeout` to end.
    pub async fn shutdown(mut self, timeout: Duration) {
        if self.exited().is_none() {
            let _ = self.request("shutdown", Value::Null, timeout).await;
            self.client.notify("exit", Value::Null).await;
            let _ = tokio::time::timeout(timeout, self.exit.wait_for(Option::is_some)).await;
        }
    }
}

impl Drop for Editor {
    fn drop(&mut self) {
        if !self.waiter.is_finished() {
            if let Some(pid) = self.pid {
                // SAFETY: kill has no memory-safety preconditions; the waiter
                // has not reaped the process, so the pid is still ours.
                unsafe {
                    libc::kill(pid as i32, libc::SIGKILL);
                }
            }
        }
        // Aborting drops the child handle, which kills it too (kill_on_drop).
        self.waiter.abort();
    }
}

/// `file://` URI of an absolute path.
pub fn file_uri(path: &Path) -> String {
    Root::parse(&path.to_string_lossy())
        .map(|root| root.to_uri())
        .unwrap_or_else(|_| format!("file://{}", path.display()))
}

/// Latencies of one editor script, per LSP method.
#[derive(Debug, Default)]
pub struct Samples {
    pub by_method: BTreeMap<&'static str, Vec<Duration>>,
    pub errors: usize,
    /// Responses with a null or empty result.
    pub empty: usize,
}

impl Samples {
    pub fn all(&self) -> Vec<Duration> {
        self.by_method.values().flatten().copied().collect()
    }

    pub fn count(&self) -> usize {
        self.by_method.values().map(Vec::len).sum()
    }

    pub fn summaries(&self) -> BTreeMap<String, Summary> {
        let mut out: BTreeMap<String, Summary> = self
            .by_method
            .iter()
            .map(|(method, samples)| ((*method).to_owned(), Summary::of(samples)))
            .collect();
        out.insert("all".to_owned(), Summary::of(&self.all()));
        out
    }
}

/// The scripted session: which files are open and which positions are asked about.
#[derive(Debug, Clone)]
pub struct Script {
    pub files: Vec<String>,
    /// (file, kind, line, character) of every request of one round.
    pub requests: Vec<(String, ProbeKind, u32, u32)>,
}

impl Script {
    /// Opens `file_count` files spread over the module and requests every probe in them.
    pub fn new(module: &Module, file_count: usize) -> Script {
        Script::with_files(module, module.spread_files(file_count))
    }

    /// Opens `files` and requests every probe in them.
    pub fn with_files(module: &Module, files: Vec<String>) -> Script {
        let requests = files
            .iter()
            .flat_map(|file| {
                module
                    .probes
                    .iter()
                    .filter(move |p| &p.file == file)
                    .map(|p| (p.file.clone(), p.kind, p.line, p.character))
            })
            .collect();
        Script { files, requests }
    }

    /// Initializes, opens every file, and waits for the first file's
    /// diagnostics. Returns the time from the program's start to those
    /// diagnostics.
    pub async fn open(
        &self,
        editor: &Editor,
        module: &Module,
        timeout: Duration,
    ) -> anyhow::Result<Duration> {
        editor.initialize(timeout).await?;
        for file in &self.files {
            let text = module.text(file).unwrap_or_default();
            editor.open(file, text).await;
        }
        if let Some(first) = self.files.first() {
            editor.wait_diagnostics(first, timeout).await?;
        }
        Ok(editor.started.elapsed())
    }

    /// Sends every request of one round in order and records its latency.
    /// Stops early, with what it has, when `deadline` passes.
    pub async fn round(
        &self,
        editor: &Editor,
        samples: &mut Samples,
        request_timeout: Duration,
        deadline: Instant,
    ) -> anyhow::Result<()> {
        for (file, kind, line, character) in &self.requests {
            if Instant::now() >= deadline {
                break;
            }
            let mut params = json!({
                "textDocument": {"uri": editor.uri(file)},
                "position": {"line": line, "character": character},
            });
            if *kind == ProbeKind::References {
                params["context"] = json!({"includeDeclaration": true});
            }
            let (response, elapsed) = editor
                .request(kind.method(), params, request_timeout)
                .await?;
            if response.get("error").is_some() {
                samples.errors += 1;
                continue;
            }
            let result = &response["result"];
            let empty = result.is_null()
                || result.as_array().is_some_and(Vec::is_empty)
                || result["items"].as_array().is_some_and(Vec::is_empty);
            if empty {
                samples.empty += 1;
            }
            samples
                .by_method
                .entry(kind.method())
                .or_default()
                .push(elapsed);
        }
        Ok(())
    }
}
