//! Prepared statements: a server-side name plus the parameter and column
//! types the server described.

use std::sync::Arc;

use postgres_types::Type;

use crate::api::row::Column;

#[derive(Debug)]
pub(crate) struct StatementInner {
    pub(crate) name: String,
    pub(crate) sql: String,
    pub(crate) params: Vec<Type>,
    pub(crate) columns: Arc<[Column]>,
}

/// A statement prepared on one connection. Cheap to clone.
///
/// Accepted wherever SQL text is (`query_params`, `execute_params`, …) on the
/// connection that prepared it; executing it sends no Parse.
#[derive(Debug, Clone)]
pub struct Statement(pub(crate) Arc<StatementInner>);

impl Statement {
    /// The SQL text.
    pub fn sql(&self) -> &str {
        &self.0.sql
    }
    /// The parameter types the server inferred.
    pub fn params(&self) -> &[Type] {
        &self.0.params
    }
    /// The result columns (empty for statements that return no rows).
    pub fn columns(&self) -> &[Column] {
        &self.0.columns
    }
}

/// What `query_params` and friends accept as the statement: SQL text or a
/// prepared [`Statement`].
pub trait ToStatement: sealed::Sealed + Sync {
    #[doc(hidden)]
    fn as_statement(&self) -> StatementRef<'_>;
}

#[doc(hidden)]
pub enum StatementRef<'a> {
    Sql(&'a str),
    Prepared(&'a Statement),
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for str {}
    impl Sealed for String {}
    impl Sealed for super::Statement {}
}

impl ToStatement for str {
    fn as_statement(&self) -> StatementRef<'_> {
        StatementRef::Sql(self)
    }
}

impl ToStatement for String {
    fn as_statement(&self) -> StatementRef<'_> {
        StatementRef::Sql(self)
    }
}

impl ToStatement for Statement {
    fn as_statement(&self) -> StatementRef<'_> {
        StatementRef::Prepared(self)
    }
}

/// The handle's memo of statements it has used, so a repeated
/// `query_params(sql, …)` goes straight to Bind/Execute instead of first
/// asking the actor for the statement (one mailbox round trip per call).
///
/// The actor stays the owner of server-side statements: it closes an evicted
/// statement only once no handle holds it, and this memo holds what it
/// memoizes. Bounded by the cache size; when full it starts over.
#[derive(Debug, Default)]
pub(crate) struct StatementMemo {
    capacity: usize,
    statements: std::sync::Mutex<MemoMap>,
}

/// Looked up on every query by SQL text, so hashed with foldhash (randomly
/// seeded) rather than SipHash, several times cheaper for short keys; the
/// map never holds more than the statement cache's size.
type MemoMap = std::collections::HashMap<String, Statement, foldhash::fast::RandomState>;

impl StatementMemo {
    pub(crate) fn new(capacity: usize) -> Self {
        StatementMemo {
            capacity,
            statements: Default::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoMap> {
        crate::sync::lock(&self.statements)
    }

    pub(crate) fn get(&self, sql: &str) -> Option<Statement> {
        if self.capacity == 0 {
            return None;
        }
        self.lock().get(sql).cloned()
    }

    /// Drops `stale` if it is what is memoized for its SQL.
    pub(crate) fn invalidate(&self, stale: &Statement) {
        let mut statements = self.lock();
        if statements
            .get(stale.sql())
            .is_some_and(|s| Arc::ptr_eq(&s.0, &stale.0))
        {
            statements.remove(stale.sql());
        }
    }

    /// Forgets everything (the server dropped every statement).
    #[cfg_attr(not(feature = "pool"), allow(dead_code))]
    pub(crate) fn clear(&self) {
        self.lock().clear();
    }

    pub(crate) fn insert(&self, statement: &Statement) {
        if self.capacity == 0 {
            return;
        }
        let mut statements = self.lock();
        if statements.len() >= self.capacity && !statements.contains_key(statement.sql()) {
            statements.clear();
        }
        statements.insert(statement.sql().to_string(), statement.clone());
    }
}

/// Statement cache counters; see
/// [`Connection::statement_cache_stats`](crate::Connection::statement_cache_stats).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct StatementCacheStats {
    /// Lookups answered without a Parse.
    pub hits: u64,
    /// Statements that had to be prepared (described by the server). With
    /// `statement_cache_size(0)` every execution is one, and parses its
    /// unnamed statement once more with its bind.
    pub misses: u64,
}
