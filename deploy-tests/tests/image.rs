//! The container image files: versions and commands the Dockerfile shares
//! with the rest of the repository, and the image's own server.toml.

use k8s_openapi::api::apps::v1::StatefulSet;
use remote_gopls_deploy_tests::{helm, manifest, repo_root, server};

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_root().join(path))
        .unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// Returns the default of `ARG NAME=VALUE` in the Dockerfile.
fn dockerfile_arg(name: &str) -> String {
    let prefix = format!("ARG {name}=");
    read("Dockerfile")
        .lines()
        .find_map(|line| line.strip_prefix(&prefix).map(str::to_owned))
        .unwrap_or_else(|| panic!("no ARG {name}=... in the Dockerfile"))
}

#[test]
fn gopls_version_is_pinned_version() {
    assert_eq!(
        dockerfile_arg("GOPLS_VERSION"),
        remote_gopls_proto::PINNED_GOPLS_VERSION,
        "the Dockerfile's GOPLS_VERSION must equal PINNED_GOPLS_VERSION in proto/src/lib.rs"
    );
}

#[test]
fn build_script_runs_dockerfile_commands() {
    let dockerfile = read("Dockerfile");
    let script = read("scripts/image-build-steps.sh");
    for command in [
        "cargo build --release --locked -p remote-gopls-server",
        "GOTOOLCHAIN=local go install \"golang.org/x/tools/gopls@${GOPLS_VERSION}\"",
        "go telemetry off",
    ] {
        let script_command = command.replace("${GOPLS_VERSION}", "${gopls_version}");
        assert!(dockerfile.contains(command), "Dockerfile lacks {command:?}");
        assert!(
            script.contains(&script_command),
            "scripts/image-build-steps.sh lacks {script_command:?}"
        );
    }
    // The script reads the package list from this exact line.
    assert!(dockerfile.contains("apt-get install -y --no-install-recommends ca-certificates"));
}

#[test]
fn image_config_needs_tokens() {
    let text = read("docker/server.toml");

    let output = server::check_config(
        &text,
        &[("REMOTE_GOPLS_SERVER_TOKENS", "image-test-token-0123 *")],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let output = server::check_config(&text, &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("no bearer tokens are configured"),
        "{stderr}"
    );
}

#[test]
fn chart_mounts_entrypoint_config() {
    let dockerfile = read("Dockerfile");
    let entrypoint = dockerfile
        .lines()
        .find(|line| line.starts_with("ENTRYPOINT "))
        .expect("the Dockerfile has an ENTRYPOINT");
    assert!(
        entrypoint.contains("\"--config\", \"/etc/remote-gopls/server.toml\""),
        "{entrypoint}"
    );
    assert!(dockerfile.contains("\nUSER 10001:10001\n"));

    let rendered = helm::template(None, &[]).unwrap();
    let statefulset: StatefulSet = manifest::parse(&rendered)
        .unwrap()
        .into_iter()
        .find(|m| m.kind == "StatefulSet")
        .unwrap()
        .to_typed()
        .unwrap();
    let pod = statefulset.spec.unwrap().template.spec.unwrap();
    let server = pod.containers.iter().find(|c| c.name == "server").unwrap();
    assert_eq!(
        server.command, None,
        "the chart must keep the image's entrypoint"
    );
    let config_mount = server
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.name == "config")
        .unwrap();
    assert_eq!(config_mount.mount_path, "/etc/remote-gopls");
    assert_eq!(pod.security_context.unwrap().run_as_user, Some(10001));
}

#[test]
fn image_exposes_config_ports() {
    let config: toml::Table = read("docker/server.toml").parse().unwrap();
    let expose = read("Dockerfile")
        .lines()
        .find_map(|line| line.strip_prefix("EXPOSE ").map(str::to_owned))
        .expect("the Dockerfile has an EXPOSE line");
    let exposed: Vec<&str> = expose.split_whitespace().collect();
    for key in ["listen", "http_listen"] {
        let address: std::net::SocketAddr = config[key].as_str().unwrap().parse().unwrap();
        let port = address.port().to_string();
        assert!(
            exposed.contains(&port.as_str()),
            "{key} port {port} not in EXPOSE {expose}"
        );
    }
}
