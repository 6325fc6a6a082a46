//! A circuit breaker per host: after repeated failures, fail at once for a while.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::Error;

/// The `tracing` target of the breaker's "opened" warning, so that a program can
/// filter it (a command whose own error tells the story) without naming this module.
pub const CIRCUIT_BREAKER_LOG_TARGET: &str = "registry_client::circuit_breaker";

/// When to stop calling a failing host.
///
/// Failures are connection errors, timeouts and 5xx answers; any other answer
/// is a success and closes the circuit. A 429 is neither: the host is up.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CircuitBreakerConfig {
    /// Consecutive failures that open the circuit. Default 5; 0 disables the breaker.
    pub failure_threshold: u32,
    /// How long the circuit stays open before one trial request. Default 60 s.
    pub open_for: Duration,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        CircuitBreakerConfig {
            failure_threshold: 5,
            open_for: Duration::from_secs(60),
        }
    }
}

impl CircuitBreakerConfig {
    pub fn disabled() -> Self {
        CircuitBreakerConfig {
            failure_threshold: 0,
            ..Self::default()
        }
    }

    pub fn new(failure_threshold: u32, open_for: Duration) -> Self {
        CircuitBreakerConfig {
            failure_threshold,
            open_for,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One trial request is in flight; everyone else waits for its outcome.
    /// A trial that never reports (its caller gave up on it) is written off
    /// at `until`, and the next request is the new trial.
    HalfOpen {
        until: Instant,
    },
}

#[derive(Debug)]
pub(crate) struct CircuitBreakers {
    config: CircuitBreakerConfig,
    hosts: Mutex<HashMap<String, State>>,
}

impl CircuitBreakers {
    pub(crate) fn new(config: CircuitBreakerConfig) -> Self {
        CircuitBreakers {
            config,
            hosts: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a request to `host` may go out now.
    pub(crate) fn check(&self, host: &str) -> Result<(), Error> {
        if self.config.failure_threshold == 0 {
            return Ok(());
        }
        let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        let Some(state) = hosts.get_mut(host) else {
            return Ok(());
        };
        let now = Instant::now();
        match *state {
            State::Closed { .. } => Ok(()),
            State::Open { until } | State::HalfOpen { until } if now >= until => {
                *state = State::HalfOpen {
                    until: now + self.config.open_for,
                };
                Ok(())
            }
            State::Open { until } => Err(open_error(host, until - now)),
            // The trial's outcome is not known yet; treat as open for a moment.
            State::HalfOpen { .. } => Err(open_error(host, Duration::from_secs(1))),
        }
    }

    pub(crate) fn record_success(&self, host: &str) {
        if self.config.failure_threshold == 0 {
            return;
        }
        let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        hosts.remove(host);
    }

    pub(crate) fn record_failure(&self, host: &str) {
        if self.config.failure_threshold == 0 {
            return;
        }
        let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        let state = hosts
            .entry(host.to_owned())
            .or_insert(State::Closed { failures: 0 });
        let open = State::Open {
            until: Instant::now() + self.config.open_for,
        };
        *state = match *state {
            State::Closed { failures } if failures + 1 >= self.config.failure_threshold => {
                tracing::warn!(
                    target: CIRCUIT_BREAKER_LOG_TARGET,
                    host,
                    "circuit breaker opened after repeated failures"
                );
                open
            }
            State::Closed { failures } => State::Closed {
                failures: failures + 1,
            },
            // A failed trial (or a late failure while open) reopens it.
            State::HalfOpen { .. } | State::Open { .. } => open,
        };
    }
}

fn open_error(host: &str, retry_in: Duration) -> Error {
    Error::CircuitOpen {
        host: host.to_owned(),
        retry_in,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_then_allows_one_trial() {
        let b = CircuitBreakers::new(CircuitBreakerConfig::new(3, Duration::from_millis(50)));
        for _ in 0..2 {
            b.record_failure("h");
            assert!(b.check("h").is_ok());
        }
        b.record_failure("h");
        let err = b.check("h").unwrap_err();
        assert!(err.is_circuit_open(), "{err}");
        assert!(b.check("other").is_ok(), "other hosts are not affected");

        std::thread::sleep(Duration::from_millis(60));
        assert!(b.check("h").is_ok(), "one trial after the open period");
        assert!(b.check("h").is_err(), "only one trial at a time");
        b.record_failure("h");
        assert!(b.check("h").is_err(), "a failed trial reopens");

        std::thread::sleep(Duration::from_millis(60));
        assert!(b.check("h").is_ok());
        b.record_success("h");
        assert!(b.check("h").is_ok());
        assert!(b.check("h").is_ok(), "closed again after a good trial");
    }

    #[test]
    fn a_trial_that_never_reports_is_written_off() {
        let b = CircuitBreakers::new(CircuitBreakerConfig::new(1, Duration::from_millis(50)));
        b.record_failure("h");
        std::thread::sleep(Duration::from_millis(60));
        assert!(b.check("h").is_ok(), "the trial");
        // Its caller dropped it: no success, no failure.
        assert!(b.check("h").is_err(), "still waiting for the trial");
        std::thread::sleep(Duration::from_millis(60));
        assert!(
            b.check("h").is_ok(),
            "a new trial once the lost one is written off"
        );
    }

    #[test]
    fn success_resets_the_count() {
        let b = CircuitBreakers::new(CircuitBreakerConfig::new(2, Duration::from_secs(60)));
        b.record_failure("h");
        b.record_success("h");
        b.record_failure("h");
        assert!(b.check("h").is_ok());
    }

    #[test]
    fn disabled_never_opens() {
        let b = CircuitBreakers::new(CircuitBreakerConfig::disabled());
        for _ in 0..100 {
            b.record_failure("h");
        }
        assert!(b.check("h").is_ok());
    }
}
