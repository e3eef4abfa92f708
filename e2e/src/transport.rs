//! The transports a test body runs over: the `remote-gopls` client binary
//! takes either URL, so the same test body runs once per transport.

use crate::server::ServerProcess;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Grpc,
    WebSocket,
}

impl Transport {
    /// Returns the `REMOTE_GOPLS_SERVER` value that selects this transport.
    pub fn client_url(self, server: &ServerProcess) -> String {
        match self {
            Transport::Grpc => server.url(),
            Transport::WebSocket => server.ws_url(),
        }
    }

    /// Returns the `transport` label value of the server's metrics.
    pub fn label(self) -> &'static str {
        match self {
            Transport::Grpc => "grpc",
            Transport::WebSocket => "websocket",
        }
    }
}
