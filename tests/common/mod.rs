//! Shared test harness: runs async tests on tokio natively and on wstd under
//! wasmtime, and builds configs for the clusters `scripts/test.sh` starts.
//!
//! Tests return `Result` instead of panicking: on wasm32-wasip2 a panic
//! aborts the whole test binary.

#![allow(dead_code)]

pub mod fake;
pub mod fake_tls;

use std::future::Future;
use std::time::Duration;

use wasi_pg_client::{Config, Connection, PgError, SslMode};

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Fails the test with a message unless `cond` holds.
#[macro_export]
macro_rules! check {
    ($cond:expr) => {
        if !$cond {
            return Err(format!("check failed at {}:{}: {}", file!(), line!(), stringify!($cond)).into());
        }
    };
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!("check failed at {}:{}: {}", file!(), line!(), format!($($msg)+)).into());
        }
    };
}

/// Fails the test unless `a == b`.
#[macro_export]
macro_rules! check_eq {
    ($a:expr, $b:expr) => {
        match (&$a, &$b) {
            (a, b) => {
                if a != b {
                    return Err(format!(
                        "check failed at {}:{}: {} == {}: {:?} != {:?}",
                        file!(),
                        line!(),
                        stringify!($a),
                        stringify!($b),
                        a,
                        b
                    )
                    .into());
                }
            }
        }
    };
}

/// Runs an async test body to completion on this target's runtime.
pub fn run<F>(body: F) -> TestResult
where
    F: Future<Output = TestResult>,
{
    #[cfg(not(target_arch = "wasm32"))]
    {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?
            .block_on(body)
    }
    #[cfg(target_arch = "wasm32")]
    {
        wstd::runtime::block_on(body)
    }
}

/// Spawns a task on this target's runtime; await the result, or drop the
/// returned future to let the task run on its own.
pub fn spawn<F, T>(fut: F) -> impl Future<Output = Result<T, String>>
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    #[cfg(not(target_arch = "wasm32"))]
    {
        let handle = tokio::spawn(fut);
        async move { handle.await.map_err(|e| e.to_string()) }
    }
    #[cfg(target_arch = "wasm32")]
    {
        // Detached like tokio's: dropping the returned future must not
        // cancel the task (a wstd Task cancels on drop).
        let (tx, rx) = futures_channel::oneshot::channel();
        wstd::runtime::spawn(async move {
            let _ = tx.send(fut.await);
        })
        .detach();
        async move { rx.await.map_err(|_| "the task was cancelled".to_string()) }
    }
}

/// Sleeps on this target's runtime (only for timeouts under test, never
/// for synchronisation).
pub async fn sleep(d: Duration) {
    #[cfg(not(target_arch = "wasm32"))]
    tokio::time::sleep(d).await;
    #[cfg(target_arch = "wasm32")]
    wstd::task::sleep(d.into()).await;
}

/// `fut`'s output, or an error naming `what` if it takes longer than
/// `limit`: a guard against a hang, never synchronisation.
pub async fn within<F: Future>(limit: Duration, what: &str, fut: F) -> Result<F::Output, String> {
    use futures_util::future::{select, Either};
    let fut = std::pin::pin!(fut);
    let timer = std::pin::pin!(sleep(limit));
    match select(fut, timer).await {
        Either::Left((out, _)) => Ok(out),
        Either::Right(_) => Err(format!("{what} did not finish within {limit:?}")),
    }
}

/// The error of a call that must fail.
pub fn expect_err<T: std::fmt::Debug>(
    result: Result<T, PgError>,
    what: &str,
) -> Result<PgError, String> {
    match result {
        Ok(value) => Err(format!("{what} must fail, got Ok({value:?})")),
        Err(e) => Ok(e),
    }
}

/// `count(*)` of `table`, through a connection or a transaction.
pub async fn count(db: &impl wasi_pg_client::GenericClient, table: &str) -> Result<i64, PgError> {
    db.query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await?
        .get(0)
}

/// The server process serving `db` (a connection, a transaction, a pooled
/// connection).
pub async fn backend_pid(db: &impl wasi_pg_client::GenericClient) -> Result<i32, PgError> {
    db.query_one("SELECT pg_backend_pid()", &[]).await?.get(0)
}

/// Ends backend `pid` from the server side (`pg_terminate_backend`, the
/// FATAL 57P01 and EOF a restart sends), as the superuser.
pub async fn terminate_backend(pid: i32) -> Result<(), PgError> {
    connect()
        .await?
        .query_one("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .map(drop)
}

/// What the connection actor may hold of one stream (rows or COPY data)
/// whose consumer is slow: a read's worth of input, a chunk being filled and
/// a chunk waiting for room (64 KiB each, plus a frame), far below the tens
/// of megabytes the tests stream.
pub const ACTOR_BUFFER_BOUND: usize = 512 * 1024;

/// Once the consumer of `conn`'s stream has stopped reading: the server
/// (backend `pid`, seen by `observer`) ends up blocked sending the rest,
/// while the actor holds little of it.
pub async fn server_waits_for_the_reader(
    observer: &Connection,
    conn: &Connection,
    pid: i32,
) -> Result<(), String> {
    until_backend(observer, pid, "wait_event = 'ClientWrite'").await?;
    let held = conn.buffered_bytes();
    if held.now > ACTOR_BUFFER_BOUND {
        return Err(format!("the actor holds {held:?}"));
    }
    Ok(())
}

/// After the stream was read to its end: the actor never held more than a
/// little, and holds nothing now.
pub fn actor_held_little_throughout(conn: &Connection) -> Result<(), String> {
    let held = conn.buffered_bytes();
    if held.peak > ACTOR_BUFFER_BOUND || held.now != 0 {
        return Err(format!("the actor held up to {held:?}"));
    }
    Ok(())
}

/// An `until_backend` condition: the backend is running a `pg_sleep`.
pub const SLEEPING: &str = "state = 'active' AND query LIKE '%pg_sleep%'";

/// Polls (no sleeps) until `observer` sees backend `pid` meeting `condition`
/// (a `pg_stat_activity` condition, on `wait_event` say).
pub async fn until_backend(observer: &Connection, pid: i32, condition: &str) -> Result<(), String> {
    let sql = format!("SELECT count(*) = 1 FROM pg_stat_activity WHERE pid = $1 AND {condition}");
    for _ in 0..20_000 {
        let reached: bool = observer
            .query_one(sql.as_str(), &[&pid])
            .await
            .map_err(|e| e.to_string())?
            .get(0)
            .map_err(|e| e.to_string())?;
        if reached {
            return Ok(());
        }
    }
    Err(format!("backend {pid} never reached {condition}"))
}

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| {
        format!(
            "{name} is not set: these tests need the PostgreSQL cluster that scripts/test.sh \
             starts (run scripts/test.sh, or export PGTEST_HOST, PGTEST_PORT and PGTEST_DB \
             for a cluster set up the same way)"
        )
    })
}

pub fn host() -> Result<String, String> {
    env("PGTEST_HOST")
}

pub fn port() -> Result<u16, String> {
    env("PGTEST_PORT")?
        .parse()
        .map_err(|e| format!("PGTEST_PORT: {e}"))
}

pub fn dbname() -> Result<String, String> {
    env("PGTEST_DB")
}

/// A config for `user` (see scripts/lib/cluster.sh for the users and their
/// authentication methods), plaintext until TLS lands.
pub fn config_for(user: &str, password: Option<&str>) -> Result<Config, String> {
    let mut config = Config::new()
        .host(&host()?)
        .port(port()?)
        .dbname(&dbname()?)
        .user(user)
        .ssl_mode(SslMode::Disable)
        .connect_timeout(Duration::from_secs(10));
    if let Some(p) = password {
        config = config.password(p);
    }
    Ok(config)
}

/// The superuser with trust authentication.
pub fn config() -> Result<Config, String> {
    config_for("trust_user", None)
}

/// A SCRAM user, as the demo uses.
pub fn scram_config() -> Result<Config, String> {
    config_for("scram_user", Some("scram_secret"))
}

fn bouncer_env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| {
        format!(
            "{name} is not set: these tests need the PgBouncer that scripts/test.sh starts \
             in front of its PostgreSQL cluster (run scripts/test.sh, or start one with \
             scripts/lib/pgbouncer.sh's pgbouncer_start and export PGTEST_BOUNCER_HOST, \
             PGTEST_BOUNCER_PORT and PGTEST_DB)"
        )
    })
}

/// The role scripts/lib/pgbouncer.sh lets in, connecting to `dbname`
/// through the bouncer, with the statement cache left at its default.
pub fn bouncer_config_for(dbname: &str) -> Result<Config, String> {
    let host = bouncer_env("PGTEST_BOUNCER_HOST")?;
    let port: u16 = bouncer_env("PGTEST_BOUNCER_PORT")?
        .parse()
        .map_err(|e| format!("PGTEST_BOUNCER_PORT: {e}"))?;
    Ok(Config::new()
        .host(&host)
        .port(port)
        .dbname(dbname)
        .user("scram_user")
        .password("scram_secret")
        .ssl_mode(SslMode::Disable)
        .connect_timeout(Duration::from_secs(10)))
}

/// What a PgBouncer user in transaction mode configures: no statement cache.
pub fn bouncer_config() -> Result<Config, String> {
    let dbname = bouncer_env("PGTEST_DB")?;
    Ok(bouncer_config_for(&dbname)?.statement_cache_size(0))
}

pub async fn connect() -> Result<Connection, PgError> {
    let config = config().map_err(PgError::Config)?;
    Connection::connect(&config).await
}

/// A table name unique to this test process, so native and wasm runs (and
/// tests within one run) never collide.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    // std::process::id() is not available on wasm32-wasip2.
    let target = if cfg!(target_arch = "wasm32") {
        "w"
    } else {
        "n"
    };
    format!("{prefix}_{target}{nanos}_{n}")
}
