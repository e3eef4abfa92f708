//! Latency: the same scripted editor session against every transport, with
//! rounds interleaved across transports so background load on the machine
//! hits all of them alike.

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::json;

use super::{reason, Live, Workspace, REQUEST_TIMEOUT};
use crate::editor::Script;
use crate::procfs::Machine;
use crate::report::{num, table, Report};
use crate::stats::{ratio, Summary};
use crate::target::Transport;
use crate::workspace::Size;
use crate::Options;

/// Files open in the editor, and timed rounds over all their probes
/// (6 probes a file: 8 files x 6 x 6 rounds = 288 timed requests).
const FILES: usize = 8;
const ROUNDS: usize = 6;
const SMOKE_FILES: usize = 2;
const SMOKE_ROUNDS: usize = 2;

/// Per-transport results.
#[derive(Debug, serde::Serialize)]
pub struct TransportLatency {
    pub transport: Transport,
    pub available: bool,
    pub reason: Option<String>,
    pub time_to_diagnostics_ms: f64,
    pub methods: BTreeMap<String, Summary>,
    pub errors: usize,
    pub empty_results: usize,
}

pub async fn run(options: &Options) -> anyhow::Result<Report> {
    let machine = Machine::describe(&options.gopls);
    let workspace = Workspace::prepare(options, Size::MEDIUM)?;
    let (files, rounds) = if options.smoke {
        (SMOKE_FILES, SMOKE_ROUNDS)
    } else {
        (FILES, ROUNDS)
    };
    let script = Script::new(&workspace.module, files);
    let launch = workspace.tuned_launch(options);

    let (mut live, mut results) = start_all(&workspace, &script, &launch).await;
    let deadline = Instant::now() + options.time_limit;
    for round in 0..rounds {
        // Rotate the order so no transport always runs first after a pause.
        for i in 0..live.len() {
            let index = (i + round) % live.len();
            let entry = &mut live[index];
            let label = entry.transport.label();
            entry
                .script_round(&script, deadline)
                .await
                .map_err(|e| e.context(format!("{label}, round {round}")))?;
        }
    }

    for entry in &live {
        results.push(TransportLatency {
            transport: entry.transport,
            available: true,
            reason: None,
            time_to_diagnostics_ms: entry.time_to_diagnostics.as_secs_f64() * 1e3,
            methods: entry.samples.summaries(),
            errors: entry.samples.errors,
            empty_results: entry.samples.empty,
        });
    }
    results.sort_by_key(|r| Transport::ALL.iter().position(|t| *t == r.transport));
    let requests = live.first().map_or(0, |l| l.samples.count());
    for entry in live {
        entry.stop().await;
    }

    let mut notes = vec![format!(
        "{} files open, {} timed requests per transport after one untimed warm-up round; every gopls runs GOGC=20 GOMAXPROCS=2 GOFLAGS=-mod=readonly.",
        script.files.len(),
        requests
    )];
    if Instant::now() >= deadline {
        notes.push(format!(
            "stopped at the time limit of {:?}; later rounds are missing",
            options.time_limit
        ));
    }
    let body = render(&results);
    Ok(Report::finish(
        "latency",
        options,
        machine,
        Some(workspace.module.stats()),
        json!({ "transports": results }),
        notes,
        body,
    ))
}

/// Starts every transport; one that fails becomes a row saying why.
async fn start_all(
    workspace: &Workspace,
    script: &Script,
    launch: &crate::target::Launch,
) -> (Vec<Live>, Vec<TransportLatency>) {
    let mut live = Vec::new();
    let mut unavailable = Vec::new();
    for transport in Transport::ALL {
        eprintln!("starting {}", transport.label());
        match Live::start(transport, launch, workspace, script).await {
            Ok(entry) => live.push(entry),
            Err(error) => {
                eprintln!("{} not available: {error:#}", transport.label());
                unavailable.push(TransportLatency {
                    transport,
                    available: false,
                    reason: Some(reason(&error)),
                    time_to_diagnostics_ms: f64::NAN,
                    methods: BTreeMap::new(),
                    errors: 0,
                    empty_results: 0,
                });
            }
        }
    }
    (live, unavailable)
}

impl Live {
    async fn script_round(&mut self, script: &Script, deadline: Instant) -> anyhow::Result<()> {
        script
            .round(&self.editor, &mut self.samples, REQUEST_TIMEOUT, deadline)
            .await
    }
}

fn render(results: &[TransportLatency]) -> String {
    let base = results
        .iter()
        .find(|r| r.transport == Transport::Direct && r.available);
    let mut rows = Vec::new();
    for result in results {
        if !result.available {
            rows.push(vec![
                result.transport.label().to_owned(),
                "all".to_owned(),
                format!(
                    "transport not available: {}",
                    result.reason.as_deref().unwrap_or("")
                ),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
            ]);
            continue;
        }
        for (method, summary) in &result.methods {
            let base = base.and_then(|b| b.methods.get(method));
            let ratio_of =
                |f: fn(&Summary) -> f64| base.map_or(f64::NAN, |b| ratio(f(summary), f(b)));
            rows.push(vec![
                result.transport.label().to_owned(),
                method.trim_start_matches("textDocument/").to_owned(),
                summary.count.to_string(),
                num(summary.p50_ms, 2),
                num(summary.p95_ms, 2),
                num(summary.p99_ms, 2),
                num(ratio_of(|s| s.p50_ms), 3),
                num(ratio_of(|s| s.p95_ms), 3),
            ]);
        }
    }
    let mut out = table(
        &[
            "transport",
            "method",
            "n",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "p50 / stdio",
            "p95 / stdio",
        ],
        &rows,
    );
    out.push('\n');
    let diagnostics: Vec<Vec<String>> = results
        .iter()
        .filter(|r| r.available)
        .map(|r| {
            vec![
                r.transport.label().to_owned(),
                num(r.time_to_diagnostics_ms / 1e3, 2),
                r.errors.to_string(),
                r.empty_results.to_string(),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "transport",
            "first diagnostics s",
            "error responses",
            "empty results",
        ],
        &diagnostics,
    ));
    out
}
