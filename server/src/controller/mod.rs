//! The controller: samples every gopls instance on an interval and acts
//! before the kernel or the user has to. It warns when the working set
//! nears the limit, restarts gopls (after saving a heap profile) when it
//! stays above the restart threshold or when the kernel OOM-killed part of
//! it, and stops instances that had no session for the idle timeout.
//!
//! Stopping an instance is all a restart needs here: each session notices
//! its gopls connection ended, asks its workspace for an instance (which
//! starts the next one, paced by [`restarts::RestartPacer`]) and replays the
//! editor's state into it.

pub mod budget;
pub mod config;
pub mod policy;
pub mod profile;
pub mod restarts;

use std::collections::HashMap;
use std::sync::Arc;

use policy::{Decision, MemoryPolicy, Sample};

use crate::bytesize::ByteSize;
use crate::instance::Instance;
use crate::state::ServerState;
use crate::workspace::Workspace;

/// Runs the sampling loop until the server shuts down.
pub async fn run(state: Arc<ServerState>) {
    let config = state.config.controller.clone();
    let mut policies: HashMap<String, (u32, MemoryPolicy)> = HashMap::new();
    let mut ticker = tokio::time::interval(config.sample_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::info!(interval = ?config.sample_interval, idle_timeout = ?config.idle_timeout, "controller started");

    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = state.shutdown.cancelled() => return,
        }
        for workspace in state.registry.all() {
            let metrics = &state.metrics;
            let limit = workspace.memory.limit.bytes();
            let degraded = workspace.degraded().is_some();
            let Some(instance) = workspace.running() else {
                metrics.workspace_sample(&workspace.name, None, limit, degraded);
                policies.remove(&workspace.name);
                continue;
            };

            if let Some(since) = instance.idle_since() {
                if since.elapsed() >= config.idle_timeout {
                    policies.remove(&workspace.name);
                    workspace
                        .evict(state.config.gopls_stop_grace, "idle timeout")
                        .await;
                    continue;
                }
            }

            // A new pid means a new instance: start its policy afresh.
            let entry = policies
                .entry(workspace.name.clone())
                .or_insert_with(|| (instance.pid, MemoryPolicy::new(config.thresholds)));
            if entry.0 != instance.pid {
                *entry = (instance.pid, MemoryPolicy::new(config.thresholds));
            }

            let usage = match instance.usage() {
                Some(Ok(usage)) => usage,
                Some(Err(e)) => {
                    tracing::debug!(workspace.name = %workspace.name, gopls.pid = instance.pid, error = %e, "cannot sample memory");
                    continue;
                }
                None => continue,
            };
            metrics.workspace_sample(
                &workspace.name,
                Some((usage.working_set, usage.limit)),
                limit,
                degraded,
            );
            let sample = Sample {
                working_set: usage.working_set,
                // In fallback mode the group reports the configured limit.
                limit: usage.limit.min(workspace.memory.limit.bytes().max(1)),
                oom_kills: usage.oom_kills,
            };
            match entry.1.observe(sample) {
                Decision::Nothing => {}
                Decision::Warn { fraction } => {
                    tracing::warn!(
                        workspace.name = %workspace.name,
                        gopls.pid = instance.pid,
                        working_set = %ByteSize(sample.working_set),
                        limit = %ByteSize(sample.limit),
                        percent = (fraction * 100.0).round(),
                        "gopls working set is above the warning threshold"
                    );
                    metrics.workspace_warning(&workspace.name);
                }
                Decision::RestartForMemory { working_set, limit } => {
                    let profile = capture_profile(&state, &workspace, &instance).await;
                    let mut message = format!(
                        "gopls for workspace {:?} was restarted because its working set {} stayed above {}% of its {} memory limit",
                        workspace.name,
                        ByteSize(working_set),
                        (config.thresholds.restart_fraction * 100.0).round(),
                        ByteSize(limit)
                    );
                    if let Some(path) = &profile {
                        message.push_str(&format!("; heap profile: {}", path.display()));
                    }
                    restart(&state, &workspace, &instance, "memory", message).await;
                }
                Decision::RestartAfterOom { oom_kills } => {
                    let message = format!(
                        "gopls for workspace {:?} was restarted because the kernel OOM-killed {oom_kills} process(es) in it at its {} memory limit",
                        workspace.name,
                        ByteSize(sample.limit)
                    );
                    restart(&state, &workspace, &instance, "oom", message).await;
                }
            }
        }
    }
}

/// Saves a heap profile of `instance` under the data directory.
async fn capture_profile(
    state: &ServerState,
    workspace: &Workspace,
    instance: &Instance,
) -> Option<std::path::PathBuf> {
    let addr = instance.spec.debug_addr?;
    let dir = state.config.data_dir.join("profiles").join(&workspace.name);
    match profile::capture(
        addr,
        &dir,
        instance.pid,
        state.config.controller.heap_profiles_kept,
    )
    .await
    {
        Ok(path) => {
            tracing::info!(workspace.name = %workspace.name, gopls.pid = instance.pid, path = %path.display(), "saved heap profile");
            Some(path)
        }
        Err(e) => {
            tracing::warn!(workspace.name = %workspace.name, gopls.pid = instance.pid, error = %e, "failed to save a heap profile");
            None
        }
    }
}

/// Stops `instance` so its sessions move to a new one, recording the message
/// they show.
async fn restart(
    state: &ServerState,
    workspace: &Workspace,
    instance: &Instance,
    reason: &str,
    message: String,
) {
    tracing::warn!(workspace.name = %workspace.name, gopls.pid = instance.pid, reason, "restarting gopls: {message}");
    workspace.set_restart_reason(instance.pid, message);
    state.metrics.workspace_restart(&workspace.name, reason);
    instance.stop(state.config.gopls_stop_grace).await;
}
