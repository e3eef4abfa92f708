//! A raw gRPC tunnel client for tests that need to send what no editor
//! would: bad tokens, unknown workspaces, broken messages.

use bytes::Bytes;
use remote_gopls_proto::pb::{self, client_message, server_message, tunnel_client::TunnelClient};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// An open tunnel session.
pub struct RawSession {
    pub tx: mpsc::Sender<pb::ClientMessage>,
    pub rx: tonic::Streaming<pb::ServerMessage>,
    pub welcome: pb::Welcome,
}

/// Opens a session; returns the status when the server rejects it.
pub async fn open(
    url: &str,
    token: Option<&str>,
    workspace: &str,
    local_root: &str,
) -> Result<RawSession, tonic::Status> {
    let mut client = TunnelClient::connect(url.to_owned())
        .await
        .expect("connect to the server")
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX);
    let (tx, rx) = mpsc::channel(16);
    let hello = pb::Hello {
        workspace: workspace.to_owned(),
        local_root: local_root.to_owned(),
        client_version: "e2e".to_owned(),
    };
    tx.send(pb::ClientMessage {
        kind: Some(client_message::Kind::Hello(hello)),
    })
    .await
    .unwrap();

    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    let mut rx = client.session(request).await?.into_inner();
    let welcome = match rx.message().await? {
        Some(pb::ServerMessage {
            kind: Some(server_message::Kind::Welcome(welcome)),
        }) => welcome,
        other => panic!("expected a welcome, got {other:?}"),
    };
    Ok(RawSession { tx, rx, welcome })
}

impl RawSession {
    pub async fn send(&self, body: impl Into<Bytes>) {
        let message = pb::ClientMessage {
            kind: Some(client_message::Kind::Lsp(body.into())),
        };
        self.tx.send(message).await.expect("stream open");
    }

    /// Reads LSP bodies until the stream ends; returns them and the final status.
    pub async fn drain(&mut self) -> (Vec<Bytes>, Option<tonic::Status>) {
        let mut bodies = Vec::new();
        loop {
            match self.rx.message().await {
                Ok(Some(pb::ServerMessage {
                    kind: Some(server_message::Kind::Lsp(body)),
                })) => bodies.push(body),
                Ok(Some(other)) => panic!("unexpected message {other:?}"),
                Ok(None) => return (bodies, None),
                Err(status) => return (bodies, Some(status)),
            }
        }
    }
}
