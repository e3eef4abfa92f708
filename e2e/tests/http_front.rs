//! End-to-end tests of the HTTP listener: health and readiness, metrics
//! parsed as Prometheus text, WebSocket authentication and close codes,
//! keepalive, and graceful shutdown on SIGTERM over both transports.

use std::time::{Duration, Instant};

use remote_gopls_e2e::fixture::{position_of, Fixture};
use remote_gopls_e2e::grpc;
use remote_gopls_e2e::http::{get, sample, scrape, wait_for_sample};
use remote_gopls_e2e::lsp::LspClient;
use remote_gopls_e2e::server::ServerProcess;
use remote_gopls_e2e::ws::{self, WsSession};
use serde_json::json;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

const TOKEN: &str = "http-token-0123456789abcdef";
const OTHER_TOKEN: &str = "http-other-0123456789abcdef";
const ROOT_TOKEN: &str = "http-root-0123456789abcdef";

async fn start_server(fixture: &Fixture, args: &[&str], envs: &[(&str, &str)]) -> ServerProcess {
    let workspace = format!("hello={}", fixture.remote.display());
    let mut all = vec!["--workspace", workspace.as_str()];
    all.extend_from_slice(args);
    ServerProcess::start(&fixture.data, &all, envs).await
}

/// Builds the WebSocket endpoint path for a workspace, with the fixture's
/// local root.
fn lsp_path(fixture: &Fixture, workspace: &str, extra_query: &str) -> String {
    let root: String = url_encode(&fixture.local_root_uri());
    format!("/v1/workspaces/{workspace}/lsp?local_root={root}{extra_query}")
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

const SESSIONS_OPEN: &str = "remote_gopls_sessions_open";
const MESSAGES: &str = "remote_gopls_messages_total";
const BYTES: &str = "remote_gopls_message_bytes_total";
const LATENCY_COUNT: &str = "remote_gopls_request_duration_seconds_count";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics() {
    let fixture = Fixture::new("hello");
    let mut server = start_server(&fixture, &[], &[]).await;
    let addr = server.http_addr.as_str();

    assert_eq!(get(addr, "/healthz").await, (200, "ok\n".to_owned()));
    assert_eq!(get(addr, "/readyz").await, (200, "ready\n".to_owned()));
    let (status, body) = get(addr, "/nope").await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body.contains("/metrics"),
        "the 404 body lists the endpoints: {body}"
    );
    let (status, body) = get(addr, "/v1/workspaces/hello/lsp").await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("expected a WebSocket upgrade request"),
        "{body}"
    );

    let before = scrape(addr).await;
    assert_eq!(
        sample(&before, "remote_gopls_gopls_instances_running", &[]),
        Some(0.0)
    );
    assert_eq!(
        sample(&before, "remote_gopls_gopls_starts_total", &[]),
        Some(0.0)
    );

    let url = server.ws_url();
    let client = LspClient::spawn_client(&[("REMOTE_GOPLS_SERVER", url.as_str())]);
    client.initialize(&fixture).await;
    let main_rel = "cmd/hello/main.go";
    let main_uri = fixture.local_uri(main_rel);
    let main = client.open(&fixture, main_rel).await;
    let println = position_of(&main, "Println", 0, 1);
    assert!(client.hover(&main_uri, println).await.contains("Println"));

    let ws = [("transport", "websocket")];
    let up = [("transport", "websocket"), ("direction", "editor_to_gopls")];
    let down = [("transport", "websocket"), ("direction", "gopls_to_editor")];
    let hover = [("method", "textDocument/hover")];
    let during = scrape(addr).await;
    assert_eq!(sample(&during, SESSIONS_OPEN, &ws), Some(1.0));
    assert!(
        sample(&during, MESSAGES, &up).unwrap_or_default() >= 4.0,
        "initialize, initialized, didOpen and hover went up: {:?}",
        sample(&during, MESSAGES, &up)
    );
    assert!(sample(&during, MESSAGES, &down).unwrap_or_default() >= 2.0);
    assert!(sample(&during, BYTES, &up).unwrap_or_default() >= main.len() as f64);
    assert!(sample(&during, BYTES, &down).unwrap_or_default() > 0.0);
    assert_eq!(
        sample(&during, LATENCY_COUNT, &[("method", "initialize")]),
        Some(1.0)
    );
    assert_eq!(sample(&during, LATENCY_COUNT, &hover), Some(1.0));
    assert_eq!(
        sample(&during, "remote_gopls_gopls_instances_running", &[]),
        Some(1.0)
    );
    assert_eq!(
        sample(&during, "remote_gopls_gopls_starts_total", &[]),
        Some(1.0)
    );

    // One more request moves the counters and the histogram.
    assert!(client.hover(&main_uri, println).await.contains("Println"));
    let after = scrape(addr).await;
    assert_eq!(sample(&after, LATENCY_COUNT, &hover), Some(2.0));
    assert!(
        sample(&after, MESSAGES, &up) > sample(&during, MESSAGES, &up),
        "editor_to_gopls messages grew"
    );
    assert!(
        sample(&after, BYTES, &down) > sample(&during, BYTES, &down),
        "gopls_to_editor bytes grew"
    );

    client.shutdown_and_exit().await;
    let open = wait_for_sample(addr, SESSIONS_OPEN, &ws, 0.0, Duration::from_secs(10)).await;
    assert_eq!(open, Some(0.0), "the sessions gauge drops to 0 after exit");
    let status = server.terminate().await;
    assert!(status.success(), "server exits 0: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_rejections_and_bad_frames() {
    let fixture = Fixture::new("hello");
    let tokens = format!("{TOKEN} hello; {OTHER_TOKEN} other; {ROOT_TOKEN} *");
    let server = start_server(
        &fixture,
        &["--max-message-size", "1048576"],
        &[("REMOTE_GOPLS_SERVER_TOKENS", tokens.as_str())],
    )
    .await;
    let addr = server.http_addr.as_str();
    let hello = lsp_path(&fixture, "hello", "");

    let bearer = |token: &str| format!("Bearer {token}");
    // Path, Authorization header, expected status and body text.
    let cases = [
        (hello.clone(), None, 401, "missing bearer token"),
        (
            hello.clone(),
            Some(bearer("wrong-token-0123456789abcdef")),
            401,
            "invalid bearer token",
        ),
        (
            hello.clone(),
            Some(bearer(OTHER_TOKEN)),
            403,
            "does not grant access to workspace \"hello\"",
        ),
        (
            lsp_path(&fixture, "nope", ""),
            Some(bearer(ROOT_TOKEN)),
            404,
            "workspace \"nope\" not found",
        ),
    ];
    for (path, authorization, status, text) in cases {
        let headers: Vec<(&str, &str)> = authorization
            .iter()
            .map(|value| ("authorization", value.as_str()))
            .collect();
        let error = ws::connect(addr, &path, &headers)
            .await
            .expect_err("rejected");
        let (got, body) = ws::rejection(error);
        assert_eq!(got, status, "{path}: {body}");
        assert!(body.contains(text), "{path}: {body:?}");
    }

    // A good session on the side must not notice the bad ones below.
    let (socket, _) = ws::connect(addr, &hello, &[("authorization", &bearer(TOKEN))])
        .await
        .expect("session with the Authorization header");
    let good = WsSession::new(socket);
    good.client.initialize(&fixture).await;

    // The token as a subprotocol; the server echoes only remote-gopls.v1.
    let protocols = format!("remote-gopls.v1, bearer.{TOKEN}");
    let (socket, response) = ws::connect(addr, &hello, &[("sec-websocket-protocol", &protocols)])
        .await
        .expect("session with the bearer subprotocol");
    assert_eq!(
        response.headers()["sec-websocket-protocol"],
        "remote-gopls.v1",
        "{response:?}"
    );
    let session = response.headers()["x-remote-gopls-session"]
        .to_str()
        .unwrap();
    assert!(session.starts_with('s'), "session id header: {session:?}");
    let binary = WsSession::new(socket);
    binary.raw.send(Message::binary(&b"{}"[..])).await.unwrap();
    let frame = binary
        .closed(Duration::from_secs(10))
        .await
        .flatten()
        .expect("a close frame");
    assert_eq!(frame.code, CloseCode::Unsupported, "{frame:?}");
    assert!(
        frame.reason.contains("binary frames are not supported"),
        "{frame:?}"
    );

    // The token as a query parameter; a text frame that is not JSON.
    let query = format!("&access_token={TOKEN}");
    let (socket, _) = ws::connect(addr, &lsp_path(&fixture, "hello", &query), &[])
        .await
        .expect("session with the access_token parameter");
    let garbage = WsSession::new(socket);
    garbage.client.send_raw(&b"this is not json"[..]).await;
    let frame = garbage
        .closed(Duration::from_secs(10))
        .await
        .flatten()
        .expect("a close frame");
    assert_eq!(frame.code, CloseCode::Invalid, "{frame:?}");
    assert!(
        frame.reason.contains("invalid JSON-RPC message"),
        "{frame:?}"
    );
    let replies = garbage.client.seen.lock().unwrap().all.clone();
    assert!(
        replies.iter().any(|r| r["error"]["code"] == -32700),
        "a parse error reply precedes the close: {replies:?}"
    );

    // A message over the server's 1 MiB limit.
    let (socket, _) = ws::connect(addr, &hello, &[("authorization", &bearer(TOKEN))])
        .await
        .unwrap();
    let oversized = WsSession::new(socket);
    let big = format!(
        r#"{{"jsonrpc":"2.0","method":"x","params":"{}"}}"#,
        "a".repeat(2 << 20)
    );
    oversized.client.send_raw(big).await;
    let frame = oversized
        .closed(Duration::from_secs(10))
        .await
        .flatten()
        .expect("a close frame");
    assert_eq!(frame.code, CloseCode::Size, "{frame:?}");

    let main_rel = "cmd/hello/main.go";
    let main_uri = fixture.local_uri(main_rel);
    let main = good.client.open(&fixture, main_rel).await;
    let hover = good
        .client
        .hover(&main_uri, position_of(&main, "Println", 0, 1))
        .await;
    assert!(
        hover.contains("Println formats"),
        "the good session still answers: {hover:?}"
    );
    assert_eq!(
        server.gopls_children().len(),
        1,
        "the shared gopls is still running"
    );

    let log = server.log_text();
    for token in [TOKEN, OTHER_TOKEN, ROOT_TOKEN, "0123456789abcdef"] {
        assert!(!log.contains(token), "a token appears in the server log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_keeps_live_and_drops_silent_peers() {
    let fixture = Fixture::new("hello");
    let interval = Duration::from_millis(300);
    let server = start_server(&fixture, &["--ws-ping-interval", "300ms"], &[]).await;
    let addr = server.http_addr.as_str();
    let path = lsp_path(&fixture, "hello", "");

    // A peer whose client reads (and so answers pings) stays connected.
    let (socket, _) = ws::connect(addr, &path, &[]).await.unwrap();
    let live = WsSession::new(socket);
    live.client.initialize(&fixture).await;

    // A peer that never reads its socket never answers a ping.
    let (silent, _) = ws::connect(addr, &path, &[]).await.unwrap();

    let started = Instant::now();
    let pinged = remote_gopls_e2e::eventually(Duration::from_secs(20), || {
        (live.frames.pings.load(std::sync::atomic::Ordering::SeqCst) >= 4).then_some(())
    })
    .await;
    assert!(pinged.is_some(), "the live peer got 4 pings");
    assert!(
        started.elapsed() >= 3 * interval,
        "4 pings take at least 3 intervals"
    );
    assert!(
        live.frames.close.lock().unwrap().is_none(),
        "the live session is still open after 3 intervals"
    );
    let main_rel = "cmd/hello/main.go";
    let main = live.client.open(&fixture, main_rel).await;
    let hover = live
        .client
        .hover(
            &fixture.local_uri(main_rel),
            position_of(&main, "Println", 0, 1),
        )
        .await;
    assert!(
        hover.contains("Println formats"),
        "the live session answers: {hover:?}"
    );

    assert!(
        server
            .wait_log("keepalive timed out", Duration::from_secs(10))
            .await,
        "the silent peer is disconnected for missing pongs"
    );
    let ws = [("transport", "websocket")];
    let open = wait_for_sample(addr, SESSIONS_OPEN, &ws, 1.0, Duration::from_secs(10)).await;
    assert_eq!(open, Some(1.0), "only the live session remains open");
    assert!(
        server
            .wait_log("session detached from gopls", Duration::from_secs(1))
            .await,
        "the silent peer's session was detached from gopls:\n{}",
        server.log_text()
    );
    drop(silent);
}

/// Sends `initialize` on a raw gRPC session and waits for its response.
async fn grpc_initialize(session: &mut grpc::RawSession, fixture: &Fixture) {
    let root = fixture.local_root_uri();
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"rootUri": root, "capabilities": {}}});
    session.send(serde_json::to_vec(&body).unwrap()).await;
    loop {
        let message = tokio::time::timeout(Duration::from_secs(60), session.rx.message())
            .await
            .expect("initialize response within 60 s")
            .expect("stream open")
            .expect("a message");
        if let Some(remote_gopls_proto::pb::server_message::Kind::Lsp(body)) = message.kind {
            let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
            if value["id"] == 1 && value.get("result").is_some() {
                return;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_sessions_cleanly() {
    let fixture = Fixture::new("hello");
    let grace = Duration::from_secs(5);
    let mut server = start_server(&fixture, &["--shutdown-grace", "5s"], &[]).await;

    let (socket, _) = ws::connect(&server.http_addr, &lsp_path(&fixture, "hello", ""), &[])
        .await
        .unwrap();
    let websocket = WsSession::new(socket);
    websocket.client.initialize(&fixture).await;
    let mut grpc_session = grpc::open(&server.url(), None, "hello", &fixture.local_root_uri())
        .await
        .expect("gRPC session opens");
    grpc_initialize(&mut grpc_session, &fixture).await;
    let gopls = server.gopls_children();
    assert_eq!(gopls.len(), 1, "one gopls: {gopls:?}");

    let started = Instant::now();
    server.signal_term();

    let notice = websocket
        .client
        .wait_notification(Duration::from_secs(10), |n| {
            n["method"] == "window/showMessage"
                && n["params"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("shutting down"))
        })
        .await;
    assert!(
        notice.is_some(),
        "the WebSocket editor is told about the shutdown"
    );
    let frame = websocket
        .closed(Duration::from_secs(10))
        .await
        .flatten()
        .expect("a close frame");
    assert_eq!(frame.code, CloseCode::Away, "{frame:?}");

    let (bodies, status) = grpc_session.drain().await;
    assert!(
        bodies
            .iter()
            .any(|b| String::from_utf8_lossy(b).contains("shutting down")),
        "the gRPC editor is told about the shutdown"
    );
    let status = status.expect("the gRPC session ends with a status");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");

    let exit = tokio::time::timeout(grace, server.child.wait())
        .await
        .expect("the server exits within the grace period")
        .unwrap();
    assert!(exit.success(), "server exits 0 on SIGTERM: {exit}");
    assert!(
        started.elapsed() < grace,
        "exit took {:?}",
        started.elapsed()
    );
    assert_eq!(
        remote_gopls_e2e::proc_stat(gopls[0]).map(|s| s.0),
        None,
        "gopls was stopped and reaped"
    );
    assert!(
        server
            .wait_log("server stopped", Duration::from_secs(1))
            .await,
        "the server logs its stop"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editor_close_is_answered_cleanly() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;

    let fixture = Fixture::new("hello");
    let server = start_server(&fixture, &[], &[]).await;
    let (mut socket, _) = ws::connect(&server.http_addr, &lsp_path(&fixture, "hello", ""), &[])
        .await
        .unwrap();

    let frame = CloseFrame {
        code: CloseCode::Normal,
        reason: "editor closing".into(),
    };
    socket.send(Message::Close(Some(frame))).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(message) = socket.next().await {
            match message {
                Ok(Message::Close(frame)) => return Ok(frame),
                Ok(_) => continue,
                Err(e) => return Err(e.to_string()),
            }
        }
        Err("the stream ended without a close frame".to_owned())
    })
    .await
    .expect("a reply within 10 s");
    let frame = reply.expect("the server answers the close frame");
    assert_eq!(frame.map(|f| f.code), Some(CloseCode::Normal));
    assert!(
        !server.log_text().contains("failed to send the close frame"),
        "{}",
        server.log_text()
    );
}
