//! The generated Go module is valid Go: it builds, passes `go vet`, and its
//! generated tests pass.

use std::path::Path;
use std::process::Command;

use remote_gopls_bench::workspace::{Module, Size, DEFAULT_SEED};

fn go(dir: &Path, args: &[&str]) {
    let output = Command::new("go")
        .args(args)
        .current_dir(dir)
        // The module has no dependencies; never reach for the network.
        .env("GOFLAGS", "-mod=mod")
        .env("GOPROXY", "off")
        .output()
        .expect("run go");
    assert!(
        output.status.success(),
        "go {} failed:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn smoke_module_builds_vets_and_tests() {
    let dir = tempfile::tempdir().unwrap();
    let module = Module::generate(Size::SMOKE, DEFAULT_SEED);
    module.write(dir.path()).unwrap();

    go(dir.path(), &["build", "./..."]);
    go(dir.path(), &["vet", "./..."]);
    go(dir.path(), &["test", "./..."]);
}

#[test]
fn small_module_builds_and_vets() {
    let dir = tempfile::tempdir().unwrap();
    let module = Module::generate(Size::SMALL, 7);
    module.write(dir.path()).unwrap();

    go(dir.path(), &["build", "./..."]);
    go(dir.path(), &["vet", "./..."]);
}
