//! One gopls instance's memory cgroup: placing the process in it at spawn,
//! reading its memory usage, and removing it.

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use cgroups_rs::fs::memory::MemController;
use cgroups_rs::fs::Controller;
use tracing::{info, warn};

use super::error::{crate_io_error, Error};
use super::{files, procfs, v1, v2, MemoryUsage, Mode};

/// How long removal waits for SIGKILLed processes to leave a group. Killed
/// processes exit within milliseconds unless they are in uninterruptible
/// sleep, for example on a hung network file system.
pub const KILL_TIMEOUT: Duration = Duration::from_secs(5);

const KILL_POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Absolute directories of the groups that the live `InstanceGroup`s of one
/// manager own, so that stale cleanup never removes them.
pub(super) type LiveGroups = Arc<Mutex<HashSet<PathBuf>>>;

/// The memory cgroup of one gopls instance.
///
/// In fallback mode there is no group: the value only records the configured
/// limit, and `usage` sums the resident set of the process tree from /proc.
///
/// Dropping the value removes the group (killing any process still in it) if
/// `remove` was not called. Both block for up to [`KILL_TIMEOUT`], so async
/// callers should use `tokio::task::spawn_blocking`.
#[derive(Debug)]
pub struct InstanceGroup {
    mode: Mode,
    dir: Option<PathBuf>,
    limit: u64,
    removed: bool,
    live: LiveGroups,
}

impl InstanceGroup {
    pub(super) fn new(mode: Mode, dir: Option<PathBuf>, limit: u64, live: LiveGroups) -> Self {
        Self {
            mode,
            dir,
            limit,
            removed: false,
            live,
        }
    }

    /// Returns the absolute cgroup directory, or `None` in fallback mode.
    pub fn path(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    pub fn mode(&self) -> &Mode {
        &self.mode
    }

    /// Returns the configured limit in bytes. cgroup v1 rounds the limit down
    /// to whole pages, and `usage().limit` reports what the kernel applies.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Returns a hook for `pre_exec` (`std::os::unix::process::CommandExt` or
    /// `tokio::process::Command`) that moves the child into this group after
    /// fork and before exec, so the process and everything it starts are
    /// limited from their first instruction. Returns `None` in fallback mode.
    ///
    /// The group's `cgroup.procs` file is opened here, before fork, and the
    /// hook only writes `0` ("the calling process") to it. That is one
    /// write(2) call on an open descriptor, plus reading errno on failure.
    /// It allocates nothing and takes no lock, so it is async-signal-safe, as
    /// code between fork and exec in a multi-threaded process must be. The
    /// descriptor is close-on-exec, so gopls does not inherit it.
    ///
    /// If the file cannot be opened (the group was removed, or permission is
    /// missing), that is logged now and the hook fails the spawn with the same
    /// OS error instead of running gopls without a limit.
    pub fn pre_exec_hook(&self) -> Option<impl FnMut() -> io::Result<()> + Send + Sync + 'static> {
        let procs = self.dir.as_ref()?.join("cgroup.procs");
        let file = OpenOptions::new()
            .write(true)
            .open(&procs)
            .map_err(|error| {
                warn!(
                    cgroup.path = %procs.display(),
                    %error,
                    "failed to open cgroup.procs; spawning into this cgroup will fail"
                );
                error.raw_os_error().unwrap_or(libc::EIO)
            });

        Some(move || match &file {
            Ok(file) => join_cgroup(file.as_raw_fd()),
            Err(code) => Err(io::Error::from_raw_os_error(*code)),
        })
    }

    /// Reads the group's memory usage.
    ///
    /// `root_pid` is used only in fallback mode, where the resident set sizes
    /// of that process and its descendants are summed; it is required there.
    pub fn usage(&self, root_pid: Option<u32>) -> Result<MemoryUsage, Error> {
        match (&self.mode, &self.dir) {
            (Mode::V1, Some(dir)) => v1::read_usage(dir),
            (Mode::V2, Some(dir)) => v2::read_usage(dir),
            _ => {
                let pid = root_pid.ok_or(Error::MissingRootPid)?;
                let resident = procfs::tree_rss(pid)?;
                Ok(MemoryUsage {
                    working_set: resident,
                    usage: resident,
                    limit: self.limit,
                    oom_kills: 0,
                })
            }
        }
    }

    /// Lists the processes in the group; empty in fallback mode or when the
    /// group cannot be read.
    pub fn pids(&self) -> Vec<u32> {
        match &self.dir {
            Some(dir) => group_pids(dir, self.mode == Mode::V2),
            None => Vec::new(),
        }
    }

    /// Kills any process left in the group, waits until it is empty and
    /// removes it.
    pub fn remove(mut self) -> Result<(), Error> {
        self.removed = true;
        self.remove_dir()
    }

    fn remove_dir(&self) -> Result<(), Error> {
        let Some(dir) = &self.dir else {
            return Ok(());
        };

        // Once its owner is gone, a group that failed to be removed is stale,
        // and a later `cleanup_stale` may retry it.
        self.live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(dir);

        let killed = remove_group(dir, self.mode == Mode::V2)?;
        info!(cgroup.path = %dir.display(), killed = ?killed, "removed instance cgroup");
        Ok(())
    }
}

impl Drop for InstanceGroup {
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        if let Err(error) = self.remove_dir() {
            warn!(%error, "failed to remove instance cgroup on drop");
        }
    }
}

/// Moves the calling process into the group whose `cgroup.procs` is open as
/// `fd`. Runs between fork and exec, so it must stay async-signal-safe.
fn join_cgroup(fd: RawFd) -> io::Result<()> {
    loop {
        // SAFETY: `fd` belongs to a `File` owned by the hook, which outlives
        // this call, and the buffer is a one-byte static string.
        let written = unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) };
        if written == 1 {
            return Ok(());
        }
        if written >= 0 {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }

        let error = io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::EINTR) {
            return Err(error);
        }
    }
}

/// Reads the pids in the group at `dir` through cgroups-rs, which reads
/// `cgroup.procs` in both versions and returns nothing for a missing group.
pub(super) fn group_pids(dir: &Path, is_v2: bool) -> Vec<u32> {
    MemController::new(dir.to_path_buf(), PathBuf::new(), is_v2)
        .procs()
        .into_iter()
        .filter_map(|pid| u32::try_from(pid.pid).ok())
        .filter(|&pid| pid != 0)
        .collect()
}

/// Kills every process in the group at `dir`, waits until it is empty and
/// removes it with any sub-groups. Returns the pids it killed.
pub(super) fn remove_group(dir: &Path, is_v2: bool) -> Result<Vec<u32>, Error> {
    let killed = kill_all(dir, is_v2, KILL_TIMEOUT)?;

    // cgroups-rs retries rmdir with a growing delay for about 150 ms, which
    // covers a group that the kernel still counts as populated just after
    // its last process exited.
    MemController::new(dir.to_path_buf(), PathBuf::new(), is_v2)
        .delete()
        .map_err(|error| Error::Remove {
            path: dir.to_path_buf(),
            source: crate_io_error(error),
        })?;
    Ok(killed)
}

/// Sends SIGKILL to every process in the group at `dir` until none is left,
/// or fails after `timeout`.
///
/// cgroup v2 on Linux 5.14 and later has `cgroup.kill`, which kills the whole
/// group atomically, including processes forked meanwhile. Elsewhere the pids
/// are read and signalled one by one, and the list is read again until it is
/// empty, which also catches processes forked in between.
fn kill_all(dir: &Path, is_v2: bool, timeout: Duration) -> Result<Vec<u32>, Error> {
    let server_pid = std::process::id();
    let cgroup_kill = dir.join("cgroup.kill");
    let use_cgroup_kill = is_v2 && cgroup_kill.exists();
    let deadline = Instant::now() + timeout;
    let mut killed = Vec::new();

    loop {
        let pids = group_pids(dir, is_v2);
        if pids.is_empty() {
            killed.sort_unstable();
            killed.dedup();
            return Ok(killed);
        }
        if pids.contains(&server_pid) {
            return Err(Error::ContainsServer {
                path: dir.to_path_buf(),
                pid: server_pid,
            });
        }
        if Instant::now() >= deadline {
            return Err(Error::KillTimeout {
                path: dir.to_path_buf(),
                timeout,
                pids,
            });
        }

        if use_cgroup_kill {
            match files::write(&cgroup_kill, "1") {
                Err(Error::Write { source, .. }) if files::is_not_found(&source) => {}
                result => result?,
            }
        } else {
            // A pid above i32::MAX cannot come from the kernel, and passing
            // one to kill would wrap to a negative number, which names a
            // process group instead of a process.
            for pid in pids
                .iter()
                .filter_map(|&pid| libc::pid_t::try_from(pid).ok())
            {
                // NOTE: a pid read from cgroup.procs can exit and be reused by
                // an unrelated process before this kill. The window is a few
                // microseconds, and cgroup.kill on v2 closes it.
                // SAFETY: kill has no memory-safety preconditions. ESRCH (the
                // process already exited) is expected and ignored.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        killed.extend(&pids);
        std::thread::sleep(KILL_POLL_INTERVAL);
    }
}
