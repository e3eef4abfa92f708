//! Entry point of `remote-gopls-bench`: parses the command line, makes sure
//! the measured binaries are current, and runs the scenarios.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use remote_gopls_bench::workspace::{Size, DEFAULT_SEED};
use remote_gopls_bench::{Options, Scenario};

/// Measures remote-gopls against gopls on stdio and the gopls forwarder.
#[derive(Debug, Parser)]
#[command(name = "remote-gopls-bench", version)]
struct Args {
    /// Scenario to run.
    #[arg(value_enum)]
    scenario: Scenario,

    /// Workspace size for every scenario: smoke, small, medium or large
    /// [default: medium, large for memory, small for throughput].
    #[arg(long, value_parser = parse_size)]
    size: Option<Size>,

    /// Tiny workspaces and few repetitions; checks that every figure is produced.
    #[arg(long)]
    smoke: bool,

    /// Seed of the workspace generator.
    #[arg(long, default_value_t = DEFAULT_SEED)]
    seed: u64,

    /// Directory for the JSON and markdown results.
    #[arg(long, default_value = "target/bench-results")]
    out: PathBuf,

    /// Directory for generated workspaces and server data [default: the system temporary directory].
    #[arg(long)]
    work_dir: Option<PathBuf>,

    /// gopls binary [default: REMOTE_GOPLS_TEST_GOPLS, else gopls on PATH, else $(go env GOPATH)/bin/gopls].
    #[arg(long)]
    gopls: Option<PathBuf>,

    /// Upper bound on the timed part of each scenario, in seconds.
    #[arg(long, default_value_t = 600)]
    time_limit: u64,

    /// Do not run `cargo build` for the server and client binaries first.
    #[arg(long)]
    no_build: bool,
}

fn parse_size(name: &str) -> Result<Size, String> {
    Size::by_name(name)
        .ok_or_else(|| format!("unknown size {name:?}: expected smoke, small, medium or large"))
}

fn main() -> ExitCode {
    let args = Args::parse();

    // The e2e harness resolves gopls through this variable; set it before
    // any thread starts.
    if let Some(gopls) = &args.gopls {
        std::env::set_var("REMOTE_GOPLS_TEST_GOPLS", gopls);
    }
    if !args.no_build {
        if let Err(error) = build_binaries() {
            eprintln!("remote-gopls-bench: {error:#}");
            return ExitCode::FAILURE;
        }
    }

    let options = Options {
        size: args.size,
        smoke: args.smoke,
        seed: args.seed,
        out: args.out,
        work_dir: args.work_dir.unwrap_or_else(std::env::temp_dir),
        gopls: remote_gopls_e2e::gopls_binary(),
        time_limit: Duration::from_secs(args.time_limit),
        command: command_line(),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("remote-gopls-bench: failed to start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        // Ctrl-C drops the run, which kills every process it started and
        // removes its cgroups and directories.
        tokio::select! {
            result = remote_gopls_bench::run(args.scenario, &options) => result.map(|_| ()),
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(5));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("remote-gopls-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Builds the server and client next to this binary, so a run never
/// measures stale binaries. Runs only under `cargo run` (where `CARGO` is set).
fn build_binaries() -> anyhow::Result<()> {
    let Some(cargo) = std::env::var_os("CARGO") else {
        return Ok(());
    };
    let mut command = std::process::Command::new(cargo);
    command.args([
        "build",
        "-p",
        "remote-gopls-server",
        "-p",
        "remote-gopls",
        "--bins",
    ]);
    if !cfg!(debug_assertions) {
        command.arg("--release");
    }
    let status = command.status()?;
    anyhow::ensure!(
        status.success(),
        "cargo build of the server and client failed: {status}"
    );
    Ok(())
}

fn command_line() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    format!(
        "cargo run --release -p remote-gopls-bench -- {}",
        args.join(" ")
    )
}
