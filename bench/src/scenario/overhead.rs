//! Server overhead: the remote-gopls server's own memory with no session,
//! with 50 idle sessions, and while one editor runs the latency script,
//! plus its CPU time per request.

use std::time::{Duration, Instant};

use serde_json::json;

use super::{Workspace, LOAD_TIMEOUT, REQUEST_TIMEOUT, SHUTDOWN_TIMEOUT};
use crate::editor::{file_uri, Editor, Samples, Script};
use crate::procfs::{self, mib, Machine, Rss};
use crate::report::{num, table, Report};
use crate::sampler::Sampler;
use crate::target::{Backend, Transport, WORKSPACE_NAME};
use crate::workspace::Size;
use crate::Options;

const IDLE_SESSIONS: usize = 50;
const SMOKE_IDLE_SESSIONS: usize = 5;
/// Latency script size: files open and timed rounds.
const FILES: usize = 8;
const ROUNDS: usize = 3;
/// Time for the server's memory to settle before a reading.
const SETTLE: Duration = Duration::from_secs(2);
const SMOKE_SETTLE: Duration = Duration::from_millis(300);

/// Server memory at one moment of the run.
#[derive(Debug, serde::Serialize)]
pub struct Reading {
    pub state: String,
    /// Server RSS (VmRSS); for the script, the highest sample.
    pub server_rss: u64,
    pub gopls_processes: usize,
}

pub async fn run(options: &Options) -> anyhow::Result<Report> {
    let machine = Machine::describe(&options.gopls);
    let workspace = Workspace::prepare(options, Size::MEDIUM)?;
    let (idle_count, settle, files, rounds) = if options.smoke {
        (SMOKE_IDLE_SESSIONS, SMOKE_SETTLE, 1, 1)
    } else {
        (IDLE_SESSIONS, SETTLE, FILES, ROUNDS)
    };
    let launch = workspace.tuned_launch(options);
    let backend = Backend::start(Transport::Grpc, &launch, &workspace.checkouts.remote).await?;
    let server = backend
        .server
        .as_ref()
        .expect("the gRPC backend runs a server");
    let server_pid = server.pid;
    let server_rss = || procfs::rss(server_pid).unwrap_or_default();
    let gopls_count = || backend.gopls_pids(None).len();
    let mut readings = Vec::new();

    tokio::time::sleep(settle).await;
    readings.push(Reading {
        state: "idle, no session (gopls not started yet)".to_owned(),
        server_rss: server_rss().current,
        gopls_processes: gopls_count(),
    });

    // Idle sessions: the gRPC handshake done and a gopls connection open,
    // but no LSP message, as an editor that connected and went quiet.
    let url = server.url();
    let local_root = file_uri(&workspace.checkouts.local);
    let opened = tokio::spawn(async move {
        let mut sessions = Vec::new();
        for _ in 0..idle_count {
            let session = remote_gopls_e2e::grpc::open(&url, None, WORKSPACE_NAME, &local_root)
                .await
                .map_err(|status| anyhow::anyhow!("session rejected: {status}"))?;
            sessions.push(session);
        }
        anyhow::Ok(sessions)
    })
    .await
    .map_err(|e| anyhow::anyhow!(crate::panic_message(e)))??;
    tokio::time::sleep(settle).await;
    readings.push(Reading {
        state: format!("{idle_count} idle sessions"),
        server_rss: server_rss().current,
        gopls_processes: gopls_count(),
    });
    drop(opened);
    tokio::time::sleep(settle).await;
    readings.push(Reading {
        state: "idle sessions closed".to_owned(),
        server_rss: server_rss().current,
        gopls_processes: gopls_count(),
    });

    // One editor through the remote-gopls client runs the latency script.
    let script = Script::new(&workspace.module, files);
    let editor = Editor::spawn(backend.stdio_command()?, &workspace.checkouts.local);
    script
        .open(&editor, &workspace.module, LOAD_TIMEOUT)
        .await?;
    let mut warmup = Samples::default();
    script
        .round(
            &editor,
            &mut warmup,
            REQUEST_TIMEOUT,
            Instant::now() + LOAD_TIMEOUT,
        )
        .await?;
    let sampler = Sampler::start(move || procfs::rss(server_pid).map(|r| r.current));
    let cpu_before = procfs::cpu_time(server_pid).unwrap_or_default();
    let client_cpu_before = editor.pid.and_then(procfs::cpu_time).unwrap_or_default();
    let mut samples = Samples::default();
    let deadline = Instant::now() + options.time_limit;
    for _ in 0..rounds {
        script
            .round(&editor, &mut samples, REQUEST_TIMEOUT, deadline)
            .await?;
    }
    let server_cpu = procfs::cpu_time(server_pid)
        .unwrap_or_default()
        .saturating_sub(cpu_before);
    let client_cpu = editor
        .pid
        .and_then(procfs::cpu_time)
        .unwrap_or_default()
        .saturating_sub(client_cpu_before);
    let peak_during_script = sampler.stop();
    let client_rss: Rss = editor.pid.and_then(procfs::rss).unwrap_or_default();
    readings.push(Reading {
        state: format!(
            "one editor running the latency script ({} requests)",
            samples.count()
        ),
        server_rss: peak_during_script,
        gopls_processes: gopls_count(),
    });
    let requests = samples.count().max(1);
    editor.shutdown(SHUTDOWN_TIMEOUT).await;

    let server_cpu_per_request_ms = server_cpu.as_secs_f64() * 1e3 / requests as f64;
    let client_cpu_per_request_ms = client_cpu.as_secs_f64() * 1e3 / requests as f64;
    let mut rows: Vec<Vec<String>> = readings
        .iter()
        .map(|r| {
            vec![
                r.state.clone(),
                num(mib(r.server_rss), 1),
                r.gopls_processes.to_string(),
            ]
        })
        .collect();
    rows.push(vec![
        "remote-gopls client during the script (peak RSS)".to_owned(),
        num(mib(client_rss.peak), 1),
        String::new(),
    ]);
    let mut body = table(&["state", "RSS MiB", "gopls processes"], &rows);
    body.push_str(&format!(
        "\nCPU time per request during the script: server {server_cpu_per_request_ms:.3} ms, client {client_cpu_per_request_ms:.3} ms.\n"
    ));
    let notes = vec![
        "Idle sessions completed the gRPC handshake and hold a gopls connection without sending initialize; the server's RSS is what the table reports, not gopls's.".to_owned(),
        "Target: server idle RSS at most 30 MB.".to_owned(),
    ];
    // The server (inside `backend`) stays up until every reading is taken.
    backend.stop().await;
    Ok(Report::finish(
        "overhead",
        options,
        machine,
        Some(workspace.module.stats()),
        json!({
            "readings": readings,
            "client_peak_rss": client_rss.peak,
            "server_cpu_ms_per_request": server_cpu_per_request_ms,
            "client_cpu_ms_per_request": client_cpu_per_request_ms,
        }),
        notes,
        body,
    ))
}
