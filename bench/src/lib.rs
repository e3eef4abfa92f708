//! remote-gopls-bench: measures the remote-gopls tunnel and the gopls it
//! runs side by side with the alternatives (gopls on stdio, the gopls
//! `-remote` forwarder), on generated Go modules, with real processes.
//!
//! `main.rs` parses the command line and calls [`run`]; the smoke test calls
//! the same function with [`Options::smoke`] set.

pub mod cgroup;
pub mod editor;
pub mod gocode;
pub mod procfs;
pub mod report;
pub mod rng;
pub mod sampler;
pub mod scenario;
pub mod stats;
pub mod target;
pub mod workspace;

use std::path::PathBuf;
use std::time::Duration;

use crate::report::Report;
use crate::workspace::Size;

/// Measurement to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    Latency,
    Throughput,
    Memory,
    Sharing,
    Overhead,
    /// Every scenario, one after another.
    All,
}

impl Scenario {
    pub const EACH: [Scenario; 5] = [
        Scenario::Latency,
        Scenario::Throughput,
        Scenario::Memory,
        Scenario::Sharing,
        Scenario::Overhead,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Latency => "latency",
            Scenario::Throughput => "throughput",
            Scenario::Memory => "memory",
            Scenario::Sharing => "sharing",
            Scenario::Overhead => "overhead",
            Scenario::All => "all",
        }
    }
}

/// Settings of one harness run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Workspace size for every scenario; `None` uses each scenario's own default.
    pub size: Option<Size>,
    /// Tiny sizes and few repetitions: checks that numbers come out, quickly.
    pub smoke: bool,
    pub seed: u64,
    /// Directory for the JSON and markdown results.
    pub out: PathBuf,
    /// Directory for generated workspaces, sockets and server data (removed afterwards).
    pub work_dir: PathBuf,
    pub gopls: PathBuf,
    /// Upper bound on the timed part of one scenario.
    pub time_limit: Duration,
    /// The command line, recorded in every report.
    pub command: String,
}

impl Options {
    /// Returns the workspace size of a scenario whose default is `default`.
    pub fn size_or(&self, default: Size) -> Size {
        match (self.smoke, self.size) {
            (true, _) => Size::SMOKE,
            (false, Some(size)) => size,
            (false, None) => default,
        }
    }
}

/// Runs `scenario` (or all of them) and writes one JSON and one markdown
/// file per scenario into `options.out`. Returns the reports.
pub async fn run(scenario: Scenario, options: &Options) -> anyhow::Result<Vec<Report>> {
    std::fs::create_dir_all(&options.out)?;
    std::fs::create_dir_all(&options.work_dir)?;
    cgroup::remove_stale();

    let scenarios: Vec<Scenario> = match scenario {
        Scenario::All => Scenario::EACH.to_vec(),
        one => vec![one],
    };
    let mut reports = Vec::new();
    for scenario in scenarios {
        eprintln!("== {} ==", scenario.name());
        let report = scenario::run(scenario, options).await?;
        let (json, markdown) = report.write(&options.out)?;
        eprintln!("wrote {} and {}", json.display(), markdown.display());
        println!("{}", report.markdown);
        reports.push(report);
    }
    Ok(reports)
}

/// Returns the message of a task that panicked, or why it was cancelled.
pub fn panic_message(error: tokio::task::JoinError) -> String {
    if !error.is_panic() {
        return error.to_string();
    }
    let payload = error.into_panic();
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "task panicked".to_owned())
}
