//! Bad input reaches only the session that sent it: wrong tokens, unknown
//! workspaces and broken messages each get their documented status while a
//! concurrent good session keeps working.

use std::time::Duration;

use remote_gopls_e2e::fixture::{position_of, Fixture};
use remote_gopls_e2e::grpc;
use remote_gopls_e2e::lsp::LspClient;
use remote_gopls_e2e::server::ServerProcess;
use tonic::Code;

const TOKEN: &str = "e2e-token-0123456789abcdef";
const OTHER_WORKSPACE_TOKEN: &str = "e2e-other-0123456789abcdef";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_leaves_good_session_alone() {
    let fixture = Fixture::new("hello");
    let tokens = format!("{TOKEN} hello; {OTHER_WORKSPACE_TOKEN} other");
    let server = ServerProcess::start(
        &fixture.data,
        &[
            "--workspace",
            &format!("hello={}", fixture.remote.display()),
            "--max-message-size",
            "1048576",
        ],
        &[("REMOTE_GOPLS_SERVER_TOKENS", tokens.as_str())],
    )
    .await;
    let url = server.url();

    let good = LspClient::spawn_client(&[
        ("REMOTE_GOPLS_SERVER", url.as_str()),
        ("REMOTE_GOPLS_TOKEN", TOKEN),
    ]);
    good.initialize(&fixture).await;
    let main_rel = "cmd/hello/main.go";
    let main_uri = fixture.local_uri(main_rel);
    let main = good.open(&fixture, main_rel).await;
    let println = position_of(&main, "Println", 0, 1);
    assert!(good.hover(&main_uri, println).await.contains("Println"));

    let root = fixture.local_root_uri();
    let cases: [(Option<&str>, &str, Code, &str); 4] = [
        (
            Some("wrong-token-0123456789abcdef"),
            "hello",
            Code::Unauthenticated,
            "invalid bearer token",
        ),
        (None, "hello", Code::Unauthenticated, "missing bearer token"),
        (
            Some(OTHER_WORKSPACE_TOKEN),
            "hello",
            Code::PermissionDenied,
            "does not grant access to workspace \"hello\"",
        ),
        (
            Some(TOKEN),
            "nope",
            Code::PermissionDenied,
            "does not grant access to workspace \"nope\"",
        ),
    ];
    for (token, workspace, code, text) in cases {
        let status = grpc::open(&url, token, workspace, &root)
            .await
            .err()
            .expect("session rejected");
        assert_eq!(status.code(), code, "{token:?} {workspace}: {status:?}");
        assert!(
            status.message().contains(text),
            "{token:?} {workspace}: {status:?}"
        );
        assert!(
            !server.log_text().contains("0123456789abcdef"),
            "tokens never appear in the log"
        );
    }

    // A garbage message ends that session with INVALID_ARGUMENT after a
    // JSON-RPC parse error.
    let mut garbage = grpc::open(&url, Some(TOKEN), "hello", &root)
        .await
        .expect("session opens");
    garbage.send(&b"this is not json"[..]).await;
    let (bodies, status) = garbage.drain().await;
    let status = status.expect("session ends with a status");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("invalid JSON-RPC message"),
        "{status:?}"
    );
    let reply: serde_json::Value =
        serde_json::from_slice(bodies.last().expect("a parse error reply")).unwrap();
    assert_eq!(reply["error"]["code"], -32700, "{reply}");

    // A message over the configured maximum ends that session with RESOURCE_EXHAUSTED.
    let mut oversized = grpc::open(&url, Some(TOKEN), "hello", &root)
        .await
        .expect("session opens");
    let big = format!(
        r#"{{"jsonrpc":"2.0","method":"x","params":"{}"}}"#,
        "a".repeat(2 << 20)
    );
    oversized.send(big).await;
    let (_, status) = oversized.drain().await;
    let status = status.expect("session ends with a status");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("too large"), "{status:?}");

    assert!(
        good.hover(&main_uri, println)
            .await
            .contains("Println formats"),
        "the good session still answers"
    );
    assert_eq!(
        server.gopls_children().len(),
        1,
        "the shared gopls is still running"
    );
    assert!(
        server
            .wait_log("session rejected", Duration::from_secs(1))
            .await,
        "rejections are logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_workspace_is_not_found() {
    let fixture = Fixture::new("hello");
    let server = ServerProcess::start(
        &fixture.data,
        &[
            "--workspace",
            &format!("hello={}", fixture.remote.display()),
        ],
        &[],
    )
    .await;
    let status = grpc::open(&server.url(), None, "missing-ws", "")
        .await
        .err()
        .expect("rejected");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert!(
        status.message().contains("\"missing-ws\" not found"),
        "{status:?}"
    );
    assert!(
        status.message().contains("hello"),
        "the message lists the served workspaces: {status:?}"
    );
}
