//! The stdio bridge: reads LSP messages from the editor on stdin, carries
//! them over one session to the server (gRPC or WebSocket, see
//! [`crate::transport`]), and writes the server's messages to stdout.
//!
//! Nothing but LSP frames is ever written to stdout; diagnostics go to
//! stderr (or the log file). When the server cannot be reached, requests get
//! a JSON-RPC error instead of silence, and the process keeps running until
//! the editor sends `exit` or closes stdin, because editors give up on a
//! language server that exits repeatedly. When a session ends (server
//! restart, network loss) the client reconnects with backoff and replays
//! the editor's state (initialize, configuration, open documents) into the
//! new session.

use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use remote_gopls_proto::codec::LspCodec;
use remote_gopls_proto::jsonrpc::{self, error_code, Envelope, Kind};
use remote_gopls_proto::pb;
use remote_gopls_proto::replay::{FromEditor, FromGopls, ReplayState};
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

/// Returns the decoded last path component of a root given as a path or file URI.
pub fn workspace_name_from_root(root: &str) -> Option<String> {
    let parsed = remote_gopls_proto::urimap::Root::parse(root).ok()?;
    parsed
        .path()
        .rsplit('/')
        .find(|s| !s.is_empty())
        .map(str::to_owned)
}

/// First delay before the client reconnects after losing the server; it
/// doubles after each failed attempt up to [`RECONNECT_MAX`].
pub const RECONNECT_INITIAL: Duration = Duration::from_millis(250);
/// Maximum delay between two reconnect attempts.
pub const RECONNECT_MAX: Duration = Duration::from_secs(10);
/// A session that lasts this long ends an outage: the next loss starts the
/// backoff from [`RECONNECT_INITIAL`] and is reported to the user again.
/// Shorter sessions (a server that accepts and then drops the session, for
/// example because a replayed document is over its size limit) count as the
/// same outage, so the backoff keeps growing and the user gets one message.
pub const STABLE_SESSION: Duration = Duration::from_secs(30);
/// How long a replayed `initialize` may take after a reconnect.
const REPLAY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the client waits for the server to end the session after `exit`.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// LSP `MessageType` values for `window/showMessage`.
const MESSAGE_ERROR: u8 = 1;
const MESSAGE_WARNING: u8 = 2;
const MESSAGE_INFO: u8 = 3;

/// Bridge state that outlives one connection.
struct Bridge {
    options: BridgeOptions,
    to_editor: mpsc::Sender<Bytes>,
    /// The first message of every session.
    hello: pb::Hello,
    /// The editor's state, in its own URIs, replayed into each new session.
    state: ReplayState,
    /// Whether the editor was warned about the current outage.
    offline_reported: bool,
    /// Whether the editor got the message that the current outage ended.
    reconnect_reported: bool,
    /// When the current session started.
    connected_at: tokio::time::Instant,
    /// Delay before the next reconnect attempt.
    reconnect_delay: Duration,
}

/// Outcome of a connected phase.
enum Phase {
    /// `exit` from the editor, or stdin closed.
    Exit(ExitCode),
    /// The session ended; the reason is for logs and the user.
    Lost(String),
}

impl Bridge {
    async fn send_editor(&self, message: impl Into<Bytes>) {
        let _ = self.to_editor.send(message.into()).await;
    }

    async fn show_message(&self, kind: u8, message: &str) {
        let params = serde_json::json!({"type": kind, "message": message});
        self.send_editor(jsonrpc::notification("window/showMessage", &params))
            .await;
    }

    fn exit_code(&self) -> ExitCode {
        if self.state.shutdown_requested {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        }
    }

    /// Handles one editor message while no session exists: requests fail at
    /// once, document changes and configuration are recorded for the next
    /// session. Returns an exit code when the editor leaves.
    async fn handle_offline(
        &mut self,
        message: Bytes,
        envelope: &Envelope,
        reason: &str,
    ) -> Option<ExitCode> {
        match (envelope.kind, envelope.method()) {
            (Kind::Notification, "exit") => return Some(self.exit_code()),
            (Kind::Request, "shutdown") => {
                self.state.shutdown_requested = true;
                if let Some(id) = &envelope.id {
                    self.send_editor(jsonrpc::response(id, &serde_json::Value::Null))
                        .await;
                }
            }
            (Kind::Request, _) => {
                if let Some(id) = &envelope.id {
                    self.send_editor(jsonrpc::error_response(
                        Some(id),
                        error_code::REQUEST_FAILED,
                        reason,
                    ))
                    .await;
                }
            }
            (Kind::Notification, _) => {
                let _ = self.state.from_editor(envelope, message);
            }
            (Kind::Response, _) => {}
        }
        None
    }

    /// Fails the requests the lost session owed the editor and warns the user
    /// once per outage.
    async fn connection_lost(&mut self, reason: &str) {
        if self.connected_at.elapsed() >= STABLE_SESSION {
            self.offline_reported = false;
            self.reconnect_reported = false;
            self.reconnect_delay = RECONNECT_INITIAL;
        }
        let text =
            format!("connection to the remote-gopls server was lost ({reason}); reconnecting");
        tracing::warn!("{text}");
        to_stderr(&format!("remote-gopls: {text}"));
        for message in self.state.fail_in_flight(error_code::REQUEST_FAILED, &text) {
            self.send_editor(message).await;
        }
        for message in self.state.end_progress() {
            self.send_editor(message).await;
        }
        if !self.offline_reported {
            self.offline_reported = true;
            let note = format!("remote-gopls: {text}. Requests fail until the server is back.");
            self.show_message(MESSAGE_WARNING, &note).await;
        }
    }
}

/// Writes one line to stderr, ignoring failures: editors may close the
/// client's stderr, and `eprintln!` would panic then.
fn to_stderr(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
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
        hello: pb::Hello::default(),
        state: ReplayState::default(),
        offline_reported: false,
        reconnect_reported: false,
        connected_at: tokio::time::Instant::now(),
        reconnect_delay: RECONNECT_INITIAL,
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
    let (first, first_envelope) = match read_editor(bridge, from_editor).await {
        EditorRead::Message(message, envelope) => (message, envelope),
        EditorRead::Closed => return ExitCode::SUCCESS,
    };

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
    bridge.hello = pb::Hello {
        workspace,
        local_root: local_root.unwrap_or_default(),
        client_version: format!("remote-gopls {}", remote_gopls_proto::VERSION),
    };

    // Without a first session the editor's `initialize` fails, which makes
    // editors stop retrying; there is no state to keep yet.
    let first_session = if bridge.hello.workspace.is_empty() {
        Err(ConnectError::NoWorkspace)
    } else {
        connect(&bridge.options, bridge.hello.clone()).await
    };
    let mut connection = match first_session {
        Ok(connection) => connection,
        Err(e) => {
            let message = e.to_string();
            tracing::error!(error = %message, "connection failed");
            to_stderr(&format!("remote-gopls: {message}"));
            if let Some(code) = bridge
                .handle_offline(first, &first_envelope, &message)
                .await
            {
                return code;
            }
            bridge
                .show_message(MESSAGE_ERROR, &format!("remote-gopls: {message}"))
                .await;
            return offline(bridge, from_editor, &message).await;
        }
    };
    log_connected(bridge, &connection.welcome);
    if let Some(code) = forward(bridge, &mut connection, first, &first_envelope).await {
        return code;
    }

    loop {
        match connected(bridge, from_editor, &mut connection).await {
            Phase::Exit(code) => return code,
            Phase::Lost(reason) => {
                if bridge.state.shutdown_requested {
                    // The editor is leaving; no need for a new session.
                    return offline(bridge, from_editor, &reason).await;
                }
                bridge.connection_lost(&reason).await;
                match reconnect(bridge, from_editor).await {
                    Ok(next) => connection = next,
                    Err(code) => return code,
                }
            }
        }
    }
}

fn log_connected(bridge: &Bridge, welcome: &pb::Welcome) {
    tracing::info!(
        session.id = %welcome.session_id,
        workspace.name = %bridge.hello.workspace,
        remote_root = %welcome.remote_root,
        gopls.version = %welcome.gopls_version,
        server.version = %welcome.server_version,
        "connected"
    );
}

/// Carries messages both ways until the editor leaves or the session ends.
async fn connected<R: AsyncRead + Unpin>(
    bridge: &mut Bridge,
    from_editor: &mut FramedRead<R, LspCodec>,
    connection: &mut Connection,
) -> Phase {
    loop {
        tokio::select! {
            read = read_editor(bridge, from_editor) => {
                let (message, envelope) = match read {
                    EditorRead::Message(message, envelope) => (message, envelope),
                    EditorRead::Closed => return Phase::Exit(ExitCode::SUCCESS),
                };
                if let Some(code) = forward(bridge, connection, message, &envelope).await {
                    return Phase::Exit(code);
                }
            }
            message = connection.from_server.next() => {
                match message {
                    Some(Ok(body)) => deliver(bridge, body).await,
                    None => return Phase::Lost("the server closed the session".to_owned()),
                    Some(Err(reason)) => return Phase::Lost(reason),
                }
            }
        }
    }
}

/// Connects a new session with backoff, serving the editor offline between
/// attempts, and replays the editor's state into it. Returns an exit code
/// instead when the editor leaves first.
async fn reconnect<R: AsyncRead + Unpin>(
    bridge: &mut Bridge,
    from_editor: &mut FramedRead<R, LspCodec>,
) -> Result<Connection, ExitCode> {
    let reason = format!(
        "the remote-gopls server at {} is unreachable; reconnecting",
        bridge.options.server
    );
    let mut attempt = 0u32;
    loop {
        let deadline = tokio::time::Instant::now() + bridge.reconnect_delay;
        bridge.reconnect_delay = (bridge.reconnect_delay * 2).min(RECONNECT_MAX);
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => break,
                read = read_editor(bridge, from_editor) => {
                    let (message, envelope) = match read {
                        EditorRead::Message(message, envelope) => (message, envelope),
                        EditorRead::Closed => return Err(ExitCode::SUCCESS),
                    };
                    if let Some(code) = bridge.handle_offline(message, &envelope, &reason).await {
                        return Err(code);
                    }
                }
            }
        }

        attempt += 1;
        match connect(&bridge.options, bridge.hello.clone()).await {
            Ok(connection) => match replay(bridge, connection).await {
                Ok(connection) => {
                    log_connected(bridge, &connection.welcome);
                    tracing::info!(attempt, "reconnected and replayed the editor's state");
                    bridge.connected_at = tokio::time::Instant::now();
                    if !bridge.reconnect_reported {
                        bridge.reconnect_reported = true;
                        let note =
                            format!("remote-gopls: reconnected to {}", bridge.options.server);
                        bridge.show_message(MESSAGE_INFO, &note).await;
                    }
                    return Ok(connection);
                }
                Err(e) => tracing::warn!(attempt, error = %e, "replay into the new session failed"),
            },
            Err(e) => tracing::debug!(attempt, error = %e, "reconnect attempt failed"),
        }
    }
}

/// Replays `initialize` (its response is consumed here, because the editor
/// has one already), then `initialized`, configuration, folder changes and
/// every open document into a new session.
async fn replay(bridge: &mut Bridge, mut connection: Connection) -> Result<Connection, String> {
    if let Some(initialize) = bridge.state.begin_replay() {
        send(&connection, initialize).await?;
        let answered = tokio::time::timeout(REPLAY_TIMEOUT, async {
            loop {
                let body = match connection.from_server.next().await {
                    Some(Ok(body)) => body,
                    Some(Err(reason)) => return Err(reason),
                    None => return Err("the server closed the session during replay".to_owned()),
                };
                let Ok(envelope) = Envelope::parse(&body) else {
                    continue;
                };
                match bridge.state.from_gopls(&envelope, body) {
                    FromGopls::ReplayAnswered(answer) if answer.get("error").is_some() => {
                        return Err(format!(
                            "the server rejected the replayed initialize: {}",
                            answer["error"]
                        ));
                    }
                    FromGopls::ReplayAnswered(_) => return Ok(()),
                    FromGopls::Forward(message) => bridge.send_editor(message).await,
                }
            }
        })
        .await;
        match answered {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(format!(
                    "no answer to the replayed initialize within {REPLAY_TIMEOUT:?}"
                ))
            }
        }
    }

    for message in bridge.state.replay_notifications() {
        send(&connection, message).await?;
    }
    Ok(connection)
}

async fn send(connection: &Connection, message: Bytes) -> Result<(), String> {
    connection
        .to_server
        .send(message)
        .await
        .map_err(|_| "the session closed while sending".to_owned())
}

/// Ends the request stream and waits briefly for the server to close its
/// side, so `exit` reaches the server before this process ends.
async fn close_session(connection: &mut Connection) {
    let (closed, _) = mpsc::channel(1);
    drop(std::mem::replace(&mut connection.to_server, closed));
    let drain = async { while let Some(Ok(_)) = connection.from_server.next().await {} };
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
                to_stderr(&format!("remote-gopls: cannot read from the editor: {e}"));
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
    connection: &mut Connection,
    message: Bytes,
    envelope: &Envelope,
) -> Option<ExitCode> {
    if envelope.kind == Kind::Notification && envelope.method() == "exit" {
        let _ = connection.to_server.send(message).await;
        close_session(connection).await;
        return Some(bridge.exit_code());
    }

    let FromEditor::Forward(message) = bridge.state.from_editor(envelope, message) else {
        tracing::debug!(id = ?envelope.id, "dropped a response meant for a previous session");
        return None;
    };
    if connection.to_server.send(message).await.is_err() {
        // The session is gone; the server side of the select reports why.
        tracing::debug!("server stream closed while sending");
    }
    None
}

/// Writes one server message to the editor, renumbering requests and
/// settling requests in flight.
async fn deliver(bridge: &mut Bridge, body: Bytes) {
    let Ok(envelope) = Envelope::parse(&body) else {
        bridge.send_editor(body).await;
        return;
    };
    if bridge.options.rpc_trace {
        tracing::info!(direction = "server->editor", kind = ?envelope.kind, method = envelope.method(), id = ?envelope.id, bytes = body.len());
    }
    match bridge.state.from_gopls(&envelope, body) {
        FromGopls::Forward(message) => bridge.send_editor(message).await,
        FromGopls::ReplayAnswered(_) => {}
    }
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
            EditorRead::Message(message, envelope) => {
                if let Some(code) = bridge.handle_offline(message, &envelope, reason).await {
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
