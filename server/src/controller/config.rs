//! The controller's configuration: the `[controller]` table. Every threshold
//! is a named value with a documented default.

use std::time::Duration;

use serde::Deserialize;

use super::policy::{Thresholds, DEFAULT_SAMPLE_INTERVAL};
use super::profile::DEFAULT_PROFILES_KEPT;
use super::restarts::RestartRules;
use crate::bytesize::ByteSize;

/// Default time an instance may run without sessions before it is stopped.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Default global memory budget as a fraction of the server's own memory
/// limit, or of the machine's memory when the server has no limit.
pub const DEFAULT_BUDGET_FRACTION: f64 = 0.8;

/// Validated controller settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ControllerConfig {
    pub sample_interval: Duration,
    pub thresholds: Thresholds,
    pub restart_rules: RestartRules,
    pub idle_timeout: Duration,
    pub heap_profiles_kept: usize,
    /// Sum of instance memory limits the server may run at once; `None`
    /// means "compute from the server's limit or the machine's memory".
    pub memory_budget: Option<ByteSize>,
    pub budget_fraction: f64,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            sample_interval: DEFAULT_SAMPLE_INTERVAL,
            thresholds: Thresholds::default(),
            restart_rules: RestartRules::default(),
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            heap_profiles_kept: DEFAULT_PROFILES_KEPT,
            memory_budget: None,
            budget_fraction: DEFAULT_BUDGET_FRACTION,
        }
    }
}

/// The `[controller]` table as written; durations are strings such as
/// "2s", "30m" or "10min".
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileController {
    pub sample_interval: Option<String>,
    pub warn_fraction: Option<f64>,
    pub restart_fraction: Option<f64>,
    pub restart_samples: Option<u32>,
    pub backoff_initial: Option<String>,
    pub backoff_max: Option<String>,
    pub crash_loop_restarts: Option<usize>,
    pub crash_loop_window: Option<String>,
    pub idle_timeout: Option<String>,
    pub heap_profiles_kept: Option<usize>,
    pub memory_budget: Option<String>,
    pub budget_fraction: Option<f64>,
}

fn duration(
    value: &Option<String>,
    key: &str,
    default: Duration,
    errors: &mut Vec<String>,
) -> Duration {
    let Some(text) = value else { return default };
    match humantime::parse_duration(text) {
        Ok(d) if !d.is_zero() => d,
        Ok(_) => {
            errors.push(format!(
                "invalid controller.{key} {text:?}: must be greater than 0"
            ));
            default
        }
        Err(e) => {
            errors.push(format!(
                "invalid controller.{key} {text:?}: {e}; use a duration such as \"2s\" or \"30m\""
            ));
            default
        }
    }
}

fn fraction(value: Option<f64>, key: &str, default: f64, errors: &mut Vec<String>) -> f64 {
    let value = value.unwrap_or(default);
    if !(value > 0.0 && value <= 1.0) {
        errors.push(format!(
            "invalid controller.{key} {value}: must be greater than 0 and at most 1"
        ));
    }
    value
}

impl FileController {
    pub fn validate(&self, errors: &mut Vec<String>) -> ControllerConfig {
        let d = ControllerConfig::default();
        let thresholds = Thresholds {
            warn_fraction: fraction(
                self.warn_fraction,
                "warn_fraction",
                d.thresholds.warn_fraction,
                errors,
            ),
            restart_fraction: fraction(
                self.restart_fraction,
                "restart_fraction",
                d.thresholds.restart_fraction,
                errors,
            ),
            restart_samples: self.restart_samples.unwrap_or(d.thresholds.restart_samples),
        };
        if thresholds.restart_samples == 0 {
            errors.push("invalid controller.restart_samples 0: must be at least 1".to_owned());
        }
        let rules = RestartRules {
            backoff_initial: duration(
                &self.backoff_initial,
                "backoff_initial",
                d.restart_rules.backoff_initial,
                errors,
            ),
            backoff_max: duration(
                &self.backoff_max,
                "backoff_max",
                d.restart_rules.backoff_max,
                errors,
            ),
            crash_loop_restarts: self
                .crash_loop_restarts
                .unwrap_or(d.restart_rules.crash_loop_restarts),
            crash_loop_window: duration(
                &self.crash_loop_window,
                "crash_loop_window",
                d.restart_rules.crash_loop_window,
                errors,
            ),
        };
        if rules.crash_loop_restarts == 0 {
            errors.push("invalid controller.crash_loop_restarts 0: must be at least 1".to_owned());
        }
        let memory_budget =
            self.memory_budget
                .as_ref()
                .and_then(|text| match text.parse::<ByteSize>() {
                    Ok(size) => Some(size),
                    Err(e) => {
                        errors.push(format!("invalid controller.memory_budget: {e}"));
                        None
                    }
                });
        ControllerConfig {
            sample_interval: duration(
                &self.sample_interval,
                "sample_interval",
                d.sample_interval,
                errors,
            ),
            thresholds,
            restart_rules: rules,
            idle_timeout: duration(&self.idle_timeout, "idle_timeout", d.idle_timeout, errors),
            heap_profiles_kept: self.heap_profiles_kept.unwrap_or(d.heap_profiles_kept),
            memory_budget,
            budget_fraction: fraction(
                self.budget_fraction,
                "budget_fraction",
                d.budget_fraction,
                errors,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_key() {
        let file: FileController = toml::from_str(
            "sample_interval = \"500ms\"\nwarn_fraction = 0.5\nrestart_fraction = 0.8\nrestart_samples = 2\nbackoff_initial = \"2s\"\nbackoff_max = \"1m\"\ncrash_loop_restarts = 3\ncrash_loop_window = \"5m\"\nidle_timeout = \"10m\"\nheap_profiles_kept = 2\nmemory_budget = \"8GiB\"\nbudget_fraction = 0.5\n",
        )
        .unwrap();
        let mut errors = Vec::new();
        let config = file.validate(&mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(config.sample_interval, Duration::from_millis(500));
        assert_eq!(config.thresholds.restart_samples, 2);
        assert_eq!(
            config.restart_rules.crash_loop_window,
            Duration::from_secs(300)
        );
        assert_eq!(config.idle_timeout, Duration::from_secs(600));
        assert_eq!(config.memory_budget, Some(ByteSize(8 << 30)));
    }

    #[test]
    fn reports_bad_values_by_key() {
        let file: FileController =
            toml::from_str("sample_interval = \"soon\"\nwarn_fraction = 2.0\nrestart_samples = 0\nmemory_budget = \"lots\"\n").unwrap();
        let mut errors = Vec::new();
        file.validate(&mut errors);
        for key in [
            "controller.sample_interval",
            "controller.warn_fraction",
            "controller.restart_samples",
            "controller.memory_budget",
        ] {
            assert!(
                errors.iter().any(|e| e.contains(key)),
                "{key} in {errors:?}"
            );
        }
    }
}
