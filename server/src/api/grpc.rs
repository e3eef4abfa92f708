//! The gRPC transport: `remote_gopls.v1.Tunnel/Session`, one bidirectional
//! stream per editor session.

use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use remote_gopls_proto::pb::{self, client_message, server_message, tunnel_server};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::{bearer, AuthError};
use crate::metrics::Transport;
use crate::session::SessionError;
use crate::state::{OpenError, ServerState};

/// Messages buffered toward the editor before the session waits.
const OUTBOUND_BUFFER: usize = 64;

/// The tonic service.
#[derive(Debug, Clone)]
pub struct TunnelService {
    state: Arc<ServerState>,
}

impl TunnelService {
    pub fn new(state: Arc<ServerState>) -> TunnelService {
        TunnelService { state }
    }

    /// Wraps the service with the configured message size limit.
    pub fn into_server(self) -> tunnel_server::TunnelServer<TunnelService> {
        let limit = self.state.config.max_message_size + remote_gopls_proto::GRPC_ENVELOPE_OVERHEAD;
        tunnel_server::TunnelServer::new(self)
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit)
    }
}

fn open_error_status(e: &OpenError) -> Status {
    let message = e.to_string();
    match e {
        OpenError::Auth(AuthError::Forbidden(_)) => Status::permission_denied(message),
        OpenError::Auth(_) => Status::unauthenticated(message),
        OpenError::UnknownWorkspace { .. } => Status::not_found(message),
        OpenError::InvalidHello(_) => Status::invalid_argument(message),
        OpenError::GoplsUnavailable { .. } | OpenError::ShuttingDown => {
            Status::unavailable(message)
        }
        OpenError::Budget(_) => Status::resource_exhausted(message),
    }
}

fn session_error_status(e: &SessionError) -> Status {
    let message = e.to_string();
    match e {
        SessionError::InvalidMessage(_) | SessionError::Unsupported(_) => {
            Status::invalid_argument(message)
        }
        SessionError::MessageTooLarge { .. } | SessionError::FrameTooLarge(_) => {
            Status::resource_exhausted(message)
        }
        SessionError::GoplsClosed | SessionError::GoplsIo(_) | SessionError::ShuttingDown => {
            Status::unavailable(message)
        }
        SessionError::Transport(_) => Status::cancelled(message),
    }
}

/// Converts the stream status tonic reports for an inbound message into a
/// session error; tonic reports an over-limit message as OUT_OF_RANGE.
fn inbound_error(status: Status) -> SessionError {
    match status.code() {
        tonic::Code::OutOfRange | tonic::Code::ResourceExhausted => {
            SessionError::FrameTooLarge(status.message().to_owned())
        }
        _ => SessionError::Transport(status.message().to_owned()),
    }
}

/// The bearer token of a request, if any.
fn request_token<T>(request: &Request<T>) -> Option<String> {
    request
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(bearer)
        .map(str::to_owned)
}

#[tonic::async_trait]
impl tunnel_server::Tunnel for TunnelService {
    type SessionStream = Pin<Box<dyn Stream<Item = Result<pb::ServerMessage, Status>> + Send>>;

    async fn reset(
        &self,
        request: Request<pb::ResetRequest>,
    ) -> Result<Response<pb::ResetResponse>, Status> {
        let token = request_token(&request);
        let name = request.into_inner().workspace;
        self.state
            .tokens
            .authorize(token.as_deref(), &name)
            .map_err(|e| match e {
                AuthError::Forbidden(_) => Status::permission_denied(e.to_string()),
                _ => Status::unauthenticated(e.to_string()),
            })?;
        let workspace = self
            .state
            .registry
            .get(&name)
            .ok_or_else(|| Status::not_found(format!("workspace {name:?} not found")))?;
        let was_degraded = workspace.reset_degraded();
        tracing::info!(workspace.name = %name, was_degraded, "reset requested");
        Ok(Response::new(pb::ResetResponse { was_degraded }))
    }

    async fn status(
        &self,
        request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let token = request_token(&request);
        match self.state.status(token.as_deref()).await {
            Ok(report) => Ok(Response::new(report)),
            Err(e) => {
                tracing::warn!(peer = ?request.remote_addr(), error = %e, "status request rejected");
                Err(Status::unauthenticated(e.to_string()))
            }
        }
    }

    async fn session(
        &self,
        request: Request<Streaming<pb::ClientMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let token = request_token(&request);
        let peer = request.remote_addr();
        let mut inbound = request.into_inner();

        let first = tokio::time::timeout(self.state.config.hello_timeout, inbound.message())
            .await
            .map_err(|_| Status::deadline_exceeded("no hello message within the hello timeout"))?;
        let hello = match first {
            Ok(Some(pb::ClientMessage {
                kind: Some(client_message::Kind::Hello(hello)),
            })) => hello,
            Ok(_) => {
                return Err(Status::invalid_argument(
                    "the first message of a session must be a hello",
                ))
            }
            Err(status) => return Err(status),
        };

        let open = self.state.open_session(&hello, token.as_deref(), Transport::Grpc).await.map_err(|e| {
            tracing::warn!(workspace.name = %hello.workspace, peer = ?peer, error = %e, "session rejected");
            open_error_status(&e)
        })?;

        let (tx, rx) = mpsc::channel::<Result<pb::ServerMessage, Status>>(OUTBOUND_BUFFER);
        let welcome = pb::ServerMessage {
            kind: Some(server_message::Kind::Welcome(open.welcome)),
        };
        tx.send(Ok(welcome))
            .await
            .map_err(|_| Status::cancelled("the editor left before the welcome"))?;

        let inbound = inbound.map(|item| match item {
            Ok(pb::ClientMessage {
                kind: Some(client_message::Kind::Lsp(bytes)),
            }) => Ok(bytes),
            Ok(_) => Err(SessionError::InvalidMessage(
                "expected an lsp message after the hello".to_owned(),
            )),
            Err(status) => Err(inbound_error(status)),
        });

        // The session writes plain message bodies; this task wraps them.
        let (body_tx, mut body_rx) = mpsc::channel::<Bytes>(OUTBOUND_BUFFER);
        let wrap_tx = tx.clone();
        let wrapper = tokio::spawn(async move {
            while let Some(body) = body_rx.recv().await {
                let message = pb::ServerMessage {
                    kind: Some(server_message::Kind::Lsp(body)),
                };
                if wrap_tx.send(Ok(message)).await.is_err() {
                    break;
                }
            }
        });

        let session = open.session;
        let socket = open.socket;
        self.state.sessions.spawn(async move {
            let result = session.run(socket, Box::pin(inbound), body_tx).await;
            let _ = wrapper.await;
            if let Err(e) = result {
                let _ = tx.send(Err(session_error_status(&e))).await;
            }
        });

        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
