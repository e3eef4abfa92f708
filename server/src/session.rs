//! One editor session: a transport-neutral bridge between the editor's
//! messages and this session's own connection to the workspace's gopls.
//!
//! The session reads only the JSON-RPC envelope of each message, maps file
//! URIs between the editor's root and the server's, keeps `exit` away from
//! the shared gopls, and preserves message order in each direction (one task
//! per direction). Transports (gRPC, WebSocket) feed it a stream of message
//! bodies and map its result to their own status codes.

use std::sync::Arc;

use bytes::Bytes;
use futures::{SinkExt, Stream, StreamExt};
use remote_gopls_proto::codec::{CodecError, LspCodec};
use remote_gopls_proto::jsonrpc::{self, error_code, Envelope, Kind};
use remote_gopls_proto::urimap::UriMapper;
use tokio::net::UnixStream;
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::instance::Instance;

/// Why a session ended abnormally. Each transport maps these once to its
/// own status (gRPC code, WebSocket close code).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("invalid message from the editor: {0}")]
    InvalidMessage(String),
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

/// What a session needs besides its transport.
#[derive(Debug)]
pub struct Session {
    pub id: String,
    pub workspace: String,
    pub instance: Arc<Instance>,
    /// Editor root to server root; `None` when the editor gave no root.
    pub to_remote: Option<UriMapper>,
    /// Default gopls settings merged under the editor's `initializationOptions`.
    pub default_settings: serde_json::Map<String, serde_json::Value>,
    pub max_message_size: usize,
    pub shutdown: CancellationToken,
}

/// How the downstream (gopls to editor) task ended.
enum Downstream {
    GoplsEof,
    GoplsError(SessionError),
    EditorGone,
}

impl Session {
    /// Runs the session until the editor sends `exit`, closes its stream, or
    /// an error ends it. `inbound` yields message bodies from the editor;
    /// `outbound` takes message bodies for the editor.
    pub async fn run<S>(
        self,
        socket: UnixStream,
        mut inbound: S,
        outbound: mpsc::Sender<Bytes>,
    ) -> Result<(), SessionError>
    where
        S: Stream<Item = Result<Bytes, SessionError>> + Unpin,
    {
        let span =
            tracing::info_span!("session", session.id = %self.id, workspace.name = %self.workspace);
        async move {
            let (read_half, write_half) = socket.into_split();
            let mut to_gopls = FramedWrite::new(write_half, LspCodec::new(self.max_message_size));
            let from_gopls = FramedRead::new(read_half, LspCodec::new(self.max_message_size));
            let to_local = self.to_remote.as_ref().map(UriMapper::reversed);

            let mut downstream = tokio::spawn(
                pump_downstream(from_gopls, outbound.clone(), to_local).instrument(tracing::Span::current()),
            );

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
                        match self.forward_upstream(message, &mut to_gopls, &outbound).await {
                            Ok(Upstream::Continue) => {}
                            Ok(Upstream::Exit) => break Ok(()),
                            Err(e) => break Err(e),
                        }
                    }
                    ended = &mut downstream => {
                        break match ended {
                            Ok(Downstream::GoplsEof) => Err(SessionError::GoplsClosed),
                            Ok(Downstream::GoplsError(e)) => Err(e),
                            Ok(Downstream::EditorGone) => Ok(()),
                            Err(join) => Err(SessionError::GoplsIo(format!("downstream task failed: {join}"))),
                        };
                    }
                    _ = self.shutdown.cancelled() => break Err(SessionError::ShuttingDown),
                }
            };

            // Closing our half of the socket ends this gopls session (gopls
            // shuts down the session's views) without touching other sessions.
            downstream.abort();
            let _ = SinkExt::<Bytes>::close(&mut to_gopls).await;
            match &result {
                Ok(()) => tracing::info!("session closed"),
                Err(e) => tracing::warn!(error = %e, "session ended with an error"),
            }
            result
        }
        .instrument(span)
        .await
    }

    async fn forward_upstream(
        &self,
        message: Bytes,
        to_gopls: &mut FramedWrite<tokio::net::unix::OwnedWriteHalf, LspCodec>,
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
        to_gopls
            .send(message)
            .await
            .map_err(|e| SessionError::GoplsIo(e.to_string()))?;
        Ok(Upstream::Continue)
    }
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
        if tracing::enabled!(tracing::Level::DEBUG) {
            let envelope = Envelope::parse(&message).ok();
            tracing::debug!(
                direction = "gopls->editor",
                kind = ?envelope.as_ref().map(|e| e.kind),
                method = envelope.as_ref().map(|e| e.method().to_owned()).unwrap_or_default(),
                id = ?envelope.as_ref().and_then(|e| e.id.clone()),
                bytes = message.len()
            );
        }

        let message = rewrite(to_local.as_ref(), message);
        if outbound.send(message).await.is_err() {
            return Downstream::EditorGone;
        }
    }
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
