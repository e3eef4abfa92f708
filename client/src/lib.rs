//! Library behind the `remote-gopls` binary, the editor-side stand-in for gopls.

pub mod cli;
