//! A raw WebSocket client for tests that must see frames no editor would
//! show: close codes, pings, rejected handshakes, binary frames.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue, Response};
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::lsp::LspClient;

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Frame and message limit of the test client: above any server limit.
const CLIENT_LIMIT: usize = 256 << 20;

/// Opens a WebSocket to `path` (with its query) on the HTTP listener,
/// adding `headers` to the handshake.
pub async fn connect(
    http_addr: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(Socket, Response<Option<Vec<u8>>>), tungstenite::Error> {
    let mut request = format!("ws://{http_addr}{path}").into_client_request()?;
    for (name, value) in headers {
        request.headers_mut().insert(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    let config = WebSocketConfig::default()
        .max_message_size(Some(CLIENT_LIMIT))
        .max_frame_size(Some(CLIENT_LIMIT));
    tokio_tungstenite::connect_async_with_config(request, Some(config), true).await
}

/// Returns the status and body of a rejected handshake.
pub fn rejection(error: tungstenite::Error) -> (u16, String) {
    match error {
        tungstenite::Error::Http(response) => (
            response.status().as_u16(),
            String::from_utf8_lossy(response.body().as_deref().unwrap_or_default()).into_owned(),
        ),
        other => panic!("expected an HTTP rejection, got {other}"),
    }
}

/// What a [`WsSession`] saw besides LSP messages.
#[derive(Default)]
pub struct Frames {
    pub pings: AtomicUsize,
    pub close: Mutex<Option<Option<CloseFrame>>>,
    pub closed: Notify,
}

/// An LSP client over a raw WebSocket, recording pings and the close frame.
pub struct WsSession {
    pub client: LspClient,
    pub frames: Arc<Frames>,
    /// Sends raw frames, bypassing the LSP client.
    pub raw: mpsc::Sender<Message>,
}

impl WsSession {
    pub fn new(socket: Socket) -> WsSession {
        let (mut sink, mut stream) = socket.split();
        let (raw_tx, mut raw_rx) = mpsc::channel::<Message>(16);
        let (out_tx, mut out_rx) = mpsc::channel::<Bytes>(64);
        tokio::spawn(async move {
            loop {
                let message = tokio::select! {
                    body = out_rx.recv() => match body {
                        Some(body) => Message::Text(Utf8Bytes::try_from(body).expect("UTF-8 JSON")),
                        None => break,
                    },
                    Some(raw) = raw_rx.recv() => raw,
                };
                if sink.send(message).await.is_err() {
                    break;
                }
            }
        });

        let frames = Arc::new(Frames::default());
        let seen = frames.clone();
        let (in_tx, in_rx) = mpsc::channel::<Bytes>(64);
        tokio::spawn(async move {
            while let Some(frame) = stream.next().await {
                match frame {
                    Ok(Message::Text(text)) => {
                        if in_tx.send(Bytes::from(text)).await.is_err() {
                            break;
                        }
                    }
                    Ok(Message::Ping(_)) => {
                        seen.pings.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(Message::Close(frame)) => {
                        *seen.close.lock().unwrap() = Some(frame);
                        break;
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            // An end without a close frame counts as closed, too.
            seen.close.lock().unwrap().get_or_insert(None);
            seen.closed.notify_waiters();
            seen.closed.notify_one();
        });

        WsSession {
            client: LspClient::over_channels(out_tx, in_rx),
            frames,
            raw: raw_tx,
        }
    }

    /// Waits until the connection closes and returns the server's close
    /// frame (`None` inside when it closed without one).
    pub async fn closed(&self, timeout: std::time::Duration) -> Option<Option<CloseFrame>> {
        let waited = tokio::time::timeout(timeout, async {
            loop {
                let notified = self.frames.closed.notified();
                if let Some(frame) = self.frames.close.lock().unwrap().clone() {
                    return frame;
                }
                notified.await;
            }
        })
        .await;
        waited.ok()
    }
}
