//! Everything that crosses a wire between the remote-gopls client, the server
//! and gopls: the gRPC schema, LSP base-protocol framing, the JSON-RPC
//! envelope, and file URI mapping between the editor's root and the server's.

pub mod codec;
pub mod docstore;
pub mod jsonrpc;
pub mod replay;
pub mod urimap;

/// Generated tonic/prost code for the `remote_gopls.v1` package.
pub mod pb {
    tonic::include_proto!("remote_gopls.v1");
}

/// Default maximum size in bytes of one LSP message (JSON body, without headers).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;

/// Extra room on top of the LSP message limit for the protobuf envelope of one
/// gRPC stream message (field tags and lengths).
pub const GRPC_ENVELOPE_OVERHEAD: usize = 1024;

/// The gopls release remote-gopls is built and tested with. The server
/// installs it when no gopls is found; the client reports it as the
/// version of the language server it stands in for.
pub const PINNED_GOPLS_VERSION: &str = "v0.23.0";

/// Version of this crate, shared by the client and the server.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Formats an error with its sources in one line, for messages that must
/// explain a failure where only one line is shown. A source whose text the
/// line already contains is skipped: tonic and hyper repeat their inner
/// errors' text in their own.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let next = inner.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("connect failed: {0}")]
    struct Repeats(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("transport error")]
    struct Wraps(#[source] std::io::Error);

    #[test]
    fn error_chain_joins_new_sources() {
        let refused = || std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(error_chain(&Wraps(refused())), "transport error: refused");
        assert_eq!(error_chain(&Repeats(refused())), "connect failed: refused");
    }
}
