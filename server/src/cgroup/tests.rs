//! Tests against this machine's kernel: real cgroup v1 groups, an OOM kill,
//! stale cleanup, and the /proc fallback.
//!
//! Tests that need root and a writable cgroup v1 memory hierarchy print why
//! they skip and return when those are missing. Each test creates its own
//! parent group with a unique name, and guards kill every process they start
//! and remove every group, also when an assertion fails.

use std::fs;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::*;

const MIB: u64 = 1 << 20;

/// A parent group for one test, removed with everything in it on drop.
struct TestParent {
    manager: CgroupManager,
    config: CgroupConfig,
    /// The v1 memory hierarchy's mount point.
    mount_point: PathBuf,
    dir: PathBuf,
}

impl TestParent {
    /// Returns the path that `/proc/<pid>/cgroup` shows for the group at `dir`.
    fn proc_path(&self, dir: &Path) -> String {
        format!(
            "/{}",
            dir.strip_prefix(&self.mount_point).unwrap().display()
        )
    }
}

impl Drop for TestParent {
    fn drop(&mut self) {
        let is_v2 = self.manager.mode() == &Mode::V2;
        let dirs = [Some(self.dir.as_path()), self.manager.parent()];
        for dir in dirs.into_iter().flatten() {
            if let Ok(entries) = fs::read_dir(dir) {
                for entry in entries.flatten().filter(|entry| entry.path().is_dir()) {
                    let _ = instance::remove_group(&entry.path(), is_v2);
                }
            }
            let _ = fs::remove_dir(dir);
        }
    }
}

/// Creates a manager on a fresh parent group in the v1 memory hierarchy, or
/// prints why the calling test skips and returns `None`.
fn v1_parent(test: &str) -> Option<TestParent> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("skipping {test}: creating cgroups needs root");
        return None;
    }
    let hierarchy = match v1::locate() {
        Ok(hierarchy) => hierarchy,
        Err(reason) => {
            println!("skipping {test}: cgroup v1 is not usable: {reason}");
            return None;
        }
    };

    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let parent = hierarchy
        .own_group
        .join(format!("remote-gopls-{test}-{suffix}"));
    let config = CgroupConfig {
        parent: Some(parent.clone()),
        enabled: true,
    };
    let manager = CgroupManager::detect(&config);
    let dir = hierarchy.dir(&parent);
    let guard = TestParent {
        manager,
        config,
        mount_point: hierarchy.mount_point.clone(),
        dir,
    };

    if guard.manager.mode() != &Mode::V1 {
        println!(
            "skipping {test}: detection chose {} instead of cgroup v1 ({:?})",
            guard.manager.mode(),
            guard.manager.mode()
        );
        return None;
    }
    Some(guard)
}

/// A child process that is killed and reaped on drop.
struct Reaped(Child);

impl Reaped {
    fn pid(&self) -> u32 {
        self.0.id()
    }

    fn wait(&mut self) -> ExitStatus {
        self.0.wait().unwrap()
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_in(group: &InstanceGroup, program: &str, args: &[&str]) -> Reaped {
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let hook = group.pre_exec_hook().expect("a cgroup mode has a hook");
    // SAFETY: the hook only calls write(2), which is async-signal-safe.
    unsafe { command.pre_exec(hook) };
    Reaped(command.spawn().unwrap())
}

/// Returns the memory cgroup path that `/proc/<pid>/cgroup` names.
fn memory_cgroup_of(pid: u32) -> String {
    let content = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    content
        .lines()
        .find_map(|line| {
            let mut fields = line.splitn(3, ':');
            let _id = fields.next()?;
            let controllers = fields.next()?;
            let path = fields.next()?;
            controllers
                .split(',')
                .any(|name| name == "memory")
                .then(|| path.to_owned())
        })
        .unwrap()
}

/// Reports whether `pid` still runs (exists and is not a zombie).
fn is_running(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
            !state.is_some_and(|rest| rest.starts_with('Z') || rest.starts_with('X'))
        }
        Err(_) => false,
    }
}

/// Reads the resident set size of one process from `/proc/<pid>/statm`.
fn resident_bytes(pid: u32) -> u64 {
    let statm = fs::read_to_string(format!("/proc/{pid}/statm")).unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    // SAFETY: sysconf only reads a system constant.
    let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * u64::try_from(page_size).unwrap()
}

/// Polls `condition` every 10 ms for up to five seconds.
fn wait_until(mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        sleep(Duration::from_millis(10));
    }
    condition()
}

/// Computes the working set from the v1 files, independently of `v1::read_usage`.
fn working_set_from_files(dir: &Path) -> u64 {
    let usage: u64 = fs::read_to_string(dir.join("memory.usage_in_bytes"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let stat = fs::read_to_string(dir.join("memory.stat")).unwrap();
    let inactive: u64 = stat
        .lines()
        .find_map(|line| line.strip_prefix("total_inactive_file "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    usage.saturating_sub(inactive)
}

#[test]
fn v1_group_holds_child_and_grandchild() {
    let Some(parent) = v1_parent("v1_group_holds_child_and_grandchild") else {
        return;
    };
    let limits = MemoryLimits {
        max: 256 * MIB,
        high: None,
    };
    let group = parent.manager.create("child test", &limits).unwrap();
    let dir = group.path().unwrap().to_path_buf();
    let relative = parent.proc_path(&dir);

    assert_eq!(group.mode(), &Mode::V1);
    assert_eq!(group.limit(), 256 * MIB);
    let kernel_limit = fs::read_to_string(dir.join("memory.limit_in_bytes")).unwrap();
    assert_eq!(kernel_limit.trim(), (256 * MIB).to_string());
    if dir.join("memory.memsw.limit_in_bytes").exists() {
        let memsw = fs::read_to_string(dir.join("memory.memsw.limit_in_bytes")).unwrap();
        assert_eq!(memsw.trim(), (256 * MIB).to_string());
    }
    let swappiness = fs::read_to_string(dir.join("memory.swappiness")).unwrap();
    assert_eq!(swappiness.trim(), "0");

    let mut sleeper = spawn_in(&group, "sleep", &["30"]);
    assert!(memory_cgroup_of(sleeper.pid()).ends_with(&relative));

    let mut shell = spawn_in(&group, "sh", &["-c", "sleep 30 & wait"]);
    assert!(
        wait_until(|| group.pids().len() == 3),
        "expected sleep, sh and its sleep in {}, found {:?}",
        dir.display(),
        group.pids()
    );
    let grandchild = *group
        .pids()
        .iter()
        .find(|&&pid| pid != sleeper.pid() && pid != shell.pid())
        .unwrap();
    assert!(memory_cgroup_of(grandchild).ends_with(&relative));

    let mut matched = None;
    for _ in 0..20 {
        let before = working_set_from_files(&dir);
        let usage = group.usage(None).unwrap();
        let after = working_set_from_files(&dir);
        if before == after && usage.working_set == before {
            matched = Some(usage);
            break;
        }
        sleep(Duration::from_millis(50));
    }
    let usage = matched.expect("usage never matched the working set computed from the files");
    assert!(usage.working_set > 0, "{usage:?}");
    assert!(usage.working_set <= usage.limit, "{usage:?}");
    assert_eq!(usage.limit, 256 * MIB);
    assert_eq!(usage.oom_kills, 0);

    group.remove().unwrap();

    assert!(!dir.exists(), "{} still exists", dir.display());
    assert_eq!(sleeper.wait().signal(), Some(libc::SIGKILL));
    assert_eq!(shell.wait().signal(), Some(libc::SIGKILL));
    assert!(
        wait_until(|| !is_running(grandchild)),
        "grandchild {grandchild} still runs"
    );
}

#[test]
fn v1_hook_serves_repeated_spawns() {
    let Some(parent) = v1_parent("v1_hook_serves_repeated_spawns") else {
        return;
    };
    let limits = MemoryLimits {
        max: 64 * MIB,
        high: None,
    };
    let group = parent.manager.create("repeat", &limits).unwrap();

    // One Command spawned twice shares the hook and its descriptor.
    let mut command = Command::new("sleep");
    command.arg("30");
    // SAFETY: the hook only calls write(2), which is async-signal-safe.
    unsafe { command.pre_exec(group.pre_exec_hook().unwrap()) };
    let first = Reaped(command.spawn().unwrap());
    let second = Reaped(command.spawn().unwrap());

    let mut pids = group.pids();
    pids.sort_unstable();
    let mut expected = vec![first.pid(), second.pid()];
    expected.sort_unstable();
    assert_eq!(pids, expected);
}

#[test]
fn v1_oom_kill_counted() {
    let Some(parent) = v1_parent("v1_oom_kill_counted") else {
        return;
    };
    let limits = MemoryLimits {
        max: 32 * MIB,
        high: None,
    };
    let group = parent.manager.create("oom", &limits).unwrap();

    // dd allocates one 200 MiB buffer and fills it from /dev/zero, which
    // touches every page; the allocation is bounded even if the limit failed.
    let mut dd = spawn_in(
        &group,
        "dd",
        &["if=/dev/zero", "of=/dev/null", "bs=200M", "count=1"],
    );
    let status = dd.wait();

    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "dd ended with {status}"
    );
    let usage = group.usage(None).unwrap();
    assert!(usage.oom_kills >= 1, "{usage:?}");
    assert_eq!(usage.limit, 32 * MIB);
}

#[test]
fn v1_cleanup_stale_after_crash() {
    let Some(parent) = v1_parent("v1_cleanup_stale_after_crash") else {
        return;
    };
    let limits = MemoryLimits {
        max: 64 * MIB,
        high: None,
    };
    let group = parent.manager.create("stale", &limits).unwrap();
    let dir = group.path().unwrap().to_path_buf();
    let mut sleeper = spawn_in(&group, "sleep", &["30"]);

    // A killed server neither removes its groups nor runs destructors.
    std::mem::forget(group);
    let restarted = CgroupManager::detect(&parent.config);
    assert_eq!(restarted.mode(), &Mode::V1);

    assert_eq!(restarted.cleanup_stale(), 1);

    assert!(!dir.exists(), "{} still exists", dir.display());
    assert_eq!(sleeper.wait().signal(), Some(libc::SIGKILL));
}

#[test]
fn v1_cleanup_stale_keeps_live_groups() {
    let Some(parent) = v1_parent("v1_cleanup_stale_keeps_live_groups") else {
        return;
    };
    let limits = MemoryLimits {
        max: 64 * MIB,
        high: None,
    };
    let group = parent.manager.create("live", &limits).unwrap();
    let other = parent.dir.join("not-an-instance");
    fs::create_dir(&other).unwrap();

    assert_eq!(parent.manager.cleanup_stale(), 0);

    assert!(group.path().unwrap().exists());
    assert!(other.exists(), "groups without the gopls- prefix are kept");
    fs::remove_dir(&other).unwrap();
}

#[test]
fn v1_drop_removes_group() {
    let Some(parent) = v1_parent("v1_drop_removes_group") else {
        return;
    };
    let limits = MemoryLimits {
        max: 64 * MIB,
        high: None,
    };
    let group = parent.manager.create("drop", &limits).unwrap();
    let dir = group.path().unwrap().to_path_buf();
    let mut sleeper = spawn_in(&group, "sleep", &["30"]);

    drop(group);

    assert!(!dir.exists(), "{} still exists", dir.display());
    assert_eq!(sleeper.wait().signal(), Some(libc::SIGKILL));
}

#[test]
fn fallback_when_parent_not_writable() {
    // Every group directory has a cgroup.procs file, in v1 and v2 alike, and
    // no group can be created inside a file.
    let config = CgroupConfig {
        parent: Some(PathBuf::from("cgroup.procs/remote-gopls")),
        enabled: true,
    };
    let manager = CgroupManager::detect(&config);

    let Mode::Fallback { reason } = manager.mode() else {
        panic!("expected fallback, got {}", manager.mode());
    };
    assert!(reason.contains("cgroup.procs/remote-gopls"), "{reason}");
    assert!(reason.contains("cgroup v1:"), "{reason}");
    assert!(reason.contains("cgroup v2:"), "{reason}");
    assert_eq!(manager.parent(), None);
}

#[test]
fn fallback_usage_sums_process_tree() {
    let manager = CgroupManager::detect(&CgroupConfig {
        parent: None,
        enabled: false,
    });
    let limits = MemoryLimits {
        max: 512 * MIB,
        high: None,
    };
    let group = manager.create("fallback", &limits).unwrap();
    let shell = Reaped(
        Command::new("sh")
            .args(["-c", "sleep 30 & sleep 30 & wait"])
            .spawn()
            .unwrap(),
    );
    let proc_dir = Path::new("/proc");
    assert!(
        wait_until(|| procfs::descendants(proc_dir, shell.pid()).len() == 2),
        "expected two sleep processes below sh {}",
        shell.pid()
    );

    let usage = group.usage(Some(shell.pid())).unwrap();
    let shell_alone = resident_bytes(shell.pid());

    assert!(usage.working_set > 0, "{usage:?}");
    assert!(
        usage.working_set > shell_alone,
        "{usage:?} should include the children of sh, which alone uses {shell_alone}"
    );
    assert_eq!(usage.usage, usage.working_set);
    assert_eq!(usage.limit, 512 * MIB);
    assert_eq!(usage.oom_kills, 0);

    let missing = group.usage(Some(u32::MAX)).unwrap_err();
    assert!(
        matches!(missing, Error::ProcessNotFound { .. }),
        "{missing}"
    );
}
