//! Per-test cgroup parents: every test server gets its own parent group, so
//! one server's stale-group cleanup never touches another test's gopls.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Returns the memory cgroup of this process, relative to its hierarchy root: the
/// v1 `memory` line of /proc/self/cgroup, else the v2 `0::` line.
pub fn own_group() -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let v1 = text.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        controllers
            .split(',')
            .any(|c| c == "memory")
            .then(|| path.to_owned())
    });
    v1.or_else(|| {
        text.lines()
            .find_map(|l| l.strip_prefix("0::").map(str::to_owned))
    })
}

/// Returns a fresh parent group path for one test server, relative to the hierarchy root.
pub fn unique_parent() -> Option<String> {
    let own = own_group()?;
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    Some(format!(
        "{}/remote-gopls-e2e-{}-{n}",
        own.trim_end_matches('/'),
        std::process::id()
    ))
}

/// Returns the absolute directory of a group given relative to its hierarchy root.
pub fn group_dir(relative: &str) -> PathBuf {
    let relative = relative.trim_start_matches('/');
    let v1 = Path::new("/sys/fs/cgroup/memory").join(relative);
    if Path::new("/sys/fs/cgroup/memory").is_dir() {
        return v1;
    }
    Path::new("/sys/fs/cgroup").join(relative)
}

/// Processes in a group, from `cgroup.procs`.
pub fn procs(dir: &Path) -> Vec<u32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// Kills every process below `dir` and removes the groups, deepest first.
/// Best effort: used to clean up after a test, even a failed one.
pub fn remove_tree(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            remove_tree(&entry.path());
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let pids = procs(dir);
        if pids.is_empty() || Instant::now() > deadline {
            break;
        }
        for pid in pids {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe {
                libc::kill(pid as i32, libc::SIGKILL);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = std::fs::remove_dir(dir);
}
