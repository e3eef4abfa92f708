//! The WebSocket transport: `ws://` or `wss://` to the server's
//! `/v1/workspaces/{name}/lsp` endpoint, one JSON-RPC message per text frame.
//!
//! The welcome data comes from headers of the upgrade response
//! (`x-remote-gopls-session` and friends), since the connection carries
//! nothing but LSP messages. `wss://` trusts the system's root certificates
//! (`SSL_CERT_FILE` and `SSL_CERT_DIR` override them).

use std::sync::Arc;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use remote_gopls_proto::pb;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{header, HeaderValue, Response};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};
use tokio_tungstenite::Connector;

use super::{error_chain, ConnectError, Connection, CHANNEL_BUFFER};
use crate::bridge::BridgeOptions;

/// Subprotocol of this protocol version; the server echoes it.
pub const SUBPROTOCOL: &str = "remote-gopls.v1";

/// Characters escaped in a path segment or query value: all but RFC 3986's
/// unreserved characters.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Builds the session URL: the server URL with the endpoint path appended,
/// so a server behind a path prefix works, and the local root as a query
/// parameter.
pub fn session_url(server: &str, hello: &pb::Hello) -> String {
    let base = server.trim().trim_end_matches('/');
    let mut url = format!(
        "{base}/v1/workspaces/{}/lsp",
        utf8_percent_encode(&hello.workspace, COMPONENT)
    );
    if !hello.local_root.is_empty() {
        url.push_str("?local_root=");
        url.extend(utf8_percent_encode(&hello.local_root, COMPONENT));
    }
    url
}

/// TLS settings for `wss://`: the system's roots, with rustls's ring provider.
fn tls_connector(server: &str) -> Result<Connector, ConnectError> {
    let tls = |detail: String| ConnectError::Tls {
        server: server.to_owned(),
        detail,
    };
    let loaded = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(loaded.certs);
    if added == 0 {
        return Err(tls(format!(
            "no trusted root certificates found ({} errors); install the system CA bundle or set SSL_CERT_FILE",
            loaded.errors.len()
        )));
    }
    // NOTE: rustls 0.23.48 deprecates the ring provider because it has no
    // post-quantum key exchange. The aws-lc-rs provider has one but needs
    // cmake and a C toolchain to build, so ring stays until that is wanted.
    #[allow(deprecated)]
    let provider = rustls::crypto::ring::default_provider();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Connector::Rustls(Arc::new(config)))
}

pub async fn connect(
    options: &BridgeOptions,
    hello: pb::Hello,
) -> Result<Connection, ConnectError> {
    let server = options.server.clone();
    let url = session_url(&server, &hello);
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|_| ConnectError::InvalidAddress(server.clone()))?;
    let headers = request.headers_mut();
    headers.insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(SUBPROTOCOL),
    );
    if let Ok(agent) = HeaderValue::from_str(&hello.client_version) {
        headers.insert(header::USER_AGENT, agent);
    }
    if let Some(token) = &options.token {
        let value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| ConnectError::InvalidToken("not a valid header value".to_owned()))?;
        headers.insert(header::AUTHORIZATION, value);
    }

    let connector = if server.trim().starts_with("wss://") {
        Some(tls_connector(&server)?)
    } else {
        None
    };
    let config = WebSocketConfig::default()
        .max_message_size(Some(options.max_message_size))
        .max_frame_size(Some(options.max_message_size));
    let unreachable = |detail: String| ConnectError::Unreachable {
        server: server.clone(),
        detail,
    };
    let connecting =
        tokio_tungstenite::connect_async_tls_with_config(request, Some(config), true, connector);
    let (socket, response) = match tokio::time::timeout(options.connect_timeout, connecting).await {
        Err(_) => {
            return Err(unreachable(format!(
                "no WebSocket handshake within {:?}",
                options.connect_timeout
            )))
        }
        Ok(Err(tungstenite::Error::Http(response))) => return Err(rejected(&server, &response)),
        Ok(Err(e)) => return Err(unreachable(error_chain(&e))),
        Ok(Ok(connected)) => connected,
    };
    let welcome = welcome(&server, &response)?;

    let (mut sink, stream) = socket.split();
    let (to_server, mut bodies) = mpsc::channel::<Bytes>(CHANNEL_BUFFER);
    tokio::spawn(async move {
        while let Some(body) = bodies.recv().await {
            let text = Utf8Bytes::try_from(body.clone())
                .unwrap_or_else(|_| Utf8Bytes::from(String::from_utf8_lossy(&body).into_owned()));
            if let Err(e) = sink.send(Message::Text(text)).await {
                tracing::debug!(error = %e, "WebSocket write failed");
                return;
            }
        }
        // The bridge dropped its sender: end the session with a normal close.
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: Utf8Bytes::from_static("editor closed the session"),
        };
        let _ = sink.send(Message::Close(Some(frame))).await;
    });

    // Reading the stream also answers the server's pings.
    let from_server = stream
        .filter_map(|frame| async move {
            match frame {
                Ok(Message::Text(text)) => Some(Ok(Bytes::from(text))),
                Ok(Message::Binary(_)) => Some(Err("the server sent a binary frame".to_owned())),
                Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => None,
                Ok(Message::Close(Some(frame))) if frame.code != CloseCode::Normal => {
                    Some(Err(format!(
                        "the server closed the session: {} ({}): {}",
                        u16::from(frame.code),
                        frame.code,
                        frame.reason
                    )))
                }
                Ok(Message::Close(_)) => None,
                Err(tungstenite::Error::ConnectionClosed) => None,
                Err(e) => Some(Err(format!("the WebSocket connection failed: {e}"))),
            }
        })
        .boxed();
    Ok(Connection {
        to_server,
        from_server,
        welcome,
    })
}

/// Converts a non-101 handshake response to a rejection with its status
/// and text body.
fn rejected(server: &str, response: &Response<Option<Vec<u8>>>) -> ConnectError {
    let body = response
        .body()
        .as_deref()
        .map(String::from_utf8_lossy)
        .unwrap_or_default();
    ConnectError::Rejected {
        server: server.to_owned(),
        status: format!("HTTP {}", response.status()),
        message: body.trim().to_owned(),
    }
}

/// Reads the welcome data from the upgrade response headers.
fn welcome(
    server: &str,
    response: &Response<Option<Vec<u8>>>,
) -> Result<pb::Welcome, ConnectError> {
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let session_id = header("x-remote-gopls-session").ok_or_else(|| ConnectError::NoWelcome {
        server: server.to_owned(),
    })?;
    Ok(pb::Welcome {
        session_id,
        remote_root: header("x-remote-gopls-remote-root").unwrap_or_default(),
        gopls_version: header("x-remote-gopls-gopls-version").unwrap_or_default(),
        server_version: header("x-remote-gopls-server-version").unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_session_urls() {
        let hello = |workspace: &str, local_root: &str| pb::Hello {
            workspace: workspace.to_owned(),
            local_root: local_root.to_owned(),
            client_version: String::new(),
        };
        let cases = [
            ("ws://127.0.0.1:7080", hello("demo", ""), "ws://127.0.0.1:7080/v1/workspaces/demo/lsp"),
            (
                "wss://gopls.example/prefix/",
                hello("my.ws", "file:///home/me/my proj"),
                "wss://gopls.example/prefix/v1/workspaces/my.ws/lsp?local_root=file%3A%2F%2F%2Fhome%2Fme%2Fmy%20proj",
            ),
            (
                "ws://h:1",
                hello("a b", "/srv/é&x=1"),
                "ws://h:1/v1/workspaces/a%20b/lsp?local_root=%2Fsrv%2F%C3%A9%26x%3D1",
            ),
        ];
        for (server, hello, expected) in cases {
            assert_eq!(session_url(server, &hello), expected);
        }
    }
}
