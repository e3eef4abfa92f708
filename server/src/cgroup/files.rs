//! Reading and writing cgroup interface files, shared by the v1 and v2 code.

use std::fs;
use std::io;
use std::path::Path;

use tracing::debug;

use super::error::{crate_io_error, Error};

/// Reads a whole interface file.
pub(super) fn read(path: &Path) -> Result<String, Error> {
    fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a file that contains one byte count, where `max` (v2) means unlimited.
pub(super) fn read_bytes(path: &Path) -> Result<u64, Error> {
    let content = read(path)?;
    let text = content.trim();
    if text == "max" {
        return Ok(u64::MAX);
    }

    text.parse().map_err(|_| Error::Parse {
        path: path.to_path_buf(),
        detail: format!("expected a byte count or \"max\", found {text:?}"),
    })
}

/// Reads the value of `key` from a flat keyed file such as `memory.stat`,
/// `memory.events` or the v1 `memory.oom_control` (lines of `key value`).
///
/// Returns `None` when the file has no such key.
pub(super) fn read_keyed(path: &Path, key: &str) -> Result<Option<u64>, Error> {
    let content = read(path)?;
    parse_keyed(&content, key).map_err(|detail| Error::Parse {
        path: path.to_path_buf(),
        detail,
    })
}

/// Finds `key` in flat keyed content; the error describes a malformed value.
pub(super) fn parse_keyed(content: &str, key: &str) -> Result<Option<u64>, String> {
    for line in content.lines() {
        let mut fields = line.split_whitespace();
        if fields.next() != Some(key) {
            continue;
        }

        let value = fields.next().unwrap_or_default();
        return value
            .parse()
            .map(Some)
            .map_err(|_| format!("expected a number after {key:?}, found {value:?}"));
    }
    Ok(None)
}

/// Writes one value to an interface file.
pub(super) fn write(path: &Path, value: &str) -> Result<(), Error> {
    fs::write(path, value).map_err(|source| Error::Write {
        path: path.to_path_buf(),
        value: value.to_owned(),
        source,
    })
}

/// Applies a setting that some kernels do not offer, such as swap limits,
/// which exist only with swap accounting enabled.
///
/// A missing file is skipped without writing, because cgroups-rs opens files
/// with `O_CREAT` and would create a stray file in a directory that is not a
/// cgroup. ENOENT, EINVAL and the errnos in `also_ignored` are logged at debug
/// level and ignored; any other failure is returned.
pub(super) fn apply_optional(
    path: &Path,
    value: &str,
    also_ignored: &[i32],
    apply: impl FnOnce() -> Result<(), cgroups_rs::fs::error::Error>,
) -> Result<(), Error> {
    if !path.exists() {
        debug!(cgroup.file = %path.display(), "optional cgroup file not present; skipped");
        return Ok(());
    }

    let Err(error) = apply() else {
        return Ok(());
    };
    let source = crate_io_error(error);
    let ignored = matches!(source.raw_os_error(), Some(libc::ENOENT | libc::EINVAL))
        || source
            .raw_os_error()
            .is_some_and(|code| also_ignored.contains(&code));
    if ignored {
        debug!(
            cgroup.file = %path.display(),
            value,
            error = %source,
            "kernel rejected an optional cgroup setting; skipped"
        );
        return Ok(());
    }

    Err(Error::Write {
        path: path.to_path_buf(),
        value: value.to_owned(),
        source,
    })
}

/// Maps a cgroups-rs error from writing `value` to `path` into this module's error.
pub(super) fn write_error(path: &Path, value: &str, error: cgroups_rs::fs::error::Error) -> Error {
    Error::Write {
        path: path.to_path_buf(),
        value: value.to_owned(),
        source: crate_io_error(error),
    }
}

/// Reports whether an I/O error means the file or directory is gone.
pub(super) fn is_not_found(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::NotFound
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_keyed_finds_key() {
        let content = "anon 100\nfile 200\ninactive_file 50\n";
        assert_eq!(parse_keyed(content, "inactive_file"), Ok(Some(50)));
        assert_eq!(parse_keyed(content, "anon"), Ok(Some(100)));
    }

    #[test]
    fn parse_keyed_needs_whole_key() {
        let content = "total_inactive_file 70\ninactive_file 50\n";
        assert_eq!(parse_keyed(content, "inactive_file"), Ok(Some(50)));
        assert_eq!(parse_keyed(content, "inactive"), Ok(None));
    }

    #[test]
    fn parse_keyed_rejects_bad_value() {
        let error = parse_keyed("oom_kill x\n", "oom_kill").unwrap_err();
        assert!(error.contains("\"x\""), "{error}");
    }

    #[test]
    fn read_bytes_accepts_max() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("memory.max");
        fs::write(&path, "max\n").unwrap();
        assert_eq!(read_bytes(&path).unwrap(), u64::MAX);

        fs::write(&path, "33554432\n").unwrap();
        assert_eq!(read_bytes(&path).unwrap(), 33554432);
    }

    #[test]
    fn read_bytes_names_file_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("memory.current");
        fs::write(&path, "lots\n").unwrap();
        let message = read_bytes(&path).unwrap_err().to_string();
        assert!(message.contains("memory.current"), "{message}");
        assert!(message.contains("\"lots\""), "{message}");
    }
}
