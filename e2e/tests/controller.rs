//! The controller and transparent restarts, against real gopls: kill -9,
//! requests in flight, memory-threshold restarts with heap profiles, short
//! spikes, crash loops, idle eviction and the global memory budget.

use std::path::{Path, PathBuf};
use std::time::Duration;

use remote_gopls_e2e::fixture::{position_of, Fixture};
use remote_gopls_e2e::grpc;
use remote_gopls_e2e::http::{sample, scrape};
use remote_gopls_e2e::lsp::LspClient;
use remote_gopls_e2e::server::ServerProcess;
use serde_json::{json, Value};

const MAIN: &str = "cmd/hello/main.go";
const GREET: &str = "greet/greet.go";

fn signal(pid: u32, signal: i32) {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe {
        libc::kill(pid as i32, signal);
    }
}

/// Writes a server config: `extra` (top-level keys first, then tables) and
/// the fixture's `hello` workspace.
fn config(fixture: &Fixture, extra: &str) -> PathBuf {
    let path = fixture.data.with_extension("toml");
    let root = fixture.remote.display().to_string();
    std::fs::write(
        &path,
        format!("{extra}\n[workspaces.hello]\npath = {root:?}\n"),
    )
    .unwrap();
    path
}

async fn start(fixture: &Fixture, extra: &str) -> ServerProcess {
    let config = config(fixture, extra);
    ServerProcess::start(&fixture.data, &["--config", &config.to_string_lossy()], &[]).await
}

fn client(server: &ServerProcess, workspace: &str) -> LspClient {
    LspClient::spawn_client(&[
        ("REMOTE_GOPLS_SERVER", server.url().as_str()),
        ("REMOTE_GOPLS_WORKSPACE", workspace),
    ])
}

/// Opens the fixture and renames `Welcome` to `Bienvenue` in the editor's
/// buffers only; returns the edited texts of main.go and greet.go.
async fn edit_without_saving(client: &LspClient, fixture: &Fixture) -> (String, String) {
    client.initialize(fixture).await;
    let main = client.open(fixture, MAIN).await;
    let greet = client.open(fixture, GREET).await;
    let edited_greet = greet
        .replace("func Welcome()", "func Bienvenue()")
        .replace("// Welcome returns", "// Bienvenue returns an edited");
    let edited_main = main.replace("greet.Welcome()", "greet.Bienvenue()");
    for (rel, text) in [(GREET, &edited_greet), (MAIN, &edited_main)] {
        client
            .notify(
                "textDocument/didChange",
                json!({"textDocument": {"uri": fixture.local_uri(rel), "version": 2}, "contentChanges": [{"text": text}]}),
            )
            .await;
    }
    let hover = client
        .hover(
            &fixture.local_uri(MAIN),
            position_of(&edited_main, "Bienvenue", 0, 1),
        )
        .await;
    assert!(
        hover.contains("Bienvenue returns an edited"),
        "the edit reached gopls: {hover:?}"
    );
    (edited_main, edited_greet)
}

/// Waits for a `window/showMessage` containing `text`.
async fn message_containing(client: &LspClient, text: &str, timeout: Duration) -> Option<Value> {
    client
        .wait_notification(timeout, |n| {
            n["method"] == "window/showMessage"
                && n["params"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(text))
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_is_transparent() {
    let fixture = Fixture::new("hello");
    let server = start(&fixture, "").await;
    let client = client(&server, "hello");
    let (edited_main, edited_greet) = edit_without_saving(&client, &fixture).await;
    let old = server.gopls_pid("hello").await.expect("gopls runs");

    signal(old, libc::SIGKILL);

    let renamed = position_of(&edited_main, "Bienvenue", 0, 1);
    let hover = client.hover(&fixture.local_uri(MAIN), renamed).await;
    assert!(
        hover.contains("Bienvenue returns an edited"),
        "hover after the kill sees the unsaved edit: {hover:?}"
    );
    let location = client.definition(&fixture.local_uri(MAIN), renamed).await;
    assert_eq!(
        location["uri"],
        fixture.local_uri(GREET).as_str(),
        "{location}"
    );
    let line = position_of(&edited_greet, "func Bienvenue", 0, 0).0;
    assert_eq!(
        location["range"]["start"]["line"], line,
        "definition uses the unsaved text: {location}"
    );

    let notice = message_containing(&client, "restarted", Duration::from_secs(5))
        .await
        .expect("one restart message");
    assert_eq!(notice["params"]["type"], 3, "an info message: {notice}");
    let new = server.gopls_pid("hello").await.expect("a new gopls runs");
    assert_ne!(new, old);
    let mut child = client.child.expect("client process");
    assert!(
        child.try_wait().unwrap().is_none(),
        "the client did not exit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_at_kill_are_answered() {
    let fixture = Fixture::new("hello");
    let server = start(&fixture, "").await;
    let client = client(&server, "hello");
    client.initialize(&fixture).await;
    let main = client.open(&fixture, MAIN).await;
    let uri = fixture.local_uri(MAIN);
    let println = position_of(&main, "Println", 0, 1);
    assert!(client.hover(&uri, println).await.contains("Println"));
    let pid = server.gopls_pid("hello").await.unwrap();

    // A stopped gopls cannot answer, so both requests are in flight when it dies.
    signal(pid, libc::SIGSTOP);
    let hover = client.request_message(
        "textDocument/hover",
        json!({"textDocument": {"uri": &uri}, "position": {"line": println.0, "character": println.1}}),
    );
    let command = client.request_message(
        "workspace/executeCommand",
        json!({"command": "gopls.tidy", "arguments": [{"URIs": [fixture.local_uri("go.mod")]}]}),
    );
    let kill = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        signal(pid, libc::SIGKILL);
    };
    let (hover, command, ()) = tokio::join!(hover, command, kill);

    let answered = hover["result"]["contents"]["value"]
        .as_str()
        .is_some_and(|v| v.contains("Println"));
    let modified = hover["error"]["code"] == -32801;
    assert!(
        answered || modified,
        "the read gets a valid answer or ContentModified: {hover}"
    );
    assert!(answered, "reads are sent again to the new gopls: {hover}");
    assert_eq!(
        command["error"]["code"], -32801,
        "other requests get ContentModified: {command}"
    );
}

/// Starts a process inside a cgroup that keeps `mib` MiB resident for `seconds`.
fn hog(cgroup: &Path, mib: u64, seconds: f64) -> std::process::Child {
    let script = format!(
        "echo $$ > '{}/cgroup.procs' && exec python3 -c 'import time; b = b\"x\" * ({mib} << 20); time.sleep({seconds})'",
        cgroup.display()
    );
    std::process::Command::new("sh")
        .args(["-c", &script])
        .spawn()
        .expect("start the memory hog")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_threshold_restart_saves_heap_profile() {
    let fixture = Fixture::new("hello");
    let controller = "memory_limit = \"1GiB\"\n[controller]\nsample_interval = \"250ms\"\nwarn_fraction = 0.4\nrestart_fraction = 0.5\nrestart_samples = 3\n";
    let server = start(&fixture, controller).await;
    let client = client(&server, "hello");
    client.initialize(&fixture).await;
    let main = client.open(&fixture, MAIN).await;
    let uri = fixture.local_uri(MAIN);
    let println = position_of(&main, "Println", 0, 1);
    assert!(client.hover(&uri, println).await.contains("Println"));

    let status = server.workspace_status("hello").await;
    let old = status["instance"]["pid"].as_u64().unwrap() as u32;
    let cgroup = PathBuf::from(status["instance"]["cgroup"].as_str().unwrap());

    // 600 MiB of other memory in gopls's group keeps its working set above
    // half of the 1 GiB limit for many samples.
    let mut pressure = hog(&cgroup, 600, 60.0);
    let notice = message_containing(&client, "heap profile:", Duration::from_secs(30)).await;
    let _ = pressure.kill();
    let _ = pressure.wait();
    let notice = notice.unwrap_or_else(|| panic!("a restart message; log:\n{}", server.log_text()));
    let text = notice["params"]["message"].as_str().unwrap();
    assert!(text.contains("working set"), "{text}");
    assert!(
        server
            .log_text()
            .contains("gopls working set is above the warning threshold"),
        "a warning came first"
    );

    let profile = PathBuf::from(text.rsplit("heap profile: ").next().unwrap().trim());
    assert!(profile.starts_with(&fixture.data), "{}", profile.display());
    let pprof = std::process::Command::new("go")
        .args(["tool", "pprof", "-top"])
        .arg(&profile)
        .output()
        .unwrap();
    assert!(
        pprof.status.success(),
        "go tool pprof -top reads the profile: {}",
        String::from_utf8_lossy(&pprof.stderr)
    );
    assert!(
        String::from_utf8_lossy(&pprof.stdout).contains("flat"),
        "pprof printed a table"
    );
    let listed = server.workspace_status("hello").await;
    assert!(
        listed["heap_profiles"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p == &json!(profile.display().to_string()))),
        "status lists the profile: {listed}"
    );

    assert!(
        client
            .hover(&uri, println)
            .await
            .contains("Println formats"),
        "the session keeps working"
    );
    let new = server.gopls_pid("hello").await.expect("a new gopls runs");
    assert_ne!(new, old);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_spike_does_not_restart() {
    let fixture = Fixture::new("hello");
    let controller = "memory_limit = \"1GiB\"\n[controller]\nsample_interval = \"500ms\"\nrestart_fraction = 0.5\nrestart_samples = 3\n";
    let server = start(&fixture, controller).await;
    let client = client(&server, "hello");
    client.initialize(&fixture).await;
    let status = server.workspace_status("hello").await;
    let pid = status["instance"]["pid"].as_u64().unwrap() as u32;
    let cgroup = PathBuf::from(status["instance"]["cgroup"].as_str().unwrap());

    // Above the threshold for well under the three samples a restart needs.
    let mut spike = hog(&cgroup, 600, 0.3);
    assert!(
        spike.wait().unwrap().success(),
        "the spike ran to completion"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;

    assert!(
        !server.log_text().contains("restarting gopls"),
        "no restart:\n{}",
        server.log_text()
    );
    assert_eq!(server.gopls_pid("hello").await, Some(pid));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_loop_marks_workspace_degraded() {
    let fixture = Fixture::new("hello");
    let dir = fixture.data.with_extension("standin");
    std::fs::create_dir_all(&dir).unwrap();
    let starts = dir.join("starts.log");
    // While this file exists, every start of the stand-in exits at once.
    let marker = dir.join("fail");
    let standin = dir.join("gopls");
    // The first `serve` runs the real gopls; every later one exits at once.
    std::fs::write(
        &standin,
        format!(
            "#!/bin/sh\nif [ \"$1\" = version ]; then exec '{gopls}' \"$@\"; fi\necho start >> '{starts}'\nif [ -e '{marker}' ]; then echo 'stand-in gopls: exiting at once' >&2; exit 3; fi\nexec '{gopls}' \"$@\"\n",
            gopls = remote_gopls_e2e::gopls_binary().display(),
            starts = starts.display(),
            marker = marker.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&standin, std::fs::Permissions::from_mode(0o755)).unwrap();

    let config = config(
        &fixture,
        "[controller]\nbackoff_initial = \"100ms\"\nbackoff_max = \"400ms\"\ncrash_loop_restarts = 3\ncrash_loop_window = \"10m\"\n",
    );
    let server = ServerProcess::start(
        &fixture.data,
        &[
            "--config",
            &config.to_string_lossy(),
            "--gopls",
            &standin.to_string_lossy(),
        ],
        &[],
    )
    .await;
    let client = client(&server, "hello");
    client.initialize(&fixture).await;
    let main = client.open(&fixture, MAIN).await;
    let pid = server.gopls_pid("hello").await.unwrap();
    std::fs::write(&marker, "").unwrap();
    signal(pid, libc::SIGKILL);

    let notice = message_containing(
        &client,
        "automatic restarts are stopped",
        Duration::from_secs(30),
    )
    .await
    .unwrap_or_else(|| panic!("a degraded message; log:\n{}", server.log_text()));
    assert_eq!(notice["params"]["type"], 1, "an error message: {notice}");
    let count = || {
        std::fs::read_to_string(&starts)
            .unwrap_or_default()
            .lines()
            .count()
    };
    let attempts = count();
    assert_eq!(attempts, 4, "the first start and three restarts");

    let reply = client.request_message("textDocument/hover", json!({"textDocument": {"uri": fixture.local_uri(MAIN)}, "position": {"line": 0, "character": 0}})).await;
    assert!(
        reply["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("automatic restarts are stopped")),
        "{reply}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(count(), attempts, "restarts stopped");

    let degraded = server.workspace_status("hello").await["degraded"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        degraded.contains("automatic restarts are stopped"),
        "status shows the degraded mark: {degraded:?}"
    );

    let degraded_gauge = remote_gopls_e2e::http::wait_for_sample(
        &server.http_addr,
        "remote_gopls_workspace_degraded",
        &[("workspace", "hello")],
        1.0,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(degraded_gauge, Some(1.0), "the degraded gauge is set");

    // A new session requests another try; the stand-in still fails.
    let status = grpc::open(&server.url(), None, "hello", "")
        .await
        .err()
        .expect("the stand-in still fails");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(count() > attempts, "a new session tried gopls again");

    // Once gopls works again, the admin command brings the open session back.
    std::fs::remove_file(&marker).unwrap();
    let reset = tokio::process::Command::new(remote_gopls_e2e::binary("remote-gopls-server"))
        .args(["reset", "hello", "--server", &server.url()])
        .output()
        .await
        .unwrap();
    assert!(
        reset.status.success(),
        "{}",
        String::from_utf8_lossy(&reset.stderr)
    );
    message_containing(&client, "available again", Duration::from_secs(20))
        .await
        .unwrap_or_else(|| panic!("the session recovered; log:\n{}", server.log_text()));
    let hover = client
        .hover(
            &fixture.local_uri(MAIN),
            position_of(&main, "Println", 0, 1),
        )
        .await;
    assert!(
        hover.contains("Println formats"),
        "the open session works again: {hover:?}"
    );
    assert_eq!(
        server.workspace_status("hello").await["degraded"],
        "",
        "the mark is cleared"
    );
    server.assert_no_zombies();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_instance_is_evicted() {
    let fixture = Fixture::new("hello");
    let server = start(
        &fixture,
        "[controller]\nidle_timeout = \"1s\"\nsample_interval = \"200ms\"\n",
    )
    .await;
    let first = client(&server, "hello");
    first.initialize(&fixture).await;
    let old = server.gopls_pid("hello").await.unwrap();
    first.shutdown_and_exit().await;

    assert!(
        server
            .wait_log("evicting gopls", Duration::from_secs(10))
            .await,
        "{}",
        server.log_text()
    );
    assert!(
        server.log_text().contains("reason=\"idle timeout\""),
        "{}",
        server.log_text()
    );
    assert!(
        remote_gopls_e2e::eventually(Duration::from_secs(5), || remote_gopls_e2e::proc_stat(old)
            .is_none()
            .then_some(()))
        .await
        .is_some(),
        "the idle gopls exited"
    );
    assert_eq!(
        server.workspace_status("hello").await["instance"],
        Value::Null
    );

    let second = client(&server, "hello");
    second.initialize(&fixture).await;
    let main = second.open(&fixture, MAIN).await;
    assert!(second
        .hover(
            &fixture.local_uri(MAIN),
            position_of(&main, "Println", 0, 1)
        )
        .await
        .contains("Println"));
    assert_ne!(
        server.gopls_pid("hello").await,
        Some(old),
        "a fresh gopls serves the new session"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_evicts_idle_then_refuses() {
    let fixture = Fixture::new("hello");
    let root = fixture.remote.display().to_string();
    let extra = format!(
        "memory_limit = \"1GiB\"\n[workspaces.a]\npath = {root:?}\n[workspaces.b]\npath = {root:?}\n[workspaces.c]\npath = {root:?}\n[controller]\nmemory_budget = \"2.5GiB\"\n"
    );
    let server = start(&fixture, &extra).await;

    let a = client(&server, "a");
    a.initialize(&fixture).await;
    let a_pid = server.gopls_pid("a").await.unwrap();
    a.shutdown_and_exit().await;
    let b = client(&server, "b");
    b.initialize(&fixture).await;

    // Starting c would need 3 GiB: the idle a goes first.
    let c = client(&server, "c");
    c.initialize(&fixture).await;
    assert!(
        server
            .log_text()
            .contains("evicting the least recently used idle gopls"),
        "{}",
        server.log_text()
    );
    assert_eq!(server.gopls_pid("a").await, None);
    assert!(
        remote_gopls_e2e::eventually(Duration::from_secs(5), || remote_gopls_e2e::proc_stat(
            a_pid
        )
        .is_none()
        .then_some(()))
        .await
        .is_some()
    );
    assert!(server.gopls_pid("b").await.is_some(), "b keeps running");
    assert!(server.gopls_pid("c").await.is_some(), "c started");
    let evictions = sample(
        &scrape(&server.http_addr).await,
        "remote_gopls_evictions_total",
        &[("reason", "memory budget")],
    );
    assert_eq!(evictions, Some(1.0));

    // b and c both have sessions, so a new session on a is refused.
    let status = grpc::open(&server.url(), None, "a", "")
        .await
        .err()
        .expect("refused");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    for text in ["memory budget 2.5GiB", "b=1GiB", "c=1GiB"] {
        assert!(status.message().contains(text), "{text} in {status:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_survives_server_restart() {
    let fixture = Fixture::new("hello");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let config = config(&fixture, "");
    let args = ["--config", &*config.to_string_lossy(), "--listen", &listen];
    let mut server = ServerProcess::start(&fixture.data, &args, &[]).await;

    let client =
        LspClient::spawn_client(&[("REMOTE_GOPLS_SERVER", format!("http://{listen}").as_str())]);
    let (edited_main, _) = edit_without_saving(&client, &fixture).await;
    let renamed = position_of(&edited_main, "Bienvenue", 0, 1);
    let uri = fixture.local_uri(MAIN);

    let exit = server.terminate().await;
    assert!(exit.success(), "the first server exits 0: {exit}");
    drop(server);
    let lost = message_containing(&client, "lost", Duration::from_secs(10))
        .await
        .expect("one message about the lost connection");
    assert_eq!(lost["params"]["type"], 2, "a warning: {lost}");

    // While the server is down, requests fail at once instead of hanging.
    let offline = client
        .request_message("textDocument/hover", json!({"textDocument": {"uri": &uri}, "position": {"line": renamed.0, "character": renamed.1}}))
        .await;
    assert!(
        offline["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("unreachable")),
        "{offline}"
    );

    let second = ServerProcess::start(&fixture.data, &args, &[]).await;
    message_containing(&client, "reconnected", Duration::from_secs(30))
        .await
        .unwrap_or_else(|| panic!("the client reconnected; server log:\n{}", second.log_text()));
    let hover = client.hover(&uri, renamed).await;
    assert!(
        hover.contains("Bienvenue returns an edited"),
        "the new session has the unsaved edit: {hover:?}"
    );

    let mut child = client.child.expect("client process");
    assert!(
        child.try_wait().unwrap().is_none(),
        "the client never exited"
    );
    let lost_messages = client_messages(&client.seen, "lost");
    assert_eq!(lost_messages, 1, "the user is told once");
}

fn client_messages(
    seen: &std::sync::Arc<std::sync::Mutex<remote_gopls_e2e::lsp::Seen>>,
    text: &str,
) -> usize {
    seen.lock()
        .unwrap()
        .notifications
        .iter()
        .filter(|n| {
            n["method"] == "window/showMessage"
                && n["params"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(text))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_replay_backs_off_quietly() {
    let fixture = Fixture::new("hello");
    let config = config(&fixture, "max_message_size = 1000000\n");
    let server =
        ServerProcess::start(&fixture.data, &["--config", &config.to_string_lossy()], &[]).await;
    let client = client(&server, "hello");
    client.initialize(&fixture).await;

    // A document over the server's message limit ends every session that
    // carries it, including each replay after a reconnect.
    let text = format!("package big\n\nvar Data = \"{}\"\n", "x".repeat(1_500_000));
    client
        .notify(
            "textDocument/didOpen",
            json!({"textDocument": {"uri": fixture.local_uri("big/big.go"), "languageId": "go", "version": 1, "text": text}}),
        )
        .await;
    tokio::time::sleep(Duration::from_secs(6)).await;

    let sessions = server.log_text().matches("session opened").count();
    assert!(
        sessions <= 7,
        "reconnects back off: {sessions} sessions in 6 s"
    );
    assert!(sessions >= 2, "the client did reconnect: {sessions}");
    assert_eq!(
        client_messages(&client.seen, "lost"),
        1,
        "one warning for the whole outage"
    );
    assert!(
        client_messages(&client.seen, "reconnected") <= 1,
        "at most one reconnect notice"
    );
    let mut child = client.child.expect("client process");
    assert!(
        child.try_wait().unwrap().is_none(),
        "the client keeps running"
    );
}
