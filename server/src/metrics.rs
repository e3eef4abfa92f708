//! Prometheus metrics of the server, exposed by `GET /metrics` in the
//! Prometheus text format (version 0.0.4).
//!
//! Every name starts with `remote_gopls_`. Label values come from a closed
//! set (transport, direction, exit reason), except the LSP method of the
//! request latency histogram, which is capped at [`MAX_METHOD_LABELS`]
//! distinct values so a client cannot grow the registry without bound.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Prefix of every metric name.
pub const PREFIX: &str = "remote_gopls";
/// Distinct `method` label values kept; later methods are counted as `other`.
pub const MAX_METHOD_LABELS: usize = 128;
/// Maximum length of a method name used as a label value. Longer names
/// count as `other`.
const MAX_METHOD_LEN: usize = 64;
/// Label value for methods over the caps above or with unusual characters.
pub const OTHER_METHOD: &str = "other";

/// The transport that carries a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Grpc,
    WebSocket,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Grpc => "grpc",
            Transport::WebSocket => "websocket",
        }
    }
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::EditorToGopls => "editor_to_gopls",
            Direction::GoplsToEditor => "gopls_to_editor",
        }
    }
}

impl ExitReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ExitReason::Stopped => "stopped",
            ExitReason::Exited => "exited",
            ExitReason::Failed => "failed",
            ExitReason::Signal => "signal",
            ExitReason::StartFailed => "start_failed",
        }
    }
}

/// Label values are the `as_str` names, which the README documents.
macro_rules! label_value {
    ($($kind:ty),*) => {$(
        impl EncodeLabelValue for $kind {
            fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
                std::fmt::Write::write_str(encoder, self.as_str())
            }
        }
    )*};
}
label_value!(Transport, Direction, ExitReason);

/// Direction of an LSP message through a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    EditorToGopls,
    GoplsToEditor,
}

/// Reasons a gopls process ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExitReason {
    /// The server stopped it (shutdown, or a later restart or eviction).
    Stopped,
    /// It exited on its own with status 0.
    Exited,
    /// It exited on its own with a non-zero status.
    Failed,
    /// A signal the server did not send ended it, such as the kernel's OOM killer.
    Signal,
    /// It exited or timed out before its socket accepted connections.
    StartFailed,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TransportLabels {
    transport: Transport,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct MessageLabels {
    transport: Transport,
    direction: Direction,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct MethodLabels {
    method: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ExitLabels {
    reason: ExitReason,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct WorkspaceLabels {
    workspace: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RestartLabels {
    workspace: String,
    reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct EvictionLabels {
    reason: String,
}

/// The controller's per-workspace figures, registered as a group.
#[derive(Debug, Default)]
struct WorkspaceFamilies {
    working_set: Family<WorkspaceLabels, Gauge>,
    limit: Family<WorkspaceLabels, Gauge>,
    oom_kills: Family<WorkspaceLabels, Counter>,
    up: Family<WorkspaceLabels, Gauge>,
    degraded: Family<WorkspaceLabels, Gauge>,
    warnings: Family<WorkspaceLabels, Counter>,
    restarts: Family<RestartLabels, Counter>,
    evictions: Family<EvictionLabels, Counter>,
}

fn latency_histogram() -> Histogram {
    // 1 ms to about 65 s: completion answers in milliseconds, a first
    // request may wait for the whole workspace load.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// The server's metrics and the registry that encodes them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    sessions_open: Family<TransportLabels, Gauge>,
    messages: Family<MessageLabels, Counter>,
    message_bytes: Family<MessageLabels, Counter>,
    request_duration: Family<MethodLabels, Histogram, fn() -> Histogram>,
    gopls_running: Gauge,
    gopls_starts: Counter,
    gopls_exits: Family<ExitLabels, Counter>,
    workspaces: WorkspaceFamilies,
    /// Method names already used as label values.
    methods: Mutex<HashSet<String>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix(PREFIX);
        let sessions_open = Family::<TransportLabels, Gauge>::default();
        registry.register(
            "sessions_open",
            "Editor sessions currently open, by transport",
            sessions_open.clone(),
        );
        let messages = Family::<MessageLabels, Counter>::default();
        registry.register(
            "messages",
            "LSP messages carried, by transport and direction",
            messages.clone(),
        );
        let message_bytes = Family::<MessageLabels, Counter>::default();
        registry.register(
            "message_bytes",
            "Bytes of LSP message bodies on the editor side, without transport framing, by transport and direction",
            message_bytes.clone(),
        );
        let request_duration =
            Family::<MethodLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        registry.register(
            "request_duration_seconds",
            "Time from an editor request reaching the server to gopls's response leaving it, by LSP method",
            request_duration.clone(),
        );
        let gopls_running = Gauge::default();
        registry.register(
            "gopls_instances_running",
            "gopls processes currently running",
            gopls_running.clone(),
        );
        let gopls_starts = Counter::default();
        registry.register(
            "gopls_starts",
            "gopls processes started and ready",
            gopls_starts.clone(),
        );
        let gopls_exits = Family::<ExitLabels, Counter>::default();
        registry.register(
            "gopls_exits",
            "gopls processes that ended, by reason",
            gopls_exits.clone(),
        );

        let workspaces = WorkspaceFamilies::default();
        registry.register(
            "workspace_working_set_bytes",
            "Working set (usage minus inactive file cache) of the workspace's gopls, sampled by the controller",
            workspaces.working_set.clone(),
        );
        registry.register(
            "workspace_memory_limit_bytes",
            "Memory limit of the workspace's gopls",
            workspaces.limit.clone(),
        );
        registry.register(
            "workspace_oom_kills",
            "Processes the kernel OOM-killed in the workspace's gopls cgroups",
            workspaces.oom_kills.clone(),
        );
        registry.register(
            "workspace_gopls_up",
            "1 while the workspace's gopls runs, 0 otherwise",
            workspaces.up.clone(),
        );
        registry.register(
            "workspace_degraded",
            "1 while automatic restarts of the workspace's gopls are stopped after a crash loop",
            workspaces.degraded.clone(),
        );
        registry.register(
            "workspace_memory_warnings",
            "Times the workspace's working set crossed the warning threshold",
            workspaces.warnings.clone(),
        );
        registry.register(
            "workspace_restarts",
            "gopls restarts by workspace and reason (memory, oom, crash)",
            workspaces.restarts.clone(),
        );
        registry.register(
            "evictions",
            "gopls instances stopped to free memory, by reason (idle timeout, memory budget)",
            workspaces.evictions.clone(),
        );

        Metrics {
            registry,
            workspaces,
            sessions_open,
            messages,
            message_bytes,
            request_duration,
            gopls_running,
            gopls_starts,
            gopls_exits,
            methods: Mutex::new(HashSet::new()),
        }
    }

    /// Encodes every metric in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }

    pub fn session_opened(&self, transport: Transport) {
        self.sessions_open
            .get_or_create(&TransportLabels { transport })
            .inc();
    }

    pub fn session_closed(&self, transport: Transport) {
        self.sessions_open
            .get_or_create(&TransportLabels { transport })
            .dec();
    }

    /// Returns the message and byte counters of one transport and direction.
    /// A session keeps them, so the hot path skips the family lookup.
    pub fn message_counters(&self, transport: Transport, direction: Direction) -> MessageCounters {
        let labels = MessageLabels {
            transport,
            direction,
        };
        MessageCounters {
            messages: self.messages.get_or_create_owned(&labels),
            bytes: self.message_bytes.get_or_create_owned(&labels),
        }
    }

    pub fn observe_request(&self, method: &str, elapsed: Duration) {
        let method = self.method_label(method);
        self.request_duration
            .get_or_create(&MethodLabels { method })
            .observe(elapsed.as_secs_f64());
    }

    /// The label value for a method: the method itself while it looks like
    /// an LSP method name and fewer than [`MAX_METHOD_LABELS`] are in use.
    fn method_label(&self, method: &str) -> String {
        let plausible = !method.is_empty()
            && method.len() <= MAX_METHOD_LEN
            && method.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'/' | b'$' | b'_' | b'.' | b'-')
            });
        if !plausible {
            return OTHER_METHOD.to_owned();
        }
        let mut methods = self.methods.lock().unwrap();
        if methods.contains(method) {
            return method.to_owned();
        }
        if methods.len() >= MAX_METHOD_LABELS {
            return OTHER_METHOD.to_owned();
        }
        methods.insert(method.to_owned());
        method.to_owned()
    }

    pub fn gopls_started(&self) {
        self.gopls_starts.inc();
        self.gopls_running.inc();
    }

    /// Records the end of a gopls process that had started; `start_failed`
    /// ends are recorded with [`Metrics::gopls_start_failed`] instead.
    pub fn gopls_exited(&self, reason: ExitReason) {
        self.gopls_running.dec();
        self.gopls_exits.get_or_create(&ExitLabels { reason }).inc();
    }

    /// Records one controller sample of a workspace. `None` means no gopls
    /// runs for it.
    pub fn workspace_sample(
        &self,
        workspace: &str,
        sample: Option<(u64, u64)>,
        limit: u64,
        degraded: bool,
    ) {
        let labels = WorkspaceLabels {
            workspace: workspace.to_owned(),
        };
        let (working_set, up) = match sample {
            Some((working_set, _)) => (working_set, 1),
            None => (0, 0),
        };
        self.workspaces
            .working_set
            .get_or_create(&labels)
            .set(working_set as i64);
        self.workspaces
            .limit
            .get_or_create(&labels)
            .set(limit as i64);
        self.workspaces.up.get_or_create(&labels).set(up);
        self.workspaces
            .degraded
            .get_or_create(&labels)
            .set(i64::from(degraded));
    }

    pub fn workspace_oom_kills(&self, workspace: &str, kills: u64) {
        let labels = WorkspaceLabels {
            workspace: workspace.to_owned(),
        };
        self.workspaces
            .oom_kills
            .get_or_create(&labels)
            .inc_by(kills);
    }

    pub fn workspace_warning(&self, workspace: &str) {
        let labels = WorkspaceLabels {
            workspace: workspace.to_owned(),
        };
        self.workspaces.warnings.get_or_create(&labels).inc();
    }

    pub fn workspace_restart(&self, workspace: &str, reason: &str) {
        let labels = RestartLabels {
            workspace: workspace.to_owned(),
            reason: reason.to_owned(),
        };
        self.workspaces.restarts.get_or_create(&labels).inc();
    }

    pub fn eviction(&self, reason: &str) {
        let labels = EvictionLabels {
            reason: reason.to_owned(),
        };
        self.workspaces.evictions.get_or_create(&labels).inc();
    }

    pub fn gopls_start_failed(&self) {
        self.gopls_exits
            .get_or_create(&ExitLabels {
                reason: ExitReason::StartFailed,
            })
            .inc();
    }
}

/// Message and byte counters for one transport and direction.
#[derive(Debug, Clone)]
pub struct MessageCounters {
    messages: Counter,
    bytes: Counter,
}

impl MessageCounters {
    pub fn record(&self, bytes: usize) {
        self.messages.inc();
        self.bytes.inc_by(bytes as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_prefixed_names() {
        let metrics = Metrics::new();
        metrics.session_opened(Transport::WebSocket);
        metrics
            .message_counters(Transport::Grpc, Direction::EditorToGopls)
            .record(42);
        metrics.observe_request("textDocument/hover", Duration::from_millis(3));
        metrics.gopls_started();
        metrics.gopls_exited(ExitReason::Stopped);

        let text = metrics.encode();
        let expected = [
            "remote_gopls_sessions_open{transport=\"websocket\"} 1",
            "remote_gopls_messages_total{transport=\"grpc\",direction=\"editor_to_gopls\"} 1",
            "remote_gopls_message_bytes_total{transport=\"grpc\",direction=\"editor_to_gopls\"} 42",
            "remote_gopls_request_duration_seconds_count{method=\"textDocument/hover\"} 1",
            "remote_gopls_gopls_instances_running 0",
            "remote_gopls_gopls_starts_total 1",
            "remote_gopls_gopls_exits_total{reason=\"stopped\"} 1",
        ];
        for line in expected {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
    }

    #[test]
    fn caps_method_labels() {
        let metrics = Metrics::new();
        assert_eq!(
            metrics.method_label("textDocument/hover"),
            "textDocument/hover"
        );
        assert_eq!(metrics.method_label("$/cancelRequest"), "$/cancelRequest");
        assert_eq!(metrics.method_label("has space"), OTHER_METHOD);
        assert_eq!(metrics.method_label(""), OTHER_METHOD);
        assert_eq!(metrics.method_label(&"m".repeat(65)), OTHER_METHOD);

        for i in 0..MAX_METHOD_LABELS {
            metrics.method_label(&format!("custom/m{i}"));
        }
        assert_eq!(metrics.method_label("custom/late"), OTHER_METHOD);
        assert_eq!(
            metrics.method_label("textDocument/hover"),
            "textDocument/hover",
            "a method seen before the cap keeps its label"
        );
    }
}
