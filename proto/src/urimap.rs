//! File URI and path mapping between the editor's workspace root and the
//! server's.
//!
//! The mapper walks the string tokens of a JSON text (values and object keys
//! alike) and rewrites, in each one:
//! - a `file://` URI whose decoded path is the root or lies under it;
//! - a plain path equal to the root or under it (`rootPath` style);
//! - `file://` URIs and root paths embedded in longer text, such as markdown
//!   links in hover results or paths in error messages.
//!
//! Everything else in the text is copied byte for byte, so message layout,
//! key order and number formatting stay as the sender wrote them. URIs and
//! paths outside the root pass through unchanged. Values of document-content
//! keys (`text`, `newText`, `insertText`) are never rewritten: they are file
//! contents and edits, and changing them would shift every position after them.

use std::borrow::Cow;

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Bytes left unescaped in a URI path: RFC 3986 unreserved characters and
/// `/`. VS Code encodes file URIs this way, and Go's URI parser (used by
/// gopls) decodes any valid percent-encoding.
const PATH_ESCAPE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// Keys whose string values are document contents and must stay byte-exact.
const CONTENT_KEYS: [&[u8]; 3] = [b"text", b"newText", b"insertText"];

/// Characters that end a URI embedded in longer text.
fn ends_embedded_uri(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            ')' | '(' | '"' | '\'' | '<' | '>' | ']' | '[' | '`' | '|'
        )
}

/// Errors for roots that cannot be used for mapping.
#[derive(Debug, thiserror::Error)]
pub enum RootError {
    #[error("invalid workspace root {0:?}: expected an absolute path or a file:// URI")]
    NotAbsolute(String),
    #[error("invalid workspace root {0:?}: the URI is not valid UTF-8 after percent-decoding")]
    InvalidEncoding(String),
}

/// A workspace root, kept as the decoded path component of its file URI
/// (`/home/me/proj`, or `/c:/Users/me/proj` for a Windows drive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    path: String,
}

impl Root {
    /// Parses an absolute path or a `file://` URI. A trailing `/` is dropped.
    pub fn parse(input: &str) -> Result<Root, RootError> {
        let path = match input.strip_prefix("file://") {
            Some(rest) => {
                let rest = rest.strip_prefix("localhost").unwrap_or(rest);
                percent_decode_str(rest)
                    .decode_utf8()
                    .map_err(|_| RootError::InvalidEncoding(input.to_owned()))?
                    .into_owned()
            }
            None => input.to_owned(),
        };
        if !path.starts_with('/') {
            return Err(RootError::NotAbsolute(input.to_owned()));
        }

        let trimmed = path.trim_end_matches('/');
        let path = if trimmed.is_empty() {
            "/".to_owned()
        } else {
            trimmed.to_owned()
        };
        Ok(Root { path })
    }

    /// Returns the decoded path, without a trailing slash (except for `/` itself).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Returns the root as a `file://` URI with the path percent-encoded.
    pub fn to_uri(&self) -> String {
        format!("file://{}", encode_path(&self.path))
    }

    /// Returns the part of `path` after this root when `path` is the root or
    /// lies under it (the result is empty or starts with `/`).
    fn strip<'a>(&self, path: &'a str) -> Option<&'a str> {
        if self.path == "/" {
            return path.starts_with('/').then_some(path);
        }
        let rest = path.strip_prefix(self.path.as_str())?;
        (rest.is_empty() || rest.starts_with('/')).then_some(rest)
    }
}

fn encode_path(path: &str) -> String {
    utf8_percent_encode(path, PATH_ESCAPE).to_string()
}

/// Rewrites file URIs and paths from one root to another, in one direction.
#[derive(Debug, Clone)]
pub struct UriMapper {
    from: Root,
    to: Root,
    to_uri_path: String,
}

impl UriMapper {
    pub fn new(from: Root, to: Root) -> UriMapper {
        let to_uri_path = encode_path(to.path());
        UriMapper {
            from,
            to,
            to_uri_path,
        }
    }

    /// Returns the mapper for the opposite direction.
    pub fn reversed(&self) -> UriMapper {
        UriMapper::new(self.to.clone(), self.from.clone())
    }

    pub fn from_root(&self) -> &Root {
        &self.from
    }

    pub fn to_root(&self) -> &Root {
        &self.to
    }

    /// Rewrites every string token of a JSON text. Returns the input unchanged
    /// (borrowed) when nothing matched. Text that is not valid JSON is
    /// returned unchanged, because callers validate JSON separately.
    pub fn rewrite_json<'a>(&self, json: &'a [u8]) -> Cow<'a, [u8]> {
        let mut out: Option<Vec<u8>> = None;
        let mut copied_up_to = 0;
        let mut pos = 0;
        let mut in_content_value = false;

        while let Some(offset) = memchr::memchr(b'"', &json[pos..]) {
            let open = pos + offset;
            let Some((close, has_escape)) = find_string_end(json, open + 1) else {
                return Cow::Borrowed(json);
            };

            let is_key = json[close + 1..].iter().find(|b| !b.is_ascii_whitespace()) == Some(&b':');
            if is_key {
                in_content_value = CONTENT_KEYS.contains(&&json[open + 1..close]);
            }
            let is_content = !is_key && in_content_value;

            if !is_content {
                if let Some(replacement) = self.rewrite_token(&json[open..=close], has_escape) {
                    let buf = out.get_or_insert_with(|| Vec::with_capacity(json.len() + 64));
                    buf.extend_from_slice(&json[copied_up_to..open]);
                    buf.extend_from_slice(replacement.as_bytes());
                    copied_up_to = close + 1;
                }
            }
            pos = close + 1;
        }

        match out {
            None => Cow::Borrowed(json),
            Some(mut buf) => {
                buf.extend_from_slice(&json[copied_up_to..]);
                Cow::Owned(buf)
            }
        }
    }

    /// Rewrites one quoted JSON string token; returns the new quoted token.
    fn rewrite_token(&self, token: &[u8], has_escape: bool) -> Option<String> {
        let content = &token[1..token.len() - 1];
        if !self.may_contain_root(content) {
            return None;
        }

        let decoded: Cow<'_, str> = if has_escape {
            Cow::Owned(serde_json::from_slice::<String>(token).ok()?)
        } else {
            Cow::Borrowed(std::str::from_utf8(content).ok()?)
        };
        let mapped = self.map_str(&decoded)?;
        Some(serde_json::to_string(&mapped).expect("serializing a string cannot fail"))
    }

    /// Cheap pre-check on the raw token bytes, so large strings such as
    /// document text are decoded only when they may hold a URI or the root.
    fn may_contain_root(&self, content: &[u8]) -> bool {
        memchr::memmem::find(content, b"file:").is_some()
            || memchr::memmem::find(content, self.from.path.as_bytes()).is_some()
    }

    /// Maps one decoded string. Returns `None` when nothing in it matched.
    pub fn map_str(&self, s: &str) -> Option<String> {
        if s.starts_with("file://") && !s.contains(char::is_whitespace) {
            return self.map_uri(s);
        }
        if let Some(rest) = self.from.strip(s) {
            return Some(format!("{}{}", self.to.path, rest));
        }
        self.map_embedded(s)
    }

    /// Maps one `file://` URI whose decoded path is under the root. The part
    /// after the root keeps the sender's encoding.
    pub fn map_uri(&self, uri: &str) -> Option<String> {
        let rest = uri.strip_prefix("file://")?;
        let rest = rest.strip_prefix("localhost").unwrap_or(rest);
        if !rest.starts_with('/') {
            return None;
        }

        let suffix_start = self.match_encoded_root(rest)?;
        let suffix = &rest[suffix_start..];
        if !(suffix.is_empty() || suffix.starts_with(['/', '?', '#'])) {
            return None;
        }
        Some(format!("file://{}{}", self.to_uri_path, suffix))
    }

    /// Walks a percent-encoded path while it decodes to the root path and
    /// returns the byte offset in `encoded` where the root ends.
    fn match_encoded_root(&self, encoded: &str) -> Option<usize> {
        let root = self.from.path.as_bytes();
        if root == b"/" {
            return Some(0);
        }

        let bytes = encoded.as_bytes();
        let mut matched = 0;
        let mut i = 0;
        while matched < root.len() {
            let (byte, width) = match bytes.get(i)? {
                b'%' => {
                    let hex = encoded.get(i + 1..i + 3)?;
                    (u8::from_str_radix(hex, 16).ok()?, 3)
                }
                b'?' | b'#' => return None,
                &b => (b, 1),
            };
            if byte != root[matched] {
                return None;
            }
            matched += 1;
            i += width;
        }
        Some(i)
    }

    /// Maps URIs and root paths that appear inside longer text.
    fn map_embedded(&self, s: &str) -> Option<String> {
        let mut out = String::with_capacity(s.len() + 32);
        let mut changed = false;
        let mut rest = s;

        loop {
            let next_uri = rest.find("file://");
            let next_path = self.find_embedded_path(rest);
            let (at, is_uri) = match (next_uri, next_path) {
                (None, None) => break,
                (Some(u), Some(p)) if p < u => (p, false),
                (Some(u), _) => (u, true),
                (None, Some(p)) => (p, false),
            };
            out.push_str(&rest[..at]);
            let tail = &rest[at..];

            if is_uri {
                let end = tail.find(ends_embedded_uri).unwrap_or(tail.len());
                match self.map_uri(&tail[..end]) {
                    Some(mapped) => {
                        out.push_str(&mapped);
                        changed = true;
                    }
                    None => out.push_str(&tail[..end]),
                }
                rest = &tail[end..];
            } else {
                out.push_str(&self.to.path);
                changed = true;
                rest = &tail[self.from.path.len()..];
            }
        }

        out.push_str(rest);
        changed.then_some(out)
    }

    /// Finds the root path in free text, where it starts a path (not preceded
    /// by a path character) and ends at a component boundary.
    fn find_embedded_path(&self, text: &str) -> Option<usize> {
        let root = self.from.path.as_str();
        if root == "/" {
            return None;
        }

        let mut from = 0;
        while let Some(offset) = text[from..].find(root) {
            let at = from + offset;
            let before = text[..at].chars().next_back();
            let after = text[at + root.len()..].chars().next();
            let starts_path = !before.is_some_and(|c| {
                c.is_alphanumeric() || matches!(c, '/' | '.' | '-' | '_' | '~' | '%')
            });
            let ends_component = !after
                .is_some_and(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | '~' | '%'));
            if starts_path && ends_component {
                return Some(at);
            }
            from = at + root.len();
        }
        None
    }
}

/// Returns the index of the closing quote of a JSON string whose content
/// starts at `start`, and whether the string contains escapes.
fn find_string_end(json: &[u8], start: usize) -> Option<(usize, bool)> {
    let mut pos = start;
    let mut has_escape = false;
    loop {
        let offset = memchr::memchr2(b'"', b'\\', &json[pos..])?;
        let at = pos + offset;
        if json[at] == b'"' {
            return Some((at, has_escape));
        }
        has_escape = true;
        pos = at + 2;
        if pos > json.len() {
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapper(from: &str, to: &str) -> UriMapper {
        UriMapper::new(Root::parse(from).unwrap(), Root::parse(to).unwrap())
    }

    fn rewrite(m: &UriMapper, json: &str) -> String {
        String::from_utf8(m.rewrite_json(json.as_bytes()).into_owned()).unwrap()
    }

    #[test]
    fn root_parse_forms() {
        let cases = [
            ("/home/me/proj", "/home/me/proj"),
            ("/home/me/proj/", "/home/me/proj"),
            ("file:///home/me/my%20proj", "/home/me/my proj"),
            ("file://localhost/srv/ws", "/srv/ws"),
            ("file:///c%3A/Users/me", "/c:/Users/me"),
            ("/", "/"),
        ];
        for (input, path) in cases {
            assert_eq!(Root::parse(input).unwrap().path(), path, "{input}");
        }
        assert!(Root::parse("relative/dir").is_err());
        assert!(Root::parse("file://%FF").is_err());
    }

    #[test]
    fn maps_uris_both_directions() {
        let to_remote = mapper("/home/me/my proj/é", "/srv/work spaces/日本");
        let cases = [
            (
                "file:///home/me/my%20proj/%C3%A9/pkg/a.go",
                Some("file:///srv/work%20spaces/%E6%97%A5%E6%9C%AC/pkg/a.go"),
            ),
            (
                "file:///home/me/my%20proj/%c3%a9",
                Some("file:///srv/work%20spaces/%E6%97%A5%E6%9C%AC"),
            ),
            (
                "file:///home/me/my%20proj/%C3%A9/x%20y.go#L3",
                Some("file:///srv/work%20spaces/%E6%97%A5%E6%9C%AC/x%20y.go#L3"),
            ),
            ("file:///home/me/my%20proj/%C3%A9x/a.go", None),
            ("file:///home/me/other/a.go", None),
            ("file:///usr/local/go/src/fmt/print.go", None),
        ];
        for (input, expected) in cases {
            assert_eq!(to_remote.map_uri(input).as_deref(), expected, "{input}");
        }

        let to_local = to_remote.reversed();
        assert_eq!(
            to_local
                .map_uri("file:///srv/work%20spaces/%E6%97%A5%E6%9C%AC/pkg/a.go")
                .as_deref(),
            Some("file:///home/me/my%20proj/%C3%A9/pkg/a.go")
        );
        assert_eq!(
            to_local
                .map_uri("file:///srv/work spaces/日本/pkg/a.go")
                .as_deref(),
            Some("file:///home/me/my%20proj/%C3%A9/pkg/a.go"),
            "unencoded input is still recognised"
        );
    }

    #[test]
    fn maps_json_values_keys_and_paths() {
        let m = mapper("/home/me/proj", "/srv/ws");
        let input = r#"{"rootUri":"file:///home/me/proj","rootPath":"/home/me/proj","changes":{"file:///home/me/proj/a.go":[{"newText":"x"}]},"n":1.50,"other":"file:///tmp/a.go","plain":"/home/me/project2"}"#;
        let expected = r#"{"rootUri":"file:///srv/ws","rootPath":"/srv/ws","changes":{"file:///srv/ws/a.go":[{"newText":"x"}]},"n":1.50,"other":"file:///tmp/a.go","plain":"/home/me/project2"}"#;
        assert_eq!(rewrite(&m, input), expected);
    }

    #[test]
    fn maps_embedded_text() {
        let m = mapper("/srv/ws", "/home/me/proj");
        let cases = [
            (
                "see [a.go](file:///srv/ws/a.go#L3) and file:///srv/wsx/b.go",
                "see [a.go](file:///home/me/proj/a.go#L3) and file:///srv/wsx/b.go",
            ),
            (
                "pattern ./...: directory /srv/ws/x outside main module",
                "pattern ./...: directory /home/me/proj/x outside main module",
            ),
            ("/srv/ws2/a and /srv/ws", "/srv/ws2/a and /home/me/proj"),
            ("a/srv/ws/b", "a/srv/ws/b"),
        ];
        for (input, expected) in cases {
            let json = serde_json::to_string(input).unwrap();
            let out = rewrite(&m, &json);
            assert_eq!(
                serde_json::from_str::<String>(&out).unwrap(),
                expected,
                "{input}"
            );
        }
    }

    #[test]
    fn handles_escapes_in_strings() {
        let m = mapper("/srv/ws", "/home/me/proj");
        let input = r#"{"message":"line \"one\"\nfile:///srv/ws/a.go\\","uri":"file:\/\/\/srv\/ws\/a.go","keep":"\u00e9 \"q\""}"#;
        let out = rewrite(&m, input);
        let value: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            value["message"],
            "line \"one\"\nfile:///home/me/proj/a.go\\"
        );
        assert_eq!(value["uri"], "file:///home/me/proj/a.go");
        assert!(
            out.contains(r#""keep":"\u00e9 \"q\"""#),
            "untouched strings keep their escapes: {out}"
        );
    }

    #[test]
    fn escapes_special_characters_in_new_root() {
        let m = mapper("/srv/ws", r#"/home/me/a"b\c"#);
        let out = rewrite(&m, r#"{"rootPath":"/srv/ws/x"}"#);
        let value: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(value["rootPath"], r#"/home/me/a"b\c/x"#);
    }

    #[test]
    fn leaves_document_text_alone() {
        let m = mapper("/home/me/proj", "/srv/ws");
        let input = r#"{"textDocument":{"uri":"file:///home/me/proj/a.go","text":"const p = \"/home/me/proj/x\" // file:///home/me/proj/a.go"},"edits":[{"newText" : "/home/me/proj"}],"label":"/home/me/proj"}"#;
        let out = rewrite(&m, input);
        let value: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(value["textDocument"]["uri"], "file:///srv/ws/a.go");
        assert_eq!(
            value["textDocument"]["text"],
            "const p = \"/home/me/proj/x\" // file:///home/me/proj/a.go"
        );
        assert_eq!(value["edits"][0]["newText"], "/home/me/proj");
        assert_eq!(value["label"], "/srv/ws");
    }

    #[test]
    fn borrows_when_nothing_matches() {
        let m = mapper("/srv/ws", "/home/me/proj");
        let input = br#"{"jsonrpc":"2.0","id":1,"result":{"contents":"func Println(a ...any)"}}"#;
        assert!(matches!(m.rewrite_json(input), Cow::Borrowed(_)));
    }

    #[test]
    fn multibyte_text_survives() {
        let m = mapper("/srv/ws", "/home/me/proj");
        let input = r#"{"value":"漢字 🎉 file:///srv/ws/é.go — done"}"#;
        let out = rewrite(&m, input);
        let value: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(value["value"], "漢字 🎉 file:///home/me/proj/é.go — done");
    }
}
