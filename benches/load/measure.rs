//! One measurement, whichever tool made it.

use std::time::Duration;

#[derive(Debug, Clone, Default)]
pub struct Measured {
    /// Answers with a 2xx status within the measured time.
    pub requests: u64,
    /// Other answers, and requests lost to socket errors or timeouts.
    pub failures: u64,
    pub duration: Duration,
    pub p50: Duration,
    pub p99: Duration,
    /// Anything that makes the figure suspect (failures, exhausted inputs).
    pub notes: Vec<String>,
}

impl Measured {
    /// Successful requests per second.
    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.duration.as_secs_f64().max(1e-9)
    }

    /// From raw latencies (any order).
    pub fn from_latencies(mut latencies: Vec<Duration>, failures: u64, duration: Duration) -> Self {
        latencies.sort_unstable();
        let at = |q: f64| {
            if latencies.is_empty() {
                return Duration::ZERO;
            }
            let rank = ((q * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len());
            latencies[rank - 1]
        };
        Self {
            requests: latencies.len() as u64,
            failures,
            duration,
            p50: at(0.50),
            p99: at(0.99),
            notes: Vec::new(),
        }
    }
}
