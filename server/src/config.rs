//! Server configuration: command-line flags (clap) over an optional TOML file
//! over built-in defaults. Every value is checked, and every error is
//! reported together, before any port is bound.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;

use crate::auth::Tokens;
use crate::bytesize::ByteSize;
use crate::cgroup::CgroupConfig;
use crate::controller::config::{ControllerConfig, FileController};

/// Default gRPC listen address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7443";
/// Default HTTP listen address (WebSocket sessions, health, metrics): loopback only.
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:7080";
/// Default keepalive interval: WebSocket pings and gRPC HTTP/2 pings. Below
/// the 60 s idle timeout common in proxies and load balancers.
pub const DEFAULT_WS_PING_INTERVAL: Duration = Duration::from_secs(20);
/// Default time the server waits for sessions to close after SIGTERM.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Default maximum size of one LSP message, in bytes.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = remote_gopls_proto::DEFAULT_MAX_MESSAGE_SIZE;
/// How long a new session may take to send its hello message.
pub const DEFAULT_HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long gopls may take to open its socket after it starts.
pub const DEFAULT_GOPLS_START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long gopls gets between SIGTERM and SIGKILL when it is stopped.
pub const DEFAULT_GOPLS_STOP_GRACE: Duration = Duration::from_secs(5);
/// Name of the workspace the embedded default configuration creates.
pub const DEMO_WORKSPACE: &str = "demo";

/// Go runtime settings applied to every gopls process unless overridden.
/// GOGC=20 collects earlier for a lower peak heap, GOMAXPROCS=2 limits
/// concurrent type-checking, and -mod=readonly keeps gopls from rewriting
/// go.mod files.
pub const DEFAULT_GOPLS_ENV: [(&str, &str); 3] = [
    ("GOGC", "20"),
    ("GOMAXPROCS", "2"),
    ("GOFLAGS", "-mod=readonly"),
];

/// The configuration used when no file is given; documents every key.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("../config/default.toml");

/// Default memory limit of each gopls instance.
pub const DEFAULT_MEMORY_LIMIT: ByteSize = ByteSize(2 * 1024 * 1024 * 1024);
/// Default GOMEMLIMIT as a fraction of the memory limit, leaving room for
/// memory the Go runtime does not count (stacks, `go list` children).
pub const DEFAULT_GOMEMLIMIT_FRACTION: f64 = 0.9;

/// Environment variable that contains bearer tokens, in the token file format.
pub const TOKENS_ENV: &str = "REMOTE_GOPLS_SERVER_TOKENS";

/// Command-line flags of `remote-gopls-server`.
#[derive(Debug, Default, Parser)]
#[command(
    name = "remote-gopls-server",
    version,
    about = "Runs gopls for remote editors, one shared process per workspace."
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Subcommand>,

    /// TOML configuration file. Flags override its values.
    #[arg(long, short = 'c', env = "REMOTE_GOPLS_SERVER_CONFIG")]
    pub config: Option<PathBuf>,

    /// gRPC listen address [default: 127.0.0.1:7443]. A non-loopback address requires bearer tokens.
    #[arg(long)]
    pub listen: Option<String>,

    /// HTTP listen address for WebSocket sessions, /healthz, /readyz and /metrics [default: 127.0.0.1:7080].
    #[arg(long)]
    pub http_listen: Option<String>,

    /// Keepalive interval such as `20s` or `500ms`: WebSocket pings and gRPC HTTP/2 pings [default: 20s].
    #[arg(long, value_name = "DURATION")]
    pub ws_ping_interval: Option<String>,

    /// How long the server waits for sessions to close after SIGTERM, such as `10s` [default: 10s].
    #[arg(long, value_name = "DURATION")]
    pub shutdown_grace: Option<String>,

    /// Workspace as NAME=PATH. Repeatable.
    #[arg(long = "workspace", value_name = "NAME=PATH")]
    pub workspaces: Vec<String>,

    /// Directory whose subdirectories are workspaces, each named after its directory.
    #[arg(long)]
    pub workspaces_dir: Option<PathBuf>,

    /// gopls binary. Default: `gopls` on PATH, else the pinned version installed with `go install`.
    #[arg(long)]
    pub gopls: Option<PathBuf>,

    /// Directory for sockets, logs and the installed gopls [default: $XDG_DATA_HOME/remote-gopls].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,

    /// File with bearer tokens, one per line: `TOKEN WORKSPACE[,WORKSPACE...]` (`*` for all).
    #[arg(long)]
    pub tokens_file: Option<PathBuf>,

    /// Environment for every gopls as KEY=VALUE, over the defaults. Repeatable.
    #[arg(long = "gopls-env", value_name = "KEY=VALUE")]
    pub gopls_env: Vec<String>,

    /// Maximum size of one LSP message: bytes or a size such as 64MiB [default: 64MiB].
    #[arg(long)]
    pub max_message_size: Option<String>,

    /// Memory limit of each gopls, such as 2GiB or 1.5GiB [default: 2GiB].
    #[arg(long)]
    pub memory_limit: Option<String>,

    /// Parent cgroup of the instance groups, relative to the hierarchy root
    /// [default: <the server's own group>/remote-gopls].
    #[arg(long)]
    pub cgroup_parent: Option<PathBuf>,

    /// Run gopls without per-instance cgroups; memory is read from /proc and
    /// limits are not enforced by the kernel.
    #[arg(long)]
    pub no_cgroups: bool,
}

/// Commands besides serving, which is the default.
#[derive(Debug, clap::Subcommand)]
pub enum Subcommand {
    /// Print the workspaces and gopls instances of a running server.
    Status(StatusArgs),
    /// Clear a workspace's degraded mark so gopls may start again.
    Reset(ResetArgs),
    /// Validate a configuration file, list every error, and exit without serving.
    CheckConfig(CheckConfigArgs),
}

/// Flags of `remote-gopls-server reset`.
#[derive(Debug, clap::Args)]
pub struct ResetArgs {
    /// Workspace to reset.
    pub workspace: String,
    /// gRPC address of the running server.
    #[arg(long, default_value = "http://127.0.0.1:7443")]
    pub server: String,
    /// Bearer token, when the server requires one.
    #[arg(long, env = "REMOTE_GOPLS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// Flags of `remote-gopls-server check-config`.
#[derive(Debug, clap::Args)]
pub struct CheckConfigArgs {
    /// TOML configuration file to check.
    pub file: PathBuf,
    /// Do not open the paths the file names (workspace paths, workspaces_dir,
    /// gopls, tokens_file): assume they exist, and that the tokens file contains
    /// valid tokens. For files written for another machine, such as a Helm
    /// chart's ConfigMap checked in CI.
    #[arg(long)]
    pub skip_path_checks: bool,
}

/// Flags of `remote-gopls-server status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// gRPC address of the running server.
    #[arg(long, default_value = "http://127.0.0.1:7443")]
    pub server: String,
    /// Bearer token, when the server requires one.
    #[arg(long, env = "REMOTE_GOPLS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// The TOML file. Every field is optional; `server/config/default.toml` documents them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub http_listen: Option<String>,
    pub ws_ping_interval: Option<String>,
    pub shutdown_grace: Option<String>,
    pub workspaces_dir: Option<PathBuf>,
    pub gopls: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub tokens_file: Option<PathBuf>,
    /// Maximum size of one LSP message (bytes or a size such as "64MiB").
    pub max_message_size: Option<toml::Value>,
    /// Memory limit of each gopls (bytes or a size such as "2GiB").
    pub memory_limit: Option<toml::Value>,
    /// Optional throttling threshold (cgroup v2 `memory.high`).
    pub memory_high: Option<toml::Value>,
    /// GOMEMLIMIT as a fraction of the memory limit.
    pub gomemlimit_fraction: Option<f64>,
    /// Parent of instance cgroups, and whether cgroups are used.
    #[serde(default)]
    pub cgroup: CgroupConfig,
    /// Sampling, restart and eviction thresholds.
    #[serde(default)]
    pub controller: FileController,
    /// Environment for every gopls, over the defaults.
    #[serde(default)]
    pub gopls_env: BTreeMap<String, String>,
    /// gopls settings merged under every editor's `initializationOptions`.
    #[serde(default)]
    pub gopls_settings: GoplsSettings,
    #[serde(default)]
    pub workspaces: BTreeMap<String, FileWorkspace>,
}

/// One `[workspaces.NAME]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileWorkspace {
    pub path: PathBuf,
    /// Environment for this workspace's gopls, over the server-wide values.
    #[serde(default)]
    pub gopls_env: BTreeMap<String, String>,
    /// gopls settings for this workspace, over the server-wide ones.
    #[serde(default)]
    pub gopls_settings: GoplsSettings,
    /// Memory limit of this workspace's gopls, over the server-wide value.
    pub memory_limit: Option<toml::Value>,
    /// Throttling threshold of this workspace's gopls.
    pub memory_high: Option<toml::Value>,
}

/// Memory settings of one gopls instance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MemoryConfig {
    /// Kernel-enforced limit (cgroup `memory.max` / `memory.limit_in_bytes`).
    pub limit: ByteSize,
    /// Throttling threshold (cgroup v2 `memory.high`); off by default,
    /// because throttling before the limit makes gopls slow without bound.
    pub high: Option<ByteSize>,
    /// GOMEMLIMIT as a fraction of `limit`, unless the environment sets it.
    pub gomemlimit_fraction: f64,
}

impl MemoryConfig {
    /// Returns the GOMEMLIMIT value in bytes.
    pub fn gomemlimit(&self) -> u64 {
        (self.limit.bytes() as f64 * self.gomemlimit_fraction) as u64
    }
}

/// Parses a memory size given as an integer (bytes) or a string such as
/// "1.5GiB"; errors name the configuration key.
fn parse_size(value: &toml::Value, key: &str, errors: &mut Vec<String>) -> Option<ByteSize> {
    let parsed = match value {
        toml::Value::Integer(n) if *n > 0 => Ok(ByteSize(*n as u64)),
        toml::Value::String(text) => text.parse::<ByteSize>().map_err(|e| e.to_string()),
        other => Err(format!("expected a size such as \"2GiB\", got {other}")),
    };
    match parsed {
        Ok(size) if size.bytes() > 0 => Some(size),
        Ok(_) => {
            errors.push(format!("invalid {key}: must be greater than 0"));
            None
        }
        Err(e) => {
            errors.push(format!("invalid {key}: {e}"));
            None
        }
    }
}

/// gopls settings as `initializationOptions` keys, such as
/// `directoryFilters = ["-**/node_modules"]`.
pub type GoplsSettings = serde_json::Map<String, serde_json::Value>;

/// A configured workspace.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkspaceConfig {
    pub name: String,
    /// Absolute, canonical path of the workspace root.
    pub root: PathBuf,
    pub gopls_env: BTreeMap<String, String>,
    pub gopls_settings: GoplsSettings,
    pub memory: MemoryConfig,
}

/// Validated server configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// Listener for WebSocket sessions, health and metrics.
    pub http_listen: SocketAddr,
    /// Interval of WebSocket pings and gRPC HTTP/2 keepalive pings; a peer
    /// that does not answer within one more interval is disconnected.
    pub ws_ping_interval: Duration,
    /// How long the server waits for sessions to close after SIGTERM.
    pub shutdown_grace: Duration,
    pub workspaces: Vec<WorkspaceConfig>,
    pub workspaces_dir: Option<PathBuf>,
    pub gopls: Option<PathBuf>,
    pub data_dir: PathBuf,
    pub tokens_file: Option<PathBuf>,
    pub tokens: Tokens,
    /// Server-wide gopls environment: defaults overlaid with configured values.
    pub gopls_env: BTreeMap<String, String>,
    /// Server-wide default gopls settings.
    pub gopls_settings: GoplsSettings,
    /// Server-wide memory settings; workspaces may override limit and high.
    pub memory: MemoryConfig,
    pub cgroup: CgroupConfig,
    pub controller: ControllerConfig,
    pub max_message_size: usize,
    pub hello_timeout: Duration,
    pub gopls_start_timeout: Duration,
    pub gopls_stop_grace: Duration,
}

/// Every problem found in the configuration.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
pub struct ConfigErrors(pub Vec<String>);

/// Returns true for a valid workspace name: letters, digits, `-`, `_`, `.`,
/// not starting with `.`. Names appear in URLs, socket paths and cgroup names.
pub fn is_valid_workspace_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn default_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("remote-gopls");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(home).join(".local/share/remote-gopls");
    }
    std::env::temp_dir().join("remote-gopls")
}

/// Parses a duration written as a number and a unit: `ms`, `s` or `m`
/// (`500ms`, `20s`, `1.5m`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().map_err(|_| {
        format!("invalid duration {text:?}: expected a number and a unit such as 500ms, 20s or 2m")
    })?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => {
            return Err(format!(
                "invalid duration {text:?}: unknown unit {unit:?}; use ms, s or m"
            ))
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("invalid duration {text:?}: {e}"))
}

/// Reads an optional duration setting, reporting a bad value under `name`.
fn duration_setting(
    name: &str,
    text: Option<String>,
    default: Duration,
    min: Duration,
    errors: &mut Vec<String>,
) -> Duration {
    let Some(text) = text else { return default };
    match parse_duration(&text) {
        Ok(value) if value >= min => value,
        Ok(_) => {
            errors.push(format!("invalid {name} {text:?}: must be at least {min:?}"));
            default
        }
        Err(e) => {
            errors.push(format!("{name}: {e}"));
            default
        }
    }
}

fn parse_key_value<'a>(
    input: &'a str,
    what: &str,
    errors: &mut Vec<String>,
) -> Option<(&'a str, &'a str)> {
    match input.split_once('=') {
        Some((key, value)) if !key.is_empty() => Some((key, value)),
        _ => {
            errors.push(format!("invalid {what} {input:?}: expected KEY=VALUE"));
            None
        }
    }
}

/// Reads tokens from the file and from the environment variable together.
fn load_tokens(file: Option<&Path>, errors: &mut Vec<String>) -> Tokens {
    let mut sources = Vec::new();
    if let Some(path) = file {
        match std::fs::read_to_string(path) {
            Ok(text) => sources.push((format!("tokens file {}", path.display()), text)),
            Err(e) => errors.push(format!("cannot read tokens file {}: {e}", path.display())),
        }
    }
    if let Ok(text) = std::env::var(TOKENS_ENV) {
        sources.push((TOKENS_ENV.to_owned(), text));
    }

    let mut tokens = Tokens::default();
    for (source, text) in sources {
        match Tokens::parse(&text, &source) {
            Ok(parsed) => tokens.extend(parsed),
            Err(e) => errors.extend(e),
        }
    }
    tokens
}

/// Reads the server-wide memory settings.
fn memory_config(args: &Args, file: &FileConfig, errors: &mut Vec<String>) -> MemoryConfig {
    let mut memory = MemoryConfig {
        limit: DEFAULT_MEMORY_LIMIT,
        high: None,
        gomemlimit_fraction: file
            .gomemlimit_fraction
            .unwrap_or(DEFAULT_GOMEMLIMIT_FRACTION),
    };
    if let Some(value) = &file.memory_limit {
        memory.limit = parse_size(value, "memory_limit", errors).unwrap_or(memory.limit);
    }
    if let Some(text) = &args.memory_limit {
        let value = toml::Value::String(text.clone());
        memory.limit = parse_size(&value, "--memory-limit", errors).unwrap_or(memory.limit);
    }
    if let Some(value) = &file.memory_high {
        memory.high = parse_size(value, "memory_high", errors);
    }
    if !(memory.gomemlimit_fraction > 0.0 && memory.gomemlimit_fraction <= 1.0) {
        errors.push(format!(
            "invalid gomemlimit_fraction {}: must be greater than 0 and at most 1",
            memory.gomemlimit_fraction
        ));
    }
    check_memory(&memory, "server", errors);
    memory
}

fn check_memory(memory: &MemoryConfig, scope: &str, errors: &mut Vec<String>) {
    if let Some(high) = memory.high {
        if high > memory.limit {
            errors.push(format!(
                "invalid memory_high {high} for {scope}: must not exceed memory_limit {}",
                memory.limit
            ));
        }
    }
}

impl Config {
    /// Builds the configuration from flags and the file they name.
    pub fn load(args: Args) -> Result<Config, ConfigErrors> {
        let mut errors = Vec::new();
        let file = match &args.config {
            None => toml::from_str(DEFAULT_CONFIG_TOML)
                .expect("the embedded default configuration is valid"),
            Some(path) => match std::fs::read_to_string(path) {
                Ok(text) => toml::from_str(&text).unwrap_or_else(|e| {
                    errors.push(format!("invalid config file {}: {e}", path.display()));
                    FileConfig::default()
                }),
                Err(e) => {
                    errors.push(format!("cannot read config file {}: {e}", path.display()));
                    FileConfig::default()
                }
            },
        };
        let base = args
            .config
            .as_deref()
            .and_then(Path::parent)
            .map(Path::to_path_buf);
        Self::build(args, file, base.as_deref(), &mut errors).ok_or(ConfigErrors(errors))
    }

    /// Parses a TOML text on its own, as `check-config` and tests do.
    pub fn from_toml(text: &str, base: Option<&Path>) -> Result<Config, ConfigErrors> {
        let mut errors = Vec::new();
        let file = toml::from_str(text).unwrap_or_else(|e| {
            errors.push(format!("invalid config file: {e}"));
            FileConfig::default()
        });
        Self::build(Args::default(), file, base, &mut errors).ok_or(ConfigErrors(errors))
    }

    fn build(
        args: Args,
        file: FileConfig,
        base: Option<&Path>,
        errors: &mut Vec<String>,
    ) -> Option<Config> {
        let memory = memory_config(&args, &file, errors);
        let controller = file.controller.validate(errors);
        let resolve = |p: PathBuf| match base {
            Some(base) if p.is_relative() => base.join(p),
            _ => p,
        };

        let listen_text = args
            .listen
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen = listen_text
            .parse::<SocketAddr>()
            .map_err(|e| errors.push(format!("invalid listen address {listen_text:?}: {e}; expected IP:PORT such as 127.0.0.1:7443 (host names are not resolved)")))
            .ok();

        let http_text = args
            .http_listen
            .or(file.http_listen)
            .unwrap_or_else(|| DEFAULT_HTTP_LISTEN.to_owned());
        let http_listen = http_text
            .parse::<SocketAddr>()
            .map_err(|e| errors.push(format!("invalid http_listen address {http_text:?}: {e}; expected IP:PORT such as 127.0.0.1:7080 (host names are not resolved)")))
            .ok();
        if let (Some(grpc), Some(http)) = (listen, http_listen) {
            if grpc == http && grpc.port() != 0 {
                errors.push(format!(
                    "listen and http_listen are both {grpc}; give each listener its own port"
                ));
            }
        }
        let ws_ping_interval = duration_setting(
            "ws_ping_interval",
            args.ws_ping_interval.or(file.ws_ping_interval),
            DEFAULT_WS_PING_INTERVAL,
            Duration::from_millis(10),
            errors,
        );
        let shutdown_grace = duration_setting(
            "shutdown_grace",
            args.shutdown_grace.or(file.shutdown_grace),
            DEFAULT_SHUTDOWN_GRACE,
            Duration::ZERO,
            errors,
        );

        let mut gopls_env: BTreeMap<String, String> = DEFAULT_GOPLS_ENV
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        gopls_env.extend(file.gopls_env);
        for kv in &args.gopls_env {
            if let Some((k, v)) = parse_key_value(kv, "--gopls-env", errors) {
                gopls_env.insert(k.to_owned(), v.to_owned());
            }
        }

        let mut workspaces: Vec<(String, FileWorkspace)> = Vec::new();
        for (name, mut ws) in file.workspaces {
            ws.path = resolve(ws.path);
            workspaces.push((name, ws));
        }
        for spec in &args.workspaces {
            if let Some((name, path)) = parse_key_value(spec, "--workspace", errors) {
                workspaces.retain(|(n, _)| n != name);
                let ws = FileWorkspace {
                    path: PathBuf::from(path),
                    ..FileWorkspace::default()
                };
                workspaces.push((name.to_owned(), ws));
            }
        }
        let workspaces: Vec<WorkspaceConfig> = workspaces
            .into_iter()
            .filter_map(|(name, ws)| {
                let mut ws_memory = memory;
                if let Some(value) = &ws.memory_limit {
                    ws_memory.limit = parse_size(value, &format!("workspaces.{name}.memory_limit"), errors)?;
                }
                if let Some(value) = &ws.memory_high {
                    ws_memory.high = Some(parse_size(value, &format!("workspaces.{name}.memory_high"), errors)?);
                }
                check_memory(&ws_memory, &format!("workspaces.{name}"), errors);
                let path = ws.path;
                if !is_valid_workspace_name(&name) {
                    errors.push(format!(
                        "invalid workspace name {name:?}: use letters, digits, '-', '_' and '.', not starting with '.'"
                    ));
                    return None;
                }
                match path.canonicalize() {
                    Ok(root) if root.is_dir() => Some(WorkspaceConfig {
                        name,
                        root,
                        gopls_env: ws.gopls_env,
                        gopls_settings: ws.gopls_settings,
                        memory: ws_memory,
                    }),
                    Ok(_) => {
                        errors.push(format!("workspace {name:?}: {} is not a directory", path.display()));
                        None
                    }
                    Err(e) => {
                        errors.push(format!("workspace {name:?}: cannot open {}: {e}", path.display()));
                        None
                    }
                }
            })
            .collect();

        let workspaces_dir = args.workspaces_dir.or(file.workspaces_dir.map(resolve));
        if let Some(dir) = &workspaces_dir {
            if !dir.is_dir() {
                errors.push(format!(
                    "workspaces directory {} does not exist or is not a directory",
                    dir.display()
                ));
            }
        }

        let gopls = args.gopls.or(file.gopls.map(resolve));
        if let Some(path) = &gopls {
            if !path.is_file() {
                errors.push(format!("gopls binary {} not found", path.display()));
            }
        }

        let tokens_file = args.tokens_file.or(file.tokens_file.map(resolve));
        let tokens = load_tokens(tokens_file.as_deref(), errors);
        for addr in [listen, http_listen].into_iter().flatten() {
            if tokens.is_empty() && !addr.ip().is_loopback() {
                errors.push(format!(
                    "listen address {addr} is not loopback but no bearer tokens are configured; set tokens_file or {TOKENS_ENV}, or listen on 127.0.0.1"
                ));
            }
        }
        let max_message_size = match (&args.max_message_size, &file.max_message_size) {
            (Some(text), _) => parse_size(
                &toml::Value::String(text.clone()),
                "--max-message-size",
                errors,
            ),
            (None, Some(value)) => parse_size(value, "max_message_size", errors),
            (None, None) => None,
        }
        .map(|size| usize::try_from(size.bytes()).unwrap_or(usize::MAX))
        .unwrap_or(DEFAULT_MAX_MESSAGE_SIZE);
        if max_message_size < 1024 {
            errors.push(format!(
                "invalid max_message_size {max_message_size}: must be at least 1024 bytes"
            ));
        }
        let data_dir = args
            .data_dir
            .or(file.data_dir.map(resolve))
            .unwrap_or_else(default_data_dir);

        if !errors.is_empty() {
            return None;
        }
        Some(Config {
            listen: listen?,
            http_listen: http_listen?,
            ws_ping_interval,
            shutdown_grace,
            workspaces,
            workspaces_dir,
            gopls,
            data_dir,
            tokens_file,
            tokens,
            gopls_env,
            gopls_settings: file.gopls_settings,
            memory,
            cgroup: CgroupConfig {
                enabled: file.cgroup.enabled && !args.no_cgroups,
                parent: args.cgroup_parent.or(file.cgroup.parent),
            },
            controller,
            max_message_size,
            hello_timeout: DEFAULT_HELLO_TIMEOUT,
            gopls_start_timeout: DEFAULT_GOPLS_START_TIMEOUT,
            gopls_stop_grace: DEFAULT_GOPLS_STOP_GRACE,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply() {
        let config = Config::from_toml("", None).unwrap();
        assert_eq!(config.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(config.gopls_env["GOGC"], "20");
        assert_eq!(config.gopls_env["GOMAXPROCS"], "2");
        assert_eq!(config.gopls_env["GOFLAGS"], "-mod=readonly");
        assert_eq!(config.max_message_size, 64 * 1024 * 1024);
        assert!(config.workspaces.is_empty());
    }

    #[test]
    fn embedded_default_matches_code() {
        let file = Config::from_toml(DEFAULT_CONFIG_TOML, None).unwrap();
        let code = Config::from_toml("", None).unwrap();
        assert_eq!(file.listen, code.listen);
        assert_eq!(file.http_listen, code.http_listen);
        assert_eq!(file.ws_ping_interval, code.ws_ping_interval);
        assert_eq!(file.shutdown_grace, code.shutdown_grace);
        assert_eq!(file.max_message_size, code.max_message_size);
        assert_eq!(file.gopls_env, code.gopls_env);
        assert_eq!(file.workspaces, code.workspaces);
        assert_eq!(file.memory, code.memory);
        assert_eq!(file.cgroup, code.cgroup);
        assert_eq!(file.gopls_settings, code.gopls_settings);
        assert_eq!(file.controller, code.controller);
    }

    #[test]
    fn file_and_flags_merge() {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().join("ws");
        std::fs::create_dir(&ws).unwrap();
        let path = dir.path().join("server.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9000\"\n[gopls_env]\nGOGC = \"50\"\n[workspaces.alpha]\npath = \"ws\"\ngopls_env = { GOMAXPROCS = \"4\" }\n",
        )
        .unwrap();
        let args = Args {
            config: Some(path),
            listen: Some("127.0.0.1:9001".into()),
            gopls_env: vec!["GOFLAGS=-mod=mod".into()],
            ..Args::default()
        };

        let config = Config::load(args).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:9001");
        assert_eq!(config.gopls_env["GOGC"], "50");
        assert_eq!(config.gopls_env["GOFLAGS"], "-mod=mod");
        assert_eq!(config.workspaces.len(), 1);
        assert_eq!(config.workspaces[0].name, "alpha");
        assert_eq!(config.workspaces[0].root, ws.canonicalize().unwrap());
        assert_eq!(config.workspaces[0].gopls_env["GOMAXPROCS"], "4");
    }

    #[test]
    fn reports_every_error() {
        let args = Args {
            listen: Some("nowhere".into()),
            workspaces: vec![
                "bad name=/tmp".into(),
                "missing=/does/not/exist".into(),
                "noequals".into(),
            ],
            gopls: Some("/does/not/exist/gopls".into()),
            max_message_size: Some("10".to_owned()),
            ..Args::default()
        };
        let errors = Config::load(args).unwrap_err().0;
        let expected = [
            "invalid listen address \"nowhere\"",
            "invalid workspace name \"bad name\"",
            "workspace \"missing\": cannot open /does/not/exist",
            "invalid --workspace \"noequals\"",
            "gopls binary /does/not/exist/gopls not found",
            "invalid max_message_size 10",
        ];
        for want in expected {
            assert!(
                errors.iter().any(|e| e.contains(want)),
                "missing {want:?} in {errors:#?}"
            );
        }
        assert_eq!(errors.len(), expected.len(), "{errors:#?}");
    }

    #[test]
    fn public_listen_needs_tokens() {
        let errors = Config::from_toml("listen = \"0.0.0.0:7443\"", None)
            .unwrap_err()
            .0;
        assert!(
            errors[0].contains("no bearer tokens are configured"),
            "{errors:?}"
        );

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tokens"), "token-0123456789abcdef *\n").unwrap();
        let config = Config::from_toml(
            "listen = \"0.0.0.0:7443\"\ntokens_file = \"tokens\"",
            Some(dir.path()),
        )
        .unwrap();
        assert_eq!(config.tokens.len(), 1);
    }

    #[test]
    fn memory_settings() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("a")).unwrap();
        std::fs::create_dir(dir.path().join("b")).unwrap();
        let text = "memory_limit = \"1.5GiB\"\ngomemlimit_fraction = 0.8\n[workspaces.a]\npath = \"a\"\nmemory_limit = 536870912\nmemory_high = \"400MiB\"\n[workspaces.b]\npath = \"b\"\n";
        let config = Config::from_toml(text, Some(dir.path())).unwrap();
        assert_eq!(config.memory.limit, ByteSize(1536 * 1024 * 1024));
        assert_eq!(config.memory.high, None);
        let a = config.workspaces.iter().find(|w| w.name == "a").unwrap();
        assert_eq!(a.memory.limit, ByteSize(512 * 1024 * 1024));
        assert_eq!(a.memory.high, Some(ByteSize(400 * 1024 * 1024)));
        assert_eq!(
            a.memory.gomemlimit(),
            (512.0 * 1024.0 * 1024.0 * 0.8) as u64
        );
        let b = config.workspaces.iter().find(|w| w.name == "b").unwrap();
        assert_eq!(b.memory.limit, config.memory.limit);
    }

    #[test]
    fn message_size_accepts_units() {
        let config = Config::from_toml("max_message_size = \"32MiB\"", None).unwrap();
        assert_eq!(config.max_message_size, 32 << 20);
        let config = Config::from_toml("max_message_size = 2097152", None).unwrap();
        assert_eq!(config.max_message_size, 2 << 20);
        let args = Args {
            max_message_size: Some("1MiB".to_owned()),
            ..Args::default()
        };
        assert_eq!(Config::load(args).unwrap().max_message_size, 1 << 20);
    }

    #[test]
    fn memory_defaults() {
        let config = Config::from_toml("", None).unwrap();
        assert_eq!(config.memory.limit, ByteSize(2 << 30));
        assert_eq!(
            config.memory.gomemlimit(),
            (2.0 * 1024.0 * 1024.0 * 1024.0 * 0.9) as u64
        );
        assert!(config.cgroup.enabled);
    }

    #[test]
    fn bad_memory_values_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("a")).unwrap();
        let text = "memory_limit = \"lots\"\ngomemlimit_fraction = 1.5\n[workspaces.a]\npath = \"a\"\nmemory_limit = \"1GiB\"\nmemory_high = \"2GiB\"\n";
        let errors = Config::from_toml(text, Some(dir.path())).unwrap_err().0;
        let expected = [
            "invalid memory_limit: ",
            "invalid gomemlimit_fraction 1.5",
            "invalid memory_high 2GiB for workspaces.a",
        ];
        for want in expected {
            assert!(
                errors.iter().any(|e| e.contains(want)),
                "missing {want:?} in {errors:#?}"
            );
        }
    }

    #[test]
    fn rejects_unknown_keys() {
        let errors = Config::from_toml("lisen = \"x\"", None).unwrap_err().0;
        assert!(errors[0].contains("unknown field `lisen`"), "{errors:?}");
    }

    #[test]
    fn http_front_defaults() {
        let config = Config::from_toml("", None).unwrap();
        assert_eq!(config.http_listen.to_string(), DEFAULT_HTTP_LISTEN);
        assert_eq!(config.ws_ping_interval, Duration::from_secs(20));
        assert_eq!(config.shutdown_grace, Duration::from_secs(10));

        let config = Config::from_toml(
            "http_listen = \"127.0.0.1:9090\"\nws_ping_interval = \"250ms\"\nshutdown_grace = \"1m\"",
            None,
        )
        .unwrap();
        assert_eq!(config.http_listen.to_string(), "127.0.0.1:9090");
        assert_eq!(config.ws_ping_interval, Duration::from_millis(250));
        assert_eq!(config.shutdown_grace, Duration::from_secs(60));
    }

    #[test]
    fn reports_bad_http_front_values() {
        let args = Args {
            listen: Some("127.0.0.1:7000".into()),
            http_listen: Some("127.0.0.1:7000".into()),
            ws_ping_interval: Some("fast".into()),
            shutdown_grace: Some("10 parsecs".into()),
            ..Args::default()
        };
        let errors = Config::load(args).unwrap_err().0;
        let expected = [
            "listen and http_listen are both 127.0.0.1:7000",
            "ws_ping_interval: invalid duration \"fast\"",
            "shutdown_grace: invalid duration \"10 parsecs\"",
        ];
        for want in expected {
            assert!(
                errors.iter().any(|e| e.contains(want)),
                "missing {want:?} in {errors:#?}"
            );
        }
        assert_eq!(errors.len(), expected.len(), "{errors:#?}");

        let errors = Config::from_toml("http_listen = \"0.0.0.0:7080\"", None)
            .unwrap_err()
            .0;
        assert!(
            errors[0].contains("no bearer tokens are configured"),
            "{errors:?}"
        );
    }

    #[test]
    fn parses_durations() {
        let cases = [
            ("500ms", Some(Duration::from_millis(500))),
            ("20s", Some(Duration::from_secs(20))),
            ("1.5m", Some(Duration::from_secs(90))),
            (" 2s ", Some(Duration::from_secs(2))),
            ("20", None),
            ("s", None),
            ("-1s", None),
            ("3h", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_duration(text).ok(), expected, "{text:?}");
        }
    }

    #[test]
    fn workspace_names() {
        for good in ["demo", "my-proj_2", "a.b"] {
            assert!(is_valid_workspace_name(good), "{good}");
        }
        for bad in ["", ".hidden", "a/b", "a b", "é"] {
            assert!(!is_valid_workspace_name(bad), "{bad}");
        }
    }
}
