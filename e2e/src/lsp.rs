//! A small LSP client for the tests. It talks to an editor-side transport
//! (the `remote-gopls` binary's stdio, or any channel pair), answers the
//! requests gopls sends to editors, and records notifications.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use remote_gopls_proto::codec::LspCodec;
use serde_json::{json, Value};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_util::codec::{FramedRead, FramedWrite};

use crate::fixture::Fixture;

type Pending = Arc<Mutex<HashMap<i64, oneshot::Sender<Value>>>>;

/// What the client has seen from the server side.
#[derive(Default)]
pub struct Seen {
    pub notifications: Vec<Value>,
    /// Methods of server-to-client requests, in arrival order.
    pub server_requests: Vec<String>,
    /// Every message received, in order.
    pub all: Vec<Value>,
}

/// One LSP client connection.
pub struct LspClient {
    outgoing: mpsc::Sender<Bytes>,
    pending: Pending,
    next_id: AtomicI64,
    pub seen: Arc<Mutex<Seen>>,
    changed: Arc<Notify>,
    /// The `remote-gopls` process, when this client drives one.
    pub child: Option<Child>,
    /// stderr of the `remote-gopls` process.
    pub stderr: Arc<Mutex<String>>,
}

impl LspClient {
    /// Builds a client over a channel pair carrying message bodies.
    pub fn over_channels(
        outgoing: mpsc::Sender<Bytes>,
        mut incoming: mpsc::Receiver<Bytes>,
    ) -> LspClient {
        let pending: Pending = Arc::default();
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let changed = Arc::new(Notify::new());

        let (pending2, seen2, changed2, reply) = (
            pending.clone(),
            seen.clone(),
            changed.clone(),
            outgoing.clone(),
        );
        tokio::spawn(async move {
            while let Some(body) = incoming.recv().await {
                let Ok(message) = serde_json::from_slice::<Value>(&body) else {
                    panic!(
                        "invalid JSON from the server side: {}",
                        String::from_utf8_lossy(&body)
                    );
                };
                seen2.lock().unwrap().all.push(message.clone());
                let method = message["method"].as_str().map(str::to_owned);
                match (method, message.get("id")) {
                    (Some(method), Some(id)) => {
                        let result = answer_server_request(&method, &message["params"]);
                        seen2.lock().unwrap().server_requests.push(method);
                        let response = json!({"jsonrpc": "2.0", "id": id, "result": result});
                        let _ = reply
                            .send(Bytes::from(serde_json::to_vec(&response).unwrap()))
                            .await;
                    }
                    (Some(_), None) => seen2.lock().unwrap().notifications.push(message),
                    (None, Some(id)) => {
                        if let Some(tx) = id
                            .as_i64()
                            .and_then(|id| pending2.lock().unwrap().remove(&id))
                        {
                            let _ = tx.send(message);
                        }
                    }
                    (None, None) => {}
                }
                changed2.notify_waiters();
            }
            changed2.notify_waiters();
        });

        LspClient {
            outgoing,
            pending,
            next_id: AtomicI64::new(1),
            seen,
            changed,
            child: None,
            stderr: Arc::default(),
        }
    }

    /// Starts the `remote-gopls` binary with `envs` and talks to it over stdio.
    pub fn spawn_client(envs: &[(&str, &str)]) -> LspClient {
        let mut command = Command::new(crate::binary("remote-gopls"));
        command
            .env_remove("REMOTE_GOPLS_SERVER")
            .env_remove("REMOTE_GOPLS_TOKEN")
            .env_remove("REMOTE_GOPLS_WORKSPACE")
            .env_remove("REMOTE_GOPLS_LOCAL_ROOT")
            .envs(envs.iter().copied());
        LspClient::spawn_stdio(command)
    }

    /// Starts any stdio language server (the `remote-gopls` binary, or gopls
    /// itself) and talks to it over its stdin and stdout. The process is
    /// killed when the client is dropped.
    pub fn spawn_stdio(mut command: Command) -> LspClient {
        let program = command
            .as_std()
            .get_program()
            .to_string_lossy()
            .into_owned();
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("failed to start {program}: {e}"));

        let (out_tx, mut out_rx) = mpsc::channel::<Bytes>(64);
        let mut writer = FramedWrite::new(child.stdin.take().unwrap(), LspCodec::default());
        tokio::spawn(async move {
            while let Some(body) = out_rx.recv().await {
                if writer.send(body).await.is_err() {
                    break;
                }
            }
        });

        let (in_tx, in_rx) = mpsc::channel::<Bytes>(64);
        let mut reader = FramedRead::new(child.stdout.take().unwrap(), LspCodec::default());
        tokio::spawn(async move {
            while let Some(Ok(body)) = reader.next().await {
                if in_tx.send(body).await.is_err() {
                    break;
                }
            }
        });

        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let mut err = child.stderr.take().unwrap();
        tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });

        let mut client = LspClient::over_channels(out_tx, in_rx);
        client.child = Some(child);
        client.stderr = stderr;
        client
    }

    /// Sends raw bytes as one message body.
    pub async fn send_raw(&self, body: impl Into<Bytes>) {
        self.outgoing
            .send(body.into())
            .await
            .expect("transport open");
    }

    /// Sends a request and returns the whole response message.
    pub async fn request_message(&self, method: &str, params: Value) -> Value {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, tx);
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.send_raw(serde_json::to_vec(&body).unwrap()).await;
        match tokio::time::timeout(crate::REQUEST_TIMEOUT, rx).await {
            Ok(Ok(message)) => message,
            Ok(Err(_)) => panic!("connection closed before the response to {method}"),
            Err(_) => panic!(
                "no response to {method} within {:?}",
                crate::REQUEST_TIMEOUT
            ),
        }
    }

    /// Sends a request and returns its result; panics on an error response.
    pub async fn request(&self, method: &str, params: Value) -> Value {
        let message = self.request_message(method, params).await;
        if let Some(error) = message.get("error") {
            panic!("{method} failed: {error}");
        }
        message["result"].clone()
    }

    pub async fn notify(&self, method: &str, params: Value) {
        let body = json!({"jsonrpc": "2.0", "method": method, "params": params});
        self.send_raw(serde_json::to_vec(&body).unwrap()).await;
    }

    /// Waits for a notification matching `predicate`.
    pub async fn wait_notification(
        &self,
        timeout: Duration,
        predicate: impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            if let Some(found) = self
                .seen
                .lock()
                .unwrap()
                .notifications
                .iter()
                .find(|n| predicate(n))
            {
                return Some(found.clone());
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }

    /// Performs `initialize` and `initialized` for the fixture's local copy.
    pub async fn initialize(&self, fixture: &Fixture) -> Value {
        self.initialize_with_options(fixture, Value::Null).await
    }

    /// Performs `initialize` with the given `initializationOptions`, then `initialized`.
    pub async fn initialize_with_options(&self, fixture: &Fixture, options: Value) -> Value {
        let root = fixture.local_root_uri();
        let mut capabilities = editor_capabilities();
        capabilities["workspace"]["didChangeConfiguration"] = json!({"dynamicRegistration": true});
        let params = json!({
            "initializationOptions": options,
            "processId": std::process::id(),
            "clientInfo": {"name": "remote-gopls-e2e", "version": "0"},
            "rootUri": root,
            "rootPath": fixture.local.to_string_lossy(),
            "workspaceFolders": [{"uri": root, "name": "hello"}],
            "capabilities": capabilities,
        });
        let result = self.request("initialize", params).await;
        self.notify("initialized", json!({})).await;
        result
    }

    /// Opens a file of the fixture's local copy.
    pub async fn open(&self, fixture: &Fixture, relative: &str) -> String {
        let text = fixture.read(relative);
        self.notify(
            "textDocument/didOpen",
            json!({"textDocument": {"uri": fixture.local_uri(relative), "languageId": "go", "version": 1, "text": text}}),
        )
        .await;
        text
    }

    /// Hover text at a position, or an empty string.
    pub async fn hover(&self, uri: &str, (line, character): (u32, u32)) -> String {
        let result = self
            .request("textDocument/hover", json!({"textDocument": {"uri": uri}, "position": {"line": line, "character": character}}))
            .await;
        result["contents"]["value"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// First location of a definition result.
    pub async fn definition(&self, uri: &str, (line, character): (u32, u32)) -> Value {
        let result = self
            .request("textDocument/definition", json!({"textDocument": {"uri": uri}, "position": {"line": line, "character": character}}))
            .await;
        match result {
            Value::Array(mut locations) if !locations.is_empty() => locations.remove(0),
            other => other,
        }
    }

    /// Sends `shutdown` then `exit`.
    pub async fn shutdown_and_exit(&self) {
        let result = self.request_message("shutdown", Value::Null).await;
        assert!(result.get("error").is_none(), "shutdown failed: {result}");
        self.notify("exit", Value::Null).await;
    }

    /// Methods of server-to-client requests seen so far.
    pub fn server_requests(&self) -> Vec<String> {
        self.seen.lock().unwrap().server_requests.clone()
    }
}

/// Returns the client capabilities of a simple editor: configuration and
/// workspace folders, work-done progress, markdown hover, plain completion.
pub fn editor_capabilities() -> Value {
    json!({
        "workspace": {"configuration": true, "workspaceFolders": true},
        "window": {"workDoneProgress": true},
        "textDocument": {
            "hover": {"contentFormat": ["markdown", "plaintext"]},
            "completion": {"completionItem": {"snippetSupport": false}},
            "publishDiagnostics": {"relatedInformation": true},
            "synchronization": {"didSave": true}
        }
    })
}

/// Answers the requests gopls sends to editors the way a simple editor would.
fn answer_server_request(method: &str, params: &Value) -> Value {
    match method {
        "workspace/configuration" => {
            let items = params["items"].as_array().map_or(0, Vec::len);
            Value::Array(vec![json!({}); items])
        }
        "workspace/applyEdit" => json!({"applied": false}),
        _ => Value::Null,
    }
}
