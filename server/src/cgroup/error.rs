//! The error type of the cgroup module.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// A failure to create, configure, read or remove an instance's memory cgroup.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid memory limits for workspace {name:?}: {reason}")]
    InvalidLimits { name: String, reason: String },

    #[error(
        "failed to create cgroup {path}: {source}; check that the server runs as root \
         (or owns the delegated cgroup) and that the hierarchy is mounted read-write"
    )]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error(
        "failed to write {value:?} to {path}: {source}; check that the cgroup exists \
         and that the server may write to it"
    )]
    Write {
        path: PathBuf,
        value: String,
        #[source]
        source: io::Error,
    },

    #[error("failed to read {path}: {source}; check that the cgroup still exists")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("invalid content in {path}: {detail}")]
    Parse { path: PathBuf, detail: String },

    #[error(
        "timed out after {timeout:?} waiting for processes {pids:?} in cgroup {path} to exit \
         after SIGKILL; they may be in uninterruptible sleep (state D in /proc/<pid>/stat), \
         remove the cgroup by hand with rmdir once they are gone"
    )]
    KillTimeout {
        path: PathBuf,
        timeout: Duration,
        pids: Vec<u32>,
    },

    #[error(
        "cgroup {path} contains the server's own process {pid}; \
         set cgroup.parent to a group that the server does not run in"
    )]
    ContainsServer { path: PathBuf, pid: u32 },

    #[error("failed to remove cgroup {path}: {source}; remove it by hand with rmdir")]
    Remove {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("process {pid} not found; it exited before its memory usage was read")]
    ProcessNotFound { pid: u32 },

    #[error(
        "reading memory usage without a cgroup requires the pid of the instance's root process"
    )]
    MissingRootPid,
}

/// Converts an error of cgroups-rs into the `io::Error` it wraps.
///
/// The crate's own `Display` prints the cause with `Debug` formatting, so the
/// messages of this module keep only the OS error, or the crate's text when
/// there is no OS error.
pub(super) fn crate_io_error(error: cgroups_rs::fs::error::Error) -> io::Error {
    let os_code = std::error::Error::source(&error)
        .and_then(|cause| cause.downcast_ref::<io::Error>())
        .and_then(io::Error::raw_os_error);
    match os_code {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::other(error.kind().to_string()),
    }
}
