//! A cgroup v1 memory cgroup the harness creates for one gopls run and
//! removes afterwards, also when the run fails.
//!
//! Needs root and the v1 memory controller mounted at
//! `/sys/fs/cgroup/memory`. Every cgroup is named
//! `remote-gopls-bench-<pid>-<n>`, so the next run can recognise and remove
//! the leftovers of a killed harness without touching anyone else's.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;

/// Mount point of the cgroup v1 memory controller.
pub const MEMORY_ROOT: &str = "/sys/fs/cgroup/memory";
/// Prefix of every cgroup this harness creates.
const NAME_PREFIX: &str = "remote-gopls-bench-";
/// How long removal waits for killed processes to leave the cgroup.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// One memory cgroup; dropping it kills what is left inside and removes it.
#[derive(Debug)]
pub struct MemoryCgroup {
    path: PathBuf,
}

/// Returns why the v1 memory controller cannot be used, or `None` when it can.
pub fn unavailable_reason() -> Option<String> {
    let root = Path::new(MEMORY_ROOT);
    if !root.join("memory.limit_in_bytes").is_file() {
        return Some(format!("no cgroup v1 memory controller at {MEMORY_ROOT}"));
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("creating memory cgroups needs root".to_owned());
    }
    None
}

impl MemoryCgroup {
    /// Creates a new cgroup with no limit.
    pub fn create() -> anyhow::Result<MemoryCgroup> {
        let name = format!(
            "{NAME_PREFIX}{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let path = Path::new(MEMORY_ROOT).join(name);
        std::fs::create_dir(&path)
            .with_context(|| format!("failed to create cgroup {}", path.display()))?;
        Ok(MemoryCgroup { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Returns the file a process writes its pid to in order to join.
    pub fn procs_file(&self) -> PathBuf {
        self.path.join("cgroup.procs")
    }

    /// Sets the hard limit (`memory.limit_in_bytes`).
    pub fn set_limit(&self, bytes: u64) -> anyhow::Result<()> {
        self.write("memory.limit_in_bytes", &bytes.to_string())
    }

    /// Peak charged memory since creation (`memory.max_usage_in_bytes`),
    /// page cache included.
    pub fn max_usage(&self) -> u64 {
        self.read_u64("memory.max_usage_in_bytes").unwrap_or(0)
    }

    /// Working set now; see [`working_set_of`].
    pub fn working_set(&self) -> u64 {
        working_set_of(&self.path)
    }

    /// Number of OOM kills in this cgroup (`oom_kill` in
    /// `memory.oom_control`, Linux 4.13 and later).
    pub fn oom_kills(&self) -> u64 {
        std::fs::read_to_string(self.path.join("memory.oom_control"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("oom_kill "))
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or(0)
    }

    pub fn pids(&self) -> Vec<u32> {
        std::fs::read_to_string(self.procs_file())
            .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    fn read_u64(&self, file: &str) -> Option<u64> {
        read_u64(&self.path.join(file))
    }

    fn write(&self, file: &str, value: &str) -> anyhow::Result<()> {
        let target = self.path.join(file);
        std::fs::write(&target, value)
            .with_context(|| format!("failed to write {value} to {}", target.display()))
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        // Only processes this harness started can be inside: gopls and the
        // `go list` processes it ran.
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        loop {
            let pids = self.pids();
            if pids.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                eprintln!(
                    "warning: processes {pids:?} still in cgroup {} after {DRAIN_TIMEOUT:?}",
                    self.path.display()
                );
                break;
            }
            for pid in pids {
                // SAFETY: kill has no memory-safety preconditions.
                unsafe {
                    libc::kill(pid as i32, libc::SIGKILL);
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Err(e) = std::fs::remove_dir(&self.path) {
            eprintln!(
                "warning: failed to remove cgroup {}: {e}; remove it with rmdir",
                self.path.display()
            );
        }
    }
}

/// Working set of the cgroup at `path`: charged memory less inactive page
/// cache, the figure container runtimes (cAdvisor, kubelet) report.
pub fn working_set_of(path: &Path) -> u64 {
    let usage = read_u64(&path.join("memory.usage_in_bytes")).unwrap_or(0);
    let inactive = std::fs::read_to_string(path.join("memory.stat"))
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("total_inactive_file "))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0);
    usage.saturating_sub(inactive)
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Removes empty cgroups left by earlier harness runs whose process is gone.
pub fn remove_stale() {
    let Ok(entries) = std::fs::read_dir(MEMORY_ROOT) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(NAME_PREFIX) else {
            continue;
        };
        let owner_alive = rest
            .split('-')
            .next()
            .and_then(|pid| pid.parse::<u32>().ok())
            .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
        if !owner_alive {
            // rmdir fails on a cgroup that still has processes, which is what we want.
            let _ = std::fs::remove_dir(entry.path());
        }
    }
}
