//! Restart pacing for one workspace: exponential backoff between restarts
//! and the crash-loop rule that stops restarting a workspace that keeps
//! failing.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Default delay before the first restart after a failure.
pub const DEFAULT_BACKOFF_INITIAL: Duration = Duration::from_secs(1);
/// Default upper bound of the doubling backoff.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(60);
/// Default number of restarts within the window that marks a crash loop.
pub const DEFAULT_CRASH_LOOP_RESTARTS: usize = 5;
/// Default crash-loop window.
pub const DEFAULT_CRASH_LOOP_WINDOW: Duration = Duration::from_secs(10 * 60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartRules {
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub crash_loop_restarts: usize,
    pub crash_loop_window: Duration,
}

impl Default for RestartRules {
    fn default() -> Self {
        RestartRules {
            backoff_initial: DEFAULT_BACKOFF_INITIAL,
            backoff_max: DEFAULT_BACKOFF_MAX,
            crash_loop_restarts: DEFAULT_CRASH_LOOP_RESTARTS,
            crash_loop_window: DEFAULT_CRASH_LOOP_WINDOW,
        }
    }
}

/// What to do about a needed restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pace {
    /// Start the new instance after this delay.
    After(Duration),
    /// Too many restarts in the window: the workspace is degraded.
    Degraded { restarts: usize, window: Duration },
}

/// Restart history of one workspace.
#[derive(Debug, Clone)]
pub struct RestartPacer {
    rules: RestartRules,
    history: VecDeque<Instant>,
    backoff: Duration,
    degraded: Option<String>,
}

impl RestartPacer {
    pub fn new(rules: RestartRules) -> RestartPacer {
        RestartPacer {
            rules,
            history: VecDeque::new(),
            backoff: rules.backoff_initial,
            degraded: None,
        }
    }

    /// Records a restart at `now` and returns how to pace it.
    pub fn restart(&mut self, now: Instant) -> Pace {
        while self
            .history
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.rules.crash_loop_window)
        {
            self.history.pop_front();
        }
        if self.history.len() >= self.rules.crash_loop_restarts {
            return Pace::Degraded {
                restarts: self.history.len(),
                window: self.rules.crash_loop_window,
            };
        }

        // The first restart in a while happens at once and resets the
        // backoff; each quick restart after it waits twice as long.
        let quiet = self
            .history
            .back()
            .is_none_or(|t| now.duration_since(*t) > self.rules.backoff_max);
        let delay = if quiet {
            self.backoff = self.rules.backoff_initial;
            Duration::ZERO
        } else {
            let delay = self.backoff;
            self.backoff = (self.backoff * 2).min(self.rules.backoff_max);
            delay
        };
        self.history.push_back(now);
        Pace::After(delay)
    }

    /// Marks the workspace degraded with the reason shown to users.
    pub fn degrade(&mut self, reason: String) {
        self.degraded = Some(reason);
    }

    pub fn degraded(&self) -> Option<&str> {
        self.degraded.as_deref()
    }

    /// Clears the degraded mark and the history (a new session or an admin
    /// command asked to try again).
    pub fn reset(&mut self) {
        self.degraded = None;
        self.history.clear();
        self.backoff = self.rules.backoff_initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_maximum() {
        let mut pacer = RestartPacer::new(RestartRules {
            crash_loop_restarts: 100,
            ..RestartRules::default()
        });
        let start = Instant::now();
        let delays: Vec<Pace> = (0..9)
            .map(|i| pacer.restart(start + Duration::from_millis(i)))
            .collect();
        let expected: Vec<Pace> = [0, 1, 2, 4, 8, 16, 32, 60, 60]
            .iter()
            .map(|&s| Pace::After(Duration::from_secs(s)))
            .collect();
        assert_eq!(delays, expected);
    }

    #[test]
    fn crash_loop_degrades_after_limit() {
        let mut pacer = RestartPacer::new(RestartRules::default());
        let start = Instant::now();
        for i in 0..5 {
            assert!(
                matches!(
                    pacer.restart(start + Duration::from_secs(i)),
                    Pace::After(_)
                ),
                "restart {i}"
            );
        }
        assert_eq!(
            pacer.restart(start + Duration::from_secs(6)),
            Pace::Degraded {
                restarts: 5,
                window: DEFAULT_CRASH_LOOP_WINDOW
            }
        );
    }

    #[test]
    fn old_restarts_leave_the_window() {
        let mut pacer = RestartPacer::new(RestartRules::default());
        let start = Instant::now();
        for i in 0..5 {
            pacer.restart(start + Duration::from_secs(i));
        }
        let later = start + DEFAULT_CRASH_LOOP_WINDOW + Duration::from_secs(10);
        assert_eq!(
            pacer.restart(later),
            Pace::After(Duration::ZERO),
            "the first restart after a quiet period is immediate"
        );
        assert_eq!(
            pacer.restart(later + Duration::from_secs(1)),
            Pace::After(DEFAULT_BACKOFF_INITIAL),
            "the backoff was reset"
        );
    }

    #[test]
    fn reset_clears_degraded() {
        let mut pacer = RestartPacer::new(RestartRules::default());
        pacer.degrade("crash loop".into());
        assert_eq!(pacer.degraded(), Some("crash loop"));
        pacer.reset();
        assert_eq!(pacer.degraded(), None);
        assert_eq!(pacer.restart(Instant::now()), Pace::After(Duration::ZERO));
    }
}
