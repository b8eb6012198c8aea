//! Brute-force defence for login, refresh and sign-up: sliding-window
//! counters per account+login name and per client address. A full bucket
//! answers 429 with `Retry-After` until its oldest entry leaves the window;
//! nothing locks an account for good.
//!
//! With several nodes the buckets are shared through Redis (a sorted set
//! per key), so the limits hold for the cluster, not per node. Every entry is
//! also counted in this node's memory: when Redis does not answer, the node
//! falls back to its own buckets — per node, never unlimited. The counters
//! only slow guessing down; revocations, by contrast, always live in storage.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::Error;
use crate::realtime::redis::Redis;

/// Keys tracked before stale ones are swept.
const SWEEP_AT: usize = 100_000;

/// Entries of one key, and the window they count in (so that a sweep keeps
/// a long-window bucket that a short-window one would call stale).
type Bucket = (Duration, VecDeque<Instant>);

#[derive(Default)]
pub struct Throttle {
    buckets: Mutex<HashMap<String, Bucket>>,
    redis: Option<Redis>,
}

fn refusal(wait: Duration) -> Error {
    Error::RateLimited {
        retry_after: wait.as_secs().max(1),
    }
}

impl Throttle {
    /// Buckets shared through `redis` (with this node's own as fallback).
    pub fn shared(redis: Option<Redis>) -> Self {
        Self {
            buckets: Mutex::default(),
            redis,
        }
    }

    fn rkey(redis: &Redis, key: &str) -> String {
        format!("{}:throttle:{key}", redis.prefix())
    }

    /// Refuses if `key` already holds `limit` entries within `window`, in
    /// the cluster (Redis) or, without it, on this node.
    pub async fn check(&self, key: &str, limit: u32, window: Duration) -> Result<(), Error> {
        if let Some(redis) = &self.redis {
            let k = Self::rkey(redis, key);
            let r: redis::RedisResult<(i64, Vec<(String, f64)>)> = async {
                let mut c = redis.conn().await?;
                let now = now_ms();
                redis::pipe()
                    .cmd("ZREMRANGEBYSCORE")
                    .arg(&k)
                    .arg(0)
                    .arg(now - window.as_millis() as f64)
                    .ignore()
                    .cmd("ZCARD")
                    .arg(&k)
                    .cmd("ZRANGE")
                    .arg(&k)
                    .arg(0)
                    .arg(0)
                    .arg("WITHSCORES")
                    .query_async(&mut c)
                    .await
            }
            .await;
            match r {
                Ok((n, oldest)) => {
                    if n < i64::from(limit) {
                        return Ok(());
                    }
                    let oldest = oldest.first().map_or(now_ms(), |(_, s)| *s);
                    let age = Duration::from_millis((now_ms() - oldest).max(0.0) as u64);
                    return Err(refusal(window.saturating_sub(age)));
                }
                Err(e) => {
                    redis.broken();
                    tracing::warn!(error = %e, "redis unreachable: rate limits fall back to this node's buckets");
                }
            }
        }
        self.check_local(key, limit, window)
    }

    fn check_local(&self, key: &str, limit: u32, window: Duration) -> Result<(), Error> {
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
        Err(refusal(window.saturating_sub(now.duration_since(oldest))))
    }

    /// Counts one entry for `key` (in Redis too, when shared).
    pub async fn record(&self, key: &str, window: Duration) {
        self.record_local(key, window);
        if let Some(redis) = &self.redis {
            let k = Self::rkey(redis, key);
            let r: redis::RedisResult<()> = async {
                let mut c = redis.conn().await?;
                let now = now_ms();
                let member = format!("{now}-{}", uuid::Uuid::new_v4().simple());
                redis::pipe()
                    .cmd("ZADD")
                    .arg(&k)
                    .arg(now)
                    .arg(member)
                    .ignore()
                    .cmd("PEXPIRE")
                    .arg(&k)
                    .arg(window.as_millis().max(1) as u64)
                    .ignore()
                    .query_async(&mut c)
                    .await
            }
            .await;
            if let Err(e) = r {
                redis.broken();
                tracing::warn!(error = %e, "redis unreachable: counting on this node only");
            }
        }
    }

    fn record_local(&self, key: &str, window: Duration) {
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
    pub async fn hit(&self, key: &str, limit: u32, window: Duration) -> Result<(), Error> {
        self.check(key, limit, window).await?;
        self.record(key, window).await;
        Ok(())
    }
}

fn now_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_millis() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_bucket_refuses_with_a_retry_after() {
        let t = Throttle::default();
        let w = Duration::from_secs(60);
        for _ in 0..3 {
            t.check_local("k", 3, w).unwrap();
            t.record_local("k", w);
        }
        let e = t.check_local("k", 3, w).unwrap_err();
        assert!(matches!(e, Error::RateLimited { retry_after } if (1..=60).contains(&retry_after)));
        assert!(t.check_local("other", 3, w).is_ok());
        assert!(t.check_local("k", 3, Duration::ZERO).is_ok());
    }

    #[test]
    fn a_sweep_keeps_buckets_whose_own_window_is_still_open() {
        let t = Throttle::default();
        let long = Duration::from_secs(900);
        for _ in 0..3 {
            t.record_local("failures", long);
        }
        for i in 0..SWEEP_AT {
            t.record_local(&format!("k{i}"), Duration::ZERO);
        }
        assert!(
            t.check_local("failures", 3, long).is_err(),
            "the failures survive the sweep"
        );
        assert!(t.buckets.lock().unwrap().len() < SWEEP_AT);
    }
}
