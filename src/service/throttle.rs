//! Brute-force defence for login, refresh and sign-up, and against floods
//! of bad API keys and tokens: sliding-window counters per account+login
//! name and per client address. A full bucket
//! answers 429 with `Retry-After` until its oldest entry leaves the window;
//! nothing locks an account for good.
//!
//! A login *reserves* its entry before the password work (checking and
//! counting in one step: a Lua script in Redis, one lock here) and gives it
//! back only if it succeeds, so concurrent guesses cannot all pass the check
//! before any failure is counted.
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

/// Entries of one key (when, and an id a reservation can take back), and
/// the window they count in (so that a sweep keeps a long-window bucket that
/// a short-window one would call stale).
type Bucket = (Duration, VecDeque<(Instant, u64)>);

/// Checks a Redis bucket and, if there is room, adds the entry in the same
/// step: `{1}` when added, `{0, oldest score}` when full.
const RESERVE: &str = r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], 0, ARGV[1] - ARGV[2])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, oldest[2]}
end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {1}
";

/// An entry taken from a bucket before the work it guards (a password
/// check): kept when that work fails, given back with
/// [`Throttle::release`] when it succeeds.
pub struct Reservation {
    key: String,
    id: u64,
    member: String,
}

#[derive(Default)]
pub struct Throttle {
    buckets: Mutex<HashMap<String, Bucket>>,
    redis: Option<Redis>,
}

/// `roster_rate_limited_total{kind}`: the bucket's kind is its key's
/// prefix (`fail`, `user`, `name`, `req`, `pw`, `signup`, `cred`), a set the code
/// fixes, so no request adds a series.
fn count_refusal(key: &str) {
    let kind = match key.split(':').next().unwrap_or_default() {
        "fail" => "login_address",
        "user" | "name" => "login_name",
        "req" => "auth_requests",
        "pw" => "password_change",
        "signup" => "signup",
        "cred" => "bad_credentials",
        _ => "other",
    };
    metrics::counter!("roster_rate_limited_total", "kind" => kind).increment(1);
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
        self.check_inner(key, limit, window)
            .await
            .inspect_err(|_| count_refusal(key))
    }

    async fn check_inner(&self, key: &str, limit: u32, window: Duration) -> Result<(), Error> {
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
        full_until(q, now, limit, window)
    }

    /// Takes one entry of `key` if the bucket has room, in one step (so that
    /// concurrent attempts cannot all pass a check before any is counted);
    /// refuses like [`check`](Self::check) when it is full.
    pub async fn reserve(
        &self,
        key: &str,
        limit: u32,
        window: Duration,
    ) -> Result<Reservation, Error> {
        self.reserve_inner(key, limit, window)
            .await
            .inspect_err(|_| count_refusal(key))
    }

    async fn reserve_inner(
        &self,
        key: &str,
        limit: u32,
        window: Duration,
    ) -> Result<Reservation, Error> {
        let id = self.reserve_local(key, limit, window)?;
        let member = format!("{}-{}", now_ms(), uuid::Uuid::new_v4().simple());
        let taken = Reservation {
            key: key.to_owned(),
            id,
            member: member.clone(),
        };
        let Some(redis) = &self.redis else {
            return Ok(taken);
        };
        let r: redis::RedisResult<Vec<f64>> = async {
            let mut c = redis.conn().await?;
            redis::Script::new(RESERVE)
                .key(Self::rkey(redis, key))
                .arg(now_ms())
                .arg(window.as_millis().max(1) as u64)
                .arg(limit)
                .arg(&member)
                .invoke_async(&mut c)
                .await
        }
        .await;
        match r {
            Ok(v) if v.first() == Some(&1.0) => Ok(taken),
            Ok(v) => {
                self.release_local(&taken);
                let oldest = v.get(1).copied().unwrap_or_else(now_ms);
                let age = Duration::from_millis((now_ms() - oldest).max(0.0) as u64);
                Err(refusal(window.saturating_sub(age)))
            }
            Err(e) => {
                redis.broken();
                tracing::warn!(error = %e, "redis unreachable: rate limits fall back to this node's buckets");
                Ok(taken)
            }
        }
    }

    /// Gives a reserved entry back: the work it guarded succeeded.
    pub async fn release(&self, taken: Reservation) {
        self.release_local(&taken);
        if let Some(redis) = &self.redis {
            let r: redis::RedisResult<()> = async {
                let mut c = redis.conn().await?;
                redis::cmd("ZREM")
                    .arg(Self::rkey(redis, &taken.key))
                    .arg(&taken.member)
                    .query_async(&mut c)
                    .await
            }
            .await;
            if let Err(e) = r {
                redis.broken();
                tracing::warn!(error = %e, "redis unreachable: a reservation stays until its window ends");
            }
        }
    }

    fn reserve_local(&self, key: &str, limit: u32, window: Duration) -> Result<u64, Error> {
        let now = Instant::now();
        let mut b = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (w, q) = b
            .entry(key.to_owned())
            .or_insert_with(|| (window, VecDeque::new()));
        *w = (*w).max(window);
        full_until(q, now, limit, window)?;
        q.push_back((now, id));
        Ok(id)
    }

    fn release_local(&self, taken: &Reservation) {
        let mut b = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, q)) = b.get_mut(&taken.key) {
            q.retain(|(_, id)| *id != taken.id);
        }
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
            b.retain(|_, (w, q)| q.back().is_some_and(|(t, _)| now.duration_since(*t) < *w));
        }
        let (w, q) = b
            .entry(key.to_owned())
            .or_insert_with(|| (window, VecDeque::new()));
        *w = (*w).max(window);
        q.push_back((
            now,
            NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        ));
    }

    /// Whether this node has counted an entry for `key` within `window`: a
    /// memory read, for guards that must cost nothing on the happy path.
    pub fn seen_here(&self, key: &str, window: Duration) -> bool {
        let b = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        b.get(key)
            .and_then(|(_, q)| q.back())
            .is_some_and(|(t, _)| t.elapsed() < window)
    }

    /// Checks and counts in one step (a request rate).
    pub async fn hit(&self, key: &str, limit: u32, window: Duration) -> Result<(), Error> {
        self.check(key, limit, window).await?;
        self.record(key, window).await;
        Ok(())
    }
}

/// Ids of local entries, so that a reservation takes back its own.
static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Drops the entries of `q` older than `window`; refuses, with the wait
/// until its oldest entry leaves, when `limit` remain.
fn full_until(
    q: &mut VecDeque<(Instant, u64)>,
    now: Instant,
    limit: u32,
    window: Duration,
) -> Result<(), Error> {
    while q
        .front()
        .is_some_and(|(t, _)| now.duration_since(*t) >= window)
    {
        q.pop_front();
    }
    if q.len() < limit as usize {
        return Ok(());
    }
    let oldest = q.front().map_or(now, |(t, _)| *t);
    Err(refusal(window.saturating_sub(now.duration_since(oldest))))
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
    fn a_reservation_counts_at_once_and_a_release_gives_it_back() {
        let t = Throttle::default();
        let w = Duration::from_secs(60);
        let first = t.reserve_local("k", 2, w).unwrap();
        t.reserve_local("k", 2, w).unwrap();
        assert!(
            t.reserve_local("k", 2, w).is_err(),
            "full once two are taken"
        );
        t.release_local(&Reservation {
            key: "k".into(),
            id: first,
            member: String::new(),
        });
        assert!(
            t.reserve_local("k", 2, w).is_ok(),
            "the released entry is free again"
        );
        assert!(t.reserve_local("k", 2, w).is_err());
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
