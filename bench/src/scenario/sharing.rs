//! Sharing: K editor sessions on one workspace, either through one
//! remote-gopls server and its one shared gopls, or as K separate gopls
//! processes on stdio, and the memory each arrangement holds.

use std::time::{Duration, Instant};

use serde_json::json;

use super::{Workspace, LOAD_TIMEOUT, REQUEST_TIMEOUT, SHUTDOWN_TIMEOUT};
use crate::editor::{Editor, Samples, Script};
use crate::procfs::{self, mib, Machine};
use crate::report::{num, table, Report};
use crate::stats::ratio;
use crate::target::{Backend, Launch, Transport};
use crate::workspace::Size;
use crate::Options;

const SESSIONS: [usize; 4] = [1, 2, 4, 8];
const SMOKE_SESSIONS: [usize; 2] = [1, 2];
/// Files each session opens; sessions open different files, as different
/// developers on one repository would.
const FILES_PER_SESSION: usize = 2;
/// Time for memory to settle after the last session's script.
const SETTLE: Duration = Duration::from_secs(3);
const SMOKE_SETTLE: Duration = Duration::from_millis(500);

/// Memory of one arrangement with K sessions, summed over its processes.
#[derive(Debug, serde::Serialize)]
pub struct Arrangement {
    pub sessions: usize,
    pub shared: bool,
    pub gopls_processes: usize,
    /// Sum of the gopls processes' RSS after the sessions settled.
    pub gopls_rss: u64,
    /// Sum of their peak RSS (VmHWM).
    pub gopls_peak_rss: u64,
    /// Server and client processes (shared arrangement only).
    pub bridge_rss: u64,
    pub total_rss: u64,
}

pub async fn run(options: &Options) -> anyhow::Result<Report> {
    let machine = Machine::describe(&options.gopls);
    let workspace = Workspace::prepare(options, Size::MEDIUM)?;
    let (counts, settle): (&[usize], Duration) = if options.smoke {
        (&SMOKE_SESSIONS, SMOKE_SETTLE)
    } else {
        (&SESSIONS, SETTLE)
    };
    let max_sessions = counts.iter().copied().max().unwrap_or(1);
    let files = workspace
        .module
        .spread_files(FILES_PER_SESSION * max_sessions);
    let scripts: Vec<Script> = files
        .chunks(FILES_PER_SESSION)
        .map(|chunk| Script::with_files(&workspace.module, chunk.to_vec()))
        .collect();

    let mut results = Vec::new();
    for &sessions in counts {
        for shared in [true, false] {
            eprintln!(
                "sharing: {sessions} sessions, {}",
                if shared {
                    "one shared gopls"
                } else {
                    "separate gopls"
                }
            );
            results.push(measure(&workspace, options, &scripts[..sessions], shared, settle).await?);
        }
    }

    let notes = vec![format!(
        "Each session initializes, opens {FILES_PER_SESSION} files of its own, waits for diagnostics and runs one round of the latency script; sessions start one after another. RSS includes shared pages (the gopls binary), so sums overstate separate processes slightly. Every gopls runs the tuned environment with an empty gopls cache per arrangement."
    )];
    let body = render(&results);
    Ok(Report::finish(
        "sharing",
        options,
        machine,
        Some(workspace.module.stats()),
        json!({ "arrangements": results }),
        notes,
        body,
    ))
}

async fn measure(
    workspace: &Workspace,
    options: &Options,
    scripts: &[Script],
    shared: bool,
    settle: Duration,
) -> anyhow::Result<Arrangement> {
    let scratch = tempfile::Builder::new()
        .prefix("sharing-")
        .tempdir_in(workspace.scratch.path())?;
    let launch = Launch::tuned(&options.gopls, scratch.path());
    let transport = if shared {
        Transport::Grpc
    } else {
        Transport::Direct
    };
    let backend = Backend::start(transport, &launch, &workspace.checkouts.remote).await?;

    let mut editors = Vec::new();
    for script in scripts {
        let editor = Editor::spawn(backend.stdio_command()?, &workspace.checkouts.local);
        script
            .open(&editor, &workspace.module, LOAD_TIMEOUT)
            .await?;
        let mut samples = Samples::default();
        let deadline = Instant::now() + LOAD_TIMEOUT;
        script
            .round(&editor, &mut samples, REQUEST_TIMEOUT, deadline)
            .await?;
        editors.push(editor);
    }
    tokio::time::sleep(settle).await;

    let mut gopls = Vec::new();
    let mut bridges = Vec::new();
    for editor in &editors {
        gopls.extend(backend.gopls_pids(editor.pid));
        bridges.extend(backend.bridge_pids(editor.pid));
    }
    gopls.sort_unstable();
    gopls.dedup();
    bridges.sort_unstable();
    bridges.dedup();
    let sum = |pids: &[u32], peak: bool| -> u64 {
        pids.iter()
            .filter_map(|&pid| procfs::rss(pid))
            .map(|r| if peak { r.peak } else { r.current })
            .sum()
    };
    let gopls_rss = sum(&gopls, false);
    let bridge_rss = sum(&bridges, false);
    let arrangement = Arrangement {
        sessions: scripts.len(),
        shared,
        gopls_processes: gopls.len(),
        gopls_rss,
        gopls_peak_rss: sum(&gopls, true),
        bridge_rss,
        total_rss: gopls_rss + bridge_rss,
    };
    for editor in editors {
        editor.shutdown(SHUTDOWN_TIMEOUT).await;
    }
    backend.stop().await;
    Ok(arrangement)
}

fn render(results: &[Arrangement]) -> String {
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|a| {
            let separate = results
                .iter()
                .find(|b| b.sessions == a.sessions && !b.shared);
            vec![
                a.sessions.to_string(),
                if a.shared {
                    "one shared gopls (remote-gopls)".to_owned()
                } else {
                    "separate gopls (stdio)".to_owned()
                },
                a.gopls_processes.to_string(),
                num(mib(a.gopls_rss), 0),
                num(mib(a.gopls_peak_rss), 0),
                num(mib(a.bridge_rss), 0),
                num(mib(a.total_rss), 0),
                num(
                    separate.map_or(f64::NAN, |b| ratio(a.total_rss as f64, b.total_rss as f64)),
                    2,
                ),
            ]
        })
        .collect();
    table(
        &[
            "sessions",
            "arrangement",
            "gopls processes",
            "gopls RSS MiB",
            "gopls peak RSS MiB",
            "server + clients RSS MiB",
            "total RSS MiB",
            "total / separate",
        ],
        &rows,
    )
}
