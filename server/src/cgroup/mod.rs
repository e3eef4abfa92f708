//! Kernel memory limits for gopls instances through Linux cgroups (v2 or
//! v1), with a fallback that only measures memory when no cgroup is writable.
//!
//! [`CgroupManager::detect`] picks the mode once at startup and prepares one
//! parent group. Each gopls instance gets an [`InstanceGroup`] below it: the
//! launcher places the process there with [`InstanceGroup::pre_exec_hook`],
//! and the controller polls [`InstanceGroup::usage`]. The working set is
//! computed as the kubelet computes it (usage minus inactive file cache), so
//! it matches what Kubernetes reports for a container.
//!
//! cgroups-rs 0.5 finds and changes the v1 memory hierarchy, writes the
//! limits in both versions, lists and removes groups. The v2 mount, the
//! no-internal-processes handling, usage reads, `cgroup.kill` and the
//! pre-exec hook work on the files directly; each submodule explains why.

mod error;
mod files;
mod instance;
mod procfs;
#[cfg(test)]
mod tests;
mod v1;
mod v2;

use std::ffi::CString;
use std::fmt;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::PoisonError;

use serde::Deserialize;
use tracing::{info, warn};

use crate::bytesize::ByteSize;
use instance::LiveGroups;

pub use error::Error;
pub use instance::{InstanceGroup, KILL_TIMEOUT};

/// The name of the default parent group, created inside the server's own group.
pub const DEFAULT_PARENT_NAME: &str = "remote-gopls";

/// The prefix of every instance group's name. Stale cleanup removes only
/// groups with this prefix, so other groups under the parent, such as the
/// server's own leaf on cgroup v2, are never touched.
const INSTANCE_PREFIX: &str = "gopls-";

/// The maximum length of the workspace part of an instance group's name.
const MAX_WORKSPACE_NAME_LEN: usize = 64;

/// The enforcement mode of memory limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    V1,
    V2,
    /// No writable memory cgroup: memory is only measured from /proc, and
    /// the controller must enforce limits by restarting instances.
    Fallback {
        reason: String,
    },
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mode::V1 => f.write_str("cgroup v1"),
            Mode::V2 => f.write_str("cgroup v2"),
            Mode::Fallback { .. } => f.write_str("fallback"),
        }
    }
}

/// Cgroup settings: the parent group of instances, and whether cgroups are used at all.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CgroupConfig {
    /// The parent group of all instance groups, relative to the root of the
    /// hierarchy as mounted (`/sys/fs/cgroup` on v2, the memory mount such
    /// as `/sys/fs/cgroup/memory` on v1). A leading `/` is ignored and `..`
    /// is rejected. `None` means `<server's own group>/remote-gopls`.
    ///
    /// NOTE: two servers must not share a parent, because each one removes
    /// the other's instance groups as stale at startup.
    pub parent: Option<PathBuf>,
    /// Whether to use cgroups; `false` forces fallback mode.
    pub enabled: bool,
}

impl Default for CgroupConfig {
    fn default() -> Self {
        Self {
            parent: None,
            enabled: true,
        }
    }
}

/// The memory limits of one instance group, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryLimits {
    /// The hard limit: the kernel reclaims memory and then OOM-kills
    /// processes in the group rather than let it exceed this.
    pub max: u64,
    /// The throttling limit (v2 `memory.high`): above it the kernel reclaims
    /// and slows the group down. cgroup v1 has no equivalent and ignores it.
    pub high: Option<u64>,
}

impl MemoryLimits {
    /// Checks the limits for `workspace`, whose name the error carries.
    fn validate(&self, workspace: &str) -> Result<(), Error> {
        let invalid = |reason: String| Error::InvalidLimits {
            name: workspace.to_owned(),
            reason,
        };

        if self.max == 0 {
            return Err(invalid(
                "the memory limit must be greater than 0".to_owned(),
            ));
        }
        if i64::try_from(self.max).is_err() {
            return Err(invalid(format!(
                "the memory limit {} exceeds the kernel's maximum of {} bytes",
                self.max,
                i64::MAX
            )));
        }
        match self.high {
            Some(0) => Err(invalid("memory.high must be greater than 0".to_owned())),
            Some(high) if high > self.max => Err(invalid(format!(
                "memory.high ({}) must not exceed the memory limit ({})",
                ByteSize(high),
                ByteSize(self.max)
            ))),
            _ => Ok(()),
        }
    }

    /// Returns the hard limit as the `i64` that cgroups-rs takes; `validate`
    /// ensures it fits.
    fn max_i64(&self) -> i64 {
        i64::try_from(self.max).unwrap_or(i64::MAX)
    }

    /// Returns `high` as an `i64`; `validate` ensures it fits because it is
    /// at most `max`.
    fn high_i64(&self) -> Option<i64> {
        self.high
            .map(|high| i64::try_from(high).unwrap_or(i64::MAX))
    }
}

/// A snapshot of an instance group's memory, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemoryUsage {
    /// Usage minus the inactive file cache, floored at 0: memory the kernel
    /// cannot reclaim cheaply, as the kubelet reports it.
    pub working_set: u64,
    /// All memory charged to the group, including page cache.
    pub usage: u64,
    /// The limit the kernel applies (`u64::MAX` for none); the configured
    /// limit in fallback mode.
    pub limit: u64,
    /// Processes the kernel OOM killer has killed in the group; always 0 in
    /// fallback mode.
    pub oom_kills: u64,
}

/// The hierarchy in use and where the parent group is.
#[derive(Debug)]
enum Backend {
    V1 {
        hierarchy: v1::Hierarchy,
        /// The parent group, relative to the hierarchy's mount point.
        parent: PathBuf,
    },
    V2,
    Fallback,
}

/// Creates and cleans up the memory cgroups of gopls instances.
///
/// Every method works on the file system synchronously; `cleanup_stale` and
/// removing an [`InstanceGroup`] can block for up to [`KILL_TIMEOUT`].
#[derive(Debug)]
pub struct CgroupManager {
    mode: Mode,
    backend: Backend,
    /// The absolute directory of the parent group; `None` in fallback mode.
    parent_dir: Option<PathBuf>,
    live: LiveGroups,
}

impl CgroupManager {
    /// Detects cgroup v2 (a cgroup2 mount with the memory controller
    /// available to the server's group) or else cgroup v1 (a mounted memory
    /// hierarchy), creates the parent group and checks that it is writable.
    ///
    /// Logs the chosen mode once at info level. When no mode works, logs one
    /// warning with every reason and returns a manager in fallback mode.
    pub fn detect(config: &CgroupConfig) -> CgroupManager {
        let manager = Self::probe(config);
        if let Mode::Fallback { reason } = &manager.mode {
            warn!(
                cgroup.mode = %manager.mode,
                reason = %reason,
                "no writable memory cgroup, so gopls instances run without a kernel memory \
                 limit and the controller must enforce limits by restarting them"
            );
        } else {
            let parent = manager.parent_dir.as_deref().unwrap_or(Path::new(""));
            info!(
                cgroup.mode = %manager.mode,
                cgroup.parent = %parent.display(),
                "gopls instances get a kernel memory limit"
            );
        }
        manager
    }

    fn probe(config: &CgroupConfig) -> CgroupManager {
        if !config.enabled {
            return Self::fallback("cgroups are disabled by configuration (enabled = false)");
        }

        let parent = match config.parent.as_deref().map(normalize_parent).transpose() {
            Ok(parent) => parent,
            Err(reason) => return Self::fallback(&reason),
        };

        let v2_reason = match probe_v2(parent.as_deref()) {
            Ok(parent_dir) => return Self::with_backend(Mode::V2, Backend::V2, parent_dir),
            Err(reason) => reason,
        };
        let v1_reason = match probe_v1(parent.as_deref()) {
            Ok((hierarchy, parent)) => {
                let parent_dir = hierarchy.dir(&parent);
                return Self::with_backend(Mode::V1, Backend::V1 { hierarchy, parent }, parent_dir);
            }
            Err(reason) => reason,
        };
        Self::fallback(&format!("cgroup v2: {v2_reason}; cgroup v1: {v1_reason}"))
    }

    fn with_backend(mode: Mode, backend: Backend, parent_dir: PathBuf) -> CgroupManager {
        CgroupManager {
            mode,
            backend,
            parent_dir: Some(parent_dir),
            live: LiveGroups::default(),
        }
    }

    fn fallback(reason: &str) -> CgroupManager {
        CgroupManager {
            mode: Mode::Fallback {
                reason: reason.to_owned(),
            },
            backend: Backend::Fallback,
            parent_dir: None,
            live: LiveGroups::default(),
        }
    }

    pub fn mode(&self) -> &Mode {
        &self.mode
    }

    /// Returns the absolute directory of the parent group, or `None` in
    /// fallback mode.
    pub fn parent(&self) -> Option<&Path> {
        self.parent_dir.as_deref()
    }

    /// Removes instance groups that a previous run of the server left under
    /// the parent (the server was killed before it could remove them),
    /// killing any process still in them first. Groups of this manager's
    /// live instances are kept. Returns how many groups were removed.
    pub fn cleanup_stale(&self) -> usize {
        let Some(parent_dir) = &self.parent_dir else {
            return 0;
        };
        let entries = match fs::read_dir(parent_dir) {
            Ok(entries) => entries,
            Err(error) => {
                warn!(
                    cgroup.parent = %parent_dir.display(),
                    %error,
                    "failed to list the parent cgroup; stale instance cgroups were not removed"
                );
                return 0;
            }
        };

        let is_v2 = self.mode == Mode::V2;
        let mut removed = 0;
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with(INSTANCE_PREFIX) || !path.is_dir() || self.is_live(&path) {
                continue;
            }
            // Another server sharing this parent still owns the group.
            if let Some(owner) = owner_pid(&name).filter(|&pid| is_other_running_server(pid)) {
                warn!(
                    cgroup.path = %path.display(),
                    owner.pid = owner,
                    "another remote-gopls server uses this cgroup parent; its groups are left alone, but give each server its own [cgroup] parent"
                );
                continue;
            }

            match instance::remove_group(&path, is_v2) {
                Ok(killed) => {
                    removed += 1;
                    info!(
                        cgroup.path = %path.display(),
                        killed = ?killed,
                        "removed stale instance cgroup from a previous run"
                    );
                }
                Err(error) => warn!(%error, "failed to remove stale instance cgroup"),
            }
        }
        removed
    }

    /// Creates the group of one instance of `workspace` with `limits`.
    ///
    /// The group is named `gopls-<workspace>-p<server pid>-<12 hex digits>`,
    /// so stale cleanup can leave other running servers' groups alone. The
    /// workspace name is cut to 64 characters and every character other than
    /// ASCII letters, digits, `-`, `_` and `.` becomes `_`. In fallback mode
    /// nothing is created and the returned value only records the limit.
    pub fn create(&self, workspace: &str, limits: &MemoryLimits) -> Result<InstanceGroup, Error> {
        limits.validate(workspace)?;
        let name = instance_name(workspace);

        let dir = match (&self.backend, &self.parent_dir) {
            (Backend::V1 { hierarchy, parent }, _) => {
                hierarchy.create_group(&parent.join(&name), limits)?
            }
            (Backend::V2, Some(parent_dir)) => {
                let dir = parent_dir.join(&name);
                v2::create_group(&dir, limits)?;
                dir
            }
            _ => {
                return Ok(InstanceGroup::new(
                    self.mode.clone(),
                    None,
                    limits.max,
                    self.live.clone(),
                ))
            }
        };

        self.live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(dir.clone());
        info!(
            workspace.name = workspace,
            cgroup.path = %dir.display(),
            memory.max = %ByteSize(limits.max),
            memory.high = ?limits.high.map(ByteSize),
            "created instance cgroup"
        );
        Ok(InstanceGroup::new(
            self.mode.clone(),
            Some(dir),
            limits.max,
            self.live.clone(),
        ))
    }

    fn is_live(&self, dir: &Path) -> bool {
        self.live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(dir)
    }
}

/// Finds a v2 hierarchy with memory available and prepares the parent.
fn probe_v2(parent: Option<&Path>) -> Result<PathBuf, String> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|error| format!("failed to read /proc/self/mountinfo: {error}"))?;
    let proc_cgroup = fs::read_to_string("/proc/self/cgroup")
        .map_err(|error| format!("failed to read /proc/self/cgroup: {error}"))?;
    let location = v2::locate(&mountinfo, &proc_cgroup)?;

    let own = v2::original_own_group(location.own_group);
    let parent = parent.map_or_else(|| own.join(DEFAULT_PARENT_NAME), Path::to_path_buf);
    let parent_dir = v2::prepare_parent(&location.mount_point, &own, &parent)
        .map_err(|error| error.to_string())?;
    check_writable(&parent_dir)?;
    Ok(parent_dir)
}

/// Finds the v1 memory hierarchy and creates the parent in it.
fn probe_v1(parent: Option<&Path>) -> Result<(v1::Hierarchy, PathBuf), String> {
    let hierarchy = v1::locate()?;
    let parent = parent.map_or_else(
        || hierarchy.own_group.join(DEFAULT_PARENT_NAME),
        Path::to_path_buf,
    );
    let parent_dir = hierarchy
        .create_dir(&parent)
        .map_err(|error| error.to_string())?;
    check_writable(&parent_dir)?;
    Ok((hierarchy, parent))
}

/// Checks with access(2) that groups can be created in `dir`, which also
/// catches a read-only mount when the directory already existed.
fn check_writable(dir: &Path) -> Result<(), String> {
    let path = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| format!("cgroup path {} contains a NUL byte", dir.display()))?;

    // SAFETY: `path` is a valid NUL-terminated string for the whole call.
    if unsafe { libc::access(path.as_ptr(), libc::W_OK) } == 0 {
        return Ok(());
    }
    Err(format!(
        "cgroup {} is not writable: {}; run the server as root or delegate the cgroup to its user",
        dir.display(),
        std::io::Error::last_os_error()
    ))
}

/// Turns the configured parent into a path relative to the hierarchy root.
fn normalize_parent(parent: &Path) -> Result<PathBuf, String> {
    let mut relative = PathBuf::new();
    for component in parent.components() {
        match component {
            Component::Normal(name) => relative.push(name),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(format!(
                    "invalid cgroup parent {}: it must not contain '..'; name a group below \
                     the hierarchy root, such as remote-gopls",
                    parent.display()
                ))
            }
        }
    }

    if relative.as_os_str().is_empty() {
        return Err(format!(
            "invalid cgroup parent {:?}: it names the hierarchy root; name a group below it, \
             such as remote-gopls",
            parent.display().to_string()
        ));
    }
    Ok(relative)
}

/// Builds a unique group name for an instance of `workspace`.
fn instance_name(workspace: &str) -> String {
    let mut sanitized: String = workspace
        .chars()
        .take(MAX_WORKSPACE_NAME_LEN)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if !sanitized.chars().any(|c| c.is_ascii_alphanumeric()) {
        sanitized = "workspace".to_owned();
    }

    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!(
        "{INSTANCE_PREFIX}{sanitized}-p{}-{}",
        std::process::id(),
        &suffix[..12]
    )
}

/// Returns the pid of the server that created an instance group, from the
/// `-p<pid>-<12 hex>` end of its name. Older names carry no pid.
fn owner_pid(name: &str) -> Option<u32> {
    let (rest, hex) = name.rsplit_once('-')?;
    if hex.len() != 12 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let (_, pid) = rest.rsplit_once("-p")?;
    pid.parse().ok()
}

/// Returns whether `pid` is another running remote-gopls server, whose
/// groups are live and must not be removed as stale.
fn is_other_running_server(pid: u32) -> bool {
    if pid == std::process::id() {
        return false;
    }
    std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
        .map(|cmdline| {
            cmdline
                .split('\0')
                .next()
                .is_some_and(|exe| exe.contains("remote-gopls"))
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn mode_display() {
        assert_eq!(Mode::V1.to_string(), "cgroup v1");
        assert_eq!(Mode::V2.to_string(), "cgroup v2");
        let fallback = Mode::Fallback {
            reason: "none".to_owned(),
        };
        assert_eq!(fallback.to_string(), "fallback");
    }

    #[test]
    fn instance_name_sanitizes() {
        let pid = format!("-p{}-", std::process::id());
        let cases = [
            ("kubernetes", "gopls-kubernetes"),
            ("github.com/org/repo", "gopls-github.com_org_repo"),
            ("my repo (old)", "gopls-my_repo__old_"),
            ("..", "gopls-workspace"),
            ("", "gopls-workspace"),
            ("日本", "gopls-workspace"),
        ];
        for (workspace, prefix) in cases {
            let name = instance_name(workspace);
            let prefix = format!("{prefix}{pid}");
            assert!(name.starts_with(&prefix), "{workspace:?} gave {name:?}");
            assert_eq!(name.len(), prefix.len() + 12, "{workspace:?} gave {name:?}");
            assert_eq!(owner_pid(&name), Some(std::process::id()), "{name}");
        }
        assert_eq!(owner_pid("gopls-old-format-0123456789ab"), None);
    }

    #[test]
    fn instance_name_is_bounded_and_unique() {
        let long = "x".repeat(300);
        let first = instance_name(&long);
        let second = instance_name(&long);
        let pid_part = format!("-p{}", std::process::id()).len();
        assert_eq!(
            first.len(),
            INSTANCE_PREFIX.len() + MAX_WORKSPACE_NAME_LEN + pid_part + 13
        );
        assert_ne!(first, second);
    }

    #[test]
    fn normalize_parent_cases() {
        let accepted = [
            ("remote-gopls", "remote-gopls"),
            ("/kubepods/remote-gopls", "kubepods/remote-gopls"),
            ("./a/./b", "a/b"),
        ];
        for (input, expected) in accepted {
            assert_eq!(
                normalize_parent(Path::new(input)),
                Ok(PathBuf::from(expected))
            );
        }

        for input in ["a/../../etc", "..", "/", ""] {
            let error = normalize_parent(Path::new(input)).unwrap_err();
            assert!(error.contains("invalid cgroup parent"), "{input}: {error}");
        }
    }

    #[test]
    fn limits_validation() {
        let valid = MemoryLimits {
            max: 2 << 30,
            high: Some(1 << 30),
        };
        assert!(valid.validate("ws").is_ok());

        let invalid = [
            MemoryLimits { max: 0, high: None },
            MemoryLimits {
                max: u64::MAX,
                high: None,
            },
            MemoryLimits {
                max: 1 << 30,
                high: Some(0),
            },
            MemoryLimits {
                max: 1 << 30,
                high: Some(2 << 30),
            },
        ];
        for limits in invalid {
            let error = limits.validate("ws").unwrap_err();
            assert!(matches!(error, Error::InvalidLimits { .. }), "{limits:?}");
            assert!(error.to_string().contains("\"ws\""), "{error}");
        }
    }

    #[test]
    fn config_deserializes_with_defaults() {
        let config: CgroupConfig = toml::from_str("").unwrap();
        assert_eq!(config, CgroupConfig::default());
        assert!(config.enabled);

        let config: CgroupConfig =
            toml::from_str("parent = \"kubepods/gopls\"\nenabled = false").unwrap();
        assert_eq!(config.parent, Some(PathBuf::from("kubepods/gopls")));
        assert!(!config.enabled);
    }

    #[test]
    fn fallback_when_disabled() {
        let config = CgroupConfig {
            parent: None,
            enabled: false,
        };
        let manager = CgroupManager::detect(&config);

        let Mode::Fallback { reason } = manager.mode() else {
            panic!("expected fallback, got {}", manager.mode());
        };
        assert!(reason.contains("disabled"), "{reason}");
        assert_eq!(manager.parent(), None);
        assert_eq!(manager.cleanup_stale(), 0);

        let limits = MemoryLimits {
            max: 512 << 20,
            high: None,
        };
        let group = manager.create("ws", &limits).unwrap();
        assert_eq!(group.path(), None);
        assert_eq!(group.limit(), 512 << 20);
        assert!(group.pre_exec_hook().is_none());
        assert!(group.pids().is_empty());
        assert!(matches!(group.usage(None), Err(Error::MissingRootPid)));
    }
}
