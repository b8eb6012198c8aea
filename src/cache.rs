//! Read-through caches for what almost every request reads: the API key
//! that authenticates it and its account's settings.
//!
//! They are exact only while every write passes through this process, so
//! [`crate::app::App`] turns them on for a single node (no Redis) and off
//! when several nodes share the database: there a revocation on one node
//! must stop the key on the others at once, as the API promises.
//!
//! Exact on one node means no stale entry outlives the write that made it
//! stale, even when a read races the write: every invalidation bumps a
//! generation, and a value loaded before the bump is not stored after it.
//! Entries also expire after a while and the map is bounded, so memory
//! stays small whatever callers present.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long an entry lives without being refreshed.
const TTL: Duration = Duration::from_secs(60);
/// At this many entries the map is emptied before the next insert.
const MAX_ENTRIES: usize = 100_000;

pub struct Cache<K, V> {
    inner: Option<Mutex<Inner<K, V>>>,
}

struct Inner<K, V> {
    generation: u64,
    entries: HashMap<K, (V, Instant)>,
}

impl<K: Eq + Hash + Clone, V: Clone> Cache<K, V> {
    /// A cache; a disabled one loads every time and stores nothing.
    pub fn new(enabled: bool) -> Self {
        Self {
            inner: enabled.then(|| {
                Mutex::new(Inner {
                    generation: 0,
                    entries: HashMap::new(),
                })
            }),
        }
    }

    /// The cached value of `key`, or `load`'s — stored when it is `Some`
    /// and nothing was invalidated while it loaded.
    pub async fn get_or_load<E, F>(&self, key: &K, load: F) -> Result<Option<V>, E>
    where
        F: Future<Output = Result<Option<V>, E>>,
    {
        let Some(inner) = &self.inner else {
            return load.await;
        };
        let generation = {
            let mut g = lock(inner);
            if let Some((v, at)) = g.entries.get(key) {
                if at.elapsed() < TTL {
                    return Ok(Some(v.clone()));
                }
                g.entries.remove(key);
            }
            g.generation
        };
        let loaded = load.await?;
        if let Some(v) = &loaded {
            let mut g = lock(inner);
            if g.generation == generation {
                if g.entries.len() >= MAX_ENTRIES {
                    g.entries.clear();
                }
                g.entries.insert(key.clone(), (v.clone(), Instant::now()));
            }
        }
        Ok(loaded)
    }

    /// Forgets `key`, and any value of it being loaded right now.
    pub fn forget(&self, key: &K) {
        if let Some(inner) = &self.inner {
            let mut g = lock(inner);
            g.generation += 1;
            g.entries.remove(key);
        }
    }

    /// Forgets every entry for which `matches` holds.
    pub fn forget_where(&self, matches: impl Fn(&K, &V) -> bool) {
        if let Some(inner) = &self.inner {
            let mut g = lock(inner);
            g.generation += 1;
            g.entries.retain(|k, (v, _)| !matches(k, v));
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_value_is_loaded_once_then_served_from_memory() {
        let cache: Cache<u32, String> = Cache::new(true);
        let first = cache
            .get_or_load(&1, async { Ok::<_, ()>(Some("a".to_owned())) })
            .await;
        assert_eq!(first, Ok(Some("a".to_owned())));
        let second = cache
            .get_or_load(&1, async { Ok::<_, ()>(Some("b".to_owned())) })
            .await;
        assert_eq!(second, Ok(Some("a".to_owned())));
        cache.forget(&1);
        let third = cache
            .get_or_load(&1, async { Ok::<_, ()>(Some("c".to_owned())) })
            .await;
        assert_eq!(third, Ok(Some("c".to_owned())));
    }

    #[tokio::test]
    async fn absent_values_and_errors_are_not_stored() {
        let cache: Cache<u32, u32> = Cache::new(true);
        assert_eq!(
            cache.get_or_load(&1, async { Ok::<_, ()>(None) }).await,
            Ok(None)
        );
        assert_eq!(
            cache
                .get_or_load(&1, async { Err::<Option<u32>, _>(()) })
                .await,
            Err(())
        );
        assert_eq!(
            cache.get_or_load(&1, async { Ok::<_, ()>(Some(7)) }).await,
            Ok(Some(7))
        );
    }

    #[tokio::test]
    async fn a_value_loaded_across_an_invalidation_is_not_kept() {
        let cache: Cache<u32, u32> = Cache::new(true);
        // The load starts, the key is invalidated meanwhile (a write), and
        // the old value the load read must not be cached.
        let stale = cache
            .get_or_load(&1, async {
                cache.forget(&1);
                Ok::<_, ()>(Some(1))
            })
            .await;
        assert_eq!(stale, Ok(Some(1)));
        let fresh = cache.get_or_load(&1, async { Ok::<_, ()>(Some(2)) }).await;
        assert_eq!(fresh, Ok(Some(2)));
    }

    #[tokio::test]
    async fn a_disabled_cache_always_loads() {
        let cache: Cache<u32, u32> = Cache::new(false);
        assert_eq!(
            cache.get_or_load(&1, async { Ok::<_, ()>(Some(1)) }).await,
            Ok(Some(1))
        );
        assert_eq!(
            cache.get_or_load(&1, async { Ok::<_, ()>(Some(2)) }).await,
            Ok(Some(2))
        );
    }

    #[tokio::test]
    async fn forget_where_drops_only_the_matching_entries() {
        let cache: Cache<u32, u32> = Cache::new(true);
        for k in 0..4 {
            cache
                .get_or_load(&k, async move { Ok::<_, ()>(Some(k % 2)) })
                .await
                .unwrap();
        }
        cache.forget_where(|_, v| *v == 1);
        for k in 0..4 {
            let got = cache.get_or_load(&k, async { Ok::<_, ()>(Some(9)) }).await;
            assert_eq!(got, Ok(Some(if k % 2 == 1 { 9 } else { k % 2 })));
        }
    }
}
