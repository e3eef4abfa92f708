//! Throughput: large messages through each transport, end to end.
//!
//! What is timed is one echo round trip: a `workspace/executeCommand`
//! request of exactly N bytes whose command name is the payload. gopls
//! (v0.23.0, `server.ExecuteCommand`) rejects the unknown command with an
//! error message that repeats the name, so about N bytes travel to gopls and
//! back through every hop of the transport, while gopls only decodes and
//! encodes JSON. The method has to be a real LSP method: the gopls
//! forwarder replies to unknown methods itself instead of forwarding them.
//! The harness writes and reads raw frames and does not parse the echo, so
//! its own cost is a copy and a substring search.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use remote_gopls_proto::codec::LspCodec;
use remote_gopls_proto::jsonrpc::{Envelope, Id};
use serde_json::{json, Value};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio_util::codec::{FramedRead, FramedWrite};

use super::{reason, Workspace, LOAD_TIMEOUT, REQUEST_TIMEOUT};
use crate::editor::file_uri;
use crate::procfs::Machine;
use crate::report::{num, table, Report};
use crate::stats::{ratio, Summary};
use crate::target::{Backend, Transport};
use crate::workspace::Size;
use crate::Options;

/// Message sizes and round trips per size (full run, smoke run).
const SIZES: [(&str, usize, usize, usize); 3] = [
    ("1 KiB", 1024, 200, 20),
    ("1 MiB", 1024 * 1024, 20, 3),
    ("16 MiB", 16 * 1024 * 1024, 5, 1),
];
/// Frames larger than this are never parsed by the harness.
const PARSE_LIMIT: usize = 64 * 1024;

/// Echo results of one transport and size.
#[derive(Debug, serde::Serialize)]
pub struct Measurement {
    pub transport: Transport,
    pub size: String,
    pub bytes: usize,
    pub round_trips: usize,
    pub latency: Summary,
    /// 2 x bytes x round trips / total time, in MB/s (10^6 bytes).
    pub mb_per_s: f64,
    /// 2 x bytes / p50 round trip, in MB/s: less sensitive to stalls
    /// caused by other load on the machine.
    pub p50_mb_per_s: f64,
    /// 2 x bytes / (p50 of this transport - p50 of gopls stdio), in MB/s:
    /// the rate of the hops this transport adds. NaN for stdio itself.
    pub added_hops_mb_per_s: f64,
}

pub async fn run(options: &Options) -> anyhow::Result<Report> {
    let machine = Machine::describe(&options.gopls);
    let workspace = Workspace::prepare(options, Size::SMALL)?;
    let launch = workspace.tuned_launch(options);

    let mut notes = vec![
        "One round trip = an N-byte workspace/executeCommand request whose command name is the payload, and gopls's error reply repeating the name; MB/s counts 2 x N per round trip (10^6 bytes). The workspace is loaded before timing; one untimed echo per size warms buffers.".to_owned(),
    ];
    let mut pumps = Vec::new();
    for transport in Transport::ALL {
        eprintln!("starting {}", transport.label());
        match Pump::start(transport, &launch, &workspace).await {
            Ok(pump) => pumps.push(pump),
            Err(error) => {
                eprintln!("{} not available: {error:#}", transport.label());
                notes.push(format!(
                    "{}: transport not available: {}",
                    transport.label(),
                    reason(&error)
                ));
            }
        }
    }

    let deadline = Instant::now() + options.time_limit;
    let mut samples: BTreeMap<(usize, usize), Vec<Duration>> = BTreeMap::new();
    let mut elapsed: BTreeMap<(usize, usize), Duration> = BTreeMap::new();
    let mut sequence = 0u64;
    for (size_index, &(label, bytes, full, smoke)) in SIZES.iter().enumerate() {
        let round_trips = if options.smoke { smoke } else { full };
        for pump in &mut pumps {
            sequence += 1;
            pump.echo(bytes, sequence).await?;
        }
        // Interleave transports round trip by round trip, so drifting load
        // on the machine hits all of them alike.
        for trip in 0..round_trips {
            if Instant::now() >= deadline {
                notes.push(format!(
                    "{label}: stopped after {trip} round trips at the time limit"
                ));
                break;
            }
            for (pump_index, pump) in pumps.iter_mut().enumerate() {
                sequence += 1;
                let took = pump
                    .echo(bytes, sequence)
                    .await
                    .with_context(|| format!("{} echo of {label}", pump.transport.label()))?;
                samples
                    .entry((pump_index, size_index))
                    .or_default()
                    .push(took);
                *elapsed.entry((pump_index, size_index)).or_default() += took;
            }
        }
    }

    let mut results = Vec::new();
    for (size_index, &(label, bytes, _, _)) in SIZES.iter().enumerate() {
        let direct_p50 = pumps
            .iter()
            .position(|p| p.transport == Transport::Direct)
            .and_then(|i| samples.get(&(i, size_index)))
            .map(|s| Summary::of(s).p50_ms);
        for (pump_index, pump) in pumps.iter().enumerate() {
            let Some(trips) = samples.get(&(pump_index, size_index)) else {
                continue;
            };
            let latency = Summary::of(trips);
            let total = elapsed[&(pump_index, size_index)].as_secs_f64();
            let moved = 2.0 * bytes as f64;
            let added_ms = direct_p50.map_or(f64::NAN, |d| latency.p50_ms - d);
            // Below 1 MiB the difference of two sub-millisecond medians is noise.
            let added_hops_mb_per_s =
                if pump.transport == Transport::Direct || added_ms <= 0.0 || bytes < 1024 * 1024 {
                    f64::NAN
                } else {
                    moved / (added_ms / 1e3) / 1e6
                };
            results.push(Measurement {
                transport: pump.transport,
                size: label.to_owned(),
                bytes,
                round_trips: trips.len(),
                mb_per_s: moved * trips.len() as f64 / total / 1e6,
                p50_mb_per_s: moved / (latency.p50_ms / 1e3) / 1e6,
                added_hops_mb_per_s,
                latency,
            });
        }
    }
    for pump in pumps {
        pump.stop().await;
    }

    let body = render(&results);
    Ok(Report::finish(
        "throughput",
        options,
        machine,
        Some(workspace.module.stats()),
        json!({ "measurements": results }),
        notes,
        body,
    ))
}

fn render(results: &[Measurement]) -> String {
    let direct = |size: &str| {
        results
            .iter()
            .find(|m| m.transport == Transport::Direct && m.size == size)
    };
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|m| {
            let base = direct(&m.size);
            vec![
                m.transport.label().to_owned(),
                m.size.clone(),
                m.round_trips.to_string(),
                num(m.latency.p50_ms, 2),
                num(m.latency.p95_ms, 2),
                num(m.mb_per_s, 1),
                num(m.p50_mb_per_s, 1),
                num(
                    base.map_or(f64::NAN, |b| ratio(m.p50_mb_per_s, b.p50_mb_per_s)),
                    2,
                ),
                num(m.added_hops_mb_per_s, 0),
            ]
        })
        .collect();
    table(
        &[
            "transport",
            "message",
            "round trips",
            "p50 ms",
            "p95 ms",
            "MB/s (mean)",
            "MB/s (p50)",
            "p50 MB/s vs stdio",
            "MB/s of added hops",
        ],
        &rows,
    )
}

/// A raw LSP connection to one transport's stdio program.
struct Pump {
    transport: Transport,
    backend: Backend,
    child: Child,
    writer: FramedWrite<ChildStdin, LspCodec>,
    reader: FramedRead<ChildStdout, LspCodec>,
}

impl Pump {
    /// Starts the transport, initializes, and waits until gopls has
    /// diagnosed one file (its workspace load is over).
    async fn start(
        transport: Transport,
        launch: &crate::target::Launch,
        workspace: &Workspace,
    ) -> anyhow::Result<Pump> {
        let backend = Backend::start(transport, launch, &workspace.checkouts.remote).await?;
        let mut command = backend.stdio_command()?;
        let mut child = command
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("failed to start the stdio program")?;
        let writer = FramedWrite::new(
            child
                .stdin
                .take()
                .context("stdin of the stdio program is missing")?,
            LspCodec::default(),
        );
        let reader = FramedRead::new(
            child
                .stdout
                .take()
                .context("stdout of the stdio program is missing")?,
            LspCodec::default(),
        );
        let mut pump = Pump {
            transport,
            backend,
            child,
            writer,
            reader,
        };

        let root = &workspace.checkouts.local;
        let root_uri = file_uri(root);
        let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "processId": std::process::id(),
            "rootUri": root_uri,
            "workspaceFolders": [{"uri": root_uri, "name": "gen"}],
            "capabilities": {"workspace": {"configuration": true}}
        }});
        pump.send_json(&initialize).await?;
        let response = pump
            .wait_for(LOAD_TIMEOUT, |envelope, body| {
                envelope.id == Some(Id::Number(1)) && envelope.method.is_none() && !body.is_empty()
            })
            .await?;
        let response: Value = serde_json::from_slice(&response)?;
        if let Some(error) = response.get("error") {
            bail!("initialize failed: {error}");
        }
        pump.send_json(&json!({"jsonrpc": "2.0", "method": "initialized", "params": {}}))
            .await?;

        let file = workspace
            .module
            .spread_files(1)
            .pop()
            .context("the workspace has no file to open")?;
        let uri = file_uri(&root.join(&file));
        let text = workspace.module.text(&file).unwrap_or_default();
        pump.send_json(
            &json!({"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {
                "textDocument": {"uri": uri, "languageId": "go", "version": 1, "text": text}
            }}),
        )
        .await?;
        let needle = format!("\"uri\":\"{uri}\"");
        pump.wait_for(LOAD_TIMEOUT, |envelope, body| {
            envelope.method() == "textDocument/publishDiagnostics"
                && memchr::memmem::find(body, needle.as_bytes()).is_some()
        })
        .await?;
        Ok(pump)
    }

    async fn send_json(&mut self, message: &Value) -> anyhow::Result<()> {
        self.writer
            .send(Bytes::from(serde_json::to_vec(message)?))
            .await
            .context("failed to write to the stdio program")
    }

    /// Reads frames until `matches` accepts one, replying to server requests
    /// on the way. Returns the matching frame.
    async fn wait_for(
        &mut self,
        timeout: Duration,
        matches: impl Fn(&Envelope, &[u8]) -> bool,
    ) -> anyhow::Result<Bytes> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let frame = self.next_frame(deadline).await?;
            let Ok(envelope) = Envelope::parse(&frame) else {
                continue;
            };
            if matches(&envelope, &frame) {
                return Ok(frame);
            }
            self.answer(&envelope, &frame).await?;
        }
    }

    async fn next_frame(&mut self, deadline: tokio::time::Instant) -> anyhow::Result<Bytes> {
        match tokio::time::timeout_at(deadline, self.reader.next()).await {
            Err(_) => bail!(
                "timed out waiting for a message from {}",
                self.transport.label()
            ),
            Ok(None) => bail!(
                "{} closed its stdout ({})",
                self.transport.label(),
                self.child
                    .try_wait()
                    .ok()
                    .flatten()
                    .map_or("still running".to_owned(), |s| s.to_string())
            ),
            Ok(Some(frame)) => frame.map_err(|e| anyhow!("invalid frame: {e}")),
        }
    }

    /// Replies to a request from gopls the way a minimal editor does.
    async fn answer(&mut self, envelope: &Envelope, frame: &[u8]) -> anyhow::Result<()> {
        if !envelope.is_request() {
            return Ok(());
        }
        let result = if envelope.method() == "workspace/configuration" {
            let message: Value = serde_json::from_slice(frame)?;
            let items = message["params"]["items"].as_array().map_or(0, Vec::len);
            Value::Array(vec![json!({}); items])
        } else {
            Value::Null
        };
        let reply = json!({"jsonrpc": "2.0", "id": envelope.id, "result": result});
        self.send_json(&reply).await
    }

    /// One echo round trip of a `bytes`-byte request; returns its duration.
    async fn echo(&mut self, bytes: usize, sequence: u64) -> anyhow::Result<Duration> {
        // Request ids of the echoes start above the initialize request's id 1.
        let id = sequence + 1;
        let marker = format!("echo-{sequence}-");
        let prefix = format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"workspace/executeCommand\",\"params\":{{\"command\":\"{marker}"
        );
        let suffix = "\",\"arguments\":[]}}";
        let fill = bytes
            .checked_sub(prefix.len() + suffix.len())
            .context("message size below the envelope size")?;
        let mut body = Vec::with_capacity(bytes);
        body.extend_from_slice(prefix.as_bytes());
        body.resize(prefix.len() + fill, b'x');
        body.extend_from_slice(suffix.as_bytes());
        let id_at_end = format!("\"id\":{id}}}");
        let id_at_start = format!("\"id\":{id},");

        let start = Instant::now();
        self.writer
            .send(Bytes::from(body))
            .await
            .context("failed to write the echo request")?;
        let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT;
        loop {
            let frame = self.next_frame(deadline).await?;
            // The reply repeats the payload and carries our id, at the end
            // as gopls writes it or at the start as other encoders may.
            let head = &frame[..frame.len().min(64)];
            let is_reply = frame.ends_with(id_at_end.as_bytes())
                || memchr::memmem::find(head, id_at_start.as_bytes()).is_some();
            if is_reply && frame.len() >= fill {
                anyhow::ensure!(
                    memchr::memmem::find(&frame, marker.as_bytes()).is_some(),
                    "reply to echo {sequence} does not repeat the payload"
                );
                return Ok(start.elapsed());
            }
            if frame.len() <= PARSE_LIMIT {
                if let Ok(envelope) = Envelope::parse(&frame) {
                    self.answer(&envelope, &frame).await?;
                }
            }
        }
    }

    async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(super::SHUTDOWN_TIMEOUT, self.child.wait()).await;
        self.backend.stop().await;
    }
}
