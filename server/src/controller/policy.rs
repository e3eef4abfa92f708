//! The controller's decisions for one instance, as a pure state machine over
//! memory samples, so every threshold can be tested without a kernel.

use std::time::Duration;

/// Default time between two samples of every instance.
pub const DEFAULT_SAMPLE_INTERVAL: Duration = Duration::from_secs(2);
/// Default working-set fraction of the limit that logs a warning.
pub const DEFAULT_WARN_FRACTION: f64 = 0.75;
/// Default working-set fraction of the limit that, sustained, restarts gopls.
pub const DEFAULT_RESTART_FRACTION: f64 = 0.90;
/// Default number of consecutive samples above the restart fraction before
/// a restart. One sample is not enough: a go.mod edit makes gopls reload
/// and spike for a moment.
pub const DEFAULT_RESTART_SAMPLES: u32 = 3;

/// Memory thresholds, as fractions of the instance's limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub warn_fraction: f64,
    pub restart_fraction: f64,
    pub restart_samples: u32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            warn_fraction: DEFAULT_WARN_FRACTION,
            restart_fraction: DEFAULT_RESTART_FRACTION,
            restart_samples: DEFAULT_RESTART_SAMPLES,
        }
    }
}

/// One observation of a running instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub working_set: u64,
    pub limit: u64,
    /// OOM kills in the instance's cgroup so far (cumulative).
    pub oom_kills: u64,
}

/// What the controller should do after a sample.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Nothing,
    /// The working set crossed the warning fraction (reported once per crossing).
    Warn {
        fraction: f64,
    },
    /// The working set stayed above the restart fraction.
    RestartForMemory {
        working_set: u64,
        limit: u64,
    },
    /// The kernel OOM-killed a process in the group while gopls lives on
    /// (typically a `go list` child); gopls is restarted at once.
    RestartAfterOom {
        oom_kills: u64,
    },
}

/// Per-instance state between samples.
#[derive(Debug, Clone, Default)]
pub struct MemoryPolicy {
    thresholds: Thresholds,
    consecutive_over: u32,
    warned: bool,
    oom_kills_seen: u64,
}

impl MemoryPolicy {
    pub fn new(thresholds: Thresholds) -> MemoryPolicy {
        MemoryPolicy {
            thresholds,
            ..MemoryPolicy::default()
        }
    }

    /// Consecutive samples above the restart fraction so far.
    pub fn consecutive_over(&self) -> u32 {
        self.consecutive_over
    }

    pub fn observe(&mut self, sample: Sample) -> Decision {
        if sample.oom_kills > self.oom_kills_seen {
            let new_kills = sample.oom_kills - self.oom_kills_seen;
            self.oom_kills_seen = sample.oom_kills;
            self.consecutive_over = 0;
            return Decision::RestartAfterOom {
                oom_kills: new_kills,
            };
        }
        if sample.limit == 0 || sample.limit == u64::MAX {
            return Decision::Nothing;
        }

        let fraction = sample.working_set as f64 / sample.limit as f64;
        if fraction > self.thresholds.restart_fraction {
            self.consecutive_over += 1;
            if self.consecutive_over >= self.thresholds.restart_samples {
                self.consecutive_over = 0;
                return Decision::RestartForMemory {
                    working_set: sample.working_set,
                    limit: sample.limit,
                };
            }
        } else {
            self.consecutive_over = 0;
        }

        if fraction > self.thresholds.warn_fraction {
            if !self.warned {
                self.warned = true;
                return Decision::Warn { fraction };
            }
        } else {
            self.warned = false;
        }
        Decision::Nothing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: u64 = 1000;

    fn sample(working_set: u64) -> Sample {
        Sample {
            working_set,
            limit: LIMIT,
            oom_kills: 0,
        }
    }

    fn run(policy: &mut MemoryPolicy, working_sets: &[u64]) -> Vec<Decision> {
        working_sets
            .iter()
            .map(|&w| policy.observe(sample(w)))
            .collect()
    }

    #[test]
    fn one_sample_spike_does_not_restart() {
        let mut policy = MemoryPolicy::new(Thresholds::default());
        let decisions = run(&mut policy, &[500, 950, 500, 950, 950, 500]);
        assert!(
            decisions
                .iter()
                .all(|d| !matches!(d, Decision::RestartForMemory { .. })),
            "{decisions:?}"
        );
    }

    #[test]
    fn sustained_pressure_restarts() {
        let mut policy = MemoryPolicy::new(Thresholds::default());
        let decisions = run(&mut policy, &[950, 960, 970]);
        assert_eq!(
            decisions[2],
            Decision::RestartForMemory {
                working_set: 970,
                limit: LIMIT
            }
        );
        assert!(!matches!(decisions[1], Decision::RestartForMemory { .. }));
    }

    #[test]
    fn restart_sample_count_is_configurable() {
        let mut policy = MemoryPolicy::new(Thresholds {
            restart_samples: 1,
            ..Thresholds::default()
        });
        assert_eq!(
            policy.observe(sample(901)),
            Decision::RestartForMemory {
                working_set: 901,
                limit: LIMIT
            }
        );
    }

    #[test]
    fn warns_once_per_crossing() {
        let mut policy = MemoryPolicy::new(Thresholds::default());
        let decisions = run(&mut policy, &[800, 810, 700, 820]);
        assert!(
            matches!(decisions[0], Decision::Warn { .. }),
            "{decisions:?}"
        );
        assert_eq!(decisions[1], Decision::Nothing);
        assert_eq!(decisions[2], Decision::Nothing);
        assert!(
            matches!(decisions[3], Decision::Warn { .. }),
            "{decisions:?}"
        );
    }

    #[test]
    fn oom_kill_restarts_at_once() {
        let mut policy = MemoryPolicy::new(Thresholds::default());
        let killed = Sample {
            working_set: 100,
            limit: LIMIT,
            oom_kills: 2,
        };
        assert_eq!(
            policy.observe(killed),
            Decision::RestartAfterOom { oom_kills: 2 }
        );
        assert_eq!(
            policy.observe(killed),
            Decision::Nothing,
            "the same kills are reported once"
        );
    }

    #[test]
    fn unlimited_groups_never_restart_for_memory() {
        let mut policy = MemoryPolicy::new(Thresholds {
            restart_samples: 1,
            ..Thresholds::default()
        });
        let unlimited = Sample {
            working_set: u64::MAX - 1,
            limit: u64::MAX,
            oom_kills: 0,
        };
        assert_eq!(policy.observe(unlimited), Decision::Nothing);
    }
}
