//! The stdio bridge: reads LSP messages from the editor on stdin, carries
//! them over one session to the server (gRPC or WebSocket, see
//! [`crate::transport`]), and writes the server's messages to stdout.
//!
//! Nothing but LSP frames is ever written to stdout; diagnostics go to
//! stderr (or the log file). When the server cannot be reached, requests get
//! a JSON-RPC error instead of silence, and the process keeps running until
//! the editor sends `exit` or closes stdin, because editors give up on a
//! language server that exits repeatedly.

use std::collections::HashSet;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{SinkExt, StreamExt};
use remote_gopls_proto::codec::LspCodec;
use remote_gopls_proto::jsonrpc::{self, error_code, Envelope, Id, Kind};
use remote_gopls_proto::pb;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, FramedWrite};

pub use crate::transport::ConnectError;
use crate::transport::{connect, Connection};

/// Server address used when `REMOTE_GOPLS_SERVER` is not set.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:7443";
/// How long connecting to the server may take.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Messages buffered toward the server or the editor before reading pauses.
const CHANNEL_BUFFER: usize = 64;

/// Settings of one bridge run, mostly from the environment.
#[derive(Debug, Clone)]
pub struct BridgeOptions {
    /// `http://host:port` of the server's gRPC listener, or `ws://host:port`
    /// or `wss://host:port` of its HTTP listener.
    pub server: String,
    pub token: Option<String>,
    /// Workspace name; default: the last component of the local root.
    pub workspace: Option<String>,
    /// Local workspace root (path or file URI); default: from `initialize`.
    pub local_root: Option<String>,
    /// Log every message (direction, method, id, size) to the client log.
    pub rpc_trace: bool,
    pub max_message_size: usize,
    pub connect_timeout: Duration,
}

impl BridgeOptions {
    /// Reads `REMOTE_GOPLS_SERVER`, `REMOTE_GOPLS_TOKEN`,
    /// `REMOTE_GOPLS_WORKSPACE` and `REMOTE_GOPLS_LOCAL_ROOT`.
    pub fn from_env() -> BridgeOptions {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        BridgeOptions {
            server: var("REMOTE_GOPLS_SERVER").unwrap_or_else(|| DEFAULT_SERVER.to_owned()),
            token: var("REMOTE_GOPLS_TOKEN"),
            workspace: var("REMOTE_GOPLS_WORKSPACE"),
            local_root: var("REMOTE_GOPLS_LOCAL_ROOT"),
            rpc_trace: false,
            max_message_size: remote_gopls_proto::DEFAULT_MAX_MESSAGE_SIZE,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }
}

/// Derives the local root from `initialize` params: `rootUri`, else the
/// first workspace folder, else `rootPath`.
pub fn local_root_from_initialize(params: &serde_json::Value) -> Option<String> {
    let root_uri = params["rootUri"].as_str();
    let folder = params["workspaceFolders"][0]["uri"].as_str();
    let root_path = params["rootPath"].as_str();
    root_uri.or(folder).or(root_path).map(str::to_owned)
}

/// The last path component of a root given as a path or file URI, decoded.
pub fn workspace_name_from_root(root: &str) -> Option<String> {
    let parsed = remote_gopls_proto::urimap::Root::parse(root).ok()?;
    parsed
        .path()
        .rsplit('/')
        .find(|s| !s.is_empty())
        .map(str::to_owned)
}

/// Bridge state that outlives one connection.
struct Bridge {
    options: BridgeOptions,
    to_editor: mpsc::Sender<Bytes>,
    /// Editor requests forwarded to the server and not yet answered.
    pending: HashSet<Id>,
    shutdown_requested: bool,
    /// Whether the editor was told the server is unreachable.
    told_unreachable: bool,
}

/// What ended the bridge.
enum End {
    /// `exit` from the editor, or stdin closed.
    Editor(ExitCode),
}

impl Bridge {
    async fn send_editor(&self, message: Vec<u8>) {
        let _ = self.to_editor.send(Bytes::from(message)).await;
    }

    async fn fail_request(&self, id: &Id, code: i64, message: &str) {
        self.send_editor(jsonrpc::error_response(Some(id), code, message))
            .await;
    }

    async fn show_error(&mut self, message: &str) {
        if self.told_unreachable {
            return;
        }
        self.told_unreachable = true;
        let params = serde_json::json!({"type": 1, "message": message});
        self.send_editor(jsonrpc::notification("window/showMessage", &params))
            .await;
    }

    fn exit_code(&self) -> ExitCode {
        if self.shutdown_requested {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        }
    }

    /// Handles one editor message while no server session exists: requests
    /// fail at once, notifications are dropped.
    async fn handle_offline(&mut self, envelope: &Envelope, reason: &str) -> Option<End> {
        match (envelope.kind, envelope.method()) {
            (Kind::Notification, "exit") => return Some(End::Editor(self.exit_code())),
            (Kind::Request, "shutdown") => {
                self.shutdown_requested = true;
                if let Some(id) = &envelope.id {
                    self.send_editor(jsonrpc::response(id, &serde_json::Value::Null))
                        .await;
                }
            }
            (Kind::Request, _) => {
                if let Some(id) = &envelope.id {
                    self.fail_request(id, error_code::REQUEST_FAILED, reason)
                        .await;
                }
            }
            _ => {}
        }
        None
    }

    /// Fails every forwarded request that the server will never answer.
    async fn fail_pending(&mut self, reason: &str) {
        let pending: Vec<Id> = self.pending.drain().collect();
        for id in pending {
            self.fail_request(&id, error_code::REQUEST_FAILED, reason)
                .await;
        }
    }
}

/// Runs the bridge on stdin and stdout.
pub async fn serve_stdio(options: BridgeOptions) -> ExitCode {
    run(options, tokio::io::stdin(), tokio::io::stdout()).await
}

/// Runs the bridge on any reader and writer, as tests do.
pub async fn run<R, W>(options: BridgeOptions, reader: R, writer: W) -> ExitCode
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let mut from_editor = FramedRead::new(reader, LspCodec::new(options.max_message_size));
    let (to_editor, mut editor_rx) = mpsc::channel::<Bytes>(CHANNEL_BUFFER);
    let writer_task = tokio::spawn(async move {
        let mut out = FramedWrite::new(writer, LspCodec::default());
        while let Some(message) = editor_rx.recv().await {
            if let Err(e) = out.send(message).await {
                tracing::error!(error = %e, "failed to write to the editor");
                break;
            }
        }
    });

    let mut bridge = Bridge {
        options,
        to_editor,
        pending: HashSet::new(),
        shutdown_requested: false,
        told_unreachable: false,
    };
    let code = drive(&mut bridge, &mut from_editor).await;

    drop(bridge);
    let _ = writer_task.await;
    code
}

async fn drive<R: AsyncRead + Unpin>(
    bridge: &mut Bridge,
    from_editor: &mut FramedRead<R, LspCodec>,
) -> ExitCode {
    // The first message decides the local root, so read it before connecting.
    let first = match read_editor(bridge, from_editor).await {
        EditorRead::Message(message, envelope) => (message, envelope),
        EditorRead::Closed => return ExitCode::SUCCESS,
    };
    let (first, first_envelope) = first;

    let local_root = bridge.options.local_root.clone().or_else(|| {
        if first_envelope.method() != "initialize" {
            return None;
        }
        let value: serde_json::Value = serde_json::from_slice(&first).ok()?;
        local_root_from_initialize(&value["params"])
    });
    let workspace = bridge
        .options
        .workspace
        .clone()
        .or_else(|| local_root.as_deref().and_then(workspace_name_from_root))
        .unwrap_or_default();
    let hello = pb::Hello {
        workspace: workspace.clone(),
        local_root: local_root.clone().unwrap_or_default(),
        client_version: format!("remote-gopls {}", remote_gopls_proto::VERSION),
    };

    let connection = match connect(&bridge.options, hello).await {
        Ok(connection) => connection,
        Err(e) => {
            let message = e.to_string();
            tracing::error!(error = %message, "connection failed");
            eprintln!("remote-gopls: {message}");
            if let Some(End::Editor(code)) = bridge.handle_offline(&first_envelope, &message).await
            {
                return code;
            }
            bridge.show_error(&format!("remote-gopls: {message}")).await;
            return offline(bridge, from_editor, &message).await;
        }
    };
    tracing::info!(
        session.id = %connection.welcome.session_id,
        workspace.name = %workspace,
        remote_root = %connection.welcome.remote_root,
        gopls.version = %connection.welcome.gopls_version,
        server.version = %connection.welcome.server_version,
        "connected"
    );

    let Connection {
        to_server,
        mut from_server,
        ..
    } = connection;
    if let Some(code) = forward(bridge, &to_server, first, &first_envelope).await {
        close_session(to_server, &mut from_server).await;
        return code;
    }

    loop {
        tokio::select! {
            read = read_editor(bridge, from_editor) => {
                let (message, envelope) = match read {
                    EditorRead::Message(message, envelope) => (message, envelope),
                    EditorRead::Closed => return ExitCode::SUCCESS,
                };
                if let Some(code) = forward(bridge, &to_server, message, &envelope).await {
                    close_session(to_server, &mut from_server).await;
                    return code;
                }
            }
            message = from_server.next() => {
                let reason = match message {
                    Some(Ok(body)) => {
                        deliver(bridge, body).await;
                        continue;
                    }
                    None => "the server closed the session".to_owned(),
                    Some(Err(reason)) => reason,
                };
                let message = format!("remote-gopls: {reason}; requests will fail until the editor restarts the language server");
                tracing::error!("{message}");
                eprintln!("{message}");
                bridge.fail_pending(&reason).await;
                bridge.show_error(&message).await;
                return offline(bridge, from_editor, &reason).await;
            }
        }
    }
}

/// How long the client waits for the server to end the session after `exit`.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Ends the request stream and waits briefly for the server to close its
/// side, so `exit` reaches the server before this process ends.
async fn close_session(
    to_server: mpsc::Sender<Bytes>,
    from_server: &mut BoxStream<'static, Result<Bytes, String>>,
) {
    drop(to_server);
    let drain = async { while let Some(Ok(_)) = from_server.next().await {} };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, drain).await;
}

enum EditorRead {
    Message(Bytes, Envelope),
    Closed,
}

/// Reads the next valid message from the editor. Invalid JSON gets a parse
/// error response and is skipped; broken framing ends the bridge.
async fn read_editor<R: AsyncRead + Unpin>(
    bridge: &Bridge,
    from_editor: &mut FramedRead<R, LspCodec>,
) -> EditorRead {
    loop {
        let message = match from_editor.next().await {
            None => return EditorRead::Closed,
            Some(Ok(message)) => message,
            Some(Err(e)) => {
                tracing::error!(error = %e, "cannot read from the editor");
                eprintln!("remote-gopls: cannot read from the editor: {e}");
                return EditorRead::Closed;
            }
        };
        match Envelope::parse(&message) {
            Ok(envelope) => {
                if bridge.options.rpc_trace {
                    tracing::info!(direction = "editor->server", kind = ?envelope.kind, method = envelope.method(), id = ?envelope.id, bytes = message.len());
                }
                return EditorRead::Message(message, envelope);
            }
            Err(e) => {
                tracing::warn!(error = %e, "invalid message from the editor");
                bridge
                    .send_editor(jsonrpc::error_response(
                        None,
                        error_code::PARSE_ERROR,
                        &e.to_string(),
                    ))
                    .await;
            }
        }
    }
}

/// Sends one editor message to the server. Returns an exit code when the
/// editor asked to exit.
async fn forward(
    bridge: &mut Bridge,
    to_server: &mpsc::Sender<Bytes>,
    message: Bytes,
    envelope: &Envelope,
) -> Option<ExitCode> {
    match envelope.kind {
        Kind::Request => {
            if envelope.method() == "shutdown" {
                bridge.shutdown_requested = true;
            }
            if let Some(id) = &envelope.id {
                bridge.pending.insert(id.clone());
            }
        }
        Kind::Notification if envelope.method() == "exit" => {
            let _ = to_server.send(message).await;
            return Some(bridge.exit_code());
        }
        _ => {}
    }

    let sent = to_server.send(message).await;
    if sent.is_err() {
        // The stream is gone; the server side of the select reports why.
        tracing::debug!("server stream closed while sending");
    }
    None
}

/// Writes one server message to the editor, settling its pending request.
async fn deliver(bridge: &mut Bridge, body: Bytes) {
    if let Ok(envelope) = Envelope::parse(&body) {
        if bridge.options.rpc_trace {
            tracing::info!(direction = "server->editor", kind = ?envelope.kind, method = envelope.method(), id = ?envelope.id, bytes = body.len());
        }
        if envelope.kind == Kind::Response {
            if let Some(id) = &envelope.id {
                bridge.pending.remove(id);
            }
        }
    }
    let _ = bridge.to_editor.send(body).await;
}

/// Serves the editor without a server until it exits.
async fn offline<R: AsyncRead + Unpin>(
    bridge: &mut Bridge,
    from_editor: &mut FramedRead<R, LspCodec>,
    reason: &str,
) -> ExitCode {
    loop {
        match read_editor(bridge, from_editor).await {
            EditorRead::Closed => return ExitCode::SUCCESS,
            EditorRead::Message(_, envelope) => {
                if let Some(End::Editor(code)) = bridge.handle_offline(&envelope, reason).await {
                    return code;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_from_initialize() {
        let cases = [
            (
                serde_json::json!({"rootUri": "file:///a/b", "rootPath": "/x"}),
                Some("file:///a/b"),
            ),
            (
                serde_json::json!({"rootUri": null, "workspaceFolders": [{"uri": "file:///w", "name": "w"}]}),
                Some("file:///w"),
            ),
            (serde_json::json!({"rootPath": "/p"}), Some("/p")),
            (serde_json::json!({}), None),
        ];
        for (params, expected) in cases {
            assert_eq!(
                local_root_from_initialize(&params).as_deref(),
                expected,
                "{params}"
            );
        }
    }

    #[test]
    fn workspace_name_from_roots() {
        assert_eq!(
            workspace_name_from_root("file:///home/me/my%20proj/").as_deref(),
            Some("my proj")
        );
        assert_eq!(
            workspace_name_from_root("/srv/hello").as_deref(),
            Some("hello")
        );
        assert_eq!(workspace_name_from_root("relative"), None);
    }
}
