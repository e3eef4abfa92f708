//! The editor scenario every transport must pass: one test body, run once
//! per transport by the tests in `e2e/tests`.

use std::time::Duration;

use serde_json::json;

use crate::fixture::{position_of, uri_path, Fixture};
use crate::lsp::LspClient;

/// Runs the scenario on an initialized-but-unused client for the `hello`
/// fixture. Panics with a description of the first step that fails.
pub async fn editor_scenario(client: &LspClient, fixture: &Fixture) {
    let init = client.initialize(fixture).await;
    assert_eq!(
        init["serverInfo"]["name"], "gopls",
        "initialize result comes from gopls: {init}"
    );

    let main_rel = "cmd/hello/main.go";
    let main_uri = fixture.local_uri(main_rel);
    let main = client.open(fixture, main_rel).await;

    // Hover on a standard-library symbol returns its documentation.
    let println = position_of(&main, "Println", 0, 1);
    let hover = client.hover(&main_uri, println).await;
    assert!(
        hover.contains("Println formats"),
        "hover on fmt.Println: {hover:?}"
    );

    // gopls asked the editor for its configuration and went on after the answer.
    let requests = client.server_requests();
    assert!(
        requests.iter().any(|m| m == "workspace/configuration"),
        "gopls sent workspace/configuration: {requests:?}"
    );

    // Definition into another package of the module returns the local path.
    let greeter = position_of(&main, "Greeter", 0, 1);
    let location = client.definition(&main_uri, greeter).await;
    let uri = location["uri"].as_str().unwrap_or_default();
    assert_eq!(
        uri,
        fixture.local_uri("greet/greet.go"),
        "definition of greet.Greeter: {location}"
    );
    assert_eq!(
        uri_path(uri),
        fixture.local.join("greet/greet.go").to_string_lossy()
    );

    // Definition into the standard library keeps the server's GOROOT URI.
    let location = client.definition(&main_uri, println).await;
    let path = uri_path(location["uri"].as_str().unwrap_or_default());
    let goroot = crate::goroot();
    assert!(
        path.starts_with(&*goroot.to_string_lossy()) && path.ends_with("fmt/print.go"),
        "definition of fmt.Println is in the server's GOROOT {}: {location}",
        goroot.display()
    );

    // Multi-byte text in a hover result arrives intact.
    let welcome = position_of(&main, "Welcome", 0, 1);
    let hover = client.hover(&main_uri, welcome).await;
    assert!(
        hover.contains("你好，世界 🎉 (こんにちは)"),
        "hover on greet.Welcome: {hover:?}"
    );

    // Diagnostics for the broken file arrive under its local URI.
    let broken_uri = fixture.local_uri("broken/broken.go");
    client.open(fixture, "broken/broken.go").await;
    let diagnostics = client
        .wait_notification(Duration::from_secs(60), |n| {
            n["method"] == "textDocument/publishDiagnostics"
                && n["params"]["uri"] == broken_uri.as_str()
                && n["params"]["diagnostics"]
                    .as_array()
                    .is_some_and(|d| !d.is_empty())
        })
        .await
        .unwrap_or_else(|| {
            panic!(
                "no diagnostics for {broken_uri}; saw {:?}",
                notifications_summary(client)
            )
        });
    let message = diagnostics["params"]["diagnostics"][0]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.contains("cannot use"),
        "type error diagnostic: {diagnostics}"
    );

    // An unsaved edit: rename Welcome in the editor buffers only, then hover
    // and definition see the new name.
    let greet_rel = "greet/greet.go";
    let greet_uri = fixture.local_uri(greet_rel);
    let greet = client.open(fixture, greet_rel).await;
    let edited_greet = greet
        .replace("func Welcome()", "func Bienvenue()")
        .replace("// Welcome returns", "// Bienvenue returns an edited");
    let edited_main = main.replace("greet.Welcome()", "greet.Bienvenue()");
    for (uri, text) in [(&greet_uri, &edited_greet), (&main_uri, &edited_main)] {
        client
            .notify(
                "textDocument/didChange",
                json!({"textDocument": {"uri": uri, "version": 2}, "contentChanges": [{"text": text}]}),
            )
            .await;
    }
    let renamed = position_of(&edited_main, "Bienvenue", 0, 1);
    let hover = client.hover(&main_uri, renamed).await;
    assert!(
        hover.contains("Bienvenue returns an edited"),
        "hover after the unsaved edit: {hover:?}"
    );
    let location = client.definition(&main_uri, renamed).await;
    assert_eq!(
        location["uri"],
        greet_uri.as_str(),
        "definition after the unsaved edit: {location}"
    );
    let expected_line = position_of(&edited_greet, "func Bienvenue", 0, 0).0;
    assert_eq!(
        location["range"]["start"]["line"], expected_line,
        "definition line after the edit: {location}"
    );

    // Completion after `fmt.` offers Println.
    let with_dot = edited_main.replace(
        "\tfmt.Println(uuid.NewString())",
        "\tfmt.\n\tfmt.Println(uuid.NewString())",
    );
    client
        .notify(
            "textDocument/didChange",
            json!({"textDocument": {"uri": &main_uri, "version": 3}, "contentChanges": [{"text": &with_dot}]}),
        )
        .await;
    let (line, character) = position_of(&with_dot, "\tfmt.\n", 0, 5);
    let completion = client
        .request(
            "textDocument/completion",
            json!({"textDocument": {"uri": &main_uri}, "position": {"line": line, "character": character}}),
        )
        .await;
    let items = completion["items"]
        .as_array()
        .or(completion.as_array())
        .cloned()
        .unwrap_or_default();
    let labels: Vec<&str> = items.iter().filter_map(|i| i["label"].as_str()).collect();
    assert!(
        labels.contains(&"Println"),
        "completion after fmt. offers Println: {labels:?}"
    );
}

fn notifications_summary(client: &LspClient) -> Vec<String> {
    client
        .seen
        .lock()
        .unwrap()
        .notifications
        .iter()
        .map(|n| format!("{} {}", n["method"], n["params"]["uri"]))
        .collect()
}
