//! Entry point of `remote-gopls-server`: flags, logging, signals, run.

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

use clap::Parser;
use remote_gopls_server::config::{
    self, Args, CheckConfigArgs, Config, ConfigErrors, FileConfig, ResetArgs, StatusArgs,
    Subcommand,
};
use remote_gopls_server::Server;

/// Exit status for invalid configuration, distinct from runtime failures.
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let mut args = Args::parse();
    match args.command.take() {
        Some(Subcommand::Status(status)) => return print_status(status),
        Some(Subcommand::Reset(reset)) => return reset_workspace(reset),
        Some(Subcommand::CheckConfig(check)) => return check_config(&check),
        None => {}
    }

    // A failed log write (stderr closed by whoever read it) must not become
    // a panic: the subscriber reports its own write errors with eprintln!,
    // which panics on a broken pipe.
    tracing_subscriber::fmt()
        .log_internal_errors(false)
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

/// Runs `remote-gopls-server check-config`: the same validation the server
/// runs at startup, on the file alone (command-line flags do not apply, the
/// `REMOTE_GOPLS_SERVER_TOKENS` variable does). Exits with [`EXIT_CONFIG`]
/// when the file is invalid.
fn check_config(args: &CheckConfigArgs) -> ExitCode {
    let path = args.file.display();
    let text = match std::fs::read_to_string(&args.file) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("remote-gopls-server: cannot read config file {path}: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };

    let base = args.file.parent();
    let checked = if args.skip_path_checks {
        check_without_paths(&text, base)
    } else {
        Config::from_toml(&text, base)
    };
    let config = match checked {
        Ok(config) => config,
        Err(e) => {
            eprintln!("remote-gopls-server: {path}: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };

    // In --skip-path-checks mode the configuration contains stand-in paths
    // and a stand-in token, so the summary names neither.
    let mut workspaces: Vec<String> = config.workspaces.iter().map(|w| w.name.clone()).collect();
    if config.workspaces_dir.is_some() {
        workspaces.push("every subdirectory of workspaces_dir".to_owned());
    }
    if workspaces.is_empty() {
        workspaces.push(format!("{} (built in)", config::DEMO_WORKSPACE));
    }
    let tokens = if args.skip_path_checks {
        "paths and tokens_file not checked".to_owned()
    } else {
        format!("{} token(s)", config.tokens.len())
    };
    println!(
        "{path}: valid: gRPC on {}, HTTP on {}, workspaces: {}, memory_limit {} per gopls, {tokens}",
        config.listen,
        config.http_listen,
        workspaces.join(", "),
        config.memory.limit,
    );
    ExitCode::SUCCESS
}

/// Validates `text` with every path it names replaced by a stand-in that
/// exists: a directory for workspace paths and `workspaces_dir`, a file for
/// `gopls`, and a tokens file with one token for every workspace. Values of
/// the wrong type are left alone, so they are still reported.
fn check_without_paths(text: &str, base: Option<&Path>) -> Result<Config, ConfigErrors> {
    // Syntax and type errors are reported against the original text, so
    // that their line and column numbers point into the file as written.
    let Ok(mut table) = text.parse::<toml::Table>() else {
        return Config::from_toml(text, base);
    };
    if toml::from_str::<FileConfig>(text).is_err() {
        return Config::from_toml(text, base);
    }

    let stand_ins = create_stand_ins().map_err(|e| {
        ConfigErrors(vec![format!(
            "failed to create stand-in paths in the temporary directory: {e}"
        )])
    })?;
    let dir = stand_ins.path().join("dir").display().to_string();
    let gopls = stand_ins.path().join("gopls").display().to_string();
    let tokens = stand_ins.path().join("tokens").display().to_string();
    let replace = |table: &mut toml::Table, key: &str, with: &str| {
        if let Some(value @ toml::Value::String(_)) = table.get_mut(key) {
            *value = toml::Value::String(with.to_owned());
        }
    };

    replace(&mut table, "workspaces_dir", &dir);
    replace(&mut table, "gopls", &gopls);
    replace(&mut table, "tokens_file", &tokens);
    if let Some(toml::Value::Table(workspaces)) = table.get_mut("workspaces") {
        for (_, workspace) in workspaces.iter_mut() {
            if let toml::Value::Table(workspace) = workspace {
                replace(workspace, "path", &dir);
            }
        }
    }

    let rewritten = toml::to_string(&table)
        .map_err(|e| ConfigErrors(vec![format!("failed to rewrite the paths: {e}")]))?;
    Config::from_toml(&rewritten, base)
}

/// Creates the stand-in directory, gopls file and tokens file.
fn create_stand_ins() -> std::io::Result<tempfile::TempDir> {
    let stand_ins = tempfile::tempdir()?;
    std::fs::create_dir(stand_ins.path().join("dir"))?;
    std::fs::write(stand_ins.path().join("gopls"), "")?;
    // Tokens are at least 16 characters; `*` grants every workspace.
    std::fs::write(
        stand_ins.path().join("tokens"),
        "check-config-stand-in-token *\n",
    )?;
    Ok(stand_ins)
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
