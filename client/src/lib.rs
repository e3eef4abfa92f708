//! remote-gopls: the editor-side stand-in for gopls. Editors start it as
//! their Go language server; it tunnels LSP to a remote-gopls server.

pub mod bridge;
