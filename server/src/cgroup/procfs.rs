//! Memory accounting from /proc for fallback mode, when no cgroup is writable:
//! the resident set size of a process and all of its descendants.
//!
//! The sum over-counts pages that several processes share (shared libraries,
//! copy-on-write pages after fork), so it is an upper bound of what a cgroup
//! would charge. It also cannot separate inactive file cache, so working set
//! and usage are the same number.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::Path;

use super::error::Error;

/// Returns the summed resident set size in bytes of `root` and its descendants.
pub(super) fn tree_rss(root: u32) -> Result<u64, Error> {
    tree_rss_in(Path::new("/proc"), root)
}

fn tree_rss_in(proc_dir: &Path, root: u32) -> Result<u64, Error> {
    let page_size = page_size();
    let mut total = match resident_pages(proc_dir, root) {
        Ok(pages) => pages * page_size,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Err(Error::ProcessNotFound { pid: root })
        }
        Err(source) => {
            return Err(Error::Read {
                path: proc_dir.join(root.to_string()).join("statm"),
                source,
            })
        }
    };

    // A descendant that exits between the scan and this read no longer uses
    // memory, so read errors below the root are skipped.
    for pid in descendants(proc_dir, root) {
        if let Ok(pages) = resident_pages(proc_dir, pid) {
            total += pages * page_size;
        }
    }
    Ok(total)
}

/// Lists every descendant of `root` (not `root` itself) by reading the parent
/// pid of each process in `/proc/<pid>/stat`.
///
/// `/proc/<pid>/task/<tid>/children` would avoid the full scan, but it exists
/// only with CONFIG_PROC_CHILDREN, lists one thread's children, and proc(5)
/// calls it reliable only while the children are stopped or frozen.
pub(super) fn descendants(proc_dir: &Path, root: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    let Ok(entries) = fs::read_dir(proc_dir) else {
        return Vec::new();
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse().ok())
        else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if let Some(parent) = parse_parent_pid(&stat) {
            children.entry(parent).or_default().push(pid);
        }
    }

    let mut found = Vec::new();
    let mut pending = vec![root];
    while let Some(pid) = pending.pop() {
        for &child in children.get(&pid).into_iter().flatten() {
            found.push(child);
            pending.push(child);
        }
    }
    found
}

/// Returns the parent pid from `/proc/<pid>/stat` content.
///
/// The command name in field 2 is in parentheses and may itself contain
/// spaces and `)`, so the fields are counted after the last `)`.
fn parse_parent_pid(stat: &str) -> Option<u32> {
    let (_, after_name) = stat.rsplit_once(')')?;
    let mut fields = after_name.split_whitespace();
    let _state = fields.next()?;
    fields.next()?.parse().ok()
}

/// Reads the resident pages of `pid`, the second field of `/proc/<pid>/statm`.
fn resident_pages(proc_dir: &Path, pid: u32) -> io::Result<u64> {
    let statm = fs::read_to_string(proc_dir.join(pid.to_string()).join("statm"))?;
    statm
        .split_whitespace()
        .nth(1)
        .and_then(|field| field.parse().ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("expected at least two numbers, found {statm:?}"),
            )
        })
}

fn page_size() -> u64 {
    // SAFETY: sysconf only reads a system constant.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_pid_after_plain_name() {
        let stat = "1234 (gopls) S 1200 1234 1234 0 -1 4194304 100 0";
        assert_eq!(parse_parent_pid(stat), Some(1200));
    }

    #[test]
    fn parent_pid_after_name_with_parens() {
        let stat = "77 (a) b (c)) R 42 77 77 0 -1";
        assert_eq!(parse_parent_pid(stat), Some(42));
    }

    #[test]
    fn parent_pid_of_truncated_stat() {
        assert_eq!(parse_parent_pid("77 (sleep"), None);
        assert_eq!(parse_parent_pid("77 (sleep) S"), None);
    }

    #[test]
    fn descendants_from_fake_proc() {
        let proc_dir = tempfile::tempdir().unwrap();
        let processes = [(10, 1), (11, 10), (12, 11), (13, 1), (14, 10)];
        for (pid, parent) in processes {
            let dir = proc_dir.path().join(pid.to_string());
            fs::create_dir(&dir).unwrap();
            fs::write(dir.join("stat"), format!("{pid} (p) S {parent} 0 0")).unwrap();
            fs::write(dir.join("statm"), "100 3 1 1 0 1 0\n").unwrap();
        }

        let mut found = descendants(proc_dir.path(), 10);
        found.sort_unstable();
        assert_eq!(found, [11, 12, 14]);

        let total = tree_rss_in(proc_dir.path(), 10).unwrap();
        assert_eq!(total, 4 * 3 * page_size());
    }

    #[test]
    fn tree_rss_of_missing_process() {
        let proc_dir = tempfile::tempdir().unwrap();
        let error = tree_rss_in(proc_dir.path(), 99).unwrap_err();
        assert!(
            matches!(error, Error::ProcessNotFound { pid: 99 }),
            "{error}"
        );
    }
}
