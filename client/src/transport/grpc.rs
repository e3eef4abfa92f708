//! The gRPC transport: one `remote_gopls.v1.Tunnel/Session` stream per
//! session, opened with a hello and answered with a welcome.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use remote_gopls_proto::pb::{self, client_message, server_message, tunnel_client::TunnelClient};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::{error_chain, ConnectError, Connection, CHANNEL_BUFFER};
use crate::bridge::BridgeOptions;

/// HTTP/2 keepalive ping interval and timeout toward the server.
const KEEPALIVE: Duration = Duration::from_secs(20);

pub async fn connect(
    options: &BridgeOptions,
    hello: pb::Hello,
) -> Result<Connection, ConnectError> {
    let endpoint = tonic::transport::Endpoint::from_shared(options.server.clone())
        .map_err(|_| ConnectError::InvalidAddress(options.server.clone()))?
        .connect_timeout(options.connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEPALIVE)
        .keep_alive_timeout(KEEPALIVE)
        .keep_alive_while_idle(true);
    let unreachable = |detail: String| ConnectError::Unreachable {
        server: options.server.clone(),
        detail,
    };
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| unreachable(error_chain(&e)))?;

    let limit = options.max_message_size + remote_gopls_proto::GRPC_ENVELOPE_OVERHEAD;
    let mut client = TunnelClient::new(channel)
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit);

    let (to_server, rx) = mpsc::channel::<Bytes>(CHANNEL_BUFFER);
    let hello = pb::ClientMessage {
        kind: Some(client_message::Kind::Hello(hello)),
    };
    let bodies = ReceiverStream::new(rx).map(|body| pb::ClientMessage {
        kind: Some(client_message::Kind::Lsp(body)),
    });
    let mut request = tonic::Request::new(futures::stream::once(async { hello }).chain(bodies));
    if let Some(token) = &options.token {
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| ConnectError::InvalidToken("not a valid header value".to_owned()))?;
        request.metadata_mut().insert("authorization", value);
    }

    let rejected = |status: tonic::Status| {
        if status.code() == tonic::Code::Unavailable && status.message().contains("transport error")
        {
            unreachable(status.message().to_owned())
        } else {
            ConnectError::Rejected {
                server: options.server.clone(),
                status: format!("{:?}", status.code()),
                message: status.message().to_owned(),
            }
        }
    };
    let mut from_server = client
        .session(request)
        .await
        .map_err(rejected)?
        .into_inner();
    let welcome = match from_server.message().await.map_err(rejected)? {
        Some(pb::ServerMessage {
            kind: Some(server_message::Kind::Welcome(welcome)),
        }) => welcome,
        _ => {
            return Err(ConnectError::NoWelcome {
                server: options.server.clone(),
            })
        }
    };

    let from_server = from_server
        .map(|message| match message {
            Ok(pb::ServerMessage {
                kind: Some(server_message::Kind::Lsp(body)),
            }) => Ok(body),
            Ok(_) => Err("the server sent an unexpected message".to_owned()),
            Err(status) => Err(format!(
                "the server ended the session: {:?}: {}",
                status.code(),
                status.message()
            )),
        })
        .boxed();
    Ok(Connection {
        to_server,
        from_server,
        welcome,
    })
}
