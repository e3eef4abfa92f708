//! Entry point of `remote-gopls`.

use std::process::ExitCode;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(remote_gopls::bridge::serve_stdio(
        remote_gopls::bridge::BridgeOptions::from_env(),
    ))
}
