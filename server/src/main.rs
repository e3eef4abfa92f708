//! Entry point of `remote-gopls-server`: flags, logging, signals, run.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use remote_gopls_server::config::{Args, Config, ResetArgs, StatusArgs, Subcommand};
use remote_gopls_server::Server;

/// Exit status for invalid configuration, distinct from runtime failures.
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let mut args = Args::parse();
    match args.command.take() {
        Some(Subcommand::Status(status)) => return print_status(status),
        Some(Subcommand::Reset(reset)) => return reset_workspace(reset),
        None => {}
    }

    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("REMOTE_GOPLS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let config = match Config::load(args) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("remote-gopls-server: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };

    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("remote-gopls-server: failed to start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let server = Server::bind(config).await?;
        server.run(shutdown_signal()).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "server failed");
            eprintln!("remote-gopls-server: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `remote-gopls-server status`.
fn print_status(args: StatusArgs) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("remote-gopls-server: failed to start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(remote_gopls_server::status::fetch(
        &args.server,
        args.token.as_deref(),
    )) {
        Ok(report) if args.json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&report).expect("status serializes")
            );
            ExitCode::SUCCESS
        }
        Ok(report) => {
            print!("{}", remote_gopls_server::status::render_table(&report));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("remote-gopls-server: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `remote-gopls-server reset WORKSPACE`.
fn reset_workspace(args: ResetArgs) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("remote-gopls-server: failed to start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(remote_gopls_server::status::reset(
        &args.server,
        args.token.as_deref(),
        &args.workspace,
    ));
    match result {
        Ok(true) => {
            println!(
                "workspace {:?} was degraded; gopls may start again",
                args.workspace
            );
            ExitCode::SUCCESS
        }
        Ok(false) => {
            println!("workspace {:?} was not degraded", args.workspace);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("remote-gopls-server: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot install the SIGTERM handler");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("received SIGTERM"),
        _ = tokio::signal::ctrl_c() => tracing::info!("received SIGINT"),
    }
}
