//! The same end-to-end bodies over each transport: the editor scenario and
//! a 32 MiB document, through the real `remote-gopls` client binary with a
//! gRPC or a WebSocket URL; plus a WebSocket LSP client written with
//! third-party npm packages.

use std::path::Path;
use std::time::Duration;

use remote_gopls_e2e::fixture::{position_of, Fixture};
use remote_gopls_e2e::lsp::LspClient;
use remote_gopls_e2e::scenario::editor_scenario;
use remote_gopls_e2e::server::ServerProcess;
use remote_gopls_e2e::transport::Transport;
use serde_json::json;

async fn start_server(fixture: &Fixture, envs: &[(&str, &str)]) -> ServerProcess {
    let workspace = format!("hello={}", fixture.remote.display());
    ServerProcess::start(&fixture.data, &["--workspace", &workspace], envs).await
}

fn client_over(transport: Transport, server: &ServerProcess) -> LspClient {
    let url = transport.client_url(server);
    LspClient::spawn_client(&[("REMOTE_GOPLS_SERVER", url.as_str())])
}

/// Runs the editor scenario, then shuts the session down cleanly.
async fn scenario_over(transport: Transport) {
    let fixture = Fixture::new("hello");
    let server = start_server(&fixture, &[]).await;
    let client = client_over(transport, &server);

    editor_scenario(&client, &fixture).await;

    client.shutdown_and_exit().await;
    let status = client.child.unwrap().wait().await.unwrap();
    assert!(
        status.success(),
        "client exits 0 after shutdown and exit: {status}"
    );
    assert!(
        server
            .wait_log("session closed", Duration::from_secs(10))
            .await,
        "server logs the session close"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editor_scenario_over_grpc() {
    scenario_over(Transport::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editor_scenario_over_websocket() {
    scenario_over(Transport::WebSocket).await;
}

/// Size of the document in the large-message test.
const LARGE_DOCUMENT: usize = 32 << 20;

/// Opens a 32 MiB Go file and asks gopls about a symbol at its very end.
async fn large_did_open(transport: Transport) {
    let fixture = Fixture::new("hello");
    let server = start_server(&fixture, &[]).await;
    let client = client_over(transport, &server);
    client.initialize(&fixture).await;

    let mut text = String::with_capacity(LARGE_DOCUMENT + 4096);
    text.push_str("// Package big is one large file.\npackage big\n\n");
    let filler = format!("// {}\n", "x".repeat(96));
    while text.len() < LARGE_DOCUMENT {
        text.push_str(&filler);
    }
    text.push_str("\n// Big sits at the end of a large file.\nfunc Big() int { return 1 }\n");
    assert!(text.len() >= LARGE_DOCUMENT);

    let uri = fixture.local_uri("big/big.go");
    client
        .notify(
            "textDocument/didOpen",
            json!({"textDocument": {"uri": &uri, "languageId": "go", "version": 1, "text": &text}}),
        )
        .await;

    let symbols = client
        .request(
            "textDocument/documentSymbol",
            json!({"textDocument": {"uri": &uri}}),
        )
        .await;
    let names: Vec<&str> = symbols
        .as_array()
        .map(|s| s.iter().filter_map(|s| s["name"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        names.contains(&"Big"),
        "documentSymbol lists Big: {names:?}"
    );

    let big = position_of(&text, "func Big", 0, 5);
    let hover = client.hover(&uri, big).await;
    assert!(
        hover.contains("Big sits at the end"),
        "hover on Big at the end of the document: {hover:?}"
    );

    client.shutdown_and_exit().await;
    let status = client.child.unwrap().wait().await.unwrap();
    assert!(status.success(), "client exits 0: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_document_over_grpc() {
    large_did_open(Transport::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_document_over_websocket() {
    large_did_open(Transport::WebSocket).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_client_gets_hover_and_completion() {
    let node_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("node");
    for package in ["ws", "vscode-jsonrpc"] {
        assert!(
            node_dir.join("node_modules").join(package).is_dir(),
            "{}/node_modules/{package} is missing: run `npm ci --prefix e2e/node`",
            node_dir.display()
        );
    }

    const TOKEN: &str = "node-token-0123456789abcdef";
    let tokens = format!("{TOKEN} hello");
    let fixture = Fixture::new("hello");
    let server = start_server(&fixture, &[("REMOTE_GOPLS_SERVER_TOKENS", tokens.as_str())]).await;

    let main_rel = "cmd/hello/main.go";
    let run = tokio::process::Command::new("node")
        .arg(node_dir.join("lsp-client.mjs"))
        .arg(server.ws_url())
        .arg("hello")
        .arg(fixture.local_root_uri())
        .arg(fixture.local.join(main_rel))
        .arg(fixture.local_uri(main_rel))
        .env("REMOTE_GOPLS_TOKEN", TOKEN)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the node client finishes within 120 s")
        .expect("run node (is Node.js installed?)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "node client failed ({}):\n{stderr}\n{stdout}",
        output.status
    );

    let line = stdout.lines().last().unwrap_or_default();
    let report: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(
        report["protocol"], "remote-gopls.v1",
        "the server echoed the subprotocol: {report}"
    );
    assert!(
        report["sessionId"].as_str().is_some_and(|s| !s.is_empty()),
        "the upgrade response names the session: {report}"
    );
    assert_eq!(report["serverName"], "gopls", "{report}");
    assert!(
        report["hover"]
            .as_str()
            .is_some_and(|h| h.contains("Println formats")),
        "hover on fmt.Println: {report}"
    );
    let labels: Vec<&str> = report["completionLabels"]
        .as_array()
        .map(|l| l.iter().filter_map(|l| l.as_str()).collect())
        .unwrap_or_default();
    assert!(
        labels.contains(&"Println"),
        "completion after fmt. offers Println: {labels:?}"
    );
    assert_eq!(
        report["close"]["code"], 1000,
        "the session ends with a normal close: {report}"
    );
    assert!(
        !server.log_text().contains(TOKEN),
        "the token never appears in the server log"
    );
}
