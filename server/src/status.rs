//! The status report: each workspace the caller may open and the state of
//! its gopls instance. Served over gRPC (`Tunnel/Status`) and printed by
//! `remote-gopls-server status`.

use std::fmt::Write as _;

use remote_gopls_proto::{error_chain, pb};

use crate::auth::AuthError;
use crate::state::ServerState;

impl ServerState {
    /// Builds the status report for the workspaces `token` may open.
    pub async fn status(&self, token: Option<&str>) -> Result<pb::StatusResponse, AuthError> {
        let access = self.tokens.access(token)?;

        let mut workspaces = Vec::new();
        for name in self.registry.names() {
            if !access.allows(&name) {
                continue;
            }
            if let Some(workspace) = self.registry.get(&name) {
                let mut entry = workspace.status().await;
                let dir = self.config.data_dir.join("profiles").join(&name);
                entry.heap_profiles = crate::controller::profile::list(&dir)
                    .into_iter()
                    .map(|p| p.display().to_string())
                    .collect();
                workspaces.push(entry);
            }
        }

        Ok(pb::StatusResponse {
            server_version: remote_gopls_proto::VERSION.to_owned(),
            gopls_version: self.launch.gopls.version.clone(),
            memory_mode: self.launch.cgroups.mode().to_string(),
            memory_mode_reason: match self.launch.cgroups.mode() {
                crate::cgroup::Mode::Fallback { reason } => reason.clone(),
                _ => String::new(),
            },
            workspaces,
        })
    }
}

async fn admin_client(
    server: &str,
) -> Result<pb::tunnel_client::TunnelClient<tonic::transport::Channel>, String> {
    if server.starts_with("https://") {
        return Err(format!(
            "{server}: the gRPC admin client has no TLS support; use http:// on a trusted network"
        ));
    }
    if !server.starts_with("http://") {
        return Err(format!(
            "invalid server address {server:?}: expected http://HOST:PORT"
        ));
    }
    pb::tunnel_client::TunnelClient::connect(server.to_owned())
        .await
        .map_err(|e| {
            format!(
                "cannot connect to {server}: {}; is the server running and listening there?",
                error_chain(&e)
            )
        })
}

fn with_token<T>(message: T, token: Option<&str>) -> Result<tonic::Request<T>, String> {
    let mut request = tonic::Request::new(message);
    if let Some(token) = token {
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| "invalid token: not a valid header value".to_owned())?;
        request.metadata_mut().insert("authorization", value);
    }
    Ok(request)
}

/// Clears a workspace's degraded mark on a running server; returns whether
/// it was degraded.
pub async fn reset(server: &str, token: Option<&str>, workspace: &str) -> Result<bool, String> {
    let mut client = admin_client(server).await?;
    let request = with_token(
        pb::ResetRequest {
            workspace: workspace.to_owned(),
        },
        token,
    )?;
    let response = client.reset(request).await.map_err(|s| {
        format!(
            "reset request to {server} failed: {:?}: {}",
            s.code(),
            s.message()
        )
    })?;
    Ok(response.into_inner().was_degraded)
}

/// Fetches the status report from a running server.
pub async fn fetch(server: &str, token: Option<&str>) -> Result<pb::StatusResponse, String> {
    let mut client = admin_client(server).await?;
    let request = with_token(pb::StatusRequest {}, token)?;
    let response = client.status(request).await.map_err(|s| {
        format!(
            "status request to {server} failed: {:?}: {}",
            s.code(),
            s.message()
        )
    })?;
    Ok(response.into_inner())
}

fn mib(bytes: u64) -> String {
    format!("{:.1}MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// Renders the report as a table, one line per workspace, then each
/// running instance's environment.
pub fn render_table(report: &pb::StatusResponse) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "server {}  gopls {}  memory mode: {}{}",
        report.server_version,
        report.gopls_version,
        if report.memory_mode.is_empty() {
            "unknown"
        } else {
            &report.memory_mode
        },
        if report.memory_mode_reason.is_empty() {
            String::new()
        } else {
            format!(" ({})", report.memory_mode_reason)
        }
    );
    let _ = writeln!(
        out,
        "{:<20} {:>8} {:>8} {:>10} {:>10} {:>5} {:>8} {:>8}",
        "WORKSPACE", "PID", "STATE", "WORKING", "LIMIT", "OOM", "SESSIONS", "UPTIME"
    );
    for ws in &report.workspaces {
        match &ws.instance {
            Some(i) => {
                let _ = writeln!(
                    out,
                    "{:<20} {:>8} {:>8} {:>10} {:>10} {:>5} {:>8} {:>7}s",
                    ws.name,
                    i.pid,
                    i.state,
                    mib(i.working_set_bytes),
                    mib(i.limit_bytes),
                    ws.oom_kills_total,
                    i.sessions,
                    i.uptime_seconds
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "{:<20} {:>8} {:>8} {:>10} {:>10} {:>5} {:>8} {:>8}",
                    ws.name,
                    "-",
                    "idle",
                    "-",
                    mib(ws.memory_limit_bytes),
                    ws.oom_kills_total,
                    0,
                    "-"
                );
            }
        }
    }
    for ws in &report.workspaces {
        if let Some(i) = &ws.instance {
            let mut env: Vec<_> = i.env.iter().collect();
            env.sort();
            let env: Vec<String> = env.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
            let _ = writeln!(out, "{} env: {}", ws.name, env.join(" "));
            if !i.cgroup.is_empty() {
                let _ = writeln!(out, "{} cgroup: {}", ws.name, i.cgroup);
            }
        }
        if !ws.degraded.is_empty() {
            let _ = writeln!(out, "{} DEGRADED: {}", ws.name, ws.degraded);
        }
        for profile in &ws.heap_profiles {
            let _ = writeln!(out, "{} heap profile: {profile}", ws.name);
        }
        if !ws.last_exit.is_empty() {
            let _ = writeln!(out, "{} last exit: {}", ws.name, ws.last_exit);
        }
    }
    out
}
