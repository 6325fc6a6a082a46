//! Warnings any client can cause (a flood of connections, a storm of
//! requests for what an upstream does not have, a failing disk hit by every
//! request) are written at most once per interval, with the number held
//! back since the last one: the log stays readable, and the metrics count
//! every occurrence.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A gate that opens once per interval.
pub struct Occasional {
    every: Duration,
    state: Mutex<Gate>,
}

#[derive(Default)]
struct Gate {
    last: Option<Instant>,
    held_back: u64,
}

impl Occasional {
    pub fn new(every: Duration) -> Occasional {
        Occasional {
            every,
            state: Mutex::new(Gate::default()),
        }
    }

    /// `Some(how many were held back since the last one)` when it is time
    /// to write one; `None` (and one more held back) otherwise.
    pub fn ready(&self) -> Option<u64> {
        let mut gate = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if gate
            .last
            .is_some_and(|last| now.duration_since(last) < self.every)
        {
            gate.held_back += 1;
            return None;
        }
        gate.last = Some(now);
        Some(std::mem::take(&mut gate.held_back))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_per_interval_with_the_count_held_back() {
        let gate = Occasional::new(Duration::from_millis(100));
        assert_eq!(gate.ready(), Some(0));
        assert_eq!(gate.ready(), None);
        assert_eq!(gate.ready(), None);
        std::thread::sleep(Duration::from_millis(120));
        assert_eq!(gate.ready(), Some(2));
        assert_eq!(gate.ready(), None);
    }
}
