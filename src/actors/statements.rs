//! The connection's prepared-statement cache: an LRU keyed by SQL text,
//! owned by the actor (no locks).
//!
//! An evicted statement is closed on the server only once no handle holds
//! it any more, so a caller that just got it from the cache can still run it.

use std::num::NonZeroUsize;
use std::sync::Arc;

use lru::LruCache;

use crate::api::statement::Statement;

pub(crate) struct StatementCache {
    cache: Option<LruCache<String, Statement>>,
    /// Evicted, but possibly still held by a caller.
    evicted: Vec<Statement>,
    counter: u64,
}

impl StatementCache {
    pub(crate) fn new(size: usize) -> Self {
        StatementCache {
            cache: NonZeroUsize::new(size).map(LruCache::new),
            evicted: Vec::new(),
            counter: 0,
        }
    }

    /// Whether statements are cached (and named) at all.
    pub(crate) fn is_enabled(&self) -> bool {
        self.cache.is_some()
    }

    /// A fresh server-side name.
    pub(crate) fn next_name(&mut self) -> String {
        self.counter += 1;
        format!("wpg_s{}", self.counter)
    }

    pub(crate) fn get(&mut self, sql: &str) -> Option<Statement> {
        self.cache.as_mut()?.get(sql).cloned()
    }

    pub(crate) fn insert(&mut self, sql: String, statement: Statement) {
        if let Some(cache) = self.cache.as_mut() {
            if let Some((_, old)) = cache.push(sql, statement) {
                self.evicted.push(old);
            }
        }
    }

    /// Forgets `stale` (the server lost it, or its plan no longer fits), so
    /// the next use prepares `sql` again.
    pub(crate) fn invalidate(&mut self, sql: &str, stale: &Statement) {
        let Some(cache) = self.cache.as_mut() else {
            return;
        };
        if cache.peek(sql).is_some_and(|s| Arc::ptr_eq(&s.0, &stale.0)) {
            if let Some(old) = cache.pop(sql) {
                self.evicted.push(old);
            }
        }
    }

    /// Forgets every statement: the server has already dropped them all
    /// (`DISCARD ALL`), so none needs a Close.
    #[cfg_attr(not(feature = "pool"), allow(dead_code))]
    pub(crate) fn forget_all(&mut self) {
        if let Some(cache) = self.cache.as_mut() {
            cache.clear();
        }
        self.evicted.clear();
    }

    /// Names of evicted statements that nobody holds any more.
    pub(crate) fn take_retired(&mut self) -> Vec<String> {
        if self.evicted.is_empty() {
            return Vec::new();
        }
        let mut retired = Vec::new();
        self.evicted.retain(|s| {
            if Arc::strong_count(&s.0) == 1 {
                retired.push(s.0.name.clone());
                false
            } else {
                true
            }
        });
        retired
    }
}
