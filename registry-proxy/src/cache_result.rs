//! How an answer was found, as `X-Cache` says it: the word the cache, its
//! access log and its metrics share.

/// How an answer was found, as `X-Cache` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheResult {
    Hit,
    Miss,
    /// Every upstream failed; this is the last known answer.
    Stale,
}

impl CacheResult {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheResult::Hit => "HIT",
            CacheResult::Miss => "MISS",
            CacheResult::Stale => "STALE",
        }
    }
}
