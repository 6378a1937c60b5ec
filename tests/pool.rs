//! The pool (feature `pool`): lending, waiting in order, timeouts, resets,
//! health checks, lifetimes, shared use and closing, against the test
//! cluster, on both targets.

#[cfg(not(feature = "pool"))]
compile_error!("tests/pool.rs needs the `pool` feature (scripts/test.sh enables it)");

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{backend_pid, expect_err, run, scram_config, spawn, within, TestResult};
use wasi_pg_client::pool::{Pool, PoolConfig, PoolStatus};
use wasi_pg_client::{Connection, PgError};

/// Generous: a hang shows as a failure, never as a stuck run.
const LIMIT: Duration = Duration::from_secs(20);

fn pool_config(max_size: usize) -> Result<PoolConfig, String> {
    Ok(PoolConfig::default()
        .connection(scram_config()?)
        .max_size(max_size))
}

/// Polls the pool's status until `condition` holds (a bounded wait for the
/// actor to get there, not a sleep standing in for synchronisation).
async fn until_status(
    pool: &Pool,
    what: &str,
    condition: impl Fn(&PoolStatus) -> bool,
) -> Result<(), String> {
    for _ in 0..5_000 {
        if condition(&pool.status()) {
            return Ok(());
        }
        common::sleep(Duration::from_millis(2)).await;
    }
    Err(format!(
        "the pool never reached: {what} (status {:?})",
        pool.status()
    ))
}

/// A fresh `(n int)` table every role may use (the pool's scram_user
/// too), and the superuser connection that made it (to drop it).
async fn table_for_all(prefix: &str) -> Result<(Connection, String), PgError> {
    let table = common::unique(prefix);
    let admin = common::connect().await?;
    admin
        .simple_query(&format!(
            "CREATE TABLE {table} (n int); GRANT ALL ON {table} TO PUBLIC"
        ))
        .await?;
    Ok((admin, table))
}

#[test]
fn acquire_and_release_as_in_the_readme() -> TestResult {
    run(async {
        let pool = Pool::new(pool_config(5)?).await?;
        check_eq!(pool.status().size, 1);
        let guard = pool.acquire().await?;
        let result = guard.query("SELECT 1").await?;
        check_eq!(result.rows().len(), 1);
        check_eq!(pool.status().in_use, 1);
        check_eq!(pool.status().idle, 0);
        let first = backend_pid(&guard).await?;
        guard.release().await;
        until_status(&pool, "the connection idle again", |s| {
            s.idle == 1 && s.in_use == 0
        })
        .await?;
        // The same connection comes back (most recently used first).
        let again = pool.acquire().await?;
        check_eq!(backend_pid(&again).await?, first);
        drop(again);
        until_status(&pool, "a dropped guard back", |s| s.idle == 1).await?;
        pool.close().await;
        Ok(())
    })
}

#[test]
fn bad_settings_are_config_errors() -> TestResult {
    run(async {
        for (config, what) in [
            (pool_config(0)?, "max_size 0"),
            (pool_config(2)?.min_idle(3), "min_idle above max_size"),
            (PoolConfig::default(), "no connection settings"),
        ] {
            let e = expect_err(Pool::new(config.clone()).await, what)?;
            check!(matches!(e, PgError::Config(_)), "{what}: {e:?}");
            let e = expect_err(Pool::new_lazy(config), what)?;
            check!(matches!(e, PgError::Config(_)), "{what} (lazy): {e:?}");
        }
        let wrong = scram_config()?.password("not the password");
        let e = expect_err(
            Pool::new(PoolConfig::default().connection(wrong)).await,
            "a wrong password",
        )?;
        check_eq!(e.code(), Some("28P01"));
        Ok(())
    })
}

/// Natively, outside a tokio runtime, the pool's tasks have nowhere to
/// run: a config error, not a panic. (A component always runs inside
/// wstd's `block_on`, so there is no outside to test under wasm.)
#[cfg(not(target_arch = "wasm32"))]
#[test]
fn a_lazy_pool_outside_the_runtime_is_a_config_error() -> TestResult {
    let e = expect_err(
        Pool::new_lazy(pool_config(2)?),
        "new_lazy outside a runtime",
    )?;
    check!(
        matches!(&e, PgError::Config(m) if m.contains("runtime")),
        "{e:?}"
    );
    Ok(())
}

#[test]
fn an_exhausted_pool_serves_waiters_in_order_then_times_out() -> TestResult {
    run(async {
        let pool = Pool::new(pool_config(1)?.acquire_timeout(Duration::from_secs(10))).await?;
        let held = pool.acquire().await?;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for name in ["first", "second", "third"] {
            let (task_pool, order) = (pool.clone(), order.clone());
            let waiting = pool.status().waiters;
            tasks.push(spawn(async move {
                let guard = task_pool.acquire().await?;
                order.lock().map_err(|e| e.to_string())?.push(name);
                guard.query_one("SELECT 1", &[]).await?;
                guard.release().await;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            }));
            // Each is queued before the next one asks.
            until_status(&pool, "one more waiter", |s| s.waiters == waiting + 1).await?;
        }
        held.release().await;
        for task in tasks {
            within(LIMIT, "a waiter", task)
                .await??
                .map_err(|e| e.to_string())?;
        }
        check_eq!(
            *order.lock().map_err(|e| e.to_string())?,
            vec!["first", "second", "third"]
        );

        // Now exhausted with a short timeout: a clear Timeout error.
        let short = Pool::new(pool_config(1)?.acquire_timeout(Duration::from_millis(150))).await?;
        let held = short.acquire().await?;
        let e = expect_err(short.acquire().await, "acquire from an exhausted pool")?;
        check!(
            matches!(&e, PgError::Timeout(m) if m.contains("acquiring") && m.contains("150 ms")),
            "{e:?}"
        );
        let e = expect_err(
            short.get_shared().await,
            "get_shared from an exhausted pool",
        )?;
        check!(matches!(e, PgError::Timeout(_)), "{e:?}");
        // The waiter that gave up leaves nothing behind.
        until_status(&short, "no waiters left", |s| s.waiters == 0).await?;
        held.release().await;
        let next = within(LIMIT, "acquire after a timeout", short.acquire()).await??;
        next.query_one("SELECT 1", &[]).await?;
        Ok(())
    })
}

#[test]
fn each_waiter_times_out_at_its_own_deadline() -> TestResult {
    run(async {
        // One clock task keeps every waiter's deadline: the first to time
        // out must not take a later one with it, nor fire early.
        let limit = Duration::from_millis(400);
        let pool = Pool::new(pool_config(1)?.acquire_timeout(limit)).await?;
        let held = pool.acquire().await?;
        let waiter = |pool: Pool| {
            spawn(async move {
                let started = Instant::now();
                let result = pool.acquire().await;
                (started.elapsed(), result.map(drop))
            })
        };
        let early = waiter(pool.clone());
        until_status(&pool, "the first waiter queued", |s| s.waiters == 1).await?;
        // The second waiter's deadline comes well after the first's.
        common::sleep(Duration::from_millis(300)).await;
        let late = waiter(pool.clone());
        until_status(&pool, "the second waiter queued", |s| s.waiters == 2).await?;

        let (waited, result) = within(LIMIT, "the first waiter", early).await??;
        let e = expect_err(result, "the first waiter, past its deadline")?;
        check!(matches!(e, PgError::Timeout(_)), "{e:?}");
        check!(
            waited >= limit,
            "timed out after {waited:?}, before {limit:?}"
        );

        // The second still waits: the connection given back now is its.
        held.release().await;
        let (_, result) = within(LIMIT, "the second waiter", late).await??;
        result?;
        until_status(&pool, "no waiters left", |s| s.waiters == 0).await?;
        pool.close().await;
        Ok(())
    })
}

#[test]
fn a_guard_dropped_mid_transaction_is_rolled_back_before_reuse() -> TestResult {
    run(async {
        let (setup, table) = table_for_all("pool_rollback").await?;
        let pool = Pool::new(pool_config(1)?).await?;
        for release in [false, true] {
            let guard = pool.acquire().await?;
            guard
                .simple_query(&format!("BEGIN; INSERT INTO {table} VALUES (1)"))
                .await?;
            // The same session sees its own insert while the transaction
            // is open.
            check_eq!(common::count(&guard, &table).await?, 1);
            let pid_before = backend_pid(&guard).await?;
            if release {
                guard.release().await;
            } else {
                drop(guard);
            }
            let next = within(LIMIT, "the next acquire", pool.acquire()).await??;
            check_eq!(backend_pid(&next).await?, pid_before);
            // Rolled back: not even its own session sees the row now.
            check_eq!(common::count(&next, &table).await?, 0);
            next.release().await;
        }
        setup.simple_query(&format!("DROP TABLE {table}")).await?;
        Ok(())
    })
}

#[test]
fn a_guard_dropped_while_its_query_runs_is_settled_before_reuse() -> TestResult {
    run(async {
        let (admin, table) = table_for_all("pool_inflight").await?;
        let pool = Pool::new(pool_config(1)?).await?;
        let guard = pool.acquire().await?;
        let backend = backend_pid(&guard).await?;
        {
            // Gave up on while the server still runs it, inside the
            // transaction it opened: the pool cannot know the outcome
            // until the answer is in.
            let sql = format!("BEGIN; INSERT INTO {table} VALUES (1); SELECT pg_sleep(0.3)");
            let running = std::pin::pin!(guard.simple_query(&sql));
            let seen = std::pin::pin!(common::until_backend(
                &admin,
                backend,
                "query LIKE '%pg_sleep%' AND state = 'active'"
            ));
            match futures_util::future::select(running, seen).await {
                futures_util::future::Either::Right((seen, _)) => seen?,
                futures_util::future::Either::Left((done, _)) => {
                    return Err(format!("the query ended before it was seen: {done:?}").into())
                }
            }
        }
        drop(guard);
        let next = within(LIMIT, "the next acquire", pool.acquire()).await??;
        check_eq!(backend_pid(&next).await?, backend);
        check_eq!(common::count(&next, &table).await?, 0);
        next.release().await;
        admin.simple_query(&format!("DROP TABLE {table}")).await?;
        Ok(())
    })
}

#[test]
fn broken_connections_are_replaced_not_handed_out() -> TestResult {
    run(async {
        let pool = Pool::new(pool_config(2)?.min_idle(2).test_after_idle(Duration::ZERO)).await?;
        until_status(&pool, "two idle connections", |s| s.idle == 2).await?;
        let (a, b) = (pool.acquire().await?, pool.acquire().await?);
        let old = [backend_pid(&a).await?, backend_pid(&b).await?];
        a.release().await;
        b.release().await;
        // The server ends both sessions while they sit idle (what a
        // restart does to them).
        for pid in old {
            common::terminate_backend(pid).await?;
        }
        let mut fresh = Vec::new();
        for _ in 0..2 {
            let conn = within(LIMIT, "acquire after the backends died", pool.acquire()).await??;
            let now = backend_pid(&conn).await?;
            check!(!old.contains(&now), "a dead connection was handed out");
            fresh.push(conn);
        }
        check!(fresh[0].backend_pid() != fresh[1].backend_pid());
        check_eq!(pool.status().size, 2);
        Ok(())
    })
}

#[test]
fn old_and_idle_connections_are_closed_down_to_min_idle() -> TestResult {
    run(async {
        // Lifetime: the only connection is retired and a new one opened.
        let pool = Pool::new(pool_config(2)?.max_lifetime(Duration::from_millis(200))).await?;
        let conn = pool.acquire().await?;
        let first = backend_pid(&conn).await?;
        conn.release().await;
        until_status(&pool, "the old connection retired", |s| s.size == 0).await?;
        let conn = pool.acquire().await?;
        check!(
            backend_pid(&conn).await? != first,
            "a retired connection came back"
        );
        conn.release().await;

        // Idle timeout: three open, then back to min_idle.
        let pool = Pool::new(
            pool_config(3)?
                .min_idle(1)
                .idle_timeout(Duration::from_millis(100)),
        )
        .await?;
        let guards = [
            pool.acquire().await?,
            pool.acquire().await?,
            pool.acquire().await?,
        ];
        check_eq!(pool.status().size, 3);
        for guard in guards {
            guard.release().await;
        }
        until_status(&pool, "idle connections closed down to min_idle", |s| {
            s.size == 1 && s.idle == 1
        })
        .await?;
        Ok(())
    })
}

#[test]
fn shared_connections_pipeline_many_callers() -> TestResult {
    run(async {
        let pool = Pool::new(pool_config(2)?).await?;
        // Two sharers of a one-connection-busy pool get the same backend
        // when nothing else is idle.
        let one = Pool::new(pool_config(1)?).await?;
        let a = one.get_shared().await?;
        let b = one.get_shared().await?;
        check_eq!(backend_pid(&a).await?, backend_pid(&b).await?);
        check_eq!(one.status().shared, 1);
        // An exclusive caller waits until every sharer is done.
        let exclusive = spawn({
            let one = one.clone();
            async move {
                let guard = one.acquire().await?;
                backend_pid(&guard).await
            }
        });
        until_status(&one, "the exclusive caller waiting", |s| s.waiters == 1).await?;
        let shared_pid = backend_pid(&a).await?;
        drop(a);
        drop(b);
        check_eq!(
            within(LIMIT, "the exclusive caller", exclusive).await???,
            shared_pid
        );

        // Many tasks, each taking a shared connection per statement.
        let mut tasks = Vec::new();
        for t in 0..8i32 {
            let pool = pool.clone();
            tasks.push(spawn(async move {
                for i in 0..100i32 {
                    let conn = pool.get_shared().await?;
                    let n: i32 = conn
                        .query_one("SELECT $1::int4", &[&(t * 1000 + i)])
                        .await?
                        .get(0)?;
                    if n != t * 1000 + i {
                        return Err(PgError::Decode(format!("got {n} for {}", t * 1000 + i)));
                    }
                }
                Ok(())
            }));
        }
        for task in tasks {
            within(LIMIT, "a sharing task", task).await???;
        }
        let status = pool.status();
        check!(status.size <= 2, "{status:?}");
        until_status(&pool, "every sharer done", |s| {
            s.shared == 0 && s.in_use == 0
        })
        .await?;
        Ok(())
    })
}

#[test]
fn sharers_fill_one_connection_before_another_is_brought_in() -> TestResult {
    run(async {
        // Two connections idle; sharers go to one until it is full.
        let pool = Pool::new(pool_config(2)?.min_idle(2).sharers_per_connection(2)).await?;
        until_status(&pool, "two idle connections", |s| s.idle == 2).await?;
        let a = pool.get_shared().await?;
        let b = pool.get_shared().await?;
        check_eq!(backend_pid(&a).await?, backend_pid(&b).await?);
        check_eq!(pool.status().shared, 1);
        // Full at two: the third sharer gets the other connection.
        let c = pool.get_shared().await?;
        check!(backend_pid(&c).await? != backend_pid(&a).await?);
        check_eq!(pool.status().shared, 2);
        // The least used one next: c's.
        let d = pool.get_shared().await?;
        check_eq!(backend_pid(&d).await?, backend_pid(&c).await?);
        // With every connection full and none to open, a fifth still gets
        // one at once rather than waiting.
        let e = within(LIMIT, "a fifth sharer", pool.get_shared()).await??;
        check!([backend_pid(&a).await?, backend_pid(&c).await?].contains(&backend_pid(&e).await?));
        drop((a, b, c, d, e));
        until_status(&pool, "both back to idle", |s| s.shared == 0 && s.idle == 2).await?;
        Ok(())
    })
}

#[test]
fn close_waits_for_lent_connections_and_refuses_new_callers() -> TestResult {
    run(async {
        let pool = Pool::new(pool_config(2)?).await?;
        let held = pool.acquire().await?;
        let closing = spawn({
            let pool = pool.clone();
            async move { pool.close().await }
        });
        until_status(&pool, "the pool closed", |s| s.closed).await?;
        let e = expect_err(pool.acquire().await, "acquire from a closed pool")?;
        check!(matches!(e, PgError::Closed(_)), "{e:?}");
        // A lent connection still works until it is given back.
        held.query_one("SELECT 1", &[]).await?;
        let backend = held.backend_pid();
        held.release().await;
        within(LIMIT, "close", closing).await??;
        check_eq!(pool.status().size, 0);
        // Its session really ends on the server (the backend exits just
        // after reading Terminate).
        let admin = common::connect().await?;
        let mut left = 1i64;
        for _ in 0..20_000 {
            left = admin
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = $1",
                    &[&backend],
                )
                .await?
                .get(0)?;
            if left == 0 {
                break;
            }
        }
        check_eq!(left, 0);
        Ok(())
    })
}

#[test]
fn discard_all_on_release_gives_the_next_caller_a_fresh_session() -> TestResult {
    run(async {
        let pool = Pool::new(pool_config(1)?.discard_all_on_release(true)).await?;
        let conn = pool.acquire().await?;
        conn.simple_query("CREATE TEMP TABLE scratch (n int)")
            .await?;
        conn.set_param("application_name", "pool_discard").await?;
        conn.listen("pool_discard_channel").await?;
        // A cached statement, to show the cache starts over cleanly.
        check_eq!(
            conn.query_one("SELECT $1::int4", &[&7i32])
                .await?
                .get::<_, i32>(0)?,
            7
        );
        conn.release().await;

        let conn = pool.acquire().await?;
        let temp: i64 = conn
            .query_one(
                "SELECT count(*) FROM pg_class WHERE relname = 'scratch' AND relpersistence = 't'",
                &[],
            )
            .await?
            .get(0)?;
        check_eq!(temp, 0);
        check!(
            conn.session_params().is_empty(),
            "{:?}",
            conn.session_params()
        );
        check!(
            conn.listened_channels().is_empty(),
            "{:?}",
            conn.listened_channels()
        );
        let name: String = conn
            .query_one("SELECT current_setting('application_name')", &[])
            .await?
            .get(0)?;
        check!(name != "pool_discard");
        check_eq!(
            conn.query_one("SELECT $1::int4", &[&8i32])
                .await?
                .get::<_, i32>(0)?,
            8
        );
        Ok(())
    })
}

#[test]
fn a_connection_still_cloned_at_release_leaves_the_pool() -> TestResult {
    run(async {
        let pool = Pool::new(pool_config(2)?).await?;
        let guard = pool.acquire().await?;
        let kept: Connection = (*guard).clone();
        guard.release().await;
        until_status(&pool, "the kept connection forgotten", |s| {
            s.size == 0 && s.in_use == 0
        })
        .await?;
        // Still usable by whoever kept it, and no longer the pool's.
        check_eq!(kept.query_one("SELECT 2", &[]).await?.get::<_, i32>(0)?, 2);
        let fresh = pool.acquire().await?;
        check!(backend_pid(&fresh).await? != backend_pid(&kept).await?);

        let detached = fresh.detach();
        until_status(&pool, "the detached connection forgotten", |s| s.size == 0).await?;
        check_eq!(
            detached
                .query_one("SELECT 3", &[])
                .await?
                .get::<_, i32>(0)?,
            3
        );
        Ok(())
    })
}

#[test]
fn a_pool_works_through_pgbouncer_in_transaction_mode() -> TestResult {
    run(async {
        let pool = Pool::new(
            PoolConfig::default()
                .connection(common::bouncer_config()?)
                .max_size(4)
                .sharers_per_connection(2),
        )
        .await?;
        let table = common::unique("pool_bouncer");
        pool.acquire()
            .await?
            .query(&format!("CREATE TABLE {table} (task int4, n int4)"))
            .await?;
        let mut tasks = Vec::new();
        for task in 0..12i32 {
            let (pool, table) = (pool.clone(), table.clone());
            tasks.push(spawn(async move {
                for n in 0..5i32 {
                    // A transaction on a lent connection...
                    let conn = pool.acquire().await?;
                    let txn = conn.transaction().await?;
                    txn.execute(
                        &format!("INSERT INTO {table} VALUES ($1, $2)"),
                        &[&task, &n],
                    )
                    .await?;
                    if n == 4 {
                        txn.rollback().await?;
                    } else {
                        txn.commit().await?;
                    }
                    conn.release().await;
                    // ...and statements on shared ones, pipelined.
                    let shared = pool.get_shared().await?;
                    let mine: i64 = shared
                        .query_one(
                            &format!("SELECT count(*) FROM {table} WHERE task = $1"),
                            &[&task],
                        )
                        .await?
                        .get(0)?;
                    // Rows 0..=3 were committed; row 4 was rolled back.
                    if mine != i64::from(n.min(3) + 1) {
                        return Err(PgError::Decode(format!(
                            "task {task} saw {mine} rows after {n}"
                        )));
                    }
                }
                Ok(())
            }));
        }
        for task in tasks {
            within(LIMIT, "a task through the bouncer", task).await???;
        }
        let conn = pool.acquire().await?;
        check_eq!(common::count(&conn, &table).await?, 12 * 4);
        conn.query(&format!("DROP TABLE {table}")).await?;
        Ok(())
    })
}

/// PostgreSQL 18, the cluster scripts/lib/pg18.sh starts; no test but this
/// one in this binary uses it, so restarting it disturbs nobody.
fn pg18_config() -> Result<wasi_pg_client::Config, String> {
    let port: u16 = std::env::var("PGTEST_PG18_PORT")
        .map_err(|_| "PGTEST_PG18_PORT is not set: scripts/test.sh starts PostgreSQL 18")?
        .parse()
        .map_err(|e| format!("PGTEST_PG18_PORT: {e}"))?;
    Ok(wasi_pg_client::Config::new()
        .host("127.0.0.1")
        .port(port)
        .dbname(&common::dbname()?)
        .user("trust_user")
        .ssl_mode(wasi_pg_client::SslMode::Disable)
        .connect_timeout(Duration::from_secs(10)))
}

async fn postmaster_start(conn: &Connection) -> Result<String, PgError> {
    conn.query_one("SELECT pg_postmaster_start_time()::text", &[])
        .await?
        .get(0)
}

#[test]
fn a_real_server_restart_while_connections_idle_is_survived() -> TestResult {
    run(async {
        let config = pg18_config()?;
        let pool = Pool::new(
            PoolConfig::default()
                .connection(config.clone())
                .max_size(2)
                .min_idle(2)
                .test_after_idle(Duration::ZERO),
        )
        .await?;
        until_status(&pool, "two idle connections", |s| s.idle == 2).await?;
        let (a, b) = (pool.acquire().await?, pool.acquire().await?);
        let old = [backend_pid(&a).await?, backend_pid(&b).await?];
        a.release().await;
        b.release().await;

        // Restart the server from inside it (the test has no shell on
        // wasm): a superuser's COPY TO PROGRAM starts pg_ctl, in a session
        // of its own so the shutdown does not take it down too. pg18.sh
        // keeps the server's binaries in <dir>/pg/bin beside <dir>/data.
        let admin = Connection::connect(&config).await?;
        let started = postmaster_start(&admin).await?;
        let data: String = admin
            .query_one("SELECT current_setting('data_directory')", &[])
            .await?
            .get(0)?;
        check!(!data.contains('\''), "an unexpected data directory: {data}");
        // No rows, and the shell reads its input to the end before it
        // starts pg_ctl: the server never writes to a pipe whose reader has
        // gone. The restart may end this session before its answer comes.
        let restart = admin
            .simple_query(&format!(
                "COPY (SELECT 1 WHERE false) TO PROGRAM 'cat >/dev/null; setsid nohup \
                 {data}/../pg/bin/pg_ctl restart -D {data} -m fast -w -t 60 \
                 -l {data}/../postgres.log >/dev/null 2>&1 &'"
            ))
            .await;
        if let Err(e) = restart {
            check!(
                wasi_pg_client::classify_error(&e) == wasi_pg_client::ErrorClass::Broken,
                "asking for the restart failed: {e}"
            );
        }

        // Wait (bounded) until a new postmaster answers.
        let mut restarted = false;
        for _ in 0..1_200 {
            if let Ok(probe) = Connection::connect(&config).await {
                if postmaster_start(&probe)
                    .await
                    .is_ok_and(|now| now != started)
                {
                    restarted = true;
                    break;
                }
            }
            common::sleep(Duration::from_millis(50)).await;
        }
        check!(restarted, "the server did not come back within a minute");

        // The idle connections died with the old server: never handed out.
        let (a, b) = (
            within(LIMIT, "acquire after the restart", pool.acquire()).await??,
            within(LIMIT, "acquire after the restart", pool.acquire()).await??,
        );
        let new = [backend_pid(&a).await?, backend_pid(&b).await?];
        check!(
            new.iter().all(|p| !old.contains(p)),
            "old {old:?}, now {new:?}"
        );
        check!(new[0] != new[1]);
        check!(pool.status().size <= 2, "{:?}", pool.status());
        Ok(())
    })
}
