//! Transactions and savepoints on a shared, pipelined connection.
//!
//! A transaction holds the connection actor's lease (DESIGN.md): from
//! `BEGIN` to `COMMIT`/`ROLLBACK` only its requests reach the socket, and
//! other handles' requests wait in order, so no lock is needed and nobody
//! else's statement can land inside it. Its handle is a view of the
//! connection that tags every request with the lease; the actor refuses a
//! tagged request once the lease has ended, so a stray clone can never run
//! outside the transaction it was written for.
//!
//! Dropping cannot await, so a transaction dropped without `commit` or
//! `rollback` queues its ROLLBACK (and the lease's release) by message; the
//! actor sends it before anything that was waiting.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use postgres_types::ToSql;

use crate::api::response::collect;
use crate::api::retry::retry_transaction;
use crate::protocol::frontend;
use crate::protocol::sql::{begin, quote_identifier, BeginOptions};
use crate::{
    Connection, CursorStream, IsolationLevel, PgError, QueryResult, RetryPolicy, Row, RowStream,
    Statement, ToStatement,
};

/// An open transaction, or a savepoint inside one.
///
/// `Clone + Send + Sync`; methods take `&self`, and requests from many
/// futures (and clones) pipeline in order, as on a [`Connection`]. It holds
/// the connection's lease: until it ends, other handles' requests wait.
/// That includes the task that opened it: while it is open, run statements
/// through the transaction, not through the connection, or they wait for
/// it to end.
///
/// [`commit`](Transaction::commit) and [`rollback`](Transaction::rollback)
/// end it. When the last clone is dropped without either, it is rolled
/// back. A savepoint ([`savepoint`](Transaction::savepoint)) is a
/// `Transaction` too: its commit is `RELEASE SAVEPOINT`, its rollback (and
/// its drop) `ROLLBACK TO SAVEPOINT`, leaving the enclosing transaction
/// open.
///
/// ```no_run
/// # async fn demo(conn: &wasi_pg_client::Connection) -> Result<(), wasi_pg_client::PgError> {
/// let txn = conn.transaction().await?;
/// txn.execute("UPDATE accounts SET balance = balance - 10 WHERE id = $1", &[&1i32]).await?;
/// let sp = txn.savepoint("bonus").await?;
/// if sp.execute("UPDATE accounts SET bonus = bonus + 1 WHERE id = $1", &[&1i32]).await.is_err() {
///     sp.rollback().await?; // only the bonus is undone
/// } else {
///     sp.commit().await?;
/// }
/// txn.commit().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Transaction {
    /// The connection as the lease holder sees it.
    conn: Connection,
    scope: Arc<Scope>,
}

/// What the clones of one transaction or savepoint share.
struct Scope {
    conn: Connection,
    lease: u64,
    /// `None` for the transaction itself; the quoted name of a savepoint.
    savepoint: Option<String>,
    /// Keeps the enclosing transaction open while a savepoint lives.
    _parent: Option<Arc<Scope>>,
    /// COMMIT or ROLLBACK (or RELEASE/ROLLBACK TO) has been started.
    ended: AtomicBool,
    /// Numbers auto-named savepoints, shared down the nesting.
    savepoint_counter: Arc<AtomicU32>,
    /// Which attempt of a retry policy this is (1 without one).
    attempt: u32,
}

impl Scope {
    /// The SQL that undoes this scope.
    fn rollback_sql(&self) -> String {
        match &self.savepoint {
            None => "ROLLBACK".into(),
            Some(name) => format!("ROLLBACK TO SAVEPOINT {name}; RELEASE SAVEPOINT {name}"),
        }
    }

    /// Queues the rollback without waiting (and, for the transaction
    /// itself, the lease's release behind it).
    fn abandon(&self) {
        let rollback = frontend::own_query(&self.rollback_sql()).ok();
        match (&self.savepoint, rollback) {
            (None, rollback) => self.conn.release_lease(self.lease, rollback),
            (Some(_), Some(bytes)) => self.conn.send_detached(self.lease, bytes),
            (Some(_), None) => {}
        }
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        if !self.ended.swap(true, Ordering::SeqCst) {
            self.abandon();
        }
    }
}

/// Runs while COMMIT/ROLLBACK is on its way: if the caller gives up before
/// it was queued, the scope is rolled back by message. Once it was, there is
/// nothing left to do: a transaction's lease ended with it.
struct Ending<'a> {
    scope: &'a Scope,
    queued: bool,
}

impl Drop for Ending<'_> {
    fn drop(&mut self) {
        if !self.queued {
            self.scope.abandon();
        }
    }
}

impl std::fmt::Debug for Transaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("savepoint", &self.scope.savepoint)
            .field("ended", &self.scope.ended.load(Ordering::Relaxed))
            .finish()
    }
}

/// Options for [`Connection::build_transaction`]: isolation level, read
/// only, deferrable. Unset options take the server's defaults.
///
/// ```no_run
/// # async fn demo(conn: &wasi_pg_client::Connection) -> Result<(), wasi_pg_client::PgError> {
/// use wasi_pg_client::IsolationLevel;
/// let txn = conn
///     .build_transaction()
///     .isolation_level(IsolationLevel::Serializable)
///     .read_only(true)
///     .start()
///     .await?;
/// # txn.commit().await }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a TransactionBuilder does nothing until `start` is awaited"]
pub struct TransactionBuilder {
    conn: Connection,
    options: BeginOptions,
}

impl TransactionBuilder {
    pub(crate) fn new(conn: &Connection) -> Self {
        TransactionBuilder {
            conn: conn.clone(),
            options: BeginOptions::default(),
        }
    }

    /// The isolation level (`BEGIN ISOLATION LEVEL …`).
    pub fn isolation_level(mut self, level: IsolationLevel) -> Self {
        self.options.isolation = Some(level);
        self
    }

    /// `READ ONLY` (true) or `READ WRITE` (false).
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.options.read_only = Some(read_only);
        self
    }

    /// `DEFERRABLE` (true) or `NOT DEFERRABLE` (false); it only matters for
    /// serializable read-only transactions.
    pub fn deferrable(mut self, deferrable: bool) -> Self {
        self.options.deferrable = Some(deferrable);
        self
    }

    /// Takes the connection's lease (waiting for requests and transactions
    /// queued before it) and sends `BEGIN`.
    pub async fn start(self) -> Result<Transaction, PgError> {
        Transaction::begin(&self.conn, &self.options, 1).await
    }

    /// [`Connection::with_transaction_retry`] with these options: the usual
    /// way to run serializable transactions.
    ///
    /// ```no_run
    /// # async fn demo(conn: &wasi_pg_client::Connection) -> Result<(), wasi_pg_client::PgError> {
    /// use wasi_pg_client::{IsolationLevel, RetryPolicy};
    /// let total: i64 = conn
    ///     .build_transaction()
    ///     .isolation_level(IsolationLevel::Serializable)
    ///     .with_retry(&RetryPolicy::default(), |txn| async move {
    ///         txn.query_one("SELECT sum(balance)::int8 FROM accounts", &[]).await?.get(0)
    ///     })
    ///     .await?;
    /// # let _ = total; Ok(()) }
    /// ```
    pub async fn with_retry<F, Fut, R>(self, policy: &RetryPolicy, work: F) -> Result<R, PgError>
    where
        F: FnMut(Transaction) -> Fut,
        Fut: std::future::Future<Output = Result<R, PgError>>,
    {
        retry_transaction(&self.conn, &self.options, policy, work).await
    }
}

impl Transaction {
    pub(crate) async fn begin(
        conn: &Connection,
        options: &BeginOptions,
        attempt: u32,
    ) -> Result<Transaction, PgError> {
        if conn.current_lease().is_some() {
            return Err(PgError::Transaction(
                "a transaction cannot begin inside another; use a savepoint".into(),
            ));
        }
        let bytes = frontend::own_query(&begin(options))?;
        // BEGIN travels with the lease: granted and sent in one step.
        let (lease, began) = conn.lease_opening(bytes).await?;
        let view = conn.leased(lease);
        // The scope exists from the grant on, so whatever happens next (an
        // error, the caller giving up) ends in a ROLLBACK and a release.
        let scope = Arc::new(Scope {
            conn: view.clone(),
            lease,
            savepoint: None,
            _parent: None,
            ended: AtomicBool::new(false),
            savepoint_counter: Arc::new(AtomicU32::new(0)),
            attempt,
        });
        view.timed(collect(began, None)).await?;
        Ok(Transaction { conn: view, scope })
    }

    /// Opens a savepoint named `name` (quoted as an identifier, so any
    /// string is safe) inside this transaction or savepoint.
    pub async fn savepoint(&self, name: &str) -> Result<Transaction, PgError> {
        self.check_open()?;
        let quoted = quote_identifier(name);
        let scope = Arc::new(Scope {
            conn: self.conn.clone(),
            lease: self.scope.lease,
            savepoint: Some(quoted.clone()),
            _parent: Some(self.scope.clone()),
            // Nothing to undo until SAVEPOINT is queued.
            ended: AtomicBool::new(true),
            savepoint_counter: self.scope.savepoint_counter.clone(),
            attempt: self.scope.attempt,
        });
        let bytes = frontend::own_query(&format!("SAVEPOINT {quoted}"))?;
        let responses = self.conn.request(bytes).await?;
        scope.ended.store(false, Ordering::SeqCst);
        if let Err(e) = collect(responses, None).await {
            // No savepoint was made: nothing to roll back to.
            scope.ended.store(true, Ordering::SeqCst);
            return Err(e);
        }
        Ok(Transaction {
            conn: self.conn.clone(),
            scope,
        })
    }

    /// A nested transaction: a savepoint with a generated name.
    pub async fn transaction(&self) -> Result<Transaction, PgError> {
        let n = self.scope.savepoint_counter.fetch_add(1, Ordering::Relaxed) + 1;
        self.savepoint(&format!("wpg_savepoint_{n}")).await
    }

    /// Commits (`COMMIT`, or `RELEASE SAVEPOINT` for a savepoint).
    ///
    /// A transaction that an earlier error aborted cannot commit: the server
    /// rolls it back instead, and this returns `PgError::Transaction` saying
    /// so (never a silent success).
    pub async fn commit(self) -> Result<(), PgError> {
        let sql = match &self.scope.savepoint {
            None => "COMMIT".to_string(),
            Some(name) => format!("RELEASE SAVEPOINT {name}"),
        };
        let result = self.end(&sql).await?;
        if self.scope.savepoint.is_none() && result.command_tag() == Some("ROLLBACK") {
            return Err(PgError::Transaction(
                "COMMIT found the transaction aborted by an earlier error; the server rolled \
                 it back"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Rolls back (`ROLLBACK`, or `ROLLBACK TO SAVEPOINT` and `RELEASE
    /// SAVEPOINT` for a savepoint).
    pub async fn rollback(self) -> Result<(), PgError> {
        let sql = self.scope.rollback_sql();
        self.end(&sql).await.map(drop)
    }

    async fn end(&self, sql: &str) -> Result<QueryResult, PgError> {
        if self.scope.ended.swap(true, Ordering::SeqCst) {
            return Err(already_ended());
        }
        let mut ending = Ending {
            scope: &self.scope,
            queued: false,
        };
        let bytes = frontend::own_query(sql)?;
        let responses = if self.scope.savepoint.is_none() {
            self.conn
                .request_ending_lease(bytes, self.scope.lease)
                .await?
        } else {
            self.conn.request(bytes).await?
        };
        ending.queued = true;
        collect(responses, None).await
    }

    /// Which attempt this is, counting from 1, when the transaction was
    /// started by [`Connection::with_transaction_retry`]; 1 otherwise.
    pub fn attempt(&self) -> u32 {
        self.scope.attempt
    }

    /// The connection as this transaction sees it (under its lease).
    pub(crate) fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Whether this is a savepoint rather than the transaction itself.
    pub fn is_savepoint(&self) -> bool {
        self.scope.savepoint.is_some()
    }

    /// Sets a run-time parameter until the transaction ends (`SET LOCAL`,
    /// through `set_config(name, value, true)`: the value is a bound
    /// parameter, never spliced into SQL).
    pub async fn set_local(&self, name: &str, value: &str) -> Result<(), PgError> {
        self.check_open()?;
        self.conn.set_config(name, value, true).await
    }

    fn check_open(&self) -> Result<(), PgError> {
        if self.scope.ended.load(Ordering::SeqCst) {
            return Err(already_ended());
        }
        Ok(())
    }

    /// Runs SQL without parameters and returns its rows; see
    /// [`Connection::query`].
    pub async fn query(&self, sql: &str) -> Result<QueryResult, PgError> {
        self.check_open()?;
        self.conn.query(sql).await
    }

    /// Runs SQL through the simple query protocol; see
    /// [`Connection::simple_query`].
    pub async fn simple_query(&self, sql: &str) -> Result<QueryResult, PgError> {
        self.check_open()?;
        self.conn.simple_query(sql).await
    }

    /// Prepares `sql` (or takes it from the connection's statement cache).
    pub async fn prepare(&self, sql: &str) -> Result<Statement, PgError> {
        self.check_open()?;
        self.conn.prepare(sql).await
    }

    /// Runs a statement with parameters; see [`Connection::query_params`].
    pub async fn query_params<S: ToStatement + ?Sized>(
        &self,
        statement: &S,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<QueryResult, PgError> {
        self.check_open()?;
        self.conn.query_params(statement, params).await
    }

    /// Runs a statement with parameters; see [`Connection::execute_params`].
    pub async fn execute_params<S: ToStatement + ?Sized>(
        &self,
        statement: &S,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<QueryResult, PgError> {
        self.check_open()?;
        self.conn.execute_params(statement, params).await
    }

    /// Runs a statement and returns how many rows it affected; see
    /// [`Connection::execute`].
    pub async fn execute<S: ToStatement + ?Sized>(
        &self,
        statement: &S,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, PgError> {
        self.check_open()?;
        self.conn.execute(statement, params).await
    }

    /// Runs a statement that must return exactly one row.
    pub async fn query_one<S: ToStatement + ?Sized>(
        &self,
        statement: &S,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, PgError> {
        self.check_open()?;
        self.conn.query_one(statement, params).await
    }

    /// Runs a statement that returns at most one row.
    pub async fn query_opt<S: ToStatement + ?Sized>(
        &self,
        statement: &S,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, PgError> {
        self.check_open()?;
        self.conn.query_opt(statement, params).await
    }

    /// Streams the rows of SQL without parameters; see
    /// [`Connection::query_stream`].
    pub async fn query_stream(&self, sql: &str) -> Result<RowStream, PgError> {
        self.check_open()?;
        self.conn.query_stream(sql).await
    }

    /// Streams a statement's rows; see [`Connection::query_params_stream`].
    pub async fn query_params_stream<S: ToStatement + ?Sized>(
        &self,
        statement: &S,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<RowStream, PgError> {
        self.check_open()?;
        self.conn.query_params_stream(statement, params).await
    }

    /// Streams a statement's rows through a portal inside this transaction,
    /// `fetch_size` per round trip; see [`Connection::query_cursor_stream`].
    pub async fn query_cursor_stream<S: ToStatement + ?Sized>(
        &self,
        statement: &S,
        params: &[&(dyn ToSql + Sync)],
        fetch_size: usize,
    ) -> Result<CursorStream, PgError> {
        self.check_open()?;
        self.conn
            .query_cursor_stream(statement, params, fetch_size)
            .await
    }
}

impl Connection {
    /// Begins a transaction (`BEGIN`) with the server's default options;
    /// see [`Transaction`] and [`build_transaction`](Connection::build_transaction).
    ///
    /// It waits for requests queued before it, then holds the connection's
    /// lease until it ends: other handles' requests wait for it.
    pub async fn transaction(&self) -> Result<Transaction, PgError> {
        Transaction::begin(self, &BeginOptions::default(), 1).await
    }

    /// A transaction with options (isolation level, read only, deferrable).
    pub fn build_transaction(&self) -> TransactionBuilder {
        TransactionBuilder::new(self)
    }

    /// Runs `work` in a transaction: commits when it returns `Ok` (and
    /// returns its value), rolls back when it returns `Err` (and returns
    /// that error). The closure gets its own [`Transaction`] handle; it may
    /// drop it freely, since only this call commits or rolls back.
    ///
    /// ```no_run
    /// # async fn demo(conn: &wasi_pg_client::Connection) -> Result<(), wasi_pg_client::PgError> {
    /// let (amount, from, to) = (100i64, 1i32, 2i32);
    /// conn.with_transaction(|txn| async move {
    ///     txn.execute_params(
    ///         "UPDATE accounts SET balance = balance - $1 WHERE id = $2",
    ///         &[&amount, &from],
    ///     ).await?;
    ///     txn.execute_params(
    ///         "UPDATE accounts SET balance = balance + $1 WHERE id = $2",
    ///         &[&amount, &to],
    ///     ).await?;
    ///     Ok(())
    /// }).await?;
    /// # Ok(()) }
    /// ```
    pub async fn with_transaction<F, Fut, R>(&self, work: F) -> Result<R, PgError>
    where
        F: FnOnce(Transaction) -> Fut,
        Fut: std::future::Future<Output = Result<R, PgError>>,
    {
        let txn = self.transaction().await?;
        match work(txn.clone()).await {
            Ok(value) => txn.commit().await.map(|()| value),
            Err(e) => {
                if let Err(_rollback) = txn.rollback().await {
                    #[cfg(feature = "tracing")]
                    tracing::debug!(error = %_rollback, "rolling back after an error failed");
                }
                Err(e)
            }
        }
    }
}

fn already_ended() -> PgError {
    PgError::Transaction("this transaction (or savepoint) has already ended".into())
}
