//! Default gopls settings from the server configuration reach gopls through
//! `initializationOptions`, and the editor's own options win over them.

use std::time::Duration;

use remote_gopls_e2e::fixture::Fixture;
use remote_gopls_e2e::lsp::LspClient;
use remote_gopls_e2e::server::ServerProcess;
use serde_json::json;

/// Names of workspace symbols matching `query`.
async fn symbols(client: &LspClient, query: &str) -> Vec<String> {
    // gopls answers workspace/symbol from loaded packages; retry briefly
    // while the initial workspace load finishes.
    let mut names = Vec::new();
    for _ in 0..40 {
        let result = client
            .request("workspace/symbol", json!({"query": query}))
            .await;
        names = result
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        if names.iter().any(|n| n == "Greeter") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_settings_apply_under_editor_options() {
    let fixture = Fixture::new("hello");
    let config = fixture.data.with_extension("toml");
    std::fs::write(
        &config,
        format!(
            "[workspaces.hello]\npath = {:?}\ngopls_settings = {{ directoryFilters = [\"-broken\"] }}\n",
            fixture.remote.display().to_string()
        ),
    )
    .unwrap();
    let server =
        ServerProcess::start(&fixture.data, &["--config", &config.to_string_lossy()], &[]).await;
    let url = server.url();

    let filtered = LspClient::spawn_client(&[("REMOTE_GOPLS_SERVER", url.as_str())]);
    filtered.initialize(&fixture).await;
    let names = symbols(&filtered, "t").await;
    assert!(
        names.iter().any(|n| n == "Greeter"),
        "the workspace loaded: {names:?}"
    );
    assert!(
        !names.iter().any(|n| n == "Count"),
        "broken/ is filtered out by the server default: {names:?}"
    );

    let unfiltered = LspClient::spawn_client(&[("REMOTE_GOPLS_SERVER", url.as_str())]);
    unfiltered
        .initialize_with_options(&fixture, json!({"directoryFilters": []}))
        .await;
    let names = symbols(&unfiltered, "t").await;
    assert!(
        names.iter().any(|n| n == "Count"),
        "the editor's directoryFilters win: {names:?}"
    );
}
