//! Per-workspace cgroup memory limits on this machine's real kernel: gopls
//! and its `go` children run in their own group with the tuned runtime
//! environment, OOM kills are recorded per workspace, groups are removed,
//! and a server without a writable hierarchy falls back to /proc.
//!
//! These tests need root and a writable memory cgroup hierarchy (v1 or v2).

use std::path::{Path, PathBuf};
use std::time::Duration;

use remote_gopls_e2e::cgroups;
use remote_gopls_e2e::fixture::{position_of, Fixture};
use remote_gopls_e2e::lsp::LspClient;
use remote_gopls_e2e::server::ServerProcess;
use serde_json::Value;

/// Runs `remote-gopls-server status --json` against a server.
async fn status(server: &ServerProcess) -> Value {
    let output = tokio::process::Command::new(remote_gopls_e2e::binary("remote-gopls-server"))
        .args(["status", "--json", "--server", &server.url()])
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "status failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn workspace<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["workspaces"]
        .as_array()
        .and_then(|w| w.iter().find(|w| w["name"] == name))
        .unwrap_or_else(|| panic!("workspace {name} in {report}"))
}

/// Returns the memory cgroup path of a process.
fn memory_cgroup_of(pid: u32) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    text.lines()
        .find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            (controllers.split(',').any(|c| c == "memory") || controllers.is_empty())
                .then(|| path.to_owned())
        })
        .unwrap_or_default()
}

/// Creates a directory with a `go` that records its memory cgroup, then runs the real go.
fn go_shim(dir: &Path) -> (PathBuf, PathBuf) {
    let real_go = String::from_utf8(
        std::process::Command::new("sh")
            .args(["-c", "command -v go"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let shim_dir = dir.join("shim");
    let log = dir.join("go-cgroups.log");
    std::fs::create_dir_all(&shim_dir).unwrap();
    let script = format!(
        "#!/bin/sh\ngrep -E ':memory:|^0::' /proc/self/cgroup | head -1 >> '{}'\nexec '{}' \"$@\"\n",
        log.display(),
        real_go.trim()
    );
    let shim = shim_dir.join("go");
    std::fs::write(&shim, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
    (shim_dir, log)
}

/// Working set computed from the group's files as the kubelet does.
fn working_set_from_files(dir: &Path) -> u64 {
    let stat = |name: &str, key: &str| -> Option<u64> {
        std::fs::read_to_string(dir.join(name))
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix(key).and_then(|v| v.trim().parse().ok()))
    };
    if dir.join("memory.usage_in_bytes").exists() {
        let usage: u64 = std::fs::read_to_string(dir.join("memory.usage_in_bytes"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        usage.saturating_sub(stat("memory.stat", "total_inactive_file ").unwrap_or(0))
    } else {
        let usage: u64 = std::fs::read_to_string(dir.join("memory.current"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        usage.saturating_sub(stat("memory.stat", "inactive_file ").unwrap_or(0))
    }
}

async fn open_and_hover(client: &LspClient, fixture: &Fixture) -> String {
    client.initialize(fixture).await;
    let rel = "cmd/hello/main.go";
    let text = client.open(fixture, rel).await;
    client
        .hover(&fixture.local_uri(rel), position_of(&text, "Println", 0, 1))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gopls_runs_in_its_own_cgroup() {
    let fixture = Fixture::new("hello");
    let (shim_dir, shim_log) = go_shim(&fixture.data.with_extension("shim"));
    let path_env = format!(
        "PATH={}:{}",
        shim_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut server = ServerProcess::start(
        &fixture.data,
        &[
            "--workspace",
            &format!("hello={}", fixture.remote.display()),
            "--memory-limit",
            "1GiB",
            "--gopls-env",
            &path_env,
        ],
        &[],
    )
    .await;
    let client = LspClient::spawn_client(&[("REMOTE_GOPLS_SERVER", server.url().as_str())]);
    assert!(open_and_hover(&client, &fixture).await.contains("Println"));

    let report = status(&server).await;
    assert!(
        report["memory_mode"]
            .as_str()
            .unwrap()
            .starts_with("cgroup v"),
        "{report}"
    );
    let hello = workspace(&report, "hello");
    let instance = &hello["instance"];
    let pid = instance["pid"].as_u64().unwrap() as u32;
    let dir = PathBuf::from(instance["cgroup"].as_str().unwrap());
    assert!(dir.is_dir(), "the instance group exists: {}", dir.display());

    // gopls itself is in its own group.
    let group = memory_cgroup_of(pid);
    assert!(
        dir.ends_with(group.trim_start_matches('/')),
        "gopls ({pid}) is in {group}, expected {}",
        dir.display()
    );
    assert!(group.contains("/gopls-hello-"), "{group}");
    assert!(
        cgroups::procs(&dir).contains(&pid),
        "cgroup.procs lists gopls"
    );

    // Every `go` command gopls ran started inside the same group.
    let recorded = std::fs::read_to_string(&shim_log).unwrap_or_default();
    let lines: Vec<&str> = recorded.lines().collect();
    assert!(!lines.is_empty(), "gopls ran go through the shim");
    for line in &lines {
        assert!(
            line.ends_with(&group),
            "a go child ran in {line}, not in gopls's group {group}"
        );
    }

    // The tuned runtime environment and the computed GOMEMLIMIT.
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let environ: Vec<String> = environ
        .split(|&b| b == 0)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    let gomemlimit = format!("GOMEMLIMIT={}", (1024.0 * 1024.0 * 1024.0 * 0.9) as u64);
    for expected in [
        "GOGC=20",
        "GOMAXPROCS=2",
        "GOFLAGS=-mod=readonly",
        gomemlimit.as_str(),
    ] {
        assert!(
            environ.iter().any(|v| v == expected),
            "{expected} in gopls's environment"
        );
    }
    assert_eq!(
        instance["env"]["GOMEMLIMIT"],
        gomemlimit.trim_start_matches("GOMEMLIMIT="),
        "status shows the effective env"
    );

    // The reported working set is real and matches the group's own files.
    let limit = instance["limit_bytes"].as_u64().unwrap();
    let working_set = instance["working_set_bytes"].as_u64().unwrap();
    assert_eq!(limit, 1 << 30, "limit in status");
    assert!(
        working_set > 0 && working_set <= limit,
        "working set {working_set} within (0, {limit}]"
    );
    let direct = working_set_from_files(&dir);
    let difference = working_set.abs_diff(direct);
    assert!(
        difference < 16 << 20,
        "status working set {working_set} vs files {direct}"
    );

    // Stopping the server stops the instance and removes its group.
    let exit = server.terminate().await;
    assert!(exit.success(), "server exits 0: {exit}");
    assert!(
        !dir.exists(),
        "the instance group was removed: {}",
        dir.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oom_kill_is_recorded_per_workspace() {
    let fixture = Fixture::new("hello");
    let config = fixture.data.with_extension("toml");
    let root = fixture.remote.display().to_string();
    std::fs::write(
        &config,
        format!("[workspaces.hello]\npath = {root:?}\n[workspaces.tiny]\npath = {root:?}\nmemory_limit = \"24MiB\"\n"),
    )
    .unwrap();
    let server =
        ServerProcess::start(&fixture.data, &["--config", &config.to_string_lossy()], &[]).await;
    let url = server.url();

    let healthy = LspClient::spawn_client(&[
        ("REMOTE_GOPLS_SERVER", url.as_str()),
        ("REMOTE_GOPLS_WORKSPACE", "hello"),
    ]);
    assert!(open_and_hover(&healthy, &fixture).await.contains("Println"));
    let healthy_pid = workspace(&status(&server).await, "hello")["instance"]["pid"]
        .as_u64()
        .unwrap();

    // 24 MiB is far below what gopls needs to load the module and the
    // standard library, so the kernel kills it; requests may fail meanwhile.
    let starved = LspClient::spawn_client(&[
        ("REMOTE_GOPLS_SERVER", url.as_str()),
        ("REMOTE_GOPLS_WORKSPACE", "tiny"),
    ]);
    let _ = starved
        .request_message(
            "initialize",
            serde_json::json!({"rootUri": fixture.local_root_uri(), "capabilities": {}}),
        )
        .await;
    starved.notify("initialized", serde_json::json!({})).await;
    let rel = "cmd/hello/main.go";
    starved.open(&fixture, rel).await;
    let _ = tokio::time::timeout(
        Duration::from_secs(20),
        starved.request_message(
            "textDocument/documentSymbol",
            serde_json::json!({"textDocument": {"uri": fixture.local_uri(rel)}}),
        ),
    )
    .await;

    assert!(
        server
            .wait_log("gopls was OOM-killed", Duration::from_secs(60))
            .await,
        "OOM kill logged:\n{}",
        server.log_text()
    );
    let line = server
        .log_text()
        .lines()
        .find(|l| l.contains("gopls was OOM-killed"))
        .unwrap()
        .to_owned();
    assert!(line.contains("workspace.name=tiny"), "{line}");

    let report = status(&server).await;
    assert!(
        workspace(&report, "tiny")["oom_kills_total"]
            .as_u64()
            .unwrap()
            >= 1,
        "{report}"
    );
    let hello = workspace(&report, "hello");
    assert_eq!(hello["oom_kills_total"].as_u64(), Some(0), "{report}");
    assert_eq!(
        hello["instance"]["pid"].as_u64(),
        Some(healthy_pid),
        "the other workspace's gopls was untouched"
    );
    assert_eq!(hello["instance"]["state"], "running");

    let text = fixture.read(rel);
    let hover = healthy
        .hover(&fixture.local_uri(rel), position_of(&text, "Println", 0, 1))
        .await;
    assert!(
        hover.contains("Println formats"),
        "the other workspace still answers: {hover:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_group_removed_at_next_start() {
    let fixture = Fixture::new("hello");
    let parent = cgroups::unique_parent().expect("this process has a memory cgroup");
    let workspace_arg = format!("hello={}", fixture.remote.display());
    let args = [
        "--workspace",
        workspace_arg.as_str(),
        "--cgroup-parent",
        parent.as_str(),
    ];

    let mut first = ServerProcess::start(&fixture.data, &args, &[]).await;
    let client = LspClient::spawn_client(&[("REMOTE_GOPLS_SERVER", first.url().as_str())]);
    client.initialize(&fixture).await;
    let dir = PathBuf::from(
        workspace(&status(&first).await, "hello")["instance"]["cgroup"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    assert!(dir.is_dir());

    // A killed server leaves its instance group behind.
    first.child.kill().await.unwrap();
    drop(client);
    assert!(dir.is_dir(), "the group outlives a killed server");

    let second = ServerProcess::start(&fixture.data, &args, &[]).await;
    assert!(
        second
            .wait_log(
                "removed cgroups left by a previous server run",
                Duration::from_secs(5)
            )
            .await,
        "{}",
        second.log_text()
    );
    assert!(
        !dir.exists(),
        "the stale group was removed: {}",
        dir.display()
    );
    drop(second);
    cgroups::remove_tree(&cgroups::group_dir(&parent));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_reads_memory_from_proc() {
    let fixture = Fixture::new("hello");
    let own = cgroups::own_group().expect("this process has a memory cgroup");
    // A group cannot be created inside a file, so the parent is not writable.
    let unwritable = format!("{}/cgroup.procs/remote-gopls", own.trim_end_matches('/'));
    let workspace_arg = format!("hello={}", fixture.remote.display());

    for args in [
        vec!["--no-cgroups"],
        vec!["--cgroup-parent", unwritable.as_str()],
    ] {
        let mut all = vec!["--workspace", workspace_arg.as_str()];
        all.extend(&args);
        let server = ServerProcess::start(&fixture.data, &all, &[]).await;
        let client = LspClient::spawn_client(&[("REMOTE_GOPLS_SERVER", server.url().as_str())]);
        assert!(
            open_and_hover(&client, &fixture).await.contains("Println"),
            "{args:?}"
        );

        let report = status(&server).await;
        assert_eq!(report["memory_mode"], "fallback", "{args:?}: {report}");
        assert!(
            !report["memory_mode_reason"].as_str().unwrap().is_empty(),
            "{args:?}: the reason is shown"
        );
        let instance = &workspace(&report, "hello")["instance"];
        assert_eq!(instance["cgroup"], "", "{args:?}");
        let working_set = instance["working_set_bytes"].as_u64().unwrap();
        assert!(
            working_set > 1 << 20,
            "{args:?}: working set from /proc: {working_set}"
        );
        assert_eq!(
            instance["limit_bytes"].as_u64(),
            Some(2 << 30),
            "{args:?}: the configured limit"
        );
        let warnings = server
            .log_text()
            .lines()
            .filter(|l| l.contains("WARN") && l.contains("no writable memory cgroup"))
            .count();
        assert_eq!(warnings, 1, "{args:?}: one warning explains the fallback");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_server_leaves_live_groups_alone() {
    let fixture = Fixture::new("hello");
    let parent = cgroups::unique_parent().expect("this process has a memory cgroup");
    let workspace_arg = format!("hello={}", fixture.remote.display());
    let args = [
        "--workspace",
        workspace_arg.as_str(),
        "--cgroup-parent",
        parent.as_str(),
    ];

    let first = ServerProcess::start(&fixture.data, &args, &[]).await;
    let client = LspClient::spawn_client(&[("REMOTE_GOPLS_SERVER", first.url().as_str())]);
    client.initialize(&fixture).await;
    let pid = first.gopls_pid("hello").await.expect("gopls runs");

    let other_data = fixture.data.with_extension("second");
    let second = ServerProcess::start(&other_data, &args, &[]).await;
    assert!(
        second
            .wait_log(
                "another remote-gopls server uses this cgroup parent",
                Duration::from_secs(5)
            )
            .await,
        "{}",
        second.log_text()
    );
    assert!(
        remote_gopls_e2e::proc_stat(pid).is_some_and(|s| s.0 != 'Z'),
        "the first server's gopls survived"
    );
    assert_eq!(first.gopls_pid("hello").await, Some(pid));
    drop(second);
    drop(first);
    cgroups::remove_tree(&cgroups::group_dir(&parent));
}
