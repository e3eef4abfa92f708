//! cgroup v1: the memory hierarchy through cgroups-rs, and reading an
//! instance's memory usage from its files.

use std::io;
use std::path::{Path, PathBuf};

use cgroups_rs::fs::cgroup::{get_cgroups_relative_paths, Cgroup};
use cgroups_rs::fs::hierarchies::V1;
use cgroups_rs::fs::memory::MemController;
use cgroups_rs::fs::{Controller, Controllers};
use tracing::debug;

use super::error::{crate_io_error, Error};
use super::files;
use super::{MemoryLimits, MemoryUsage};

/// The v1 memory hierarchy and the server's group in it.
#[derive(Debug, Clone)]
pub(super) struct Hierarchy {
    /// The mount point of the memory hierarchy, such as `/sys/fs/cgroup/memory`.
    pub mount_point: PathBuf,
    /// The server's own memory group, relative to `mount_point` (empty for the root).
    pub own_group: PathBuf,
}

/// Finds the memory hierarchy and the server's group in it; the error
/// explains why v1 cannot be used.
pub(super) fn locate() -> Result<Hierarchy, String> {
    let (mount_point, mount_root) = V1::new()
        .get_mount_point(Controllers::Mem)
        .ok_or("no cgroup v1 memory hierarchy is mounted")?;

    let groups = get_cgroups_relative_paths().map_err(|error| {
        format!(
            "failed to read /proc/self/cgroup: {}",
            crate_io_error(error)
        )
    })?;
    let own = groups
        .get("memory")
        .ok_or("/proc/self/cgroup has no memory entry")?;

    // Without a cgroup namespace, a container may see a sub-tree of the
    // hierarchy mounted at its root while /proc/self/cgroup names the full path.
    let own_group = Path::new(own).strip_prefix(&mount_root).map_err(|_| {
        format!(
            "the memory hierarchy at {} shows {}, which does not contain the server's group {own}",
            mount_point.display(),
            mount_root.display()
        )
    })?;

    Ok(Hierarchy {
        mount_point,
        own_group: own_group.to_path_buf(),
    })
}

impl Hierarchy {
    /// Returns the absolute directory of `group` (relative to the mount point).
    pub(super) fn dir(&self, group: &Path) -> PathBuf {
        self.mount_point.join(group)
    }

    /// Returns a cgroups-rs handle for `group` in the memory hierarchy only.
    ///
    /// `Cgroup::new` would create the group in every mounted v1 hierarchy
    /// (cpu, cpuset, ...), and a new cpuset group cannot run processes until
    /// its cpus and mems are set, so the handle is limited to memory.
    fn load(&self, group: &Path) -> Cgroup {
        Cgroup::load_with_specified_controllers(
            Box::new(V1::new()),
            group,
            vec![Controllers::Mem.to_string()],
        )
    }

    /// Creates `group` and any missing ancestors; returns its absolute directory.
    pub(super) fn create_dir(&self, group: &Path) -> Result<PathBuf, Error> {
        let dir = self.dir(group);
        self.load(group).create().map_err(|error| Error::Create {
            path: dir.clone(),
            source: crate_io_error(error),
        })?;
        Ok(dir)
    }

    /// Creates the instance group `group` and sets its limits; on failure the
    /// new group is removed again. Returns its absolute directory.
    pub(super) fn create_group(
        &self,
        group: &Path,
        limits: &MemoryLimits,
    ) -> Result<PathBuf, Error> {
        let dir = self.create_dir(group)?;
        let cgroup = self.load(group);
        let Some(memory) = cgroup.controller_of::<MemController>() else {
            return Err(Error::Create {
                path: dir,
                source: io::Error::other("the cgroup v1 memory hierarchy is no longer mounted"),
            });
        };

        configure(memory, &dir, limits).inspect_err(|_| {
            let _ = memory.delete();
        })?;
        Ok(dir)
    }
}

/// Writes `memory.limit_in_bytes`, and where the kernel offers them
/// `memory.memsw.limit_in_bytes` equal to it (memory plus swap may not exceed
/// the memory limit, so nothing is swapped) and `memory.swappiness = 0`.
///
/// cgroup v1 has no equivalent of `memory.high`, so `limits.high` is ignored;
/// `memory.soft_limit_in_bytes` only applies under global memory pressure.
fn configure(memory: &MemController, dir: &Path, limits: &MemoryLimits) -> Result<(), Error> {
    let max = limits.max_i64();
    memory.set_limit(max).map_err(|error| {
        files::write_error(&dir.join("memory.limit_in_bytes"), &max.to_string(), error)
    })?;

    if limits.high.is_some() {
        debug!(cgroup.path = %dir.display(), "cgroup v1 has no memory.high; ignored");
    }

    // The memsw file exists only when the kernel accounts swap (swapaccount=1).
    files::apply_optional(
        &dir.join("memory.memsw.limit_in_bytes"),
        &max.to_string(),
        &[],
        || memory.set_memswap_limit(max),
    )?;

    // Older kernels reject swappiness with EINVAL for a group that has
    // children under use_hierarchy, and a delegated hierarchy may make the
    // file read-only. The limit still applies without it, so these are skipped too.
    files::apply_optional(
        &dir.join("memory.swappiness"),
        "0",
        &[libc::EACCES, libc::EPERM],
        || memory.set_swappiness(0),
    )
}

/// Reads the usage of the group at `dir`.
///
/// cgroups-rs's `MemController::memory_stat` reads the same files but turns
/// every read failure into 0, which would report a vanished group as empty,
/// so the files are read here.
pub(super) fn read_usage(dir: &Path) -> Result<MemoryUsage, Error> {
    let usage = files::read_bytes(&dir.join("memory.usage_in_bytes"))?;
    let limit = files::read_bytes(&dir.join("memory.limit_in_bytes"))?;

    // The total_ values include descendant groups, like usage_in_bytes does.
    let stat = dir.join("memory.stat");
    let inactive_file = files::read_keyed(&stat, "total_inactive_file")?.ok_or(Error::Parse {
        path: stat,
        detail: "missing the total_inactive_file line".to_owned(),
    })?;

    // NOTE: memory.oom_control has an oom_kill line only on kernels 4.13 and
    // later; older kernels report 0 OOM kills here.
    let oom_kills = files::read_keyed(&dir.join("memory.oom_control"), "oom_kill")?.unwrap_or(0);

    Ok(MemoryUsage {
        working_set: usage.saturating_sub(inactive_file),
        usage,
        limit,
        oom_kills,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn usage_from_v1_shaped_dir() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("memory.usage_in_bytes"), "10485760\n").unwrap();
        fs::write(dir.path().join("memory.limit_in_bytes"), "33554432\n").unwrap();
        fs::write(
            dir.path().join("memory.stat"),
            "cache 4194304\ninactive_file 1048576\ntotal_inactive_file 2097152\n",
        )
        .unwrap();
        fs::write(
            dir.path().join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
        )
        .unwrap();

        let usage = read_usage(dir.path()).unwrap();

        assert_eq!(usage.usage, 10485760);
        assert_eq!(usage.working_set, 10485760 - 2097152);
        assert_eq!(usage.limit, 33554432);
        assert_eq!(usage.oom_kills, 3);
    }

    #[test]
    fn usage_without_oom_kill_line() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("memory.usage_in_bytes"), "4096\n").unwrap();
        fs::write(dir.path().join("memory.limit_in_bytes"), "8192\n").unwrap();
        fs::write(dir.path().join("memory.stat"), "total_inactive_file 0\n").unwrap();
        fs::write(
            dir.path().join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\n",
        )
        .unwrap();

        let usage = read_usage(dir.path()).unwrap();

        assert_eq!(usage.oom_kills, 0);
        assert_eq!(usage.working_set, 4096);
    }
}
