//! The WebSocket transport: `GET /v1/workspaces/{name}/lsp` upgrades to a
//! WebSocket on which each text frame carries exactly one JSON-RPC message,
//! without a Content-Length header, as browser LSP clients send them.
//!
//! Everything that can fail before the upgrade (token, workspace, gopls
//! start) is answered with a plain HTTP status and a text body. After the
//! upgrade the connection is a thin layer over [`Session::run`]: a reader
//! task turns frames into message bodies, a writer task turns bodies into
//! text frames and sends keepalive pings, and the session's result becomes
//! the close code.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{Sink, SinkExt, Stream, StreamExt};
use hyper_util::rt::TokioIo;
use remote_gopls_proto::pb;
use remote_gopls_proto::urimap::Root;
use serde::Deserialize;
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::auth::{bearer, AuthError};
use crate::metrics::Transport;
use crate::session::{Session, SessionError};
use crate::state::{OpenError, ServerState};

/// Subprotocol a client offers, and the server echoes, to speak this
/// protocol version.
pub const SUBPROTOCOL: &str = "remote-gopls.v1";
/// Prefix of the subprotocol that carries a bearer token for clients that
/// cannot set an Authorization header: `bearer.<token>`. It is never echoed.
pub const BEARER_SUBPROTOCOL_PREFIX: &str = "bearer.";
/// Response headers of the upgrade, standing in for gRPC's welcome message.
pub const SESSION_HEADER: &str = "x-remote-gopls-session";
pub const REMOTE_ROOT_HEADER: &str = "x-remote-gopls-remote-root";
pub const GOPLS_VERSION_HEADER: &str = "x-remote-gopls-gopls-version";
pub const SERVER_VERSION_HEADER: &str = "x-remote-gopls-server-version";

/// Messages buffered toward the editor (and from it) before the session waits.
const BUFFER: usize = 64;
/// How long the server waits for the peer's close frame after sending its own.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Maximum close reason length in bytes: a control frame payload is at
/// most 125 bytes, and the close code takes two of them.
const MAX_CLOSE_REASON: usize = 123;

/// Reasons an upgrade request is rejected.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error("expected a WebSocket upgrade request: {0}")]
    NotUpgrade(&'static str),
    #[error("unsupported WebSocket version; this server speaks version 13")]
    Version,
    #[error(transparent)]
    Open(#[from] OpenError),
}

impl IntoResponse for UpgradeError {
    fn into_response(self) -> Response {
        let status = match &self {
            UpgradeError::NotUpgrade(_) => StatusCode::BAD_REQUEST,
            UpgradeError::Version => StatusCode::UPGRADE_REQUIRED,
            UpgradeError::Open(OpenError::Auth(AuthError::Forbidden(_))) => StatusCode::FORBIDDEN,
            UpgradeError::Open(OpenError::Auth(_)) => StatusCode::UNAUTHORIZED,
            UpgradeError::Open(OpenError::UnknownWorkspace { .. }) => StatusCode::NOT_FOUND,
            UpgradeError::Open(OpenError::InvalidHello(_)) => StatusCode::BAD_REQUEST,
            // The memory budget frees up as other workspaces go idle, so
            // the client may retry later.
            UpgradeError::Open(
                OpenError::GoplsUnavailable { .. } | OpenError::ShuttingDown | OpenError::Budget(_),
            ) => StatusCode::SERVICE_UNAVAILABLE,
        };
        let mut response = (status, format!("{self}\n")).into_response();
        let headers = response.headers_mut();
        match status {
            StatusCode::UNAUTHORIZED => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            StatusCode::UPGRADE_REQUIRED => {
                headers.insert(
                    header::SEC_WEBSOCKET_VERSION,
                    HeaderValue::from_static("13"),
                );
            }
            _ => {}
        }
        response
    }
}

/// Query parameters of the upgrade request.
#[derive(Debug, Default, Deserialize)]
pub struct UpgradeQuery {
    /// Editor-side workspace root (path or file URI); without it no URIs are mapped.
    pub local_root: Option<String>,
    /// Bearer token, for clients that can set neither headers nor subprotocols.
    pub access_token: Option<String>,
}

/// Checks the handshake headers and returns the `Sec-WebSocket-Key`.
fn check_handshake(headers: &HeaderMap) -> Result<&HeaderValue, UpgradeError> {
    let has_token = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|value| {
            value
                .to_str()
                .unwrap_or_default()
                .split(',')
                .any(|part| part.trim().eq_ignore_ascii_case(token))
        })
    };
    if !has_token(header::CONNECTION, "upgrade") {
        return Err(UpgradeError::NotUpgrade("missing `Connection: upgrade`"));
    }
    if !has_token(header::UPGRADE, "websocket") {
        return Err(UpgradeError::NotUpgrade("missing `Upgrade: websocket`"));
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        return Err(UpgradeError::Version);
    }
    headers
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or(UpgradeError::NotUpgrade("missing `Sec-WebSocket-Key`"))
}

/// Returns the offered subprotocols, in order.
fn offered_protocols(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
}

/// Returns the bearer token from the first source that has one: the
/// Authorization header, a `bearer.<token>` subprotocol, the
/// `access_token` query parameter.
fn presented_token<'a>(headers: &'a HeaderMap, query: &'a UpgradeQuery) -> Option<&'a str> {
    let from_header = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(bearer);
    let from_protocol =
        || offered_protocols(headers).find_map(|p| p.strip_prefix(BEARER_SUBPROTOCOL_PREFIX));
    from_header
        .or_else(from_protocol)
        .or(query.access_token.as_deref())
}

/// Builds the tungstenite limits for one connection: a frame and a message
/// may each be as large as the maximum LSP message size.
pub fn socket_config(max_message_size: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(max_message_size))
        .max_frame_size(Some(max_message_size))
}

/// Handles `GET /v1/workspaces/{name}/lsp`. The request URI is never logged
/// because its query may carry a token.
pub async fn upgrade(
    State(state): State<Arc<ServerState>>,
    Path(workspace): Path<String>,
    Query(query): Query<UpgradeQuery>,
    mut request: Request,
) -> Result<Response, UpgradeError> {
    let headers = request.headers();
    let key = check_handshake(headers)?;
    let accept = derive_accept_key(key.as_bytes());
    let echo_protocol = offered_protocols(headers).any(|p| p == SUBPROTOCOL);
    let client_version = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();

    let hello = pb::Hello {
        workspace,
        local_root: query.local_root.clone().unwrap_or_default(),
        client_version,
    };
    let token = presented_token(headers, &query);
    let open = state
        .open_session(&hello, token, Transport::WebSocket)
        .await
        .map_err(|e| {
            tracing::warn!(workspace.name = %hello.workspace, transport = "websocket", error = %e, "session rejected");
            UpgradeError::Open(e)
        })?;

    let mut response = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept)
        .header(SESSION_HEADER, &open.welcome.session_id)
        .header(GOPLS_VERSION_HEADER, &open.welcome.gopls_version)
        .header(SERVER_VERSION_HEADER, &open.welcome.server_version);
    // A file URI is ASCII, so any server path fits in a header value.
    if let Ok(root) = Root::parse(&open.welcome.remote_root) {
        response = response.header(REMOTE_ROOT_HEADER, root.to_uri());
    }
    if echo_protocol {
        response = response.header(header::SEC_WEBSOCKET_PROTOCOL, SUBPROTOCOL);
    }
    let response = response
        .body(axum::body::Body::empty())
        .expect("the upgrade response headers are valid");

    let on_upgrade = hyper::upgrade::on(&mut request);
    let config = socket_config(state.config.max_message_size);
    let ping_interval = state.config.ws_ping_interval;
    let session = open.session;
    let gopls = open.socket;
    let span = tracing::info_span!("websocket", session.id = %session.id);
    state.sessions.spawn(
        async move {
            // Dropping the session on failure releases its gopls connection.
            let upgraded = match on_upgrade.await {
                Ok(upgraded) => upgraded,
                Err(e) => {
                    tracing::warn!(error = %e, "WebSocket upgrade failed");
                    return;
                }
            };
            let socket = WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                Role::Server,
                Some(config),
            )
            .await;
            serve(socket, session, gopls, ping_interval).await;
        }
        .instrument(span),
    );
    Ok(response)
}

/// Runs one session on an upgraded connection.
async fn serve<S>(
    socket: WebSocketStream<S>,
    session: Session,
    gopls: UnixStream,
    ping_interval: Duration,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sink, stream) = socket.split();
    let end = run_socket(sink, stream, ping_interval, move |inbound, outbound| {
        session.run(gopls, inbound, outbound)
    })
    .await;
    tracing::debug!(?end, "WebSocket connection closed");
}

/// The end of a connection, for logs and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketEnd {
    /// The server sent this close frame.
    Closed(CloseFrame),
    /// The connection was dropped without a close frame: the peer stopped
    /// answering pings or writing to it failed.
    Dropped(String),
}

/// The first failure of a connection's tasks, which ends its session.
#[derive(Debug, Default)]
struct Failure {
    token: CancellationToken,
    reason: Mutex<Option<String>>,
}

impl Failure {
    fn fail(&self, reason: String) {
        let mut slot = self.reason.lock().unwrap();
        if slot.is_none() {
            *slot = Some(reason);
        }
        self.token.cancel();
    }

    fn reason(&self) -> String {
        self.reason.lock().unwrap().clone().unwrap_or_default()
    }
}

/// Runs a session over a WebSocket given as a sink and a stream of
/// tungstenite messages, so tests can drive it with channels.
///
/// `run` gets the stream of inbound message bodies and the sender for
/// outbound ones; its result becomes the close frame.
pub async fn run_socket<Si, St, F, Fut>(
    sink: Si,
    stream: St,
    ping_interval: Duration,
    run: F,
) -> SocketEnd
where
    Si: Sink<Message, Error = tungstenite::Error> + Unpin + Send + 'static,
    St: Stream<Item = Result<Message, tungstenite::Error>> + Unpin + Send + 'static,
    F: FnOnce(ReceiverStream<Result<Bytes, SessionError>>, mpsc::Sender<Bytes>) -> Fut,
    Fut: std::future::Future<Output = Result<(), SessionError>>,
{
    let failure = Arc::new(Failure::default());
    let activity = Arc::new(AtomicBool::new(false));
    let (inbound_tx, inbound_rx) = mpsc::channel(BUFFER);
    let (outbound_tx, outbound_rx) = mpsc::channel(BUFFER);
    let (ping_tx, ping_rx) = mpsc::channel(1);
    let (close_tx, close_rx) = oneshot::channel();

    let mut reader = tokio::spawn(
        read_frames(stream, inbound_tx, activity.clone(), failure.clone())
            .instrument(tracing::Span::current()),
    );
    let writer = tokio::spawn(
        write_frames(sink, outbound_rx, ping_rx, close_rx, failure.clone())
            .instrument(tracing::Span::current()),
    );
    let keepalive = tokio::spawn(keepalive(ping_interval, activity, ping_tx, failure.clone()));

    let result = run(ReceiverStream::new(inbound_rx), outbound_tx).await;
    keepalive.abort();

    let frame = close_frame(&result);
    let _ = close_tx.send(frame.clone());
    let sink = writer.await.ok().flatten();

    let end = match sink {
        Some(_sink) => {
            // Keep the sink alive until the peer answers the close frame (the
            // reader ends on it) or the timeout passes; then the connection drops.
            if tokio::time::timeout(CLOSE_TIMEOUT, &mut reader)
                .await
                .is_err()
            {
                tracing::debug!("no close frame from the peer within {CLOSE_TIMEOUT:?}");
            }
            SocketEnd::Closed(frame)
        }
        None => SocketEnd::Dropped(failure.reason()),
    };
    reader.abort();
    match &end {
        SocketEnd::Closed(frame) if frame.code == CloseCode::Normal => {}
        SocketEnd::Closed(frame) => {
            tracing::info!(code = u16::from(frame.code), reason = %frame.reason, "closing WebSocket")
        }
        SocketEnd::Dropped(reason) => tracing::warn!(%reason, "dropping WebSocket connection"),
    }
    end
}

/// Turns frames into message bodies for the session. After the session has
/// stopped reading, it keeps reading until the peer's close frame arrives.
async fn read_frames<St>(
    mut stream: St,
    inbound: mpsc::Sender<Result<Bytes, SessionError>>,
    activity: Arc<AtomicBool>,
    failure: Arc<Failure>,
) where
    St: Stream<Item = Result<Message, tungstenite::Error>> + Unpin,
{
    let mut forwarding = true;
    loop {
        let frame = tokio::select! {
            frame = stream.next() => frame,
            _ = failure.token.cancelled(), if forwarding => {
                let _ = inbound.send(Err(SessionError::Transport(failure.reason()))).await;
                forwarding = false;
                continue;
            }
        };
        let Some(frame) = frame else { return };
        activity.store(true, Ordering::SeqCst);

        let (item, fatal) = match frame {
            Ok(Message::Text(text)) => (Ok(Bytes::from(text)), false),
            Ok(Message::Binary(_)) => (
                Err(SessionError::Unsupported(
                    "binary frames are not supported; send each JSON-RPC message as one text frame"
                        .to_owned(),
                )),
                false,
            ),
            Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => continue,
            Ok(Message::Close(frame)) => {
                match &frame {
                    Some(frame) => {
                        tracing::debug!(code = u16::from(frame.code), reason = %frame.reason, "peer sent a close frame")
                    }
                    None => tracing::debug!("peer sent a close frame"),
                }
                return;
            }
            Err(e) => (Err(frame_error(e)), true),
        };

        let ends_session = item.is_err();
        if forwarding && inbound.send(item).await.is_err() {
            forwarding = false;
        }
        if ends_session {
            forwarding = false;
        }
        if fatal {
            return;
        }
    }
}

/// Maps a tungstenite read error to a session error.
fn frame_error(e: tungstenite::Error) -> SessionError {
    match e {
        tungstenite::Error::Capacity(e) => SessionError::FrameTooLarge(e.to_string()),
        tungstenite::Error::Utf8(e) => {
            SessionError::InvalidMessage(format!("a text frame is not valid UTF-8: {e}"))
        }
        other => SessionError::Transport(other.to_string()),
    }
}

/// Sends message bodies as text frames and pings on request; once the
/// session ends, flushes what is queued and sends the close frame. Returns
/// the sink, or `None` when the connection failed and got no close frame.
async fn write_frames<Si>(
    mut sink: Si,
    mut outbound: mpsc::Receiver<Bytes>,
    mut pings: mpsc::Receiver<()>,
    mut close: oneshot::Receiver<CloseFrame>,
    failure: Arc<Failure>,
) -> Option<Si>
where
    Si: Sink<Message, Error = tungstenite::Error> + Unpin,
{
    // Each send also watches the failure token, so a peer that stopped
    // reading cannot hold this task on a full socket buffer.
    async fn send<Si>(sink: &mut Si, message: Message, failure: &Failure) -> bool
    where
        Si: Sink<Message, Error = tungstenite::Error> + Unpin,
    {
        tokio::select! {
            sent = sink.send(message) => match sent {
                Ok(()) => true,
                Err(e) => {
                    failure.fail(format!("failed to write to the WebSocket: {e}"));
                    false
                }
            },
            _ = failure.token.cancelled() => false,
        }
    }

    let frame = loop {
        tokio::select! {
            biased;
            _ = failure.token.cancelled() => return None,
            body = outbound.recv() => {
                let Some(body) = body else {
                    // Every sender is gone: the session ended; its frame follows.
                    break (&mut close).await.ok();
                };
                if !send(&mut sink, Message::Text(text_payload(body)), &failure).await {
                    return None;
                }
            }
            Some(()) = pings.recv() => {
                if !send(&mut sink, Message::Ping(Bytes::new()), &failure).await {
                    return None;
                }
            }
            frame = &mut close => break frame.ok(),
        }
    };

    // Messages the session queued just before it ended, such as a parse
    // error reply, go out before the close frame.
    while let Ok(body) = outbound.try_recv() {
        if !send(&mut sink, Message::Text(text_payload(body)), &failure).await {
            return None;
        }
    }
    let frame = frame?;
    match tokio::time::timeout(CLOSE_TIMEOUT, sink.send(Message::Close(Some(frame)))).await {
        Ok(Ok(())) => Some(sink),
        // The peer closed first, and tungstenite already answered it.
        Ok(Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed)) => {
            Some(sink)
        }
        // The peer's close frame arrived first: tungstenite queued the reply
        // with the peer's code, and flushing sends it, so the close is clean.
        Ok(Err(tungstenite::Error::Protocol(
            tungstenite::error::ProtocolError::SendAfterClosing,
        ))) => {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.flush()).await;
            Some(sink)
        }
        Ok(Err(e)) => {
            failure.fail(format!("failed to send the close frame: {e}"));
            None
        }
        Err(_) => {
            failure.fail(format!(
                "the close frame could not be sent within {CLOSE_TIMEOUT:?}"
            ));
            None
        }
    }
}

/// Converts a message body to a text frame payload. gopls writes UTF-8
/// JSON, and any invalid byte sequence is replaced rather than sent as an
/// invalid frame.
fn text_payload(body: Bytes) -> Utf8Bytes {
    match Utf8Bytes::try_from(body.clone()) {
        Ok(text) => text,
        Err(_) => Utf8Bytes::from(String::from_utf8_lossy(&body).into_owned()),
    }
}

/// Asks the writer for a ping every `interval`, and fails the connection
/// when nothing (pong or any other frame) arrived during the interval after
/// a ping: the peer gets one full interval to answer.
async fn keepalive(
    interval: Duration,
    activity: Arc<AtomicBool>,
    pings: mpsc::Sender<()>,
    failure: Arc<Failure>,
) {
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ping_sent = false;
    loop {
        ticker.tick().await;
        let answered = activity.swap(false, Ordering::SeqCst);
        if ping_sent && !answered {
            failure.fail(format!(
                "keepalive timed out: no pong within {interval:?} of a ping"
            ));
            return;
        }
        // A full channel means the previous ping is still queued behind a
        // large message; the next tick checks for an answer all the same.
        // NOTE: a single message that takes longer than one interval to
        // send delays the ping, so it can end a healthy connection. Raise
        // ws_ping_interval for slow links.
        let _ = pings.try_send(());
        ping_sent = true;
    }
}

/// Builds the close frame for a session result.
pub fn close_frame(result: &Result<(), SessionError>) -> CloseFrame {
    let code = match result {
        Ok(()) => CloseCode::Normal,
        Err(SessionError::InvalidMessage(_)) => CloseCode::Invalid,
        Err(SessionError::Unsupported(_)) => CloseCode::Unsupported,
        Err(SessionError::MessageTooLarge { .. } | SessionError::FrameTooLarge(_)) => {
            CloseCode::Size
        }
        Err(SessionError::ShuttingDown) => CloseCode::Away,
        Err(SessionError::GoplsClosed | SessionError::GoplsIo(_) | SessionError::Transport(_)) => {
            CloseCode::Error
        }
    };
    let reason = match result {
        Ok(()) => "session closed".to_owned(),
        Err(e) => e.to_string(),
    };
    CloseFrame {
        code,
        reason: Utf8Bytes::from(truncate(&reason, MAX_CLOSE_REASON).to_owned()),
    }
}

/// Returns the longest prefix of `text` within `max` bytes that ends on a
/// char boundary.
fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    use futures::channel::mpsc as fmpsc;

    /// The server side of a WebSocket made of channels, and the test's ends.
    struct Peer {
        /// Frames the peer sends to the server.
        to_server: fmpsc::UnboundedSender<Result<Message, tungstenite::Error>>,
        /// Frames the server sent.
        from_server: fmpsc::UnboundedReceiver<Message>,
    }

    type ServerSink = std::pin::Pin<Box<dyn Sink<Message, Error = tungstenite::Error> + Send>>;

    fn socket() -> (
        ServerSink,
        fmpsc::UnboundedReceiver<Result<Message, tungstenite::Error>>,
        Peer,
    ) {
        let (to_server, server_stream) = fmpsc::unbounded();
        let (server_sink, from_server) = fmpsc::unbounded::<Message>();
        let sink: ServerSink = Box::pin(server_sink.sink_map_err(|_| {
            tungstenite::Error::Io(std::io::Error::from(std::io::ErrorKind::BrokenPipe))
        }));
        (
            sink,
            server_stream,
            Peer {
                to_server,
                from_server,
            },
        )
    }

    /// Echoes each body back with a prefix, standing in for a session, and
    /// ends with `GoplsClosed` on a body of "fail".
    async fn echo(
        mut inbound: ReceiverStream<Result<Bytes, SessionError>>,
        outbound: mpsc::Sender<Bytes>,
    ) -> Result<(), SessionError> {
        while let Some(item) = inbound.next().await {
            let body = item?;
            if body == "fail" {
                return Err(SessionError::GoplsClosed);
            }
            let mut reply = b"echo:".to_vec();
            reply.extend_from_slice(&body);
            outbound.send(Bytes::from(reply)).await.unwrap();
        }
        Ok(())
    }

    fn text(s: &str) -> Result<Message, tungstenite::Error> {
        Ok(Message::text(s))
    }

    async fn next_data(peer: &mut Peer) -> Message {
        loop {
            match peer.from_server.next().await.expect("server sent a frame") {
                Message::Ping(_) => continue,
                other => return other,
            }
        }
    }

    #[tokio::test]
    async fn text_frames_carry_messages() {
        let (sink, stream, mut peer) = socket();
        let run = tokio::spawn(run_socket(sink, stream, Duration::from_secs(60), echo));

        peer.to_server.unbounded_send(text("{\"a\":1}")).unwrap();
        assert_eq!(next_data(&mut peer).await, Message::text("echo:{\"a\":1}"));

        peer.to_server
            .unbounded_send(Ok(Message::Close(None)))
            .unwrap();
        let close = next_data(&mut peer).await;
        let Message::Close(Some(frame)) = close else {
            panic!("expected a close frame, got {close:?}");
        };
        assert_eq!(frame.code, CloseCode::Normal);
        assert_eq!(run.await.unwrap(), SocketEnd::Closed(frame));
    }

    #[tokio::test]
    async fn bad_frames_get_close_codes() {
        let cases: Vec<(Result<Message, tungstenite::Error>, CloseCode, &str)> = vec![
            (
                Ok(Message::Binary(Bytes::from_static(b"{}"))),
                CloseCode::Unsupported,
                "binary frames are not supported",
            ),
            (
                text("fail"),
                CloseCode::Error,
                "gopls closed the connection",
            ),
            (
                Err(tungstenite::Error::Capacity(
                    tungstenite::error::CapacityError::MessageTooLong {
                        size: 10,
                        max_size: 5,
                    },
                )),
                CloseCode::Size,
                "too large",
            ),
            (
                Err(tungstenite::Error::Utf8("bad byte".to_owned())),
                CloseCode::Invalid,
                "not valid UTF-8",
            ),
        ];
        for (frame, code, reason) in cases {
            let (sink, stream, mut peer) = socket();
            let run = tokio::spawn(run_socket(sink, stream, Duration::from_secs(60), echo));
            peer.to_server.unbounded_send(frame).unwrap();

            let close = next_data(&mut peer).await;
            let Message::Close(Some(sent)) = close else {
                panic!("expected a close frame for {reason:?}, got {close:?}");
            };
            assert_eq!(sent.code, code, "{reason}");
            assert!(sent.reason.contains(reason), "{reason}: {}", sent.reason);
            drop(peer);
            assert!(
                matches!(run.await.unwrap(), SocketEnd::Closed(_)),
                "{reason}"
            );
        }
    }

    #[tokio::test]
    async fn queued_messages_precede_close() {
        let (sink, stream, mut peer) = socket();
        let run = tokio::spawn(run_socket(
            sink,
            stream,
            Duration::from_secs(60),
            |_inbound, outbound: mpsc::Sender<Bytes>| async move {
                outbound
                    .send(Bytes::from_static(b"last words"))
                    .await
                    .unwrap();
                Err(SessionError::ShuttingDown)
            },
        ));
        assert_eq!(next_data(&mut peer).await, Message::text("last words"));
        let close = next_data(&mut peer).await;
        let Message::Close(Some(frame)) = close else {
            panic!("expected a close frame, got {close:?}");
        };
        assert_eq!(frame.code, CloseCode::Away);
        drop(peer);
        run.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn answered_pings_keep_the_connection() {
        let interval = Duration::from_secs(20);
        let (sink, stream, mut peer) = socket();
        let run = tokio::spawn(run_socket(sink, stream, interval, echo));

        for round in 0..3 {
            let frame = peer.from_server.next().await.unwrap();
            assert!(
                matches!(frame, Message::Ping(_)),
                "round {round}: {frame:?}"
            );
            peer.to_server
                .unbounded_send(Ok(Message::Pong(Bytes::new())))
                .unwrap();
        }
        peer.to_server.unbounded_send(text("still here")).unwrap();
        assert_eq!(next_data(&mut peer).await, Message::text("echo:still here"));
        assert!(!run.is_finished());
        run.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn missed_pong_drops_the_connection() {
        let interval = Duration::from_secs(20);
        let (sink, stream, mut peer) = socket();
        let started = tokio::time::Instant::now();
        let run = tokio::spawn(run_socket(sink, stream, interval, echo));

        let frame = peer.from_server.next().await.unwrap();
        assert!(matches!(frame, Message::Ping(_)), "{frame:?}");
        let end = run.await.unwrap();
        let SocketEnd::Dropped(reason) = end else {
            panic!("expected a dropped connection, got {end:?}");
        };
        assert!(reason.contains("keepalive timed out"), "{reason}");
        assert_eq!(
            started.elapsed(),
            2 * interval,
            "one interval to ping, one to answer"
        );
    }

    #[test]
    fn close_reasons_fit_a_control_frame() {
        let long = SessionError::InvalidMessage("é".repeat(200));
        let frame = close_frame(&Err(long));
        assert!(frame.reason.len() <= MAX_CLOSE_REASON);
        assert!(frame
            .reason
            .starts_with("invalid message from the editor: é"));
        assert_eq!(truncate("abc", 2), "ab");
        assert_eq!(truncate("aé", 2), "a");
    }

    #[test]
    fn token_sources_in_order() {
        let query = UpgradeQuery {
            local_root: None,
            access_token: Some("from-query".to_owned()),
        };
        let mut headers = HeaderMap::new();
        assert_eq!(presented_token(&headers, &query), Some("from-query"));

        headers.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("remote-gopls.v1, bearer.from-protocol"),
        );
        assert_eq!(presented_token(&headers, &query), Some("from-protocol"));

        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer from-header"),
        );
        assert_eq!(presented_token(&headers, &query), Some("from-header"));

        assert_eq!(
            presented_token(&HeaderMap::new(), &UpgradeQuery::default()),
            None
        );
    }

    #[test]
    fn handshake_checks() {
        let mut headers = HeaderMap::new();
        assert!(matches!(
            check_handshake(&headers),
            Err(UpgradeError::NotUpgrade(_))
        ));
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(matches!(
            check_handshake(&headers),
            Err(UpgradeError::Version)
        ));
        headers.insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        assert!(matches!(
            check_handshake(&headers),
            Err(UpgradeError::NotUpgrade(_))
        ));
        headers.insert(
            header::SEC_WEBSOCKET_KEY,
            HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
        );
        assert!(check_handshake(&headers).is_ok());
    }
}
