//! cgroup v2: finding the unified hierarchy, preparing the parent group,
//! writing an instance's limits and reading its memory usage.
//!
//! cgroups-rs 0.5 fixes the v2 root at `/sys/fs/cgroup` (`hierarchies::V2`
//! has no other constructor), reads `cgroup.controllers` only from there, and
//! its mountinfo parser keeps only v1 mounts. So this module finds the cgroup2
//! mount itself and every function works on absolute directories, which also
//! lets the tests run it against a temporary directory shaped like a v2
//! hierarchy. Limit writes go through the crate's `MemController`, which
//! accepts any directory.
//!
//! NOTE: the tests run this module only against such temporary directories.
//! Kernel behaviour, such as EBUSY from the no-internal-processes rule or
//! `cgroup.kill`, has no test on a kernel with memory on cgroup2.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use cgroups_rs::fs::memory::{MemController, SetMemory};
use cgroups_rs::fs::MaxValue;
use tracing::info;

use super::error::Error;
use super::files;
use super::{MemoryLimits, MemoryUsage};

/// The leaf group that the server's processes move into when their own group
/// must become an inner node of the tree.
pub(super) const SERVER_LEAF: &str = "server";

/// A cgroup2 mount from `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Mount {
    /// The mount point, such as `/sys/fs/cgroup`.
    pub mount_point: PathBuf,
    /// The group shown at the mount point, `/` unless a sub-tree is bind-mounted.
    pub root: PathBuf,
}

/// The hierarchy and group that the server runs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Location {
    pub mount_point: PathBuf,
    /// The server's own group, relative to `mount_point` (empty for the root).
    pub own_group: PathBuf,
}

/// Lists the cgroup2 mounts in `/proc/self/mountinfo` content, `/sys/fs/cgroup` first.
pub(super) fn parse_mounts(mountinfo: &str) -> Vec<Mount> {
    let mut mounts: Vec<Mount> = mountinfo.lines().filter_map(parse_mount_line).collect();
    mounts.sort_by_key(|mount| mount.mount_point != Path::new("/sys/fs/cgroup"));
    mounts
}

/// Parses one mountinfo line (see proc(5)): field 4 is the root, field 5 the
/// mount point, and the file system type follows the ` - ` separator.
fn parse_mount_line(line: &str) -> Option<Mount> {
    let (mount_fields, fs_fields) = line.split_once(" - ")?;
    if fs_fields.split_whitespace().next()? != "cgroup2" {
        return None;
    }

    let mut fields = mount_fields.split_whitespace().skip(3);
    let root = unescape_mountinfo(fields.next()?);
    let mount_point = unescape_mountinfo(fields.next()?);
    Some(Mount {
        mount_point: PathBuf::from(mount_point),
        root: PathBuf::from(root),
    })
}

/// Decodes the octal escapes (`\040` for a space) that mountinfo uses in paths.
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escape = bytes.get(index + 1..index + 4);
        let octal = escape
            .filter(|digits| bytes[index] == b'\\' && digits.iter().all(u8::is_ascii_digit))
            .and_then(|digits| u8::from_str_radix(std::str::from_utf8(digits).ok()?, 8).ok());
        match octal {
            Some(byte) => {
                decoded.push(byte);
                index += 4;
            }
            None => {
                decoded.push(bytes[index]);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// Returns the v2 group path from `/proc/self/cgroup` content (the `0::` line).
pub(super) fn parse_own_group(proc_cgroup: &str) -> Option<PathBuf> {
    proc_cgroup
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .map(|path| PathBuf::from(path.trim()))
}

/// Finds the cgroup2 mount that shows the server's group with the memory
/// controller available; the error lists why each mount was unusable.
pub(super) fn locate(mountinfo: &str, proc_cgroup: &str) -> Result<Location, String> {
    let own_group = parse_own_group(proc_cgroup)
        .ok_or("/proc/self/cgroup has no cgroup v2 entry (a line starting with 0::)")?;
    let mounts = parse_mounts(mountinfo);
    if mounts.is_empty() {
        return Err("no cgroup2 file system is mounted".to_owned());
    }

    let mut reasons = Vec::new();
    for mount in mounts {
        let Ok(relative) = own_group.strip_prefix(&mount.root) else {
            reasons.push(format!(
                "the cgroup2 mount at {} shows {}, which does not contain the server's group {}",
                mount.mount_point.display(),
                mount.root.display(),
                own_group.display()
            ));
            continue;
        };

        let own_dir = mount.mount_point.join(relative);
        match has_memory_controller(&own_dir) {
            Ok(true) => {
                return Ok(Location {
                    own_group: relative.to_path_buf(),
                    mount_point: mount.mount_point,
                })
            }
            Ok(false) => reasons.push(format!(
                "the memory controller is not available in {} (it may be bound to cgroup v1)",
                own_dir.display()
            )),
            Err(error) => reasons.push(error.to_string()),
        }
    }
    Err(reasons.join("; "))
}

/// Reports whether `cgroup.controllers` of the group at `dir` lists `memory`.
pub(super) fn has_memory_controller(dir: &Path) -> Result<bool, Error> {
    let controllers = files::read(&dir.join("cgroup.controllers"))?;
    Ok(controllers.split_whitespace().any(|name| name == "memory"))
}

/// Returns the server's group as first seen by this process.
///
/// Preparing the parent may move the server into `<own>/server`, after which
/// `/proc/self/cgroup` names that leaf. A later detection in the same process
/// must still derive the default parent from the original group, or each call
/// would nest one level deeper.
pub(super) fn original_own_group(current: PathBuf) -> PathBuf {
    static ORIGINAL: OnceLock<PathBuf> = OnceLock::new();
    ORIGINAL.get_or_init(|| current).clone()
}

/// Creates the group `parent` (relative to `mount_point`) and enables the
/// memory controller on the way to it, so that groups created below it get
/// `memory.*` files. Returns the parent's absolute directory.
///
/// cgroup v2 refuses to enable a controller for the children of a group that
/// contains processes (the no-internal-processes rule; only the root group is
/// exempt). When `parent` lies inside the server's own group `own`, that
/// group is about to become an inner node, so every process in it moves first
/// into the leaf `<own>/server`. The server is usually the only one, but a
/// container may also hold an init process such as tini, which would
/// otherwise block the change. The moved processes stay under the same
/// ancestors, so the limits that apply to them do not change.
pub(super) fn prepare_parent(
    mount_point: &Path,
    own: &Path,
    parent: &Path,
) -> Result<PathBuf, Error> {
    // Creating the directories first makes an unusable path fail before any
    // process moves. Child groups may be created while processes remain.
    let parent_dir = mount_point.join(parent);
    fs::create_dir_all(&parent_dir).map_err(|source| Error::Create {
        path: parent_dir.clone(),
        source,
    })?;

    if parent.starts_with(own) {
        move_processes_to_leaf(&mount_point.join(own))?;
    }

    let mut dir = mount_point.to_path_buf();
    enable_memory(&dir)?;
    for component in parent.components() {
        dir.push(component);
        enable_memory(&dir)?;
    }
    Ok(parent_dir)
}

/// Moves every process of the group at `own_dir` into its leaf `server`.
fn move_processes_to_leaf(own_dir: &Path) -> Result<(), Error> {
    let leaf = own_dir.join(SERVER_LEAF);
    fs::create_dir_all(&leaf).map_err(|source| Error::Create {
        path: leaf.clone(),
        source,
    })?;

    // A process may fork while the others move, so the list is read again.
    // Three rounds suffice for a server that has not started any work yet.
    let mut moved = Vec::new();
    for _ in 0..3 {
        let pids = read_procs(own_dir)?;
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            match fs::write(leaf.join("cgroup.procs"), pid.to_string()) {
                Ok(()) => moved.push(pid),
                // The process exited between the read and the write.
                Err(error) if error.raw_os_error() == Some(libc::ESRCH) => {}
                Err(source) => {
                    return Err(Error::Write {
                        path: leaf.join("cgroup.procs"),
                        value: pid.to_string(),
                        source,
                    })
                }
            }
        }
    }

    if !moved.is_empty() {
        moved.sort_unstable();
        moved.dedup();
        info!(
            cgroup.path = %leaf.display(),
            pids = ?moved,
            "moved the server's processes into a leaf cgroup so that its own cgroup can delegate the memory controller"
        );
    }
    Ok(())
}

/// Enables the memory controller for the children of the group at `dir`
/// unless `cgroup.subtree_control` already lists it.
fn enable_memory(dir: &Path) -> Result<(), Error> {
    let control = dir.join("cgroup.subtree_control");
    let enabled = files::read(&control)?;
    if enabled
        .split_whitespace()
        .any(|name| name.trim_start_matches('+') == "memory")
    {
        return Ok(());
    }

    match fs::write(&control, "+memory") {
        Ok(()) => Ok(()),
        Err(source) if source.raw_os_error() == Some(libc::EBUSY) => Err(Error::Write {
            path: control,
            value: "+memory".to_owned(),
            source: io::Error::other(format!(
                "{source}: processes {:?} are in {}, and cgroup v2 enables controllers only for \
                 the children of a group without processes; set cgroup.parent to a group \
                 outside any group with processes",
                read_procs(dir).unwrap_or_default(),
                dir.display()
            )),
        }),
        Err(source) => Err(Error::Write {
            path: control,
            value: "+memory".to_owned(),
            source,
        }),
    }
}

/// Reads the process ids in `cgroup.procs` of the group at `dir`.
pub(super) fn read_procs(dir: &Path) -> Result<Vec<u32>, Error> {
    let path = dir.join("cgroup.procs");
    let content = files::read(&path)?;
    content
        .split_whitespace()
        .map(|pid| {
            pid.parse().map_err(|_| Error::Parse {
                path: path.clone(),
                detail: format!("expected a process id, found {pid:?}"),
            })
        })
        .collect()
}

/// Creates the instance group at `dir` and sets its limits; on failure the
/// new directory is removed again.
pub(super) fn create_group(dir: &Path, limits: &MemoryLimits) -> Result<(), Error> {
    fs::create_dir(dir).map_err(|source| Error::Create {
        path: dir.to_path_buf(),
        source,
    })?;

    configure(dir, limits).inspect_err(|_| {
        let _ = fs::remove_dir(dir);
    })
}

/// Writes `memory.max`, the optional `memory.high`, and `memory.swap.max = 0`
/// where swap accounting exists, so the instance never swaps instead of being
/// limited.
pub(super) fn configure(dir: &Path, limits: &MemoryLimits) -> Result<(), Error> {
    let memory = MemController::new(dir.to_path_buf(), PathBuf::new(), true);

    let max = limits.max_i64();
    memory
        .set_limit(max)
        .map_err(|error| files::write_error(&dir.join("memory.max"), &max.to_string(), error))?;

    if let Some(high) = limits.high_i64() {
        let setting = SetMemory {
            high: Some(MaxValue::Value(high)),
            ..SetMemory::default()
        };
        memory.set_mem(setting).map_err(|error| {
            files::write_error(&dir.join("memory.high"), &high.to_string(), error)
        })?;
    }

    files::apply_optional(&dir.join("memory.swap.max"), "0", &[], || {
        memory.set_memswap_limit(0)
    })
}

/// Reads the usage of the group at `dir`.
///
/// cgroups-rs reads the same files but turns a read failure into 0 and does
/// not read `memory.events`, so the files are read here.
pub(super) fn read_usage(dir: &Path) -> Result<MemoryUsage, Error> {
    let usage = files::read_bytes(&dir.join("memory.current"))?;
    let limit = files::read_bytes(&dir.join("memory.max"))?;

    let stat = dir.join("memory.stat");
    let inactive_file = files::read_keyed(&stat, "inactive_file")?.ok_or(Error::Parse {
        path: stat,
        detail: "missing the inactive_file line".to_owned(),
    })?;

    // memory.events counts OOM kills in this group and its descendants;
    // kernels before 4.13 have no oom_kill line.
    let oom_kills = files::read_keyed(&dir.join("memory.events"), "oom_kill")?.unwrap_or(0);

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

    const MOUNTINFO: &str = "\
25 30 0:23 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
42 31 0:39 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate
43 31 0:40 /kubepods/pod1 /mnt/my\\040cgroup rw - cgroup2 cgroup2 rw
";

    /// Writes the files the kernel shows in every v2 group.
    fn make_group(dir: &Path, controllers: &str, subtree_control: &str, procs: &str) {
        fs::create_dir_all(dir).unwrap();
        fs::write(dir.join("cgroup.controllers"), controllers).unwrap();
        fs::write(dir.join("cgroup.subtree_control"), subtree_control).unwrap();
        fs::write(dir.join("cgroup.procs"), procs).unwrap();
    }

    #[test]
    fn parse_mounts_prefers_sys_fs_cgroup() {
        let mounts = parse_mounts(MOUNTINFO);
        let points: Vec<&Path> = mounts.iter().map(|m| m.mount_point.as_path()).collect();
        assert_eq!(
            points,
            [
                Path::new("/sys/fs/cgroup"),
                Path::new("/sys/fs/cgroup/unified"),
                Path::new("/mnt/my cgroup"),
            ]
        );
    }

    #[test]
    fn parse_mounts_reads_root() {
        let mounts = parse_mounts(MOUNTINFO);
        assert_eq!(mounts[2].root, Path::new("/kubepods/pod1"));
        assert_eq!(mounts[0].root, Path::new("/"));
    }

    #[test]
    fn parse_own_group_reads_v2_line() {
        let content = "4:memory:/a/b\n0::/system.slice/gopls.service\n";
        assert_eq!(
            parse_own_group(content),
            Some(PathBuf::from("/system.slice/gopls.service"))
        );
        assert_eq!(parse_own_group("4:memory:/a/b\n"), None);
    }

    #[test]
    fn v2_shaped_dir_locate_finds_memory() {
        let root = tempfile::tempdir().unwrap();
        make_group(root.path(), "cpu memory pids", "memory", "");
        make_group(&root.path().join("svc"), "memory pids", "", "1000001\n");
        let mountinfo = format!(
            "42 31 0:39 / {} rw - cgroup2 cgroup2 rw\n",
            root.path().display()
        );

        let location = locate(&mountinfo, "0::/svc\n").unwrap();
        assert_eq!(location.mount_point, root.path());
        assert_eq!(location.own_group, Path::new("svc"));
    }

    #[test]
    fn v2_shaped_dir_locate_rejects_no_memory() {
        let root = tempfile::tempdir().unwrap();
        make_group(root.path(), "", "", "");
        let mountinfo = format!(
            "41 31 0:38 / {} rw - cgroup2 cgroup2 rw\n",
            root.path().display()
        );

        let reason = locate(&mountinfo, "0::/\n").unwrap_err();
        assert!(
            reason.contains("memory controller is not available"),
            "{reason}"
        );
    }

    #[test]
    fn v2_shaped_dir_locate_rejects_foreign_root() {
        let root = tempfile::tempdir().unwrap();
        make_group(root.path(), "memory", "", "");
        let mountinfo = format!(
            "43 31 0:40 /kubepods/pod1 {} rw - cgroup2 cgroup2 rw\n",
            root.path().display()
        );

        let reason = locate(&mountinfo, "0::/system.slice/x.service\n").unwrap_err();
        assert!(reason.contains("does not contain"), "{reason}");
    }

    #[test]
    fn v2_shaped_dir_prepare_moves_server_to_leaf() {
        let root = tempfile::tempdir().unwrap();
        let own = root.path().join("svc");
        let parent = own.join("remote-gopls");
        make_group(root.path(), "cpu memory", "memory", "");
        make_group(&own, "memory", "", "1000001\n");
        make_group(&parent, "memory", "", "");

        let parent_dir =
            prepare_parent(root.path(), Path::new("svc"), Path::new("svc/remote-gopls")).unwrap();

        assert_eq!(parent_dir, parent);
        let leaf_procs = fs::read_to_string(own.join("server/cgroup.procs")).unwrap();
        assert_eq!(leaf_procs, "1000001");
        let own_control = fs::read_to_string(own.join("cgroup.subtree_control")).unwrap();
        assert_eq!(own_control, "+memory");
        let parent_control = fs::read_to_string(parent.join("cgroup.subtree_control")).unwrap();
        assert_eq!(parent_control, "+memory");
        let root_control = fs::read_to_string(root.path().join("cgroup.subtree_control")).unwrap();
        assert_eq!(root_control, "memory", "enabled controllers are left alone");
    }

    #[test]
    fn v2_shaped_dir_prepare_outside_own_keeps_server() {
        let root = tempfile::tempdir().unwrap();
        let own = root.path().join("svc");
        let parent = root.path().join("gopls");
        make_group(root.path(), "memory", "memory", "");
        make_group(&own, "memory", "", "1000001\n");
        make_group(&parent, "memory", "", "");

        prepare_parent(root.path(), Path::new("svc"), Path::new("gopls")).unwrap();

        assert!(!own.join(SERVER_LEAF).exists());
        let parent_control = fs::read_to_string(parent.join("cgroup.subtree_control")).unwrap();
        assert_eq!(parent_control, "+memory");
    }

    #[test]
    fn v2_shaped_dir_prepare_reports_missing_files() {
        let root = tempfile::tempdir().unwrap();
        let own = root.path().join("svc");
        make_group(root.path(), "memory", "memory", "");
        make_group(&own, "memory", "", "");

        // A directory made by mkdir outside cgroupfs has no interface files,
        // which is how a group that vanished mid-way looks.
        let error =
            prepare_parent(root.path(), Path::new("svc"), Path::new("svc/new")).unwrap_err();
        assert!(matches!(error, Error::Read { .. }), "{error}");
        assert!(
            error.to_string().contains("cgroup.subtree_control"),
            "{error}"
        );
    }

    #[test]
    fn v2_shaped_dir_prepare_bad_path_moves_nothing() {
        let root = tempfile::tempdir().unwrap();
        make_group(root.path(), "memory", "", "1000001\n");

        let error =
            prepare_parent(root.path(), Path::new(""), Path::new("cgroup.procs/x")).unwrap_err();

        assert!(matches!(error, Error::Create { .. }), "{error}");
        assert!(!root.path().join(SERVER_LEAF).exists());
        let control = fs::read_to_string(root.path().join("cgroup.subtree_control")).unwrap();
        assert_eq!(control, "");
    }

    #[test]
    fn v2_shaped_dir_configure_writes_limits() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("memory.max"), "max\n").unwrap();
        fs::write(dir.path().join("memory.high"), "max\n").unwrap();
        fs::write(dir.path().join("memory.swap.max"), "max\n").unwrap();
        let limits = MemoryLimits {
            max: 2 << 30,
            high: Some(1 << 30),
        };

        configure(dir.path(), &limits).unwrap();

        let read = |name: &str| fs::read_to_string(dir.path().join(name)).unwrap();
        assert_eq!(read("memory.max"), "2147483648");
        assert_eq!(read("memory.high"), "1073741824");
        assert_eq!(read("memory.swap.max"), "0");
    }

    #[test]
    fn v2_shaped_dir_configure_skips_missing_swap() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("memory.max"), "max\n").unwrap();
        let limits = MemoryLimits {
            max: 64 << 20,
            high: None,
        };

        configure(dir.path(), &limits).unwrap();

        assert!(!dir.path().join("memory.swap.max").exists());
        assert!(!dir.path().join("memory.high").exists());
        let max = fs::read_to_string(dir.path().join("memory.max")).unwrap();
        assert_eq!(max, "67108864");
    }

    #[test]
    fn v2_shaped_dir_usage_subtracts_inactive_file() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("memory.current"), "10485760\n").unwrap();
        fs::write(dir.path().join("memory.max"), "33554432\n").unwrap();
        fs::write(
            dir.path().join("memory.stat"),
            "anon 6291456\nfile 4194304\nactive_file 1048576\ninactive_file 3145728\n",
        )
        .unwrap();
        fs::write(
            dir.path().join("memory.events"),
            "low 0\nhigh 0\nmax 12\noom 2\noom_kill 2\noom_group_kill 0\n",
        )
        .unwrap();

        let usage = read_usage(dir.path()).unwrap();

        assert_eq!(usage.usage, 10485760);
        assert_eq!(usage.working_set, 10485760 - 3145728);
        assert_eq!(usage.limit, 33554432);
        assert_eq!(usage.oom_kills, 2);
    }

    #[test]
    fn v2_shaped_dir_usage_floors_at_zero() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("memory.current"), "4096\n").unwrap();
        fs::write(dir.path().join("memory.max"), "max\n").unwrap();
        fs::write(dir.path().join("memory.stat"), "inactive_file 8192\n").unwrap();
        fs::write(dir.path().join("memory.events"), "oom 0\n").unwrap();

        let usage = read_usage(dir.path()).unwrap();

        assert_eq!(usage.working_set, 0);
        assert_eq!(usage.limit, u64::MAX);
        assert_eq!(usage.oom_kills, 0);
    }

    #[test]
    fn v2_shaped_dir_usage_needs_inactive_file() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("memory.current"), "4096\n").unwrap();
        fs::write(dir.path().join("memory.max"), "max\n").unwrap();
        fs::write(dir.path().join("memory.stat"), "anon 4096\n").unwrap();
        fs::write(dir.path().join("memory.events"), "oom_kill 0\n").unwrap();

        let error = read_usage(dir.path()).unwrap_err();
        assert!(error.to_string().contains("inactive_file"), "{error}");
    }

    #[test]
    fn v2_shaped_dir_read_procs() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("cgroup.procs"), "1000001\n1000002\n").unwrap();
        assert_eq!(read_procs(dir.path()).unwrap(), [1000001, 1000002]);
    }
}
