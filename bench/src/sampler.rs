//! Periodic sampling of a figure (a process's RSS, a cgroup's working set)
//! in the background, keeping the maximum seen.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often samplers read `/proc` and cgroup files.
pub const SAMPLE_INTERVAL: Duration = Duration::from_millis(100);

/// A running sampler; [`Sampler::stop`] returns the maximum.
pub struct Sampler {
    max: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    /// Calls `read` every [`SAMPLE_INTERVAL`] until stopped; `None` samples are skipped.
    pub fn start(mut read: impl FnMut() -> Option<u64> + Send + 'static) -> Sampler {
        let max = Arc::new(AtomicU64::new(0));
        let sink = max.clone();
        let task = tokio::spawn(async move {
            let mut interval = tokio::time::interval(SAMPLE_INTERVAL);
            loop {
                interval.tick().await;
                if let Some(value) = read() {
                    sink.fetch_max(value, Ordering::Relaxed);
                }
            }
        });
        Sampler { max, task }
    }

    /// Returns the maximum so far.
    pub fn max(&self) -> u64 {
        self.max.load(Ordering::Relaxed)
    }

    pub fn stop(self) -> u64 {
        self.task.abort();
        self.max()
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}
