//! A light JSON-RPC 2.0 envelope: reads `id`, `method` and the message kind
//! without building a value tree for `params`, `result` or `error`.

use std::fmt;

use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer, Serialize};

/// A JSON-RPC request id. LSP allows an integer or a string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Id {
    Number(i64),
    String(String),
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Id::Number(n) => write!(f, "{n}"),
            Id::String(s) => write!(f, "{s:?}"),
        }
    }
}

/// What a message is, from the fields it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `method` and `id`: the receiver owes a response.
    Request,
    /// `method` without `id`.
    Notification,
    /// `result` or `error` without `method`.
    Response,
}

/// The routing fields of one JSON-RPC message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub kind: Kind,
    /// Request or response id. `None` for notifications and for error
    /// responses whose id was `null`.
    pub id: Option<Id>,
    pub method: Option<String>,
}

/// Errors for messages that are not usable JSON-RPC.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("invalid JSON-RPC message: {0}")]
    Json(#[from] serde_json::Error),
    #[error("invalid JSON-RPC message: expected a JSON object")]
    NotAnObject,
    #[error("invalid JSON-RPC message: a request id must be an integer or a string")]
    InvalidId,
    #[error("invalid JSON-RPC message: neither `method` nor `result`/`error` is present")]
    UnknownKind,
}

/// Marks whether a field was present at all, including `"field": null`.
#[derive(Default)]
struct Present(bool);

impl<'de> Deserialize<'de> for Present {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(deserializer)?;
        Ok(Present(true))
    }
}

#[derive(Deserialize)]
struct RawEnvelope {
    #[serde(default)]
    id: Option<serde_json::Value>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    result: Present,
    #[serde(default)]
    error: Present,
}

impl Envelope {
    /// Parses the routing fields of one JSON-RPC message. The whole text is
    /// still validated as JSON.
    pub fn parse(json: &[u8]) -> Result<Envelope, EnvelopeError> {
        let first = json.iter().find(|b| !b.is_ascii_whitespace());
        if first != Some(&b'{') {
            return Err(EnvelopeError::NotAnObject);
        }

        let raw: RawEnvelope = serde_json::from_slice(json)?;
        let id = match raw.id {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) => Some(Id::String(s)),
            Some(serde_json::Value::Number(n)) => {
                Some(Id::Number(n.as_i64().ok_or(EnvelopeError::InvalidId)?))
            }
            Some(_) => return Err(EnvelopeError::InvalidId),
        };

        let kind = match (&raw.method, &id) {
            (Some(_), Some(_)) => Kind::Request,
            (Some(_), None) => Kind::Notification,
            (None, _) if raw.result.0 || raw.error.0 => Kind::Response,
            (None, _) => return Err(EnvelopeError::UnknownKind),
        };
        Ok(Envelope {
            kind,
            id,
            method: raw.method,
        })
    }

    pub fn is_request(&self) -> bool {
        self.kind == Kind::Request
    }

    pub fn method(&self) -> &str {
        self.method.as_deref().unwrap_or("")
    }
}

/// Standard JSON-RPC and LSP error codes used by the bridge.
pub mod error_code {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const INTERNAL_ERROR: i64 = -32603;
    /// LSP: the server is not reachable or not ready for this request.
    pub const SERVER_NOT_INITIALIZED: i64 = -32002;
    /// LSP: the request failed but was syntactically correct.
    pub const REQUEST_FAILED: i64 = -32803;
    /// LSP: the document changed (or the server restarted) while the request ran.
    pub const CONTENT_MODIFIED: i64 = -32801;
}

/// Builds the JSON text of a response carrying `result`.
pub fn response(id: &Id, result: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"jsonrpc": "2.0", "id": id, "result": result}))
        .expect("serializing a JSON value cannot fail")
}

/// Builds the JSON text of an error response. `id` is `None` when the request
/// id could not be read.
pub fn error_response(id: Option<&Id>, code: i64, message: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": {"code": code, "message": message},
    }))
    .expect("serializing a JSON value cannot fail")
}

/// Builds the JSON text of a notification.
pub fn notification(method: &str, params: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"jsonrpc": "2.0", "method": method, "params": params}))
        .expect("serializing a JSON value cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_message_kinds() {
        let cases: &[(&str, Kind, Option<Id>, Option<&str>)] = &[
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"x":[1,2]}}"#,
                Kind::Request,
                Some(Id::Number(1)),
                Some("initialize"),
            ),
            (
                r#"{"jsonrpc":"2.0","id":"a-1","method":"textDocument/hover"}"#,
                Kind::Request,
                Some(Id::String("a-1".into())),
                Some("textDocument/hover"),
            ),
            (
                r#"{"jsonrpc":"2.0","method":"initialized","params":{}}"#,
                Kind::Notification,
                None,
                Some("initialized"),
            ),
            (
                r#"{"jsonrpc":"2.0","id":7,"result":null}"#,
                Kind::Response,
                Some(Id::Number(7)),
                None,
            ),
            (
                r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x"}}"#,
                Kind::Response,
                None,
                None,
            ),
            (
                r#"  {"params":{"deep":{"id":99,"method":"nested"}},"method":"m","id":-3}"#,
                Kind::Request,
                Some(Id::Number(-3)),
                Some("m"),
            ),
        ];
        for (json, kind, id, method) in cases {
            let env = Envelope::parse(json.as_bytes()).unwrap();
            assert_eq!(env.kind, *kind, "{json}");
            assert_eq!(env.id, *id, "{json}");
            assert_eq!(env.method.as_deref(), *method, "{json}");
        }
    }

    #[test]
    fn rejects_invalid_messages() {
        let cases: &[(&str, &str)] = &[
            ("not json", "expected a JSON object"),
            ("[1,2]", "expected a JSON object"),
            (r#"{"id":1,"method":"x""#, "invalid JSON-RPC message"),
            (r#"{"id":1.5,"method":"x"}"#, "integer or a string"),
            (r#"{"id":{},"method":"x"}"#, "integer or a string"),
            (r#"{"jsonrpc":"2.0","id":1}"#, "neither `method`"),
            (r#"{"id":1,"id":2,"method":"x"}"#, "duplicate field"),
        ];
        for (json, expected) in cases {
            let err = Envelope::parse(json.as_bytes()).unwrap_err();
            assert!(err.to_string().contains(expected), "{json}: {err}");
        }
    }

    #[test]
    fn builds_error_response() {
        let bytes = error_response(
            Some(&Id::String("x".into())),
            error_code::REQUEST_FAILED,
            "boom",
        );
        let env = Envelope::parse(&bytes).unwrap();
        assert_eq!(env.kind, Kind::Response);
        assert_eq!(env.id, Some(Id::String("x".into())));
        let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(value["error"]["code"], -32803);
        assert_eq!(value["error"]["message"], "boom");
    }
}
