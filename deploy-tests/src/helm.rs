//! Running `helm template`, `helm lint` and a client-side `helm install`
//! dry run on the chart.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{bail, Context, Result};

/// The helm version `.ci/run` installs, for the message when helm is missing.
pub const HELM_INSTALL: &str = "go install helm.sh/helm/v4/cmd/helm@v4.3.2";

/// Release name and namespace of every rendering.
pub const RELEASE: &str = "rg";
pub const NAMESPACE: &str = "team";

/// Finds helm on PATH, else in `$(go env GOPATH)/bin`, where `go install`
/// puts it. Panics with the install command when there is none.
pub fn binary() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("helm"))
            .find(|candidate| candidate.is_file())
    });
    if let Some(path) = on_path {
        return path;
    }

    let gopath = Command::new("go")
        .args(["env", "GOPATH"])
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .unwrap_or_default();
    let path = PathBuf::from(gopath).join("bin/helm");
    assert!(
        path.is_file(),
        "helm not found on PATH or in $(go env GOPATH)/bin: install it with `{HELM_INSTALL}` (as .ci/run does)"
    );
    path
}

fn run(args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .arg(crate::chart_dir())
        .output()
        .expect("run helm")
}

fn value_args<'a>(values: Option<&'a Path>, sets: &'a [&'a str]) -> Vec<&'a str> {
    let mut args = Vec::new();
    if let Some(file) = values {
        args.push("--values");
        args.push(file.to_str().expect("values path is UTF-8"));
    }
    for set in sets {
        args.push("--set");
        args.push(set);
    }
    args
}

/// Renders the chart's manifests with an optional values file and
/// `--set` overrides.
pub fn template(values: Option<&Path>, sets: &[&str]) -> Result<String> {
    let mut args = vec!["template", RELEASE, "--namespace", NAMESPACE];
    args.extend(value_args(values, sets));
    let output = run(&args);
    if !output.status.success() {
        bail!(
            "helm template failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    String::from_utf8(output.stdout).context("helm template output is not UTF-8")
}

/// Runs `helm lint --strict`, which also fails on warnings.
pub fn lint(values: Option<&Path>) -> Result<()> {
    let mut args = vec!["lint", "--strict", "--namespace", NAMESPACE];
    args.extend(value_args(values, &[]));
    let output = run(&args);
    if !output.status.success() {
        bail!(
            "helm lint failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// Renders NOTES.txt through a client-side install dry run, which needs
/// no cluster.
pub fn notes(values: Option<&Path>) -> Result<String> {
    let mut args = vec![
        "install",
        RELEASE,
        "--dry-run=client",
        "--namespace",
        NAMESPACE,
    ];
    args.extend(value_args(values, &[]));
    let output = run(&args);
    if !output.status.success() {
        bail!(
            "helm install --dry-run=client failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let text = String::from_utf8(output.stdout).context("helm output is not UTF-8")?;
    match text.split_once("\nNOTES:\n") {
        Some((_, notes)) => Ok(notes.to_owned()),
        None => bail!("helm install --dry-run=client printed no NOTES section:\n{text}"),
    }
}
