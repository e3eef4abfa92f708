//! End-to-end tests of the gRPC tunnel: the real server, the real client
//! binary, real gopls, and the fixture module in two differently named
//! directories. The editor scenario itself runs per transport in
//! `transports.rs`.

use std::time::Duration;

use remote_gopls_e2e::fixture::{position_of, Fixture};
use remote_gopls_e2e::lsp::LspClient;
use remote_gopls_e2e::server::ServerProcess;

fn workspace_arg(fixture: &Fixture) -> String {
    format!("hello={}", fixture.remote.display())
}

async fn start_server(fixture: &Fixture, envs: &[(&str, &str)]) -> ServerProcess {
    ServerProcess::start(
        &fixture.data,
        &["--workspace", &workspace_arg(fixture)],
        envs,
    )
    .await
}

fn client_for(server: &ServerProcess, token: Option<&str>) -> LspClient {
    let url = server.url();
    let mut envs = vec![("REMOTE_GOPLS_SERVER", url.as_str())];
    if let Some(token) = token {
        envs.push(("REMOTE_GOPLS_TOKEN", token));
    }
    LspClient::spawn_client(&envs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_share_one_gopls() {
    let fixture = Fixture::new("hello");
    let mut server = start_server(&fixture, &[]).await;
    let first = client_for(&server, None);
    let second = client_for(&server, None);
    first.initialize(&fixture).await;
    second.initialize(&fixture).await;

    let main_rel = "cmd/hello/main.go";
    let main_uri = fixture.local_uri(main_rel);
    let main = first.open(&fixture, main_rel).await;
    second.open(&fixture, main_rel).await;
    let println = position_of(&main, "Println", 0, 1);
    assert!(first.hover(&main_uri, println).await.contains("Println"));
    assert!(second.hover(&main_uri, println).await.contains("Println"));

    let gopls = server.gopls_children();
    assert_eq!(
        gopls.len(),
        1,
        "one gopls process for two sessions: {gopls:?}"
    );
    let gopls_pid = gopls[0];

    // Go telemetry would re-execute gopls as a sidecar child; it is off.
    let telemetry: Vec<String> = remote_gopls_e2e::children(gopls_pid)
        .into_iter()
        .map(remote_gopls_e2e::cmdline)
        .filter(|c| c.contains("telemetry") || c.contains("gopls"))
        .collect();
    assert!(
        telemetry.is_empty(),
        "gopls started no telemetry sidecar: {telemetry:?}"
    );

    // One session's shutdown and exit leave the other working.
    first.shutdown_and_exit().await;
    let status = first.child.unwrap().wait().await.unwrap();
    assert!(status.success(), "first client exits 0: {status}");
    let hover = second.hover(&main_uri, println).await;
    assert!(
        hover.contains("Println formats"),
        "second session still answers: {hover:?}"
    );
    assert_eq!(
        server.gopls_children(),
        vec![gopls_pid],
        "the shared gopls survived the first session's exit"
    );

    second.shutdown_and_exit().await;
    let status = second.child.unwrap().wait().await.unwrap();
    assert!(status.success(), "second client exits 0: {status}");

    // No gopls child of the server (or of gopls) is left as a zombie.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for pid in remote_gopls_e2e::children(server.pid)
        .into_iter()
        .chain(remote_gopls_e2e::children(gopls_pid))
    {
        let state = remote_gopls_e2e::proc_stat(pid).map(|s| s.0);
        assert_ne!(
            state,
            Some('Z'),
            "process {pid} ({}) is a zombie",
            remote_gopls_e2e::cmdline(pid)
        );
    }

    let status = server.terminate().await;
    assert!(status.success(), "server exits 0 on SIGTERM: {status}");
    assert_eq!(
        remote_gopls_e2e::proc_stat(gopls_pid).map(|s| s.0),
        None,
        "gopls was stopped and reaped with the server"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_server_fails_requests() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let fixture = Fixture::new("hello");
    let url = format!("http://127.0.0.1:{port}");
    let client = LspClient::spawn_client(&[("REMOTE_GOPLS_SERVER", url.as_str())]);

    let started = std::time::Instant::now();
    let response = client
        .request_message(
            "initialize",
            serde_json::json!({"rootUri": fixture.local_root_uri(), "capabilities": {}}),
        )
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the error arrives without a hang"
    );
    let message = response["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("cannot connect") && message.contains(&url),
        "initialize error: {response}"
    );

    let hover = client
        .request_message("textDocument/hover", serde_json::json!({"textDocument": {"uri": "file:///x.go"}, "position": {"line": 0, "character": 0}}))
        .await;
    assert!(
        hover["error"]["code"].is_i64(),
        "later requests fail too: {hover}"
    );

    client.notify("exit", serde_json::Value::Null).await;
    let status = tokio::time::timeout(Duration::from_secs(10), client.child.unwrap().wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        status.code(),
        Some(1),
        "exit without shutdown exits 1, like gopls"
    );
    assert!(
        client.stderr.lock().unwrap().contains("cannot connect"),
        "stderr explains the failure"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_rejects_unsafe_or_unclear_setups() {
    let fixture = Fixture::new("hello");
    let cases = [
        // https:// would need TLS, which the gRPC transport lacks: refuse
        // rather than send the token in plain text.
        (
            vec![("REMOTE_GOPLS_SERVER", "https://127.0.0.1:9")],
            Some(fixture.local_root_uri()),
            "no TLS support",
        ),
        // No root folder and no REMOTE_GOPLS_WORKSPACE: nothing names a workspace.
        (
            vec![("REMOTE_GOPLS_SERVER", "http://127.0.0.1:9")],
            None,
            "set REMOTE_GOPLS_WORKSPACE",
        ),
    ];
    for (envs, root, expected) in cases {
        let client = LspClient::spawn_client(&envs);
        let params = serde_json::json!({"rootUri": root, "capabilities": {}});
        let response = client.request_message("initialize", params).await;
        let message = response["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(expected), "{envs:?}: {response}");
        client.notify("exit", serde_json::Value::Null).await;
    }
}
