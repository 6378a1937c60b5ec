//! `Pool` and `PoolConfig`: the handle to the pool actor and its settings.
//!
//! Two ways to use a pooled connection, because a [`Connection`] can be
//! pipelined by many tasks at once:
//!
//! - [`Pool::acquire`] lends one connection to one caller
//!   ([`PooledConnection`]): for transactions, session settings, COPY,
//!   LISTEN, or anything that holds the connection for a while. It is reset
//!   before the next caller gets it.
//! - [`Pool::get_shared`] gives a connection that other callers use at the
//!   same time ([`SharedConnection`]), the least used one: for independent
//!   statements, which then share round trips. A transaction on it still
//!   works (it holds the connection's lease, and the others wait), but it
//!   makes every sharer wait, so use `acquire` for those.

mod guard;

use std::sync::Arc;
use std::time::Duration;

use crate::actors::pool::{acquire_timed_out, Lending, PoolCore, ACQUIRING};
use crate::actors::rt;
use crate::{Config, Connection, PgError};

pub use guard::{PooledConnection, SharedConnection};

/// How a [`Pool`] opens, lends, checks and retires connections.
///
/// ```no_run
/// # async fn demo() -> Result<(), wasi_pg_client::PgError> {
/// use std::time::Duration;
/// use wasi_pg_client::Config;
/// use wasi_pg_client::pool::{Pool, PoolConfig};
///
/// let config = Config::from_uri("postgresql://app:secret@localhost/shop?sslmode=disable")?;
/// let pool = Pool::new(
///     PoolConfig::default()
///         .connection(config)
///         .max_size(8)
///         .min_idle(2)
///         .acquire_timeout(Duration::from_secs(5)),
/// )
/// .await?;
/// let conn = pool.acquire().await?;
/// conn.execute("UPDATE stock SET n = n - 1 WHERE id = $1", &[&7i32]).await?;
/// conn.release().await;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PoolConfig {
    connection: Option<Config>,
    max_size: usize,
    min_idle: usize,
    acquire_timeout: Duration,
    max_lifetime: Option<Duration>,
    idle_timeout: Option<Duration>,
    test_on_acquire: bool,
    test_after_idle: Duration,
    discard_all_on_release: bool,
    sharers_per_connection: usize,
}

impl Default for PoolConfig {
    /// No connection settings yet (required), at most 10 connections, none
    /// kept open when unused, 30 s to acquire, connections retired after
    /// about 30 minutes and closed after 10 idle, a health check before
    /// lending one that was idle for a second or more, no `DISCARD ALL`.
    fn default() -> Self {
        PoolConfig {
            connection: None,
            max_size: 10,
            min_idle: 0,
            acquire_timeout: Duration::from_secs(30),
            max_lifetime: Some(Duration::from_secs(30 * 60)),
            idle_timeout: Some(Duration::from_secs(10 * 60)),
            test_on_acquire: true,
            test_after_idle: Duration::from_secs(1),
            discard_all_on_release: false,
            sharers_per_connection: 8,
        }
    }
}

impl PoolConfig {
    /// How to connect (required).
    pub fn connection(mut self, config: Config) -> Self {
        self.connection = Some(config);
        self
    }

    /// The most connections open at once, lent or idle (at least 1).
    pub fn max_size(mut self, max_size: usize) -> Self {
        self.max_size = max_size;
        self
    }

    /// How many idle connections to keep open, reopening them in the
    /// background when they close (at most `max_size`).
    pub fn min_idle(mut self, min_idle: usize) -> Self {
        self.min_idle = min_idle;
        self
    }

    /// How long [`Pool::acquire`] and [`Pool::get_shared`] wait for a
    /// connection before failing with `PgError::Timeout`.
    pub fn acquire_timeout(mut self, limit: Duration) -> Self {
        self.acquire_timeout = limit;
        self
    }

    /// Close a connection once it is this old (less a random part of up to
    /// an eighth, so connections opened together do not all close
    /// together), when it is next idle. `None`: never.
    pub fn max_lifetime(mut self, lifetime: impl Into<Option<Duration>>) -> Self {
        self.max_lifetime = lifetime.into();
        self
    }

    /// Close a connection idle this long (while more than `min_idle` are
    /// idle). `None`: never.
    pub fn idle_timeout(mut self, limit: impl Into<Option<Duration>>) -> Self {
        self.idle_timeout = limit.into();
        self
    }

    /// Before lending a connection that was idle for `test_after_idle` or
    /// longer, check it with an empty query; a dead one is closed and
    /// another is tried. Default on.
    pub fn test_on_acquire(mut self, test: bool) -> Self {
        self.test_on_acquire = test;
        self
    }

    /// How long a connection must have been idle to be checked when
    /// `test_on_acquire` is on (default 1 s; zero checks every time).
    pub fn test_after_idle(mut self, idle: Duration) -> Self {
        self.test_after_idle = idle;
        self
    }

    /// Run `DISCARD ALL` when a connection comes back, so the next caller
    /// gets a fresh session: no temporary tables, session settings,
    /// listened channels, advisory locks or prepared statements (the
    /// statement cache starts over). An open transaction is always rolled
    /// back, with or without this. Default off.
    pub fn discard_all_on_release(mut self, discard: bool) -> Self {
        self.discard_all_on_release = discard;
        self
    }

    /// How many callers of [`Pool::get_shared`] one connection takes
    /// before another connection is brought into shared use (default 8).
    /// Sharers pipeline their statements on one socket, which saves round
    /// trips and server wake-ups; more connections let the server work on
    /// more statements at once. Lower it for slow statements, raise it for
    /// many quick ones.
    pub fn sharers_per_connection(mut self, sharers: usize) -> Self {
        self.sharers_per_connection = sharers;
        self
    }

    fn settings(self) -> Result<Settings, PgError> {
        let connection = self.connection.ok_or_else(|| {
            PgError::Config("the pool has no connection settings (PoolConfig::connection)".into())
        })?;
        if self.max_size == 0 {
            return Err(PgError::Config(
                "a pool's max_size must be at least 1".into(),
            ));
        }
        if self.min_idle > self.max_size {
            return Err(PgError::Config(format!(
                "a pool's min_idle ({}) cannot exceed its max_size ({})",
                self.min_idle, self.max_size
            )));
        }
        if !rt::HAS_RUNTIME {
            return Err(PgError::Config(
                "the pool needs a runtime: enable the `tokio-transport` feature".into(),
            ));
        }
        Ok(Settings {
            connection: Arc::new(connection),
            max_size: self.max_size,
            min_idle: self.min_idle,
            acquire_timeout: self.acquire_timeout,
            max_lifetime: self.max_lifetime,
            idle_timeout: self.idle_timeout,
            test_on_acquire: self.test_on_acquire,
            test_after_idle: self.test_after_idle,
            discard_all_on_release: self.discard_all_on_release,
            sharers_per_connection: self.sharers_per_connection.max(1),
        })
    }
}

/// A checked [`PoolConfig`], as the actor and the guards use it.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) connection: Arc<Config>,
    pub(crate) max_size: usize,
    pub(crate) min_idle: usize,
    pub(crate) acquire_timeout: Duration,
    pub(crate) max_lifetime: Option<Duration>,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) test_on_acquire: bool,
    pub(crate) test_after_idle: Duration,
    pub(crate) discard_all_on_release: bool,
    pub(crate) sharers_per_connection: usize,
}

/// A snapshot of a pool's connections and waiters ([`Pool::status`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct PoolStatus {
    /// Connections open or being opened.
    pub size: usize,
    /// Connections waiting to be used.
    pub idle: usize,
    /// Connections lent to one caller each ([`Pool::acquire`]).
    pub in_use: usize,
    /// Connections lent to several callers at once ([`Pool::get_shared`]).
    pub shared: usize,
    /// Callers waiting for a connection.
    pub waiters: usize,
    /// The configured maximum.
    pub max_size: usize,
    /// Whether [`Pool::close`] was called.
    pub closed: bool,
}

/// A pool of connections beside the connection actors.
///
/// `Clone + Send + Sync`: clones are handles to the same pool. Waiting
/// callers are served first come, first served. The pool ends when its last
/// handle and its last lent connection are gone, closing what it holds.
#[derive(Clone)]
pub struct Pool {
    core: Arc<PoolCore>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("status", &self.status())
            .finish()
    }
}

impl Pool {
    /// Checks the settings, opens one connection (so a wrong password or
    /// an unreachable server fails here, not at the first `acquire`), and
    /// starts the pool; it opens up to `min_idle` more in the background.
    pub async fn new(config: PoolConfig) -> Result<Pool, PgError> {
        let settings = config.settings()?;
        let first = Connection::connect(&settings.connection).await?;
        Pool::start(settings, vec![first])
    }

    /// Starts the pool without connecting: connections are opened when
    /// first needed (and `min_idle` of them in the background), so a server
    /// that is not up yet is no error here. Call it inside the async
    /// runtime, where the pool's tasks run: natively, outside a tokio
    /// runtime it returns `PgError::Config`.
    pub fn new_lazy(config: PoolConfig) -> Result<Pool, PgError> {
        Pool::start(config.settings()?, Vec::new())
    }

    fn start(settings: Settings, initial: Vec<Connection>) -> Result<Pool, PgError> {
        Ok(Pool {
            core: PoolCore::start(settings, initial)?,
        })
    }

    /// A connection for this caller alone, waiting (first come, first
    /// served) while all `max_size` are in use, at most `acquire_timeout`.
    ///
    /// A connection idle for `test_after_idle` is checked first; a broken
    /// one is never handed out. Give it back with
    /// [`PooledConnection::release`] (or drop it).
    pub async fn acquire(&self) -> Result<PooledConnection, PgError> {
        // The clock starts at the first wait: most calls never wait. A
        // waiter's deadline is kept by the pool's clock task, not by a
        // timer of its own (pool_clock.rs).
        let mut started = None;
        loop {
            let guard = match self.core.acquire(&mut started)? {
                Lending::Now(guard) => guard,
                Lending::Later(answer) => answer.await.map_err(|_| stopped())??,
            };
            if !guard.needs_checkup() {
                return Ok(guard);
            }
            if self.checking(&mut started, guard.checkup()).await?.is_ok() {
                return Ok(guard);
            }
            // It failed its check: the guard is dropped as broken; try the
            // next one.
        }
    }

    /// A connection shared with other callers: the least used of those in
    /// shared use, or an idle one when every shared one is busy, or a busy
    /// one rather than waiting when none is idle (a new one is opened in
    /// the background while the pool has room). Waits only when no
    /// connection exists yet or callers of [`acquire`](Pool::acquire) wait
    /// ahead of it.
    ///
    /// Requests of all sharers are pipelined on one socket. Broken
    /// connections are not handed out; unlike `acquire`, no health query
    /// runs first (a broken one is noticed when its socket closes).
    pub async fn get_shared(&self) -> Result<SharedConnection, PgError> {
        match self.core.share()? {
            Lending::Now(shared) => Ok(shared),
            Lending::Later(answer) => answer.await.map_err(|_| stopped())?,
        }
    }

    /// Runs a lent connection's checkup within what is left of
    /// `acquire_timeout` since `started` (now, if the caller did not wait).
    async fn checking<T>(
        &self,
        started: &mut Option<rt::Instant>,
        checkup: impl std::future::Future<Output = T>,
    ) -> Result<T, PgError> {
        let timeout = self.core.settings.acquire_timeout;
        // A caller that did not wait has the whole timeout.
        let left = match *started {
            Some(started) => timeout.saturating_sub(rt::now().saturating_duration_since(started)),
            None => {
                *started = Some(rt::now());
                timeout
            }
        };
        match rt::timeout(Some(left), ACQUIRING, checkup).await {
            Err(PgError::Timeout(_)) => Err(acquire_timed_out(
                ACQUIRING,
                &self.core.settings,
                self.status().waiters,
            )),
            other => other,
        }
    }

    /// How many connections are open, idle, lent and shared, and how many
    /// callers wait.
    pub fn status(&self) -> PoolStatus {
        self.core.status()
    }

    /// Stops lending (waiting and later callers get `PgError::Closed`),
    /// waits for every lent connection to come back, and closes them all.
    pub async fn close(&self) {
        let _ = self.core.close().await;
    }
}

fn stopped() -> PgError {
    PgError::Closed("the pool has stopped".into())
}

/// The API's promise (API.md) for the pool: `Pool` is a `Clone + Send +
/// Sync` handle, the guards are `Send`, and every future is `Send`, natively
/// and on wasm32-wasip2. Never called; it fails to compile if a change
/// breaks the promise.
#[allow(dead_code)]
fn pool_handles_and_futures_are_send(pool: &Pool, guard: PooledConnection) {
    fn send<T: Send>(_: &T) {}
    fn handle<T: Clone + Send + Sync + 'static>() {}
    handle::<Pool>();
    send(&Pool::new(PoolConfig::default()));
    send(&pool.acquire());
    send(&pool.get_shared());
    send(&pool.close());
    send(&guard.release());
    fn shareable<T: Send + Sync>() {}
    shareable::<PooledConnection>();
    shareable::<SharedConnection>();
}
