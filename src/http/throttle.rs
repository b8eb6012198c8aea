//! Brute-force defence for login, refresh and sign-up: sliding-window
//! counters per account+login name and per client address. A full bucket
//! answers 429 with `Retry-After` until its oldest entry leaves the window;
//! nothing locks an account for good.
//!
//! The counters live in this node's memory: they only slow guessing down,
//! and losing them on restart costs an attacker's progress nothing it could
//! not redo. (With several nodes, each node counts alone; the Redis bus
//! will share them.) Revocations, by contrast, always live in storage.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::StatusCode;

use super::envelope::ApiError;

/// Keys tracked before stale ones are swept.
const SWEEP_AT: usize = 100_000;

/// Entries of one key, and the window they count in (so that a sweep keeps
/// a long-window bucket that a short-window one would call stale).
type Bucket = (Duration, VecDeque<Instant>);

#[derive(Default)]
pub struct Throttle {
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Throttle {
    /// Refuses if `key` already holds `limit` entries within `window`.
    pub fn check(&self, key: &str, limit: u32, window: Duration) -> Result<(), ApiError> {
        let now = Instant::now();
        let mut b = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let Some((_, q)) = b.get_mut(key) else {
            return Ok(());
        };
        while q.front().is_some_and(|t| now.duration_since(*t) >= window) {
            q.pop_front();
        }
        if q.len() < limit as usize {
            return Ok(());
        }
        let oldest = q.front().copied().unwrap_or(now);
        let wait = window.saturating_sub(now.duration_since(oldest));
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "RATE_LIMITED",
            "too many attempts; retry later",
        );
        e.retry_after = Some(wait.as_secs().max(1));
        Err(e)
    }

    /// Counts one entry for `key`.
    pub fn record(&self, key: &str, window: Duration) {
        let now = Instant::now();
        let mut b = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if b.len() >= SWEEP_AT {
            b.retain(|_, (w, q)| q.back().is_some_and(|t| now.duration_since(*t) < *w));
        }
        let (w, q) = b
            .entry(key.to_owned())
            .or_insert_with(|| (window, VecDeque::new()));
        *w = (*w).max(window);
        q.push_back(now);
    }

    /// Checks and counts in one step (a request rate).
    pub fn hit(&self, key: &str, limit: u32, window: Duration) -> Result<(), ApiError> {
        self.check(key, limit, window)?;
        self.record(key, window);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_bucket_refuses_with_a_retry_after() {
        let t = Throttle::default();
        let w = Duration::from_secs(60);
        for _ in 0..3 {
            t.hit("k", 3, w).unwrap();
        }
        let e = t.check("k", 3, w).unwrap_err();
        assert_eq!(e.status, StatusCode::TOO_MANY_REQUESTS);
        assert!(e.retry_after.is_some_and(|s| (1..=60).contains(&s)));
        assert!(t.check("other", 3, w).is_ok());
        assert!(t.check("k", 3, Duration::ZERO).is_ok());
    }

    #[test]
    fn a_sweep_keeps_buckets_whose_own_window_is_still_open() {
        let t = Throttle::default();
        let long = Duration::from_secs(900);
        for _ in 0..3 {
            t.record("failures", long);
        }
        for i in 0..SWEEP_AT {
            t.record(&format!("k{i}"), Duration::ZERO);
        }
        assert!(
            t.check("failures", 3, long).is_err(),
            "the failures survive the sweep"
        );
        assert!(t.buckets.lock().unwrap().len() < SWEEP_AT);
    }
}
