//! Library behind the `remote-gopls` binary, the editor-side stand-in for gopls.

pub mod bridge;
pub mod buildinfo;
pub mod cli;
pub mod transport;
pub mod version;
