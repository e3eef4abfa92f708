//! remote-gopls-bench: measures the remote-gopls tunnel and the gopls it
//! runs side by side with the alternatives, on generated Go modules.

pub mod gocode;
pub mod rng;
pub mod workspace;
