//! Copies of the fixture Go module: one as the editor's local checkout and
//! one as the server's workspace, in different directories whose paths
//! contain spaces and non-ASCII characters, so every URI must be mapped.

use std::path::{Path, PathBuf};

use remote_gopls_proto::urimap::Root;

/// A fixture module laid out for one test.
pub struct Fixture {
    _dir: tempfile::TempDir,
    /// The editor's copy.
    pub local: PathBuf,
    /// The server's copy, served as a workspace.
    pub remote: PathBuf,
    /// Server data directory.
    pub data: PathBuf,
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

impl Fixture {
    /// Lays out the named module from `e2e/fixtures`.
    pub fn new(module: &str) -> Fixture {
        let source = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join(module);
        let dir = tempfile::tempdir().unwrap();
        let local = dir.path().join("editor checkout é").join(module);
        let remote = dir.path().join("server 工作区").join(module);
        copy_dir(&source, &local);
        copy_dir(&source, &remote);
        let data = dir.path().join("data");
        Fixture {
            _dir: dir,
            local: local.canonicalize().unwrap(),
            remote: remote.canonicalize().unwrap(),
            data,
        }
    }

    /// The editor-side `file://` URI of a file in the module.
    pub fn local_uri(&self, relative: &str) -> String {
        Root::parse(&self.local.join(relative).to_string_lossy())
            .unwrap()
            .to_uri()
    }

    pub fn local_root_uri(&self) -> String {
        Root::parse(&self.local.to_string_lossy()).unwrap().to_uri()
    }

    /// Text of a file in the editor's copy.
    pub fn read(&self, relative: &str) -> String {
        std::fs::read_to_string(self.local.join(relative)).unwrap()
    }
}

/// Decodes a `file://` URI to its path.
pub fn uri_path(uri: &str) -> String {
    Root::parse(uri)
        .map(|r| r.path().to_owned())
        .unwrap_or_default()
}

/// LSP position (line, UTF-16 column) of byte offset `at` in `text`.
pub fn position_at(text: &str, at: usize) -> (u32, u32) {
    let before = &text[..at];
    let line = before.matches('\n').count() as u32;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = text[line_start..at].encode_utf16().count() as u32;
    (line, column)
}

/// Position of the `nth` occurrence of `needle` (0-based), plus `offset` bytes.
pub fn position_of(text: &str, needle: &str, nth: usize, offset: usize) -> (u32, u32) {
    let at = text
        .match_indices(needle)
        .nth(nth)
        .unwrap_or_else(|| panic!("{needle:?} #{nth} not in text"))
        .0;
    position_at(text, at + offset)
}
