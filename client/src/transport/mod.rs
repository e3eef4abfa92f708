//! Transports from the client to the server. Each one connects a session
//! and hands the bridge the same three things: a sender of message bodies,
//! a stream of message bodies, and the welcome data. The bridge loop does
//! not know which wire carries them.

pub mod grpc;
pub mod ws;

use bytes::Bytes;
use futures::stream::BoxStream;
use remote_gopls_proto::pb;
use tokio::sync::mpsc;

use crate::bridge::BridgeOptions;

/// Messages buffered toward the server before the bridge waits.
pub(crate) const CHANNEL_BUFFER: usize = 64;

/// Errors that prevent a session from connecting.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot tell which workspace to open: the editor sent no root folder; set REMOTE_GOPLS_WORKSPACE to the workspace name on the server")]
    NoWorkspace,
    #[error("invalid server address {0:?}: expected http://HOST:PORT (gRPC), ws://HOST:PORT or wss://HOST:PORT (WebSocket)")]
    InvalidAddress(String),
    #[error("cannot connect to remote-gopls server at {server}: {detail}")]
    Unreachable { server: String, detail: String },
    #[error("remote-gopls server at {server} rejected the session: {status}: {message}")]
    Rejected {
        server: String,
        /// The gRPC code name or the HTTP status.
        status: String,
        message: String,
    },
    #[error("remote-gopls server at {server} sent no welcome message")]
    NoWelcome { server: String },
    #[error("invalid token in REMOTE_GOPLS_TOKEN: {0}")]
    InvalidToken(String),
    #[error("{server}: the gRPC transport has no TLS support, so the token and code would cross the network in plain text; use wss://HOST:PORT (WebSocket over TLS) or http:// on a trusted network")]
    GrpcTlsUnsupported { server: String },
    #[error("cannot set up TLS for {server}: {detail}")]
    Tls { server: String, detail: String },
}

/// A connected session.
pub struct Connection {
    /// Message bodies for the server. Dropping it ends the session cleanly.
    pub to_server: mpsc::Sender<Bytes>,
    /// Message bodies from the server. The stream ends when the server
    /// closes the session normally; an `Err` contains the reason it ended otherwise.
    pub from_server: BoxStream<'static, Result<Bytes, String>>,
    pub welcome: pb::Welcome,
}

/// Connects over the transport that the URL scheme of `options.server` names.
pub async fn connect(
    options: &BridgeOptions,
    hello: pb::Hello,
) -> Result<Connection, ConnectError> {
    let server = options.server.trim();
    if server.starts_with("ws://") || server.starts_with("wss://") {
        ws::connect(options, hello).await
    } else if server.starts_with("https://") {
        // NOTE: tonic is built without TLS here; refuse rather than silently
        // speak plain text to an https:// address.
        Err(ConnectError::GrpcTlsUnsupported {
            server: options.server.clone(),
        })
    } else if server.starts_with("http://") {
        grpc::connect(options, hello).await
    } else {
        Err(ConnectError::InvalidAddress(options.server.clone()))
    }
}

pub(crate) use remote_gopls_proto::error_chain;
