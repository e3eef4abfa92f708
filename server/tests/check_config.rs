//! `remote-gopls-server check-config`: the exit status and output of the real
//! binary on valid and invalid files, with and without path checks.

use std::path::Path;
use std::process::{Command, Output};

/// Exit status of the server for an invalid configuration.
const EXIT_CONFIG: i32 = 2;

/// A configuration for a pod: every path in it is missing on this machine.
const POD_CONFIG: &str = r#"
listen = "0.0.0.0:7443"
data_dir = "/data/server"
gopls = "/usr/local/bin/gopls-missing"
workspaces_dir = "/does/not/exist/workspaces"
tokens_file = "/does/not/exist/tokens"

[workspaces.alpha]
path = "/does/not/exist/alpha"
memory_limit = "3GiB"
"#;

fn check_config(args: &[&str], file: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_remote-gopls-server"))
        .arg("check-config")
        .args(args)
        .arg(file)
        .env_remove("REMOTE_GOPLS_SERVER_TOKENS")
        .output()
        .expect("run remote-gopls-server check-config")
}

fn write(dir: &Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("server.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn missing_paths_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), POD_CONFIG);

    let output = check_config(&[], &file);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(EXIT_CONFIG), "{stderr}");
    for want in [
        "workspace \"alpha\": cannot open /does/not/exist/alpha",
        "workspaces directory /does/not/exist/workspaces does not exist",
        "gopls binary /usr/local/bin/gopls-missing not found",
        "cannot read tokens file /does/not/exist/tokens",
    ] {
        assert!(stderr.contains(want), "missing {want:?} in {stderr}");
    }
    assert!(output.stdout.is_empty());
}

#[test]
fn skip_path_checks_accepts_pod_config() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), POD_CONFIG);

    let output = check_config(&["--skip-path-checks"], &file);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let summary = stdout
        .strip_prefix(&format!("{}: valid: ", file.display()))
        .unwrap_or_else(|| panic!("no summary line: {stdout}"));
    assert!(
        summary.starts_with("gRPC on 0.0.0.0:7443, HTTP on 127.0.0.1:7080"),
        "{summary}"
    );
    assert!(summary.contains("alpha"), "{summary}");
    let temp = std::env::temp_dir();
    assert!(
        !summary.contains(temp.to_str().unwrap()),
        "stand-in paths in {summary}"
    );
}

#[test]
fn skip_path_checks_still_needs_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "listen = \"0.0.0.0:7443\"\n");

    let output = check_config(&["--skip-path-checks"], &file);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(EXIT_CONFIG), "{stderr}");
    assert!(
        stderr.contains("no bearer tokens are configured"),
        "{stderr}"
    );
}

#[test]
fn every_value_error_is_listed() {
    let dir = tempfile::tempdir().unwrap();
    let text = "listen = \"nowhere\"\nmemory_limit = \"lots\"\nmax_message_size = 10\n\
                [controller]\nwarn_fraction = 3.0\n[workspaces.\"bad name\"]\npath = \"/x\"\n";
    let file = write(dir.path(), text);

    for flags in [&[][..], &["--skip-path-checks"][..]] {
        let output = check_config(flags, &file);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(EXIT_CONFIG),
            "{flags:?}: {stderr}"
        );
        for want in [
            "invalid listen address \"nowhere\"",
            "invalid memory_limit",
            "invalid max_message_size 10",
            "invalid controller.warn_fraction 3",
            "invalid workspace name \"bad name\"",
        ] {
            assert!(
                stderr.contains(want),
                "{flags:?}: missing {want:?} in {stderr}"
            );
        }
    }
}

#[test]
fn type_errors_point_into_original_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "# comment\n\n[workspaces.alpha]\npath = 3\n");

    let output = check_config(&["--skip-path-checks"], &file);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(EXIT_CONFIG), "{stderr}");
    assert!(stderr.contains("line 4"), "{stderr}");
}

#[test]
fn unknown_key_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "lisen = \"127.0.0.1:7443\"\n");

    let output = check_config(&["--skip-path-checks"], &file);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(EXIT_CONFIG), "{stderr}");
    assert!(stderr.contains("unknown field `lisen`"), "{stderr}");
}

#[test]
fn unreadable_file_is_config_error() {
    let dir = tempfile::tempdir().unwrap();

    let output = check_config(&[], &dir.path().join("absent.toml"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(EXIT_CONFIG), "{stderr}");
    assert!(stderr.contains("cannot read config file"), "{stderr}");
}

#[test]
fn embedded_default_file_is_valid() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/default.toml");

    let output = check_config(&[], &file);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
