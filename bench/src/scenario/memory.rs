//! Memory: peak working set and time to first diagnostics of one gopls on
//! stdio with Go's default runtime settings, with the tuned settings the
//! server uses, and tuned plus GOMEMLIMIT under a cgroup memory limit. A
//! bounded bisection finds the limit at which default gopls is OOM-killed,
//! and the tuned configurations then run at that same limit.
//!
//! Every run gets its own cgroup (also the unlimited ones, for
//! accounting), its own empty gopls cache, and a fresh gopls.

use std::time::{Duration, Instant};

use serde_json::json;

use super::{reason, Workspace, LOAD_TIMEOUT, REQUEST_TIMEOUT, SHUTDOWN_TIMEOUT};
use crate::cgroup::{self, MemoryCgroup};
use crate::editor::{Editor, Samples, Script};
use crate::procfs::{self, mib, Machine};
use crate::report::{num, table, Report};
use crate::sampler::Sampler;
use crate::stats::Summary;
use crate::target::Launch;
use crate::workspace::Size;
use crate::Options;

/// Files open and timed rounds of the editor script in each run.
const FILES: usize = 4;
const ROUNDS: usize = 2;
/// Time after the script for background work (workspace diagnostics) to
/// show up in the peak.
const SETTLE: Duration = Duration::from_secs(5);
const SMOKE_SETTLE: Duration = Duration::from_millis(500);
/// Bisection steps for the OOM limit; each halves the interval.
const BISECTION_STEPS: usize = 5;
const SMOKE_BISECTION_STEPS: usize = 2;
/// The bisection's upper end, as a multiple of default gopls's unlimited
/// peak: a little room for the page cache the cgroup is also charged for.
const UPPER_FACTOR: f64 = 1.1;
/// The limit of the GOMEMLIMIT check, as a share of tuned gopls's unlimited
/// peak: tight enough that tuned gopls without GOMEMLIMIT is at risk.
const SQUEEZE_FACTOR: f64 = 0.85;
/// GOMEMLIMIT as a share of the cgroup limit, the server's default.
const GOMEMLIMIT_SHARE: f64 = 0.9;
/// Limits are rounded to whole mebibytes.
const MIB: u64 = 1024 * 1024;

/// The Go runtime settings of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Config {
    Default,
    Tuned,
    TunedGomemlimit,
}

impl Config {
    fn label(self) -> &'static str {
        match self {
            Config::Default => "default",
            Config::Tuned => "tuned",
            Config::TunedGomemlimit => "tuned + GOMEMLIMIT",
        }
    }

    fn env(self, limit: Option<u64>) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = match self {
            Config::Default => Vec::new(),
            Config::Tuned | Config::TunedGomemlimit => {
                remote_gopls_server::config::DEFAULT_GOPLS_ENV
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect()
            }
        };
        if let (Config::TunedGomemlimit, Some(limit)) = (self, limit) {
            let soft = (limit as f64 * GOMEMLIMIT_SHARE) as u64 / MIB;
            env.push(("GOMEMLIMIT".to_owned(), format!("{soft}MiB")));
        }
        env
    }
}

/// One gopls run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Run {
    pub config: Config,
    pub env: Vec<(String, String)>,
    /// cgroup hard limit in bytes; `None` for no limit.
    pub limit: Option<u64>,
    /// gopls replied to the whole script and was still running at the end.
    pub survived: bool,
    /// gopls died from SIGKILL and the cgroup counted an OOM kill.
    pub oom_killed: bool,
    pub oom_kills: u64,
    pub failure: Option<String>,
    pub time_to_diagnostics_ms: f64,
    pub latency: Summary,
    /// Peak RSS of the gopls process (VmHWM, last value read while it ran).
    pub gopls_peak_rss: u64,
    /// Peak of the cgroup's working set (usage less inactive page cache),
    /// sampled every 100 ms; includes the `go list` processes.
    pub cgroup_peak_working_set: u64,
    /// The cgroup's `memory.max_usage_in_bytes` (page cache included).
    pub cgroup_max_usage: u64,
}

pub async fn run(options: &Options) -> anyhow::Result<Report> {
    let machine = Machine::describe(&options.gopls);
    let workspace = Workspace::prepare(options, Size::LARGE)?;
    let (files, settle, steps) = if options.smoke {
        (1, SMOKE_SETTLE, SMOKE_BISECTION_STEPS)
    } else {
        (FILES, SETTLE, BISECTION_STEPS)
    };
    let script = Script::new(&workspace.module, files);
    let rounds = if options.smoke { 1 } else { ROUNDS };
    let runner = Runner {
        options,
        workspace: &workspace,
        script: &script,
        settle,
        rounds,
    };
    let mut notes = Vec::new();
    let deadline = Instant::now() + options.time_limit;

    if let Some(why) = cgroup::unavailable_reason() {
        notes.push(format!(
            "memory cgroups not available ({why}); ran without limits and without the OOM search"
        ));
    }
    let cgroups = cgroup::unavailable_reason().is_none();

    let default = runner.run(Config::Default, None, cgroups).await?;
    let tuned = runner.run(Config::Tuned, None, cgroups).await?;
    let mut runs = vec![default.clone(), tuned.clone()];

    let mut bisection = Vec::new();
    let mut at_limit = Vec::new();
    let mut oom_limit = None;
    if cgroups && default.survived {
        // Invariant: default gopls is killed at `low` (trivially at 0) and
        // survives at `high` (assumed at the upper end until a run shows it).
        let peak = default.gopls_peak_rss.max(default.cgroup_peak_working_set);
        let mut low = 0u64;
        let mut high = round_mib(peak as f64 * UPPER_FACTOR);
        let mut high_tried = false;
        for _ in 0..steps {
            if Instant::now() >= deadline {
                notes.push("OOM search stopped at the time limit".to_owned());
                break;
            }
            let limit = round_mib((low + high) as f64 / 2.0);
            let run = runner.run(Config::Default, Some(limit), true).await?;
            if run.survived {
                high = limit;
                high_tried = true;
            } else {
                low = limit;
            }
            bisection.push(run);
        }
        if low > 0 {
            oom_limit = Some(low);
            for config in [Config::Tuned, Config::TunedGomemlimit] {
                at_limit.push(runner.run(config, Some(low), true).await?);
            }
        } else {
            notes.push(format!(
                "default gopls survived every limit tried, down to {} MiB; no OOM limit found",
                high / MIB
            ));
        }
        let survives = if high_tried {
            format!("survives at {} MiB", high / MIB)
        } else {
            format!("was not run at the upper end ({} MiB)", high / MIB)
        };
        notes.push(format!(
            "OOM search: {} bisection steps between 0 and {UPPER_FACTOR:.1} x default's unlimited peak; default gopls is OOM-killed at {} and {survives}.",
            bisection.len(),
            oom_limit.map_or("no limit tried".to_owned(), |l| format!("{} MiB", l / MIB)),
        ));
    }
    runs.extend(at_limit.iter().cloned());

    // At default's OOM limit tuned gopls has room to spare, so GOMEMLIMIT
    // changes nothing there. A limit below tuned's own peak shows what it buys.
    if cgroups && tuned.survived && Instant::now() < deadline {
        let peak = tuned.gopls_peak_rss.max(tuned.cgroup_peak_working_set);
        let squeeze = round_mib(peak as f64 * SQUEEZE_FACTOR);
        for config in [Config::Tuned, Config::TunedGomemlimit] {
            runs.push(runner.run(config, Some(squeeze), true).await?);
        }
        notes.push(format!(
            "The last two rows run at {} MiB, {SQUEEZE_FACTOR} x tuned gopls's unlimited peak, to show what GOMEMLIMIT changes under a tight limit.",
            squeeze / MIB
        ));
    }

    let saving = 1.0 - tuned.gopls_peak_rss as f64 / default.gopls_peak_rss as f64;
    notes.push(format!(
        "tuned peak RSS is {:.0}% below default (target: at least 30%). GOMAXPROCS=2 equals Go's default on this 2-CPU machine, so here tuning is GOGC=20 and GOFLAGS only.",
        saving * 100.0
    ));
    let body = render(&runs, &bisection);
    Ok(Report::finish(
        "memory",
        options,
        machine,
        Some(workspace.module.stats()),
        json!({
            "runs": runs,
            "bisection": bisection,
            "oom_limit": oom_limit,
            "tuned_saving": saving,
        }),
        notes,
        body,
    ))
}

fn round_mib(bytes: f64) -> u64 {
    (bytes / MIB as f64).round().max(1.0) as u64 * MIB
}

/// Settings shared by every run.
struct Runner<'a> {
    options: &'a Options,
    workspace: &'a Workspace,
    script: &'a Script,
    settle: Duration,
    rounds: usize,
}

impl Runner<'_> {
    /// Runs gopls once with `config`, in a new cgroup with `limit` when
    /// `in_cgroup` is set.
    async fn run(
        &self,
        config: Config,
        limit: Option<u64>,
        in_cgroup: bool,
    ) -> anyhow::Result<Run> {
        let limit_text = limit.map_or("no limit".to_owned(), |l| format!("{} MiB", l / MIB));
        eprintln!("memory: {} gopls, {limit_text}", config.label());
        let scratch = tempfile::Builder::new()
            .prefix("memory-")
            .tempdir_in(self.workspace.scratch.path())?;
        let launch = Launch {
            gopls: self.options.gopls.clone(),
            scratch: scratch.path().to_owned(),
            gopls_env: config.env(limit),
        };
        let cgroup = if in_cgroup {
            let cgroup = MemoryCgroup::create()?;
            if let Some(limit) = limit {
                cgroup.set_limit(limit)?;
            }
            Some(cgroup)
        } else {
            None
        };
        let command = match &cgroup {
            Some(cgroup) => launch.gopls_in_cgroup(cgroup)?,
            None => launch.gopls_command()?,
        };
        let editor = Editor::spawn(command, &self.workspace.checkouts.local);

        let rss_pid = editor.pid;
        let rss = Sampler::start(move || rss_pid.and_then(procfs::rss).map(|r| r.peak));
        let working_set = cgroup.as_ref().map(|c| {
            let path = c.path().to_owned();
            Sampler::start(move || Some(cgroup::working_set_of(&path)))
        });

        let outcome = self.drive(&editor).await;

        let gopls_peak_rss = editor
            .pid
            .and_then(procfs::rss)
            .map_or(rss.max(), |r| r.peak.max(rss.max()));
        rss.stop();
        let cgroup_peak_working_set = working_set.map_or(0, Sampler::stop);
        let exit = editor.exited();
        let oom_kills = cgroup.as_ref().map_or(0, MemoryCgroup::oom_kills);
        let cgroup_max_usage = cgroup.as_ref().map_or(0, MemoryCgroup::max_usage);
        let killed = exit
            .as_ref()
            .is_some_and(|e| e.signal == Some(libc::SIGKILL));

        let (time_to_diagnostics, samples, failure) = match outcome {
            Ok((ttfd, samples)) => (Some(ttfd), samples, None),
            Err((ttfd, samples, error)) => (ttfd, samples, Some(reason(&error))),
        };
        let survived = failure.is_none() && exit.is_none();
        editor.shutdown(SHUTDOWN_TIMEOUT).await;
        // The cgroup goes after gopls: dropping it kills whatever is left.
        drop(cgroup);

        let run = Run {
            config,
            env: launch.gopls_env.clone(),
            limit,
            survived,
            oom_killed: killed && oom_kills > 0,
            oom_kills,
            failure,
            time_to_diagnostics_ms: time_to_diagnostics.map_or(f64::NAN, |d| d.as_secs_f64() * 1e3),
            latency: Summary::of(&samples.all()),
            gopls_peak_rss,
            cgroup_peak_working_set,
            cgroup_max_usage,
        };
        eprintln!(
            "memory: {} {limit_text}: survived={} peak RSS {:.0} MiB",
            config.label(),
            run.survived,
            mib(run.gopls_peak_rss)
        );
        Ok(run)
    }

    /// Loads the workspace, runs the script, and lets background work settle.
    async fn drive(
        &self,
        editor: &Editor,
    ) -> Result<(Duration, Samples), (Option<Duration>, Samples, anyhow::Error)> {
        let mut samples = Samples::default();
        let ttfd = match self
            .script
            .open(editor, &self.workspace.module, LOAD_TIMEOUT)
            .await
        {
            Ok(ttfd) => ttfd,
            Err(error) => return Err((None, samples, error)),
        };
        let deadline = Instant::now() + LOAD_TIMEOUT;
        for _ in 0..self.rounds {
            if let Err(error) = self
                .script
                .round(editor, &mut samples, REQUEST_TIMEOUT, deadline)
                .await
            {
                return Err((Some(ttfd), samples, error));
            }
        }
        tokio::time::sleep(self.settle).await;
        if let Some(exit) = editor.exited() {
            let error = anyhow::anyhow!("gopls exited after the script: {}", exit.status);
            return Err((Some(ttfd), samples, error));
        }
        Ok((ttfd, samples))
    }
}

fn outcome(run: &Run) -> String {
    match (&run.failure, run.oom_killed) {
        (None, _) => "survived".to_owned(),
        (Some(_), true) => "OOM-killed".to_owned(),
        (Some(why), false) => format!("failed: {why}"),
    }
}

fn render(runs: &[Run], bisection: &[Run]) -> String {
    let row = |run: &Run| {
        vec![
            run.config.label().to_owned(),
            run.limit
                .map_or("none".to_owned(), |l| format!("{} MiB", l / MIB)),
            run.env
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" "),
            outcome(run),
            num(mib(run.gopls_peak_rss), 0),
            num(mib(run.cgroup_peak_working_set), 0),
            num(run.time_to_diagnostics_ms / 1e3, 2),
            num(run.latency.p95_ms, 1),
        ]
    };
    let headers = [
        "gopls",
        "cgroup limit",
        "env",
        "outcome",
        "peak RSS MiB",
        "peak cgroup working set MiB",
        "first diagnostics s",
        "script p95 ms",
    ];
    let mut out = table(&headers, &runs.iter().map(row).collect::<Vec<_>>());
    if !bisection.is_empty() {
        out.push_str("\nOOM search (default gopls):\n\n");
        out.push_str(&table(
            &headers,
            &bisection.iter().map(row).collect::<Vec<_>>(),
        ));
    }
    out
}
