//! Entry point of `remote-gopls`: parses a gopls-style command line and runs the command.

use std::io::Write;
use std::process::ExitCode;

use remote_gopls::cli::{self, Command, ServeOptions};
use remote_gopls::{bridge, buildinfo, version};

fn main() -> ExitCode {
    buildinfo::keep_linked();

    let command = match cli::parse_args(std::env::args_os().skip(1)) {
        Ok(command) => command,
        Err(error) => {
            eprint!("{}", cli::usage_error_text(&error));
            return ExitCode::from(cli::USAGE_ERROR_EXIT_CODE);
        }
    };

    match command {
        Command::Help => print_help(),
        Command::Version { json, verbose } => print_version(json, verbose),
        Command::Serve(options) => serve(options),
    }
}

fn print_help() -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(cli::help_text().as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{}: failed to write help: {error}", cli::PROGRAM);
            ExitCode::FAILURE
        }
    }
}

fn print_version(json: bool, verbose: bool) -> ExitCode {
    match version::write_version(&mut std::io::stdout().lock(), json, verbose) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{}: {error}", cli::PROGRAM);
            ExitCode::FAILURE
        }
    }
}

/// Runs the bridge on a Tokio runtime, which only this command needs, so `version` and
/// `help` stay instant.
fn serve(options: ServeOptions) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!(
                "{}: failed to start the Tokio runtime: {error}",
                cli::PROGRAM
            );
            return ExitCode::FAILURE;
        }
    };

    init_logging(&options);
    let mut bridge_options = bridge::BridgeOptions::from_env();
    bridge_options.rpc_trace = options.rpc_trace;
    runtime.block_on(bridge::serve_stdio(bridge_options))
}

/// Logs to the `-logfile` file when given, else to stderr (which editors
/// show in their language-server output panel). `REMOTE_GOPLS_LOG` sets
/// the filter; the default is `info`.
fn init_logging(options: &ServeOptions) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("REMOTE_GOPLS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Editors may close the client's stderr; a failed log write must not panic.
    let builder = tracing_subscriber::fmt()
        .log_internal_errors(false)
        .with_env_filter(filter)
        .with_ansi(false);
    let file = options.logfile.as_ref().map(|path| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| (path.clone(), e))
    });
    match file {
        Some(Ok(file)) => builder.with_writer(std::sync::Mutex::new(file)).init(),
        Some(Err((path, error))) => {
            builder.with_writer(std::io::stderr).init();
            tracing::warn!(path = %path.display(), %error, "cannot open the log file, logging to stderr");
        }
        None => builder.with_writer(std::io::stderr).init(),
    }
}
