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

    match runtime.block_on(bridge::serve(options)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("{}: {error:#}", cli::PROGRAM);
            ExitCode::FAILURE
        }
    }
}
