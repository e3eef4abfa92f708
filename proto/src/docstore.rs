//! The open-document store: the latest text and version of every document
//! the editor has open, kept current by applying `didChange` edits in the
//! negotiated position encoding. Used to replay editor state into a new
//! gopls after a restart, and into a new session after a reconnect.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::json;

/// Unit of `Position.character`, as negotiated in `initialize`
/// (`capabilities.general.positionEncodings` / `positionEncoding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PositionEncoding {
    /// UTF-16 code units: the LSP default and what VS Code uses.
    #[default]
    Utf16,
    /// UTF-8 bytes.
    Utf8,
    /// Unicode code points.
    Utf32,
}

impl PositionEncoding {
    /// Parses an LSP `PositionEncodingKind` (`utf-16`, `utf-8`, `utf-32`).
    pub fn from_kind(kind: &str) -> Option<PositionEncoding> {
        match kind {
            "utf-16" => Some(PositionEncoding::Utf16),
            "utf-8" => Some(PositionEncoding::Utf8),
            "utf-32" => Some(PositionEncoding::Utf32),
            _ => None,
        }
    }

    fn units(self, c: char) -> usize {
        match self {
            PositionEncoding::Utf16 => c.len_utf16(),
            PositionEncoding::Utf8 => c.len_utf8(),
            PositionEncoding::Utf32 => 1,
        }
    }
}

/// An LSP position: zero-based line and character offset in the encoding's units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Position {
    pub line: u32,
    pub character: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Range {
    pub start: Position,
    pub end: Position,
}

/// One entry of `didChange`'s `contentChanges`: a range edit, or the whole
/// document when `range` is absent.
#[derive(Debug, Clone, Deserialize)]
pub struct ContentChange {
    pub range: Option<Range>,
    pub text: String,
}

/// An open document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub uri: String,
    pub language_id: String,
    pub version: i64,
    pub text: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    #[error("invalid {method} notification: {source}")]
    Invalid {
        method: &'static str,
        source: serde_json::Error,
    },
    #[error("didChange for {0} which is not open")]
    NotOpen(String),
    #[error("invalid range in didChange for {uri}: start {start:?} is after end {end:?}")]
    InvertedRange {
        uri: String,
        start: Position,
        end: Position,
    },
}

/// Open documents by URI.
#[derive(Debug, Clone, Default)]
pub struct DocumentStore {
    encoding: PositionEncoding,
    documents: BTreeMap<String, Document>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OpenParams {
    text_document: OpenItem,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OpenItem {
    uri: String,
    language_id: String,
    version: i64,
    text: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ChangeParams {
    text_document: VersionedId,
    content_changes: Vec<ContentChange>,
}

#[derive(Deserialize)]
struct VersionedId {
    uri: String,
    version: i64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CloseParams {
    text_document: UriOnly,
}

#[derive(Deserialize)]
struct UriOnly {
    uri: String,
}

#[derive(Deserialize)]
struct Notification<P> {
    params: P,
}

impl DocumentStore {
    pub fn new(encoding: PositionEncoding) -> DocumentStore {
        DocumentStore {
            encoding,
            documents: BTreeMap::new(),
        }
    }

    pub fn encoding(&self) -> PositionEncoding {
        self.encoding
    }

    /// Sets the encoding negotiated by `initialize`.
    pub fn set_encoding(&mut self, encoding: PositionEncoding) {
        self.encoding = encoding;
    }

    pub fn get(&self, uri: &str) -> Option<&Document> {
        self.documents.get(uri)
    }

    pub fn documents(&self) -> impl Iterator<Item = &Document> {
        self.documents.values()
    }

    pub fn len(&self) -> usize {
        self.documents.len()
    }

    pub fn is_empty(&self) -> bool {
        self.documents.is_empty()
    }

    /// Applies a `textDocument/didOpen`, `didChange` or `didClose`
    /// notification (the whole JSON-RPC message). Other methods are ignored.
    pub fn observe(&mut self, method: &str, message: &[u8]) -> Result<(), DocumentError> {
        match method {
            "textDocument/didOpen" => {
                let n: Notification<OpenParams> =
                    serde_json::from_slice(message).map_err(|source| DocumentError::Invalid {
                        method: "didOpen",
                        source,
                    })?;
                let item = n.params.text_document;
                self.open(Document {
                    uri: item.uri,
                    language_id: item.language_id,
                    version: item.version,
                    text: item.text,
                });
            }
            "textDocument/didChange" => {
                let n: Notification<ChangeParams> =
                    serde_json::from_slice(message).map_err(|source| DocumentError::Invalid {
                        method: "didChange",
                        source,
                    })?;
                self.change(
                    &n.params.text_document.uri,
                    n.params.text_document.version,
                    &n.params.content_changes,
                )?;
            }
            "textDocument/didClose" => {
                let n: Notification<CloseParams> =
                    serde_json::from_slice(message).map_err(|source| DocumentError::Invalid {
                        method: "didClose",
                        source,
                    })?;
                self.documents.remove(&n.params.text_document.uri);
            }
            _ => {}
        }
        Ok(())
    }

    pub fn open(&mut self, document: Document) {
        self.documents.insert(document.uri.clone(), document);
    }

    /// Applies content changes in order, as LSP requires.
    pub fn change(
        &mut self,
        uri: &str,
        version: i64,
        changes: &[ContentChange],
    ) -> Result<(), DocumentError> {
        let encoding = self.encoding;
        let document = self
            .documents
            .get_mut(uri)
            .ok_or_else(|| DocumentError::NotOpen(uri.to_owned()))?;
        for change in changes {
            match change.range {
                None => document.text = change.text.clone(),
                Some(range) => {
                    let start = offset(&document.text, range.start, encoding);
                    let end = offset(&document.text, range.end, encoding);
                    if start > end {
                        return Err(DocumentError::InvertedRange {
                            uri: uri.to_owned(),
                            start: range.start,
                            end: range.end,
                        });
                    }
                    document.text.replace_range(start..end, &change.text);
                }
            }
        }
        document.version = version;
        Ok(())
    }

    /// `didOpen` notifications that recreate every open document.
    pub fn replay_messages(&self) -> Vec<Vec<u8>> {
        self.documents
            .values()
            .map(|d| {
                crate::jsonrpc::notification(
                    "textDocument/didOpen",
                    &json!({"textDocument": {"uri": d.uri, "languageId": d.language_id, "version": d.version, "text": d.text}}),
                )
            })
            .collect()
    }
}

/// Byte offset of an LSP position in `text`. A line past the end maps to
/// the end of the text, and a character past the end of its line to the end
/// of the line, as the LSP specification asks. A position inside a UTF-16
/// surrogate pair or a UTF-8 sequence rounds down to the character start.
pub fn offset(text: &str, position: Position, encoding: PositionEncoding) -> usize {
    let Some(line_start) = line_start(text, position.line) else {
        return text.len();
    };

    let mut units = 0usize;
    let target = position.character as usize;
    for (index, c) in text[line_start..].char_indices() {
        if c == '\n' || c == '\r' {
            return line_start + index;
        }
        let next = units + encoding.units(c);
        if next > target {
            return line_start + index;
        }
        units = next;
    }
    text.len()
}

/// Byte offset where `line` starts; lines end in `\n`, `\r\n` or `\r`.
fn line_start(text: &str, line: u32) -> Option<usize> {
    if line == 0 {
        return Some(0);
    }
    let bytes = text.as_bytes();
    let mut current = 0u32;
    let mut i = 0;
    while i < bytes.len() {
        let eol = match bytes[i] {
            b'\n' => 1,
            b'\r' if bytes.get(i + 1) == Some(&b'\n') => 2,
            b'\r' => 1,
            _ => 0,
        };
        if eol > 0 {
            i += eol;
            current += 1;
            if current == line {
                return Some(i);
            }
        } else {
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(line: u32, character: u32) -> Position {
        Position { line, character }
    }

    fn edit(
        store: &mut DocumentStore,
        range: Option<((u32, u32), (u32, u32))>,
        text: &str,
    ) -> String {
        let change = ContentChange {
            range: range.map(|((l1, c1), (l2, c2))| Range {
                start: pos(l1, c1),
                end: pos(l2, c2),
            }),
            text: text.to_owned(),
        };
        store.change("file:///a.go", 2, &[change]).unwrap();
        store.get("file:///a.go").unwrap().text.clone()
    }

    fn store_with(text: &str, encoding: PositionEncoding) -> DocumentStore {
        let mut store = DocumentStore::new(encoding);
        store.open(Document {
            uri: "file:///a.go".into(),
            language_id: "go".into(),
            version: 1,
            text: text.into(),
        });
        store
    }

    #[test]
    fn offsets_per_encoding() {
        // "é" is 2 UTF-8 bytes and 1 UTF-16 unit; "𝄞" is 4 bytes and a surrogate pair.
        let text = "aé𝄞b\nxyz";
        let cases = [
            (PositionEncoding::Utf16, pos(0, 2), 3),
            (PositionEncoding::Utf16, pos(0, 4), 7),
            (PositionEncoding::Utf16, pos(0, 3), 3),
            (PositionEncoding::Utf8, pos(0, 3), 3),
            (PositionEncoding::Utf8, pos(0, 7), 7),
            (PositionEncoding::Utf8, pos(0, 2), 1),
            (PositionEncoding::Utf32, pos(0, 3), 7),
            (PositionEncoding::Utf16, pos(0, 99), 8),
            (PositionEncoding::Utf16, pos(1, 1), 10),
            (PositionEncoding::Utf16, pos(5, 0), 12),
        ];
        for (encoding, position, expected) in cases {
            assert_eq!(
                offset(text, position, encoding),
                expected,
                "{encoding:?} {position:?}"
            );
        }
    }

    #[test]
    fn multibyte_edit_under_utf16() {
        let mut store = store_with("// 你好 🎉 world\n", PositionEncoding::Utf16);
        // "// 你好 " is 6 UTF-16 units; the emoji is 2 more.
        assert_eq!(
            edit(&mut store, Some(((0, 6), (0, 8))), "✓"),
            "// 你好 ✓ world\n"
        );
    }

    #[test]
    fn multibyte_edit_under_utf8() {
        let mut store = store_with("// 你好 🎉 world\n", PositionEncoding::Utf8);
        // "// 你好 " is 10 bytes; the emoji is 4 more.
        assert_eq!(
            edit(&mut store, Some(((0, 10), (0, 14))), "✓"),
            "// 你好 ✓ world\n"
        );
    }

    #[test]
    fn edits_at_line_end_and_file_end() {
        let mut store = store_with("package a\nfunc f() {}\n", PositionEncoding::Utf16);
        assert_eq!(
            edit(&mut store, Some(((0, 9), (0, 9))), " // x"),
            "package a // x\nfunc f() {}\n"
        );
        assert_eq!(
            edit(&mut store, Some(((2, 0), (2, 0))), "var v int\n"),
            "package a // x\nfunc f() {}\nvar v int\n"
        );
        assert_eq!(
            edit(&mut store, Some(((0, 14), (1, 0))), ""),
            "package a // xfunc f() {}\nvar v int\n"
        );
        assert_eq!(
            edit(&mut store, Some(((1, 50), (9, 0))), ""),
            "package a // xfunc f() {}\nvar v int"
        );
    }

    #[test]
    fn crlf_line_endings() {
        let mut store = store_with("a\r\nb\r\nc", PositionEncoding::Utf16);
        assert_eq!(edit(&mut store, Some(((1, 0), (1, 1))), "B"), "a\r\nB\r\nc");
        assert_eq!(edit(&mut store, Some(((2, 0), (2, 1))), "C"), "a\r\nB\r\nC");
    }

    #[test]
    fn whole_document_replacement() {
        let mut store = store_with("old", PositionEncoding::Utf16);
        assert_eq!(edit(&mut store, None, "new text"), "new text");
        assert_eq!(store.get("file:///a.go").unwrap().version, 2);
    }

    #[test]
    fn observes_notifications() {
        let mut store = DocumentStore::default();
        let open = br#"{"jsonrpc":"2.0","method":"textDocument/didOpen","params":{"textDocument":{"uri":"file:///b.go","languageId":"go","version":1,"text":"package b\n"}}}"#;
        store.observe("textDocument/didOpen", open).unwrap();
        let change = br#"{"jsonrpc":"2.0","method":"textDocument/didChange","params":{"textDocument":{"uri":"file:///b.go","version":4},"contentChanges":[{"range":{"start":{"line":0,"character":8},"end":{"line":0,"character":9}},"text":"bee"},{"text":"package c\n"}]}}"#;
        store.observe("textDocument/didChange", change).unwrap();
        let doc = store.get("file:///b.go").unwrap();
        assert_eq!((doc.text.as_str(), doc.version), ("package c\n", 4));

        let replay = store.replay_messages();
        assert_eq!(replay.len(), 1);
        let value: serde_json::Value = serde_json::from_slice(&replay[0]).unwrap();
        assert_eq!(value["params"]["textDocument"]["text"], "package c\n");
        assert_eq!(value["params"]["textDocument"]["version"], 4);

        store.observe("textDocument/didClose", br#"{"method":"textDocument/didClose","params":{"textDocument":{"uri":"file:///b.go"}}}"#).unwrap();
        assert!(store.is_empty());
    }

    #[test]
    fn rejects_bad_changes() {
        let mut store = store_with("abc", PositionEncoding::Utf16);
        let inverted = ContentChange {
            range: Some(Range {
                start: pos(0, 2),
                end: pos(0, 1),
            }),
            text: String::new(),
        };
        assert!(store.change("file:///a.go", 2, &[inverted]).is_err());
        assert!(store.change("file:///missing.go", 2, &[]).is_err());
        assert!(store.observe("textDocument/didChange", b"{}").is_err());
    }
}
