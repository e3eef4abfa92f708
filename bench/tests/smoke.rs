//! Runs every scenario in smoke mode against the real binaries and a real
//! gopls, and checks that each produces figures (not that they are fast),
//! so the harness cannot rot unnoticed.
//!
//! Needs the workspace binaries (`cargo build --workspace --bins`) and gopls,
//! like the end-to-end tests.

use std::time::Duration;

use remote_gopls_bench::report::Report;
use remote_gopls_bench::workspace::DEFAULT_SEED;
use remote_gopls_bench::{cgroup, Options, Scenario};
use serde_json::Value;

fn results<'a>(reports: &'a [Report], scenario: &str) -> &'a Value {
    &reports
        .iter()
        .find(|r| r.scenario == scenario)
        .unwrap_or_else(|| panic!("no {scenario} report"))
        .results
}

fn positive(value: &Value) -> bool {
    value.as_f64().is_some_and(|v| v.is_finite() && v > 0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_run_produces_every_figure() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        size: None,
        smoke: true,
        seed: DEFAULT_SEED,
        out: dir.path().join("out"),
        work_dir: dir.path().join("work"),
        gopls: remote_gopls_e2e::gopls_binary(),
        time_limit: Duration::from_secs(120),
        command: "smoke test".to_owned(),
    };

    let reports = remote_gopls_bench::run(Scenario::All, &options)
        .await
        .unwrap();

    // One JSON and one markdown file per scenario.
    let written = std::fs::read_dir(&options.out).unwrap().count();
    assert_eq!(
        written,
        2 * Scenario::EACH.len(),
        "files in {}",
        options.out.display()
    );

    let transports = results(&reports, "latency")["transports"]
        .as_array()
        .unwrap();
    for name in ["stdio", "gopls-remote", "grpc"] {
        let row = transports
            .iter()
            .find(|t| t["transport"] == name)
            .unwrap_or_else(|| panic!("no latency row for {name}"));
        assert_eq!(row["available"], true, "{name}: {row}");
        assert!(positive(&row["methods"]["all"]["p50_ms"]), "{name}: {row}");
        assert_eq!(row["errors"], 0, "{name}: {row}");
    }
    let websocket = transports
        .iter()
        .find(|t| t["transport"] == "websocket")
        .unwrap();
    assert!(
        websocket["available"] == true
            || websocket["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "websocket row is measured or says why not: {websocket}"
    );

    let measurements = results(&reports, "throughput")["measurements"]
        .as_array()
        .unwrap();
    assert!(
        measurements.len() >= 9,
        "3 sizes x 3 transports: {measurements:?}"
    );
    for m in measurements {
        assert!(positive(&m["mb_per_s"]), "{m}");
    }

    let memory = results(&reports, "memory");
    let runs = memory["runs"].as_array().unwrap();
    for run in &runs[..2] {
        assert_eq!(run["survived"], true, "unlimited run: {run}");
        assert!(positive(&run["gopls_peak_rss"]), "{run}");
        assert!(positive(&run["time_to_diagnostics_ms"]), "{run}");
    }
    if cgroup::unavailable_reason().is_none() {
        assert!(
            !memory["bisection"].as_array().unwrap().is_empty(),
            "{memory}"
        );
    }

    let arrangements = results(&reports, "sharing")["arrangements"]
        .as_array()
        .unwrap();
    assert_eq!(
        arrangements.len(),
        4,
        "1 and 2 sessions, shared and separate"
    );
    for a in arrangements {
        assert!(positive(&a["total_rss"]), "{a}");
    }
    let shared_two = arrangements
        .iter()
        .find(|a| a["sessions"] == 2 && a["shared"] == true)
        .unwrap();
    assert_eq!(shared_two["gopls_processes"], 1, "{shared_two}");

    let readings = results(&reports, "overhead")["readings"]
        .as_array()
        .unwrap();
    assert_eq!(readings.len(), 4);
    for r in readings {
        assert!(positive(&r["server_rss"]), "{r}");
    }

    // Nothing left behind: no cgroup of this process, no work directories.
    let prefix = format!("remote-gopls-bench-{}-", std::process::id());
    if let Ok(entries) = std::fs::read_dir(cgroup::MEMORY_ROOT) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            assert!(!name.starts_with(&prefix), "cgroup {name} left behind");
        }
    }
    let left: Vec<_> = std::fs::read_dir(&options.work_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "work directory not empty: {left:?}");
}
