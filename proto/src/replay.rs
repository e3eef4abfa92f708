//! What one side of a tunnel remembers so the other side can be replaced
//! without the editor noticing: the `initialize` request, configuration and
//! workspace folder changes, open documents, requests in flight, requests
//! the language server sent to the editor (under ids this side assigns),
//! and open progress tokens.
//!
//! The server's session uses it to move an editor to a new gopls; the
//! client uses it to move to a new server session after a reconnect. Every
//! message in either direction passes through it first; it only records and
//! renumbers, and the caller does the I/O.

use std::collections::{HashMap, HashSet};

use crate::docstore::{DocumentStore, PositionEncoding};
use crate::jsonrpc::{self, error_code, Envelope, Id, Kind};
use bytes::Bytes;
use serde_json::{json, Value};

/// Requests that only read gopls state. After a restart they are sent again
/// to the new gopls; any other request in flight gets ContentModified.
pub const READ_METHODS: &[&str] = &[
    "textDocument/hover",
    "textDocument/definition",
    "textDocument/typeDefinition",
    "textDocument/implementation",
    "textDocument/declaration",
    "textDocument/references",
    "textDocument/completion",
    "completionItem/resolve",
    "textDocument/signatureHelp",
    "textDocument/documentSymbol",
    "textDocument/documentHighlight",
    "textDocument/documentLink",
    "textDocument/codeLens",
    "textDocument/codeAction",
    "textDocument/foldingRange",
    "textDocument/selectionRange",
    "textDocument/semanticTokens/full",
    "textDocument/semanticTokens/full/delta",
    "textDocument/semanticTokens/range",
    "textDocument/inlayHint",
    "textDocument/prepareRename",
    "textDocument/prepareCallHierarchy",
    "callHierarchy/incomingCalls",
    "callHierarchy/outgoingCalls",
    "textDocument/prepareTypeHierarchy",
    "typeHierarchy/supertypes",
    "typeHierarchy/subtypes",
    "textDocument/diagnostic",
    "textDocument/formatting",
    "textDocument/rangeFormatting",
    "workspace/symbol",
];

/// An editor request forwarded to gopls and still without a response.
#[derive(Debug, Clone)]
pub struct InFlight {
    pub method: String,
    /// The request as sent to gopls (URIs already mapped).
    pub message: Bytes,
}

/// Replay state of one session.
#[derive(Debug, Default)]
pub struct ReplayState {
    /// Incremented each time the session moves to a new gopls connection.
    pub generation: u64,
    /// The `initialize` request as sent to gopls.
    initialize: Option<Value>,
    initialized: bool,
    /// The last `workspace/didChangeConfiguration` notification.
    configuration: Option<Bytes>,
    /// Every `workspace/didChangeWorkspaceFolders` notification, in order.
    folder_changes: Vec<Bytes>,
    pub documents: DocumentStore,
    in_flight: HashMap<Id, InFlight>,
    /// Session-wide id given to a gopls request -> (generation, gopls's id).
    server_requests: HashMap<i64, (u64, Id)>,
    next_server_request: i64,
    /// Work-done progress tokens gopls opened and has not ended.
    progress: HashSet<String>,
    pub shutdown_requested: bool,
    /// Id of the replayed `initialize`, whose response the session consumes.
    replay_id: Option<Id>,
}

/// Handling of a message from gopls.
#[derive(Debug, PartialEq)]
pub enum FromGopls {
    /// Forward this (possibly renumbered) message to the editor.
    Forward(Bytes),
    /// The response to a replayed `initialize`; not for the editor.
    ReplayAnswered(Value),
}

/// Handling of a message from the editor.
#[derive(Debug, PartialEq)]
pub enum FromEditor {
    Forward(Bytes),
    /// A response to a request of a gopls connection that no longer exists.
    Drop,
}

fn set_id(message: &[u8], id: &Id) -> Option<Bytes> {
    let mut value: Value = serde_json::from_slice(message).ok()?;
    value["id"] = serde_json::to_value(id).ok()?;
    Some(Bytes::from(serde_json::to_vec(&value).ok()?))
}

fn token_key(token: &Value) -> String {
    token.to_string()
}

impl ReplayState {
    /// Records an editor message (already URI-mapped) and returns what to
    /// send to gopls.
    pub fn from_editor(&mut self, envelope: &Envelope, message: Bytes) -> FromEditor {
        match envelope.kind {
            Kind::Request => {
                let method = envelope.method();
                if method == "initialize" {
                    self.initialize = serde_json::from_slice(&message).ok();
                }
                if method == "shutdown" {
                    self.shutdown_requested = true;
                }
                if let Some(id) = &envelope.id {
                    self.in_flight.insert(
                        id.clone(),
                        InFlight {
                            method: method.to_owned(),
                            message: message.clone(),
                        },
                    );
                }
                FromEditor::Forward(message)
            }
            Kind::Notification => {
                match envelope.method() {
                    "initialized" => self.initialized = true,
                    "workspace/didChangeConfiguration" => {
                        self.configuration = Some(message.clone())
                    }
                    "workspace/didChangeWorkspaceFolders" => {
                        self.folder_changes.push(message.clone())
                    }
                    method @ ("textDocument/didOpen"
                    | "textDocument/didChange"
                    | "textDocument/didClose") => {
                        if let Err(e) = self.documents.observe(method, &message) {
                            tracing::warn!(error = %e, "cannot track document state for replay");
                        }
                    }
                    _ => {}
                }
                FromEditor::Forward(message)
            }
            Kind::Response => {
                let Some(Id::Number(session_id)) = &envelope.id else {
                    return FromEditor::Drop;
                };
                match self.server_requests.remove(session_id) {
                    Some((generation, original)) if generation == self.generation => {
                        match set_id(&message, &original) {
                            Some(renumbered) => FromEditor::Forward(renumbered),
                            None => FromEditor::Drop,
                        }
                    }
                    _ => FromEditor::Drop,
                }
            }
        }
    }

    /// Records a gopls message and returns what to do with it. The message
    /// is in gopls's form (URIs not yet mapped back).
    pub fn from_gopls(&mut self, envelope: &Envelope, message: Bytes) -> FromGopls {
        match envelope.kind {
            Kind::Response => {
                if envelope.id.is_some() && envelope.id == self.replay_id {
                    self.replay_id = None;
                    let value = serde_json::from_slice(&message).unwrap_or(Value::Null);
                    return FromGopls::ReplayAnswered(value);
                }
                if let Some(id) = &envelope.id {
                    if let Some(request) = self.in_flight.remove(id) {
                        if request.method == "initialize" {
                            self.negotiate_encoding(&message);
                        }
                    }
                }
                FromGopls::Forward(message)
            }
            Kind::Request => {
                let Some(original) = envelope.id.clone() else {
                    return FromGopls::Forward(message);
                };
                if envelope.method() == "window/workDoneProgress/create" {
                    if let Ok(value) = serde_json::from_slice::<Value>(&message) {
                        self.progress.insert(token_key(&value["params"]["token"]));
                    }
                }
                self.next_server_request += 1;
                let session_id = self.next_server_request;
                self.server_requests
                    .insert(session_id, (self.generation, original));
                match set_id(&message, &Id::Number(session_id)) {
                    Some(renumbered) => FromGopls::Forward(renumbered),
                    None => FromGopls::Forward(message),
                }
            }
            Kind::Notification => {
                if envelope.method() == "$/progress" {
                    if let Ok(value) = serde_json::from_slice::<Value>(&message) {
                        let key = token_key(&value["params"]["token"]);
                        match value["params"]["value"]["kind"].as_str() {
                            Some("begin") => {
                                self.progress.insert(key);
                            }
                            Some("end") => {
                                self.progress.remove(&key);
                            }
                            _ => {}
                        }
                    }
                }
                FromGopls::Forward(message)
            }
        }
    }

    /// Reads the position encoding gopls chose from its `initialize` result.
    fn negotiate_encoding(&mut self, response: &[u8]) {
        let Ok(value) = serde_json::from_slice::<Value>(response) else {
            return;
        };
        let kind = value["result"]["capabilities"]["positionEncoding"]
            .as_str()
            .unwrap_or("utf-16");
        let encoding = PositionEncoding::from_kind(kind).unwrap_or_default();
        self.documents.set_encoding(encoding);
    }

    /// Returns whether the editor has initialized, so there is state to replay.
    pub fn can_replay(&self) -> bool {
        self.initialize.is_some()
    }

    /// Starts replay into a new gopls connection: bumps the generation and
    /// returns the `initialize` request to send, under a private id.
    pub fn begin_replay(&mut self) -> Option<Bytes> {
        self.generation += 1;
        let mut initialize = self.initialize.clone()?;
        let id = Id::String(format!("remote-gopls/replay/{}", self.generation));
        initialize["id"] = serde_json::to_value(&id).ok()?;
        self.replay_id = Some(id);
        Some(Bytes::from(serde_json::to_vec(&initialize).ok()?))
    }

    /// Messages that rebuild the editor's state after `initialize` got its
    /// response: `initialized`, configuration, folder changes, and a
    /// `didOpen` for every open document.
    pub fn replay_notifications(&self) -> Vec<Bytes> {
        let mut messages = Vec::new();
        if self.initialized {
            messages.push(Bytes::from(jsonrpc::notification(
                "initialized",
                &json!({}),
            )));
        }
        messages.extend(self.configuration.iter().cloned());
        messages.extend(self.folder_changes.iter().cloned());
        messages.extend(
            self.documents
                .replay_messages()
                .into_iter()
                .map(Bytes::from),
        );
        messages
    }

    /// Splits the requests in flight: reads are returned to be sent again,
    /// the rest are removed and returned as ContentModified errors for the
    /// editor.
    pub fn settle_in_flight(&mut self) -> (Vec<Bytes>, Vec<Bytes>) {
        let mut resend = Vec::new();
        let mut failed = Vec::new();
        self.in_flight.retain(|id, request| {
            if READ_METHODS.contains(&request.method.as_str()) {
                resend.push(request.message.clone());
                true
            } else {
                let message = format!(
                    "gopls restarted while {} was running; try again",
                    request.method
                );
                failed.push(Bytes::from(jsonrpc::error_response(
                    Some(id),
                    error_code::CONTENT_MODIFIED,
                    &message,
                )));
                false
            }
        });
        (resend, failed)
    }

    /// Ends every progress the old gopls opened, so no spinner stays up.
    pub fn end_progress(&mut self) -> Vec<Bytes> {
        self.progress
            .drain()
            .filter_map(|key| serde_json::from_str::<Value>(&key).ok())
            .map(|token| {
                Bytes::from(jsonrpc::notification(
                    "$/progress",
                    &json!({"token": token, "value": {"kind": "end", "message": "gopls restarted"}}),
                ))
            })
            .collect()
    }

    /// Forgets one request in flight (it was answered locally).
    pub fn forget(&mut self, id: &Id) {
        self.in_flight.remove(id);
    }

    /// Returns whether the editor sent `initialized`.
    pub fn initialized(&self) -> bool {
        self.initialized
    }

    /// Answers every request in flight with an error (the session cannot
    /// reach any gopls).
    pub fn fail_in_flight(&mut self, code: i64, message: &str) -> Vec<Bytes> {
        self.in_flight
            .drain()
            .map(|(id, _)| Bytes::from(jsonrpc::error_response(Some(&id), code, message)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn editor(state: &mut ReplayState, json: Value) -> FromEditor {
        let bytes = Bytes::from(serde_json::to_vec(&json).unwrap());
        state.from_editor(&Envelope::parse(&bytes).unwrap(), bytes)
    }

    fn gopls(state: &mut ReplayState, json: Value) -> FromGopls {
        let bytes = Bytes::from(serde_json::to_vec(&json).unwrap());
        state.from_gopls(&Envelope::parse(&bytes).unwrap(), bytes)
    }

    fn value(bytes: &Bytes) -> Value {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn replays_editor_state() {
        let mut state = ReplayState::default();
        editor(
            &mut state,
            json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"rootUri": "file:///w"}}),
        );
        gopls(
            &mut state,
            json!({"jsonrpc": "2.0", "id": 1, "result": {"capabilities": {}}}),
        );
        editor(
            &mut state,
            json!({"jsonrpc": "2.0", "method": "initialized", "params": {}}),
        );
        editor(
            &mut state,
            json!({"jsonrpc": "2.0", "method": "workspace/didChangeConfiguration", "params": {"settings": {"a": 1}}}),
        );
        editor(
            &mut state,
            json!({"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": {"uri": "file:///w/a.go", "languageId": "go", "version": 1, "text": "package a\n"}}}),
        );
        editor(
            &mut state,
            json!({"jsonrpc": "2.0", "method": "textDocument/didChange", "params": {"textDocument": {"uri": "file:///w/a.go", "version": 2}, "contentChanges": [{"text": "package b\n"}]}}),
        );

        let initialize = value(&state.begin_replay().unwrap());
        assert_eq!(initialize["id"], "remote-gopls/replay/1");
        assert_eq!(initialize["params"]["rootUri"], "file:///w");
        let answered = gopls(
            &mut state,
            json!({"jsonrpc": "2.0", "id": "remote-gopls/replay/1", "result": {}}),
        );
        assert!(matches!(answered, FromGopls::ReplayAnswered(_)));

        let replay: Vec<Value> = state.replay_notifications().iter().map(value).collect();
        let methods: Vec<&str> = replay
            .iter()
            .map(|m| m["method"].as_str().unwrap())
            .collect();
        assert_eq!(
            methods,
            [
                "initialized",
                "workspace/didChangeConfiguration",
                "textDocument/didOpen"
            ]
        );
        assert_eq!(replay[2]["params"]["textDocument"]["text"], "package b\n");
        assert_eq!(replay[2]["params"]["textDocument"]["version"], 2);
    }

    #[test]
    fn settles_requests_in_flight() {
        let mut state = ReplayState::default();
        editor(
            &mut state,
            json!({"jsonrpc": "2.0", "id": 5, "method": "textDocument/hover", "params": {}}),
        );
        editor(
            &mut state,
            json!({"jsonrpc": "2.0", "id": 6, "method": "workspace/executeCommand", "params": {}}),
        );
        editor(
            &mut state,
            json!({"jsonrpc": "2.0", "id": 7, "method": "textDocument/definition", "params": {}}),
        );
        gopls(
            &mut state,
            json!({"jsonrpc": "2.0", "id": 7, "result": null}),
        );

        let (resend, failed) = state.settle_in_flight();
        assert_eq!(resend.len(), 1);
        assert_eq!(value(&resend[0])["id"], 5);
        assert_eq!(failed.len(), 1);
        let failed = value(&failed[0]);
        assert_eq!(failed["id"], 6);
        assert_eq!(failed["error"]["code"], error_code::CONTENT_MODIFIED);
    }

    #[test]
    fn renumbers_gopls_requests_and_drops_stale_answers() {
        let mut state = ReplayState::default();
        editor(
            &mut state,
            json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}),
        );
        let FromGopls::Forward(first) = gopls(
            &mut state,
            json!({"jsonrpc": "2.0", "id": 1, "method": "workspace/configuration", "params": {}}),
        ) else {
            panic!("forwarded")
        };
        let first_id = value(&first)["id"].clone();

        // The new gopls uses the same id 1 for its own request.
        state.begin_replay();
        let FromGopls::Forward(second) = gopls(
            &mut state,
            json!({"jsonrpc": "2.0", "id": 1, "method": "workspace/configuration", "params": {}}),
        ) else {
            panic!("forwarded")
        };
        let second_id = value(&second)["id"].clone();
        assert_ne!(first_id, second_id, "the editor sees distinct ids");

        // The late answer for the old gopls is dropped; the new one goes through with gopls's id.
        assert_eq!(
            editor(
                &mut state,
                json!({"jsonrpc": "2.0", "id": first_id, "result": [{}]})
            ),
            FromEditor::Drop
        );
        let FromEditor::Forward(answer) = editor(
            &mut state,
            json!({"jsonrpc": "2.0", "id": second_id, "result": [{}]}),
        ) else {
            panic!("forwarded")
        };
        assert_eq!(value(&answer)["id"], 1);
    }

    #[test]
    fn ends_open_progress() {
        let mut state = ReplayState::default();
        gopls(
            &mut state,
            json!({"jsonrpc": "2.0", "id": 3, "method": "window/workDoneProgress/create", "params": {"token": "42"}}),
        );
        gopls(
            &mut state,
            json!({"jsonrpc": "2.0", "method": "$/progress", "params": {"token": 9, "value": {"kind": "begin", "title": "x"}}}),
        );
        gopls(
            &mut state,
            json!({"jsonrpc": "2.0", "method": "$/progress", "params": {"token": 10, "value": {"kind": "begin", "title": "y"}}}),
        );
        gopls(
            &mut state,
            json!({"jsonrpc": "2.0", "method": "$/progress", "params": {"token": 10, "value": {"kind": "end"}}}),
        );
        let mut ended: Vec<Value> = state
            .end_progress()
            .iter()
            .map(|m| value(m)["params"]["token"].clone())
            .collect();
        ended.sort_by_key(|t| t.to_string());
        assert_eq!(ended, vec![json!("42"), json!(9)]);
        assert!(state.end_progress().is_empty());
    }

    #[test]
    fn negotiates_utf8_positions() {
        let mut state = ReplayState::default();
        editor(
            &mut state,
            json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}),
        );
        gopls(
            &mut state,
            json!({"jsonrpc": "2.0", "id": 1, "result": {"capabilities": {"positionEncoding": "utf-8"}}}),
        );
        assert_eq!(state.documents.encoding(), PositionEncoding::Utf8);
    }
}
