//! The global memory budget: the sum of the memory limits of running
//! instances may not exceed it. Starting an instance that would exceed it
//! first evicts the least recently used idle instances.

use std::path::Path;
use std::sync::Arc;

use crate::bytesize::ByteSize;
use crate::workspace::{Registry, Workspace};

/// Budget violation that prevents an instance from starting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("memory budget {budget} exceeded: starting gopls for {workspace:?} needs {needed}, and running instances use {in_use} ({users}); close sessions on other workspaces or raise controller.memory_budget")]
pub struct BudgetExceeded {
    pub workspace: String,
    pub budget: ByteSize,
    pub needed: ByteSize,
    pub in_use: ByteSize,
    /// `name=limit` of each running instance.
    pub users: String,
}

/// Computes the budget: the configured value, else `fraction` of the
/// server's own cgroup memory limit, else of the machine's memory.
pub fn resolve(configured: Option<ByteSize>, fraction: f64) -> ByteSize {
    if let Some(budget) = configured {
        return budget;
    }
    let total = own_memory_limit()
        .or_else(machine_memory)
        .unwrap_or(u64::MAX);
    ByteSize((total as f64 * fraction) as u64)
}

/// Reads the memory limit of the server's own cgroup, if it has one.
fn own_memory_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let path = path.trim_start_matches('/');
        let file = if controllers.split(',').any(|c| c == "memory") {
            Path::new("/sys/fs/cgroup/memory")
                .join(path)
                .join("memory.limit_in_bytes")
        } else if controllers.is_empty() {
            Path::new("/sys/fs/cgroup").join(path).join("memory.max")
        } else {
            continue;
        };
        let Ok(value) = std::fs::read_to_string(&file) else {
            continue;
        };
        // v1 reports "no limit" as a huge page-aligned number, v2 as "max".
        if let Ok(limit) = value.trim().parse::<u64>() {
            if limit < (1 << 60) {
                return Some(limit);
            }
        }
    }
    None
}

fn machine_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Makes room for `workspace` to start: evicts idle instances, least
/// recently used first, until the budget holds, or fails naming what uses it.
pub async fn ensure(
    registry: &Registry,
    workspace: &Arc<Workspace>,
    budget: ByteSize,
    grace: std::time::Duration,
    metrics: &crate::metrics::Metrics,
) -> Result<(), BudgetExceeded> {
    let needed = workspace.memory.limit.bytes();
    loop {
        let running: Vec<Arc<Workspace>> = registry
            .all()
            .into_iter()
            .filter(|w| w.name != workspace.name && w.running().is_some())
            .collect();
        let in_use: u64 = running.iter().map(|w| w.memory.limit.bytes()).sum();
        if in_use.saturating_add(needed) <= budget.bytes() {
            return Ok(());
        }

        let idle = running
            .iter()
            .filter_map(|w| {
                let instance = w.running()?;
                (instance.sessions() == 0).then_some((instance.idle_since()?, w.clone()))
            })
            .min_by_key(|(since, _)| *since);
        match idle {
            Some((_, victim)) => {
                tracing::info!(
                    workspace.name = %victim.name,
                    for_workspace = %workspace.name,
                    budget = %budget,
                    "evicting the least recently used idle gopls to stay within the memory budget"
                );
                if victim.evict(grace, "memory budget").await {
                    metrics.eviction("memory budget");
                }
            }
            None => {
                let mut users: Vec<String> = running
                    .iter()
                    .map(|w| format!("{}={}", w.name, w.memory.limit))
                    .collect();
                users.sort();
                return Err(BudgetExceeded {
                    workspace: workspace.name.clone(),
                    budget,
                    needed: ByteSize(needed),
                    in_use: ByteSize(in_use),
                    users: users.join(", "),
                });
            }
        }
    }
}
