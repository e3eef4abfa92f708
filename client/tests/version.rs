//! Runs the built `remote-gopls` binary the way vscode-go does and parses its output the
//! way vscode-go's source does (golang/vscode-go master 28e27ffd).

use std::path::Path;
use std::process::{Command, Output};

use regex::Regex;
use remote_gopls::version::{CLIENT_VERSION, PINNED_GOPLS_VERSION};

const BINARY: &str = env!("CARGO_BIN_EXE_remote-gopls");

fn run(program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Output {
    Command::new(program.as_ref())
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("failed to run {:?} {args:?}: {error}", program.as_ref()))
}

fn stdout_text(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("stdout is not UTF-8")
}

/// Returns `(major, minor)` like vscode-go's `GoVersion` class: the regex
/// `^go version go(\d\.\d+\S*)\s+` on a `go version` line, then `semver.coerce`.
fn go_major_minor(go_version_line: &str) -> Option<(u64, u64)> {
    let release = Regex::new(r"^go version go(\d\.\d+\S*)\s+").unwrap();
    let version = release.captures(go_version_line)?.get(1)?.as_str();

    let coerce = Regex::new(r"(\d+)(?:\.(\d+))?").unwrap();
    let numbers = coerce.captures(version)?;
    let major = numbers.get(1)?.as_str().parse().ok()?;
    let minor = numbers
        .get(2)
        .map_or(Some(0), |m| m.as_str().parse().ok())?;
    Some((major, minor))
}

#[test]
fn version_json_has_main_version() {
    let output = run(BINARY, &["version", "-json"]);
    assert!(output.status.success(), "exit status {}", output.status);
    let text = stdout_text(&output);

    // getLocalGoplsVersion: JSON.parse(stdout), then v.Main.Version and v.GoVersion.
    let value: serde_json::Value = serde_json::from_str(&text).expect("stdout is not JSON");
    let main_version = value["Main"]["Version"]
        .as_str()
        .expect("Main.Version missing");
    let go_version = value["GoVersion"].as_str().expect("GoVersion missing");

    assert_eq!(main_version, format!("{PINNED_GOPLS_VERSION}+dirty"));
    assert!(go_version.starts_with("go1."), "GoVersion {go_version}");
    assert_eq!(value["Version"], CLIENT_VERSION);
    assert!(!text.ends_with('\n'), "gopls prints no trailing newline");
}

#[test]
fn version_json_matches_go_version_m_json() {
    if !go_is_on_path() {
        eprintln!("skipped: `go` is not on PATH, so `go version -m` cannot be checked");
        return;
    }

    let ours = run(BINARY, &["version", "-json"]);
    let ours: serde_json::Value = serde_json::from_slice(&ours.stdout).unwrap();
    let go = run("go", &["version", "-m", "-json", BINARY]);
    assert!(go.status.success(), "go version -m -json failed: {go:?}");
    let go: serde_json::Value = serde_json::from_slice(&go.stdout).unwrap();

    for key in ["GoVersion", "Path", "Main", "Deps", "Settings"] {
        assert_eq!(ours[key], go[key], "field {key}");
    }
}

#[test]
fn plain_version_is_one_line() {
    let output = run(BINARY, &["version"]);
    assert!(output.status.success(), "exit status {}", output.status);
    let text = stdout_text(&output);

    assert_eq!(text.trim().split('\n').count(), 1, "output {text:?}");
    assert!(text.ends_with('\n'), "output {text:?}");
    assert!(text.contains(CLIENT_VERSION), "output {text:?}");
}

#[test]
fn verbose_version_ends_with_go_line() {
    let output = run(BINARY, &["-v", "version"]);
    assert!(output.status.success(), "exit status {}", output.status);
    let text = stdout_text(&output);

    assert!(
        text.starts_with("Build info\n----------\n"),
        "output {text:?}"
    );
    assert!(
        text.lines().last().unwrap().starts_with("go: go1."),
        "output {text:?}"
    );
}

#[test]
fn unknown_flag_exits_two_with_usage() {
    let output = run(BINARY, &["-bogus"]);
    let stderr = String::from_utf8_lossy(&output.stderr);

    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr.starts_with("remote-gopls: flag provided but not defined: -bogus"),
        "stderr {stderr:?}"
    );
    assert!(stderr.contains("Usage:"), "stderr {stderr:?}");
    assert!(output.stdout.is_empty());
}

#[test]
fn help_exits_zero_on_stdout() {
    for flag in ["help", "-h", "--help"] {
        let output = run(BINARY, &[flag]);

        assert!(
            output.status.success(),
            "{flag}: exit status {}",
            output.status
        );
        assert!(stdout_text(&output).contains("Usage:"), "{flag}: no usage");
        assert!(output.stderr.is_empty(), "{flag}: stderr not empty");
    }
}

fn go_is_on_path() -> bool {
    Command::new("go").arg("version").output().is_ok()
}

#[test]
fn go_version_m_passes_vscode_go_checks() {
    if !go_is_on_path() {
        eprintln!("skipped: `go` is not on PATH, so `go version -m` cannot be checked");
        return;
    }

    let output = run("go", &["version", "-m", BINARY]);
    assert!(output.status.success(), "go version -m failed: {output:?}");
    let stdout = stdout_text(&output);

    // inspectGoToolVersion: stdout.split('\n', 3), the Go version from line 0 with
    // /\s+(go\d+.\d+\S*)/, the module version as field 3 of line 2 split on /\s+/.
    let lines: Vec<&str> = stdout.split('\n').take(3).collect();
    assert_eq!(lines.len(), 3, "stdout {stdout:?}");
    let tool_go_version = Regex::new(r"\s+(go\d+.\d+\S*)")
        .unwrap()
        .captures(lines[0])
        .and_then(|captures| captures.get(1))
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| panic!("no Go version in {:?}", lines[0]));
    let fields: Vec<&str> = Regex::new(r"\s+").unwrap().split(lines[2]).collect();
    assert_eq!(fields.get(1), Some(&"mod"), "line 2 {:?}", lines[2]);
    assert_eq!(
        fields.get(2),
        Some(&"golang.org/x/tools/gopls"),
        "line 2 {:?}",
        lines[2]
    );
    assert_eq!(
        fields.get(3).copied(),
        Some(format!("{PINNED_GOPLS_VERSION}+dirty").as_str()),
        "line 2 {:?}",
        lines[2]
    );

    // listOutdatedTools: the tool is outdated when the user's Go has a greater major.minor,
    // or when the tool's Go is a beta/rc that the user's `go version` does not contain.
    let user_line = stdout_text(&run("go", &["version"]));
    let user = go_major_minor(&user_line).expect("cannot parse the local `go version`");
    let tool = go_major_minor(&format!("go version {tool_go_version} os/arch"))
        .unwrap_or_else(|| panic!("vscode-go cannot parse {tool_go_version}"));
    assert!(
        user <= tool,
        "local Go {user:?} is newer than the embedded {tool_go_version}; rebuild the client"
    );
    let is_prerelease = tool_go_version.contains("beta") || tool_go_version.contains("rc");
    assert!(
        !is_prerelease || user_line.contains(&tool_go_version),
        "embedded pre-release {tool_go_version} is not the local Go"
    );
}

#[test]
fn binary_has_go_buildinfo_section() {
    if !cfg!(target_os = "linux") {
        eprintln!("skipped: the ELF section check runs on Linux only");
        return;
    }

    let bytes = std::fs::read(Path::new(BINARY)).unwrap();
    let name = b".go.buildinfo\0";

    assert!(
        bytes.windows(name.len()).any(|window| window == name),
        "no .go.buildinfo section name in the binary"
    );
}
