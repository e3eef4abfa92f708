//! The five scenarios and what they share: a generated workspace and an
//! editor started against one transport.

pub mod latency;
pub mod memory;
pub mod overhead;
pub mod sharing;
pub mod throughput;

use std::time::{Duration, Instant};

use crate::editor::{Editor, Samples, Script};
use crate::report::Report;
use crate::target::{Backend, Launch, Transport};
use crate::workspace::{Checkouts, Module, Size};
use crate::{Options, Scenario};

/// How long the first load of a workspace may take before a run gives up
/// (gopls loads the large workspace in well under a minute on 2 cores).
pub const LOAD_TIMEOUT: Duration = Duration::from_secs(300);
/// How long one request may take. Cold `references` on a large workspace
/// type-checks every importer, which takes seconds, not minutes.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a language server gets to exit after `shutdown` and `exit`.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

pub async fn run(scenario: Scenario, options: &Options) -> anyhow::Result<Report> {
    match scenario {
        Scenario::Latency => latency::run(options).await,
        Scenario::Throughput => throughput::run(options).await,
        Scenario::Memory => memory::run(options).await,
        Scenario::Sharing => sharing::run(options).await,
        Scenario::Overhead => overhead::run(options).await,
        Scenario::All => anyhow::bail!("`all` is expanded by the caller"),
    }
}

/// A generated module written as an editor checkout and a server workspace.
pub struct Workspace {
    pub module: Module,
    pub checkouts: Checkouts,
    /// Directory for backends' sockets and data, inside the work directory.
    pub scratch: tempfile::TempDir,
}

impl Workspace {
    pub fn prepare(options: &Options, default: Size) -> anyhow::Result<Workspace> {
        let size = options.size_or(default);
        let module = Module::generate(size, options.seed);
        let stats = module.stats();
        eprintln!(
            "generating workspace {}: {} packages, {} Go files",
            size.name, stats.packages, stats.go_files
        );
        let checkouts = Checkouts::write(&module, &options.work_dir)?;
        let scratch = tempfile::Builder::new()
            .prefix("run-")
            .tempdir_in(&options.work_dir)?;
        Ok(Workspace {
            module,
            checkouts,
            scratch,
        })
    }

    pub fn tuned_launch(&self, options: &Options) -> Launch {
        Launch::tuned(&options.gopls, self.scratch.path())
    }
}

/// One transport with an editor connected, loaded and warmed up.
pub struct Live {
    pub transport: Transport,
    pub backend: Backend,
    pub editor: Editor,
    /// From the stdio program's start to the first file's diagnostics.
    pub time_to_diagnostics: Duration,
    pub samples: Samples,
}

impl Live {
    /// Starts `transport`, opens the script's files and runs one untimed
    /// round, so caches are warm before anything is timed.
    pub async fn start(
        transport: Transport,
        launch: &Launch,
        workspace: &Workspace,
        script: &Script,
    ) -> anyhow::Result<Live> {
        let backend = Backend::start(transport, launch, &workspace.checkouts.remote).await?;
        let editor = Editor::spawn(backend.stdio_command()?, &workspace.checkouts.local);
        let time_to_diagnostics = script
            .open(&editor, &workspace.module, LOAD_TIMEOUT)
            .await?;
        let mut warmup = Samples::default();
        let deadline = Instant::now() + LOAD_TIMEOUT;
        script
            .round(&editor, &mut warmup, REQUEST_TIMEOUT, deadline)
            .await?;
        Ok(Live {
            transport,
            backend,
            editor,
            time_to_diagnostics,
            samples: Samples::default(),
        })
    }

    pub async fn stop(self) {
        self.editor.shutdown(SHUTDOWN_TIMEOUT).await;
        self.backend.stop().await;
    }
}

/// Length of an error in a table cell.
const REASON_CHARS: usize = 200;

/// Formats an error chain on one line, shortened for a table cell.
pub fn reason(error: &anyhow::Error) -> String {
    let text = format!("{error:#}");
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut short: String = line.chars().take(REASON_CHARS).collect();
    if short.len() < line.len() {
        short.push_str("...");
    }
    short.replace('|', "/")
}
