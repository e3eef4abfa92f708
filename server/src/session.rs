//! One editor session: a transport-neutral bridge between the editor's
//! messages and this session's own connection to the workspace's gopls.
//!
//! The session reads only the JSON-RPC envelope of each message, maps file
//! URIs between the editor's root and the server's, keeps `exit` away from
//! the shared gopls, and preserves message order in each direction (one task
//! per direction). Transports (gRPC, WebSocket) feed it a stream of message
//! bodies and map its result to their own status codes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{SinkExt, Stream, StreamExt};
use remote_gopls_proto::codec::{CodecError, LspCodec};
use remote_gopls_proto::jsonrpc::{self, error_code, Envelope, Id, Kind};
use remote_gopls_proto::urimap::UriMapper;
use serde_json::{json, Value};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::instance::Instance;
use crate::metrics::{Direction, MessageCounters, Metrics, Transport};
use crate::state::SessionGauge;
use crate::workspace::{LaunchContext, Workspace};

use remote_gopls_proto::replay::{FromEditor, FromGopls, ReplayState};

/// How long a replayed `initialize` may take on the new gopls.
const REPLAY_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a session without gopls checks whether it may start again.
const UNAVAILABLE_RETRY: Duration = Duration::from_secs(1);
/// How long to wait for a gopls whose connection closed to finish exiting.
const EXIT_WAIT: Duration = Duration::from_secs(2);

/// LSP `MessageType` values for `window/showMessage`.
const MESSAGE_ERROR: u8 = 1;
const MESSAGE_INFO: u8 = 3;

/// Abnormal end of a session. Each transport maps these once to its own
/// status (gRPC code, WebSocket close code).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("invalid message from the editor: {0}")]
    InvalidMessage(String),
    #[error("unsupported message from the editor: {0}")]
    Unsupported(String),
    #[error("message of {size} bytes exceeds the maximum of {max} bytes")]
    MessageTooLarge { size: usize, max: usize },
    #[error("message too large: {0}")]
    FrameTooLarge(String),
    #[error("gopls closed the connection")]
    GoplsClosed,
    #[error("gopls connection failed: {0}")]
    GoplsIo(String),
    #[error("transport failed: {0}")]
    Transport(String),
    #[error("the server is shutting down")]
    ShuttingDown,
}

/// Settings and connections of one session, apart from its transport.
#[derive(Debug)]
pub struct Session {
    pub id: String,
    pub workspace: Arc<Workspace>,
    pub launch: LaunchContext,
    /// The gopls instance this session is connected to; replaced when gopls
    /// restarts. The session counts once in its `sessions`.
    pub instance: Arc<Instance>,
    /// Editor root to server root; `None` when the editor gave no root.
    pub to_remote: Option<UriMapper>,
    /// Default gopls settings merged under the editor's `initializationOptions`.
    pub default_settings: serde_json::Map<String, serde_json::Value>,
    pub max_message_size: usize,
    pub shutdown: CancellationToken,
    pub transport: Transport,
    pub metrics: Arc<Metrics>,
    /// Keeps the session in the sessions gauge until it is dropped, whether
    /// or not it ran.
    pub gauge: SessionGauge,
}

/// Maximum number of editor requests timed at once. Requests beyond it are
/// forwarded but not timed, so a client that never reads responses cannot
/// grow the table without bound.
const MAX_TRACKED_REQUESTS: usize = 10_000;

/// Editor requests forwarded to gopls and still without a response: method and
/// arrival time by request id, for the latency histogram.
#[derive(Debug, Default)]
struct InFlight {
    requests: Mutex<HashMap<Id, (String, Instant)>>,
}

impl InFlight {
    fn insert(&self, id: Id, method: &str) {
        let mut requests = self.requests.lock().unwrap();
        if requests.len() < MAX_TRACKED_REQUESTS {
            requests.insert(id, (method.to_owned(), Instant::now()));
        }
    }

    /// Removes a request that got its response; returns its method and arrival time.
    fn finish(&self, id: &Id) -> Option<(String, Instant)> {
        self.requests.lock().unwrap().remove(id)
    }
}

/// End state of the downstream (gopls to editor) task.
enum Downstream {
    GoplsEof,
    GoplsError(SessionError),
    EditorGone,
}

/// State both directions of a session use.
#[derive(Default)]
struct Shared {
    in_flight: InFlight,
    replay: Mutex<ReplayState>,
    /// Receives the response to a replayed `initialize`.
    replay_waiter: Mutex<Option<oneshot::Sender<Value>>>,
}

/// One connection to gopls: the writer and the task reading from it.
struct Connection {
    to_gopls: FramedWrite<OwnedWriteHalf, LspCodec>,
    downstream: JoinHandle<Downstream>,
}

/// Outcome of recovering from a lost gopls connection.
enum Recovery {
    Reconnected(Connection),
    /// No gopls can serve the session; the reason is shown to the user.
    Unavailable(String),
    /// End the session with this error.
    End(SessionError),
}

impl Session {
    /// Runs the session until the editor sends `exit`, closes its stream, or
    /// an error ends it. `inbound` yields message bodies from the editor;
    /// `outbound` takes message bodies for the editor. When gopls exits
    /// (crash, OOM kill, controller restart) the session connects to the
    /// next instance and replays the editor's state into it.
    pub async fn run<S>(
        mut self,
        socket: UnixStream,
        mut inbound: S,
        outbound: mpsc::Sender<Bytes>,
    ) -> Result<(), SessionError>
    where
        S: Stream<Item = Result<Bytes, SessionError>> + Unpin,
    {
        let span = tracing::info_span!(
            "session",
            session.id = %self.id,
            workspace.name = %self.workspace.name,
            transport = self.transport.as_str()
        );
        async move {
            let shared = Arc::new(Shared::default());
            let upstream = self.metrics.message_counters(self.transport, Direction::EditorToGopls);
            let mut connection = self.connect(socket, &shared, &outbound);

            let result = loop {
                tokio::select! {
                    message = inbound.next() => {
                        let message = match message {
                            None => {
                                tracing::debug!("editor closed its stream");
                                break Ok(());
                            }
                            Some(Err(e)) => break Err(e),
                            Some(Ok(message)) => message,
                        };
                        upstream.record(message.len());
                        match self.forward_upstream(message, &mut connection.to_gopls, &shared, &outbound).await {
                            Ok(Upstream::Continue) => {}
                            Ok(Upstream::Exit) => break Ok(()),
                            Err(e) => break Err(e),
                        }
                    }
                    ended = &mut connection.downstream => {
                        let ended = ended.unwrap_or_else(|join| Downstream::GoplsError(SessionError::GoplsIo(format!("downstream task failed: {join}"))));
                        if let Downstream::EditorGone = ended {
                            break Ok(());
                        }
                        if self.shutdown.is_cancelled() {
                            break Err(SessionError::ShuttingDown);
                        }
                        match self.recover(ended, &shared, &outbound).await {
                            Recovery::Reconnected(next) => connection = next,
                            Recovery::End(e) => break Err(e),
                            Recovery::Unavailable(reason) => {
                                match self.serve_unavailable(&reason, &mut inbound, &shared, &outbound).await {
                                    Ok(next) => connection = next,
                                    Err(result) => break result,
                                }
                            }
                        }
                    }
                    _ = self.shutdown.cancelled() => {
                        // NOTE: responses gopls still owes are not awaited;
                        // the editor's pending requests fail with the close.
                        let note = json!({"type": MESSAGE_INFO, "message": "remote-gopls: the server is shutting down"});
                        let _ = outbound.send(Bytes::from(jsonrpc::notification("window/showMessage", &note))).await;
                        break Err(SessionError::ShuttingDown);
                    }
                }
            };

            // Closing our half of the socket ends this gopls session (gopls
            // shuts down the session's views) without touching other sessions.
            connection.downstream.abort();
            let _ = SinkExt::<Bytes>::close(&mut connection.to_gopls).await;
            self.instance.session_closed();
            match &result {
                Ok(()) => tracing::info!("session closed"),
                Err(e) => tracing::warn!(error = %e, "session ended with an error"),
            }
            result
        }
        .instrument(span)
        .await
    }

    /// Starts reading a new gopls connection.
    fn connect(
        &self,
        socket: UnixStream,
        shared: &Arc<Shared>,
        outbound: &mpsc::Sender<Bytes>,
    ) -> Connection {
        let (read_half, write_half) = socket.into_split();
        let to_gopls = FramedWrite::new(write_half, LspCodec::new(self.max_message_size));
        let from_gopls = FramedRead::new(read_half, LspCodec::new(self.max_message_size));
        let to_local = self.to_remote.as_ref().map(UriMapper::reversed);
        let telemetry = Telemetry {
            metrics: self.metrics.clone(),
            counters: self
                .metrics
                .message_counters(self.transport, Direction::GoplsToEditor),
        };
        let downstream = tokio::spawn(
            pump_downstream(
                from_gopls,
                outbound.clone(),
                to_local,
                shared.clone(),
                telemetry,
            )
            .instrument(tracing::Span::current()),
        );
        Connection {
            to_gopls,
            downstream,
        }
    }

    /// Moves the session to a new gopls after its connection ended.
    async fn recover(
        &mut self,
        ended: Downstream,
        shared: &Arc<Shared>,
        outbound: &mpsc::Sender<Bytes>,
    ) -> Recovery {
        let cause = match ended {
            Downstream::GoplsError(e) => e,
            _ => SessionError::GoplsClosed,
        };
        if shared.replay.lock().unwrap().shutdown_requested {
            return Recovery::End(cause);
        }

        // A gopls that closed the connection may still be exiting.
        let old = self.instance.clone();
        if old.is_running() {
            let _ = tokio::time::timeout(EXIT_WAIT, old.wait_exit()).await;
        }
        if old.is_running() {
            tracing::warn!(gopls.pid = old.pid, error = %cause, "gopls closed this session's connection but is still running");
            return Recovery::End(cause);
        }
        let message = self.workspace.restart_message(&old);
        tracing::info!(
            gopls.pid = old.pid,
            "gopls connection lost; moving the session to a new gopls"
        );

        // Failed starts are paced by the workspace and end in the degraded
        // state after too many, so this loop is bounded.
        let instance = loop {
            if self.shutdown.is_cancelled() {
                return Recovery::End(SessionError::ShuttingDown);
            }
            match self.workspace.instance(&self.launch).await {
                Ok(instance) => break instance,
                Err(e @ crate::instance::InstanceError::Degraded(_)) => {
                    return Recovery::Unavailable(e.to_string())
                }
                Err(e) => tracing::warn!(error = %e, "gopls failed to start; trying again"),
            }
        };
        self.attach(instance, shared, outbound, &message).await
    }

    /// Connects the session to `instance`, replays the editor's state into
    /// it, and shows the user `message`.
    async fn attach(
        &mut self,
        instance: Arc<Instance>,
        shared: &Arc<Shared>,
        outbound: &mpsc::Sender<Bytes>,
        message: &str,
    ) -> Recovery {
        let socket = match instance.connect().await {
            Ok(socket) => socket,
            Err(e) => return Recovery::Unavailable(e.to_string()),
        };
        self.instance.session_closed();
        instance.session_opened();
        self.instance = instance;

        let mut connection = self.connect(socket, shared, outbound);
        match self.replay(&mut connection, shared, outbound).await {
            Ok(()) => {
                tracing::info!(
                    gopls.pid = self.instance.pid,
                    "session replayed into the new gopls"
                );
                send_message(outbound, MESSAGE_INFO, &format!("remote-gopls: {message}")).await;
                Recovery::Reconnected(connection)
            }
            Err(reason) => {
                connection.downstream.abort();
                Recovery::Unavailable(reason)
            }
        }
    }

    /// Replays the editor's state into a new connection: `initialize` (whose
    /// answer the editor already has), `initialized`, configuration, folder
    /// changes and open documents; then re-sends reads in flight, fails other
    /// requests in flight with ContentModified, and ends open progress.
    async fn replay(
        &self,
        connection: &mut Connection,
        shared: &Arc<Shared>,
        outbound: &mpsc::Sender<Bytes>,
    ) -> Result<(), String> {
        let initialize = shared.replay.lock().unwrap().begin_replay();
        if let Some(initialize) = initialize {
            let (tx, rx) = oneshot::channel();
            *shared.replay_waiter.lock().unwrap() = Some(tx);
            write(&mut connection.to_gopls, initialize).await?;
            match tokio::time::timeout(REPLAY_TIMEOUT, rx).await {
                Ok(Ok(answer)) if answer.get("error").is_none() => {}
                Ok(Ok(answer)) => {
                    return Err(format!(
                        "the new gopls rejected the replayed initialize: {}",
                        answer["error"]
                    ))
                }
                Ok(Err(_)) => {
                    return Err("the new gopls closed the connection during replay".to_owned())
                }
                Err(_) => {
                    return Err(format!(
                        "the new gopls did not answer initialize within {REPLAY_TIMEOUT:?}"
                    ))
                }
            }
        }

        let (notifications, resend, failed, progress) = {
            let mut state = shared.replay.lock().unwrap();
            let notifications = state.replay_notifications();
            let (resend, failed) = state.settle_in_flight();
            (notifications, resend, failed, state.end_progress())
        };
        for message in notifications.into_iter().chain(resend) {
            write(&mut connection.to_gopls, message).await?;
        }
        for message in failed.into_iter().chain(progress) {
            let _ = outbound.send(self.to_editor(message)).await;
        }
        Ok(())
    }

    /// Maps a message the session made in the server's terms for the editor.
    fn to_editor(&self, message: Bytes) -> Bytes {
        let to_local = self.to_remote.as_ref().map(UriMapper::reversed);
        rewrite(to_local.as_ref(), message)
    }

    /// Serves the editor while no gopls can: requests fail with the reason.
    /// Returns a new connection once the workspace's degraded mark is
    /// cleared (a new session or `remote-gopls-server reset`) and gopls
    /// starts again, or the session's result when the editor leaves.
    async fn serve_unavailable<S>(
        &mut self,
        reason: &str,
        inbound: &mut S,
        shared: &Arc<Shared>,
        outbound: &mpsc::Sender<Bytes>,
    ) -> Result<Connection, Result<(), SessionError>>
    where
        S: Stream<Item = Result<Bytes, SessionError>> + Unpin,
    {
        tracing::error!(reason, "no gopls can serve this session");
        send_message(outbound, MESSAGE_ERROR, &format!("remote-gopls: {reason}")).await;
        let (failed, progress) = {
            let mut state = shared.replay.lock().unwrap();
            (
                state.fail_in_flight(error_code::REQUEST_FAILED, reason),
                state.end_progress(),
            )
        };
        for message in failed.into_iter().chain(progress) {
            let _ = outbound.send(message).await;
        }

        let mut retry = tokio::time::interval(UNAVAILABLE_RETRY);
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let message = tokio::select! {
                message = inbound.next() => message,
                _ = retry.tick() => {
                    if self.workspace.degraded().is_some() {
                        continue;
                    }
                    // The mark was cleared: try gopls once per tick.
                    match self.workspace.instance(&self.launch).await {
                        Ok(instance) => {
                            let note = format!("gopls for workspace {:?} is available again", self.workspace.name);
                            match self.attach(instance, shared, outbound, &note).await {
                                Recovery::Reconnected(connection) => return Ok(connection),
                                Recovery::Unavailable(e) | Recovery::End(SessionError::GoplsIo(e)) => {
                                    tracing::warn!(error = %e, "gopls is still unavailable");
                                }
                                Recovery::End(e) => return Err(Err(e)),
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "gopls is still unavailable"),
                    }
                    continue;
                }
                _ = self.shutdown.cancelled() => return Err(Err(SessionError::ShuttingDown)),
            };
            let message = match message {
                None => return Err(Ok(())),
                Some(Err(e)) => return Err(Err(e)),
                Some(Ok(message)) => message,
            };
            let Ok(envelope) = Envelope::parse(&message) else {
                continue;
            };
            match (envelope.kind, envelope.method(), &envelope.id) {
                (Kind::Notification, "exit", _) => return Err(Ok(())),
                (Kind::Request, "shutdown", Some(id)) => {
                    shared.replay.lock().unwrap().shutdown_requested = true;
                    let _ = outbound
                        .send(Bytes::from(jsonrpc::response(id, &Value::Null)))
                        .await;
                }
                (Kind::Request, _, Some(id)) => {
                    let reply =
                        jsonrpc::error_response(Some(id), error_code::REQUEST_FAILED, reason);
                    let _ = outbound.send(Bytes::from(reply)).await;
                }
                (Kind::Notification, ..) => {
                    // Keep document changes for the replay once gopls is back.
                    let message = rewrite(self.to_remote.as_ref(), message);
                    let _ = shared
                        .replay
                        .lock()
                        .unwrap()
                        .from_editor(&envelope, message);
                }
                _ => {}
            }
        }
    }

    async fn forward_upstream(
        &self,
        message: Bytes,
        to_gopls: &mut FramedWrite<OwnedWriteHalf, LspCodec>,
        shared: &Shared,
        outbound: &mpsc::Sender<Bytes>,
    ) -> Result<Upstream, SessionError> {
        if message.len() > self.max_message_size {
            return Err(SessionError::MessageTooLarge {
                size: message.len(),
                max: self.max_message_size,
            });
        }
        let envelope = match Envelope::parse(&message) {
            Ok(envelope) => envelope,
            Err(e) => {
                // Tell the editor in its own protocol before the transport
                // reports the status.
                let reply = jsonrpc::error_response(None, error_code::PARSE_ERROR, &e.to_string());
                let _ = outbound.send(Bytes::from(reply)).await;
                return Err(SessionError::InvalidMessage(e.to_string()));
            }
        };
        tracing::debug!(direction = "editor->gopls", kind = ?envelope.kind, method = envelope.method(), id = ?envelope.id, bytes = message.len());

        if envelope.kind == Kind::Notification && envelope.method() == "exit" {
            // gopls's `exit` handler calls os.Exit(1) unless this session sent
            // `shutdown` first, which would end every session sharing the
            // process. Closing this session's connection is enough.
            tracing::debug!("editor sent exit; closing this session's gopls connection");
            return Ok(Upstream::Exit);
        }

        let message = rewrite(self.to_remote.as_ref(), message);
        let message = if envelope.kind == Kind::Request
            && envelope.method() == "initialize"
            && !self.default_settings.is_empty()
        {
            merge_initialization_options(&message, &self.default_settings)
                .map_err(SessionError::InvalidMessage)?
        } else {
            message
        };

        let forwarded = shared
            .replay
            .lock()
            .unwrap()
            .from_editor(&envelope, message);
        let FromEditor::Forward(message) = forwarded else {
            tracing::debug!(id = ?envelope.id, "dropped a response meant for a previous gopls");
            return Ok(Upstream::Continue);
        };
        if let (Kind::Request, Some(id)) = (envelope.kind, &envelope.id) {
            shared.in_flight.insert(id.clone(), envelope.method());
        }
        // A failed write means gopls is gone. The message is recorded for
        // replay, and the downstream task reports the loss.
        if let Err(e) = write(to_gopls, message).await {
            tracing::debug!(error = %e, "write to gopls failed");
        }
        Ok(Upstream::Continue)
    }
}

async fn write(
    to_gopls: &mut FramedWrite<OwnedWriteHalf, LspCodec>,
    message: Bytes,
) -> Result<(), String> {
    to_gopls
        .send(message)
        .await
        .map_err(|e| format!("failed to write to gopls: {e}"))
}

async fn send_message(outbound: &mpsc::Sender<Bytes>, kind: u8, text: &str) {
    let params = json!({"type": kind, "message": text});
    let _ = outbound
        .send(Bytes::from(jsonrpc::notification(
            "window/showMessage",
            &params,
        )))
        .await;
}

/// Adds the workspace's default gopls settings to `initialize`: each
/// top-level key the editor's `initializationOptions` lacks is taken from
/// the defaults, so the editor's own value always wins.
pub fn merge_initialization_options(
    message: &[u8],
    defaults: &serde_json::Map<String, serde_json::Value>,
) -> Result<Bytes, String> {
    let mut value: serde_json::Value =
        serde_json::from_slice(message).map_err(|e| format!("invalid initialize request: {e}"))?;
    let Some(params) = value.get_mut("params").and_then(|p| p.as_object_mut()) else {
        return Err("invalid initialize request: params must be an object".to_owned());
    };

    let options = params
        .entry("initializationOptions")
        .or_insert_with(|| serde_json::Value::Object(Default::default()));
    if options.is_null() {
        *options = serde_json::Value::Object(Default::default());
    }
    let Some(options) = options.as_object_mut() else {
        return Err(
            "invalid initialize request: initializationOptions must be an object".to_owned(),
        );
    };
    for (key, default) in defaults {
        options
            .entry(key.clone())
            .or_insert_with(|| default.clone());
    }
    Ok(Bytes::from(
        serde_json::to_vec(&value).expect("serializing a JSON value cannot fail"),
    ))
}

/// Maps URIs in one message, reusing the buffer when nothing changed.
fn rewrite(mapper: Option<&UriMapper>, message: Bytes) -> Bytes {
    let Some(mapper) = mapper else { return message };
    match mapper.rewrite_json(&message) {
        std::borrow::Cow::Borrowed(_) => message,
        std::borrow::Cow::Owned(changed) => Bytes::from(changed),
    }
}

enum Upstream {
    Continue,
    Exit,
}

async fn pump_downstream(
    mut from_gopls: FramedRead<tokio::net::unix::OwnedReadHalf, LspCodec>,
    outbound: mpsc::Sender<Bytes>,
    to_local: Option<UriMapper>,
    shared: Arc<Shared>,
    telemetry: Telemetry,
) -> Downstream {
    loop {
        let message = match from_gopls.next().await {
            None => return Downstream::GoplsEof,
            Some(Err(CodecError::MessageTooLarge { size, max })) => {
                return Downstream::GoplsError(SessionError::MessageTooLarge { size, max });
            }
            Some(Err(e)) => return Downstream::GoplsError(SessionError::GoplsIo(e.to_string())),
            Some(Ok(message)) => message,
        };
        let envelope = match Envelope::parse(&message) {
            Ok(envelope) => envelope,
            Err(e) => {
                tracing::warn!(error = %e, bytes = message.len(), "dropped an invalid message from gopls");
                continue;
            }
        };
        tracing::debug!(
            direction = "gopls->editor",
            kind = ?envelope.kind,
            method = envelope.method(),
            id = ?envelope.id,
            bytes = message.len()
        );

        let handled = shared.replay.lock().unwrap().from_gopls(&envelope, message);
        let message = match handled {
            FromGopls::Forward(message) => message,
            FromGopls::ReplayAnswered(answer) => {
                if let Some(waiter) = shared.replay_waiter.lock().unwrap().take() {
                    let _ = waiter.send(answer);
                }
                continue;
            }
        };
        let answered = match (envelope.kind, &envelope.id) {
            (Kind::Response, Some(id)) => shared.in_flight.finish(id),
            _ => None,
        };
        let message = rewrite(to_local.as_ref(), message);
        telemetry.counters.record(message.len());
        if outbound.send(message).await.is_err() {
            return Downstream::EditorGone;
        }
        // Latency ends when the response leaves the session for the transport.
        if let Some((method, started)) = answered {
            telemetry
                .metrics
                .observe_request(&method, started.elapsed());
        }
    }
}

/// Metrics handles of the downstream task.
struct Telemetry {
    metrics: Arc<Metrics>,
    counters: MessageCounters,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn defaults() -> serde_json::Map<String, serde_json::Value> {
        json!({"directoryFilters": ["-**/node_modules", "-**/vendor"], "staticcheck": true})
            .as_object()
            .unwrap()
            .clone()
    }

    #[test]
    fn editor_settings_win_over_defaults() {
        let message = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"rootUri": "file:///w", "initializationOptions": {"staticcheck": false, "ui.completion.usePlaceholders": true}}});
        let merged =
            merge_initialization_options(&serde_json::to_vec(&message).unwrap(), &defaults())
                .unwrap();
        let merged: serde_json::Value = serde_json::from_slice(&merged).unwrap();
        let options = &merged["params"]["initializationOptions"];
        assert_eq!(options["staticcheck"], false);
        assert_eq!(options["ui.completion.usePlaceholders"], true);
        assert_eq!(
            options["directoryFilters"],
            json!(["-**/node_modules", "-**/vendor"])
        );
        assert_eq!(merged["params"]["rootUri"], "file:///w");
    }

    #[test]
    fn missing_or_null_options_get_defaults() {
        for params in [json!({}), json!({"initializationOptions": null})] {
            let message =
                json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params});
            let merged =
                merge_initialization_options(&serde_json::to_vec(&message).unwrap(), &defaults())
                    .unwrap();
            let merged: serde_json::Value = serde_json::from_slice(&merged).unwrap();
            assert_eq!(
                merged["params"]["initializationOptions"]["staticcheck"], true,
                "{params}"
            );
        }
    }

    #[test]
    fn rejects_non_object_options() {
        let message = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"initializationOptions": [1]}});
        let error =
            merge_initialization_options(&serde_json::to_vec(&message).unwrap(), &defaults())
                .unwrap_err();
        assert!(error.contains("must be an object"), "{error}");
    }
}
