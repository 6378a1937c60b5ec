//! Through PgBouncer in transaction pooling mode (scripts/lib/pgbouncer.sh:
//! a pool of 4 server connections for database `pgtest`, and of one for
//! `pgtest_single`). Between two transactions a client connection may move
//! to another server connection, so only what lives inside one transaction
//! can be relied on: with `statement_cache_size(0)` the client uses unnamed
//! statements only, and everything below must work.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{
    bouncer_config, bouncer_config_for, count, expect_err, run, spawn, unique, within, TestResult,
};
use futures_util::future::join_all;
use wasi_pg_client::{Connection, PgError, PipelineMode, ToSql, Type};

/// A guard against a hang, never synchronisation.
const LIMIT: Duration = Duration::from_secs(60);

/// The database scripts/lib/pgbouncer.sh pools with a single server
/// connection.
const SINGLE_SERVER_DB: &str = "pgtest_single";

/// PgBouncer's default_pool_size in scripts/lib/pgbouncer.sh.
const POOL_SIZE: usize = 4;

async fn connect_bouncer() -> Result<Connection, PgError> {
    let config = bouncer_config().map_err(PgError::Config)?;
    Connection::connect(&config).await
}

/// A fresh table `(id int4 PRIMARY KEY, label text)`, created through the
/// bouncer (so scram_user owns it), named after `prefix`.
async fn create_table(conn: &Connection, prefix: &str) -> Result<String, PgError> {
    let table = unique(prefix);
    conn.query(&format!(
        "CREATE TABLE IF NOT EXISTS {table} (id int4 PRIMARY KEY, label text NOT NULL)"
    ))
    .await?;
    Ok(table)
}

async fn drop_table(conn: &Connection, table: &str) -> Result<(), PgError> {
    conn.query(&format!("DROP TABLE IF EXISTS {table}"))
        .await
        .map(drop)
}

/// Checks that running and preparing statements leaves no named statement
/// on the server: inside one transaction (so on one server connection),
/// `pg_prepared_statements` counts the same before and after.
async fn leaves_no_named_statement(conn: &Connection) -> Result<(), String> {
    let err = |e: PgError| e.to_string();
    let txn = conn.transaction().await.map_err(err)?;
    let named = "SELECT count(*) FROM pg_prepared_statements";
    let before: i64 = txn
        .query_one(named, &[])
        .await
        .map_err(err)?
        .get(0)
        .map_err(err)?;
    txn.query_one("SELECT $1::int4", &[&7i32])
        .await
        .map_err(err)?;
    let statement = txn.prepare("SELECT $1::text").await.map_err(err)?;
    txn.query_one(&statement, &[&"x"]).await.map_err(err)?;
    let after: i64 = txn
        .query_one(named, &[])
        .await
        .map_err(err)?
        .get(0)
        .map_err(err)?;
    txn.rollback().await.map_err(err)?;
    if before == after {
        Ok(())
    } else {
        Err(format!(
            "named statements on the server went from {before} to {after}"
        ))
    }
}

#[test]
fn parameterized_queries_repeat_without_statement_collisions() -> TestResult {
    run(async {
        // More client connections than server connections, each running
        // distinct texts and the same text again and again: with named
        // statements this is tokio-postgres #646 ("prepared statement
        // already exists" / "does not exist").
        let tasks: Vec<_> = (0..8i32)
            .map(|task| {
                spawn(async move {
                    let conn = connect_bouncer().await.map_err(|e| e.to_string())?;
                    for i in 0..60i32 {
                        let k = i % 6;
                        let sql = format!("SELECT $1::int4 + {k}, $2::text");
                        let want = task * 1000 + i;
                        let label = format!("t{task} i{i}");
                        let row = conn
                            .query_one(sql.as_str(), &[&want, &label])
                            .await
                            .map_err(|e| format!("task {task}, query {i} ({sql}): {e}"))?;
                        let n: i32 = row.get(0).map_err(|e| e.to_string())?;
                        let s: String = row.get(1).map_err(|e| e.to_string())?;
                        if n != want + k || s != label {
                            return Err(format!("task {task} query {i}: got {n}/{s}"));
                        }
                        let same = conn
                            .query_one("SELECT $1::int8 * 2", &[&i64::from(want)])
                            .await
                            .map_err(|e| format!("task {task}, repeated text {i}: {e}"))?;
                        let doubled: i64 = same.get(0).map_err(|e| e.to_string())?;
                        if doubled != i64::from(want) * 2 {
                            return Err(format!("task {task}: {want} * 2 gave {doubled}"));
                        }
                    }
                    // No cache: every execution prepared its unnamed statement
                    // afresh, nothing was reused client-side.
                    let stats = conn.statement_cache_stats();
                    if stats.hits != 0 || stats.misses < 120 {
                        return Err(format!("task {task}: unexpected cache stats {stats:?}"));
                    }
                    leaves_no_named_statement(&conn)
                        .await
                        .map_err(|e| format!("task {task}: {e}"))?;
                    Ok::<u32, String>(120)
                })
            })
            .collect();
        let mut answered = 0;
        for result in within(LIMIT, "8 connections' queries", join_all(tasks)).await? {
            answered += result??;
        }
        check_eq!(answered, 8 * 120);
        Ok(())
    })
}

#[test]
fn an_explicit_prepare_runs_from_many_tasks() -> TestResult {
    run(async {
        let conn = connect_bouncer().await?;
        let statement = conn
            .prepare("SELECT $1::int4 * 3 AS tripled, upper($2::text) AS shout")
            .await?;
        check_eq!(statement.params(), &[Type::INT4, Type::TEXT][..]);
        check_eq!(statement.columns().len(), 2);
        let tasks: Vec<_> = (0..8i32)
            .map(|task| {
                let conn = conn.clone();
                let statement = statement.clone();
                spawn(async move {
                    for i in 0..50i32 {
                        let n = task * 100 + i;
                        let word = format!("w{n}");
                        let row = conn
                            .query_one(&statement, &[&n, &word])
                            .await
                            .map_err(|e| format!("task {task}, execution {i}: {e}"))?;
                        let tripled: i32 = row.get("tripled").map_err(|e| e.to_string())?;
                        let shout: String = row.get("shout").map_err(|e| e.to_string())?;
                        if tripled != n * 3 || shout != word.to_uppercase() {
                            return Err(format!("task {task}: {n} gave {tripled}/{shout}"));
                        }
                    }
                    Ok::<u32, String>(50)
                })
            })
            .collect();
        let mut executed = 0;
        for result in within(LIMIT, "executions of one statement", join_all(tasks)).await? {
            executed += result??;
        }
        check_eq!(executed, 400);
        leaves_no_named_statement(&conn).await?;
        Ok(())
    })
}

/// What one task saw in one transaction.
struct Seen {
    committed: bool,
    backends: BTreeSet<i32>,
}

/// One transaction of task `task`: inserts `id`, checks from inside that it
/// ran on one server backend in one transaction, then commits or rolls back.
async fn one_transaction(
    conn: &Connection,
    table: &str,
    task: i32,
    id: i32,
    commit: bool,
) -> Result<Seen, String> {
    let e = |what: &str, err: PgError| format!("task {task}, id {id}, {what}: {err}");
    let txn = conn.transaction().await.map_err(|err| e("BEGIN", err))?;
    let first = txn
        .query_one("SELECT pg_backend_pid(), txid_current()", &[])
        .await
        .map_err(|err| e("first look", err))?;
    let insert = format!("INSERT INTO {table} (id, label) VALUES ($1, $2)");
    let label = format!("task {task}");
    txn.execute(insert.as_str(), &[&id, &label])
        .await
        .map_err(|err| e("INSERT", err))?;
    // Our own uncommitted row is visible: we are still in our transaction.
    let mine: i64 = txn
        .query_one(
            format!("SELECT count(*) FROM {table} WHERE id = $1").as_str(),
            &[&id],
        )
        .await
        .and_then(|row| row.get(0))
        .map_err(|err| e("own row", err))?;
    let last = txn
        .query_one("SELECT pg_backend_pid(), txid_current()", &[])
        .await
        .map_err(|err| e("last look", err))?;
    let pids: (i32, i32) = (
        first.get(0).map_err(|err| e("pid", err))?,
        last.get(0).map_err(|err| e("pid", err))?,
    );
    let xids: (i64, i64) = (
        first.get(1).map_err(|err| e("xid", err))?,
        last.get(1).map_err(|err| e("xid", err))?,
    );
    if mine != 1 || pids.0 != pids.1 || xids.0 != xids.1 {
        return Err(format!(
            "task {task}, id {id}: the transaction moved: own row seen {mine} times, \
             backends {pids:?}, transaction ids {xids:?}"
        ));
    }
    if commit {
        txn.commit().await.map_err(|err| e("COMMIT", err))?;
    } else {
        txn.rollback().await.map_err(|err| e("ROLLBACK", err))?;
    }
    Ok(Seen {
        committed: commit,
        backends: BTreeSet::from([pids.0]),
    })
}

#[test]
fn transactions_from_many_connections_stay_on_one_server_connection() -> TestResult {
    run(async {
        let setup = connect_bouncer().await?;
        let table = create_table(&setup, "pgb_txn").await?;
        const TASKS: i32 = 16;
        const PER_TASK: i32 = 12;
        let tasks: Vec<_> = (0..TASKS)
            .map(|task| {
                let table = table.clone();
                spawn(async move {
                    let conn = connect_bouncer().await.map_err(|e| e.to_string())?;
                    let mut committed = 0i64;
                    let mut backends = BTreeSet::new();
                    for i in 0..PER_TASK {
                        let id = task * 1000 + i;
                        // Every third one rolls back.
                        let seen = one_transaction(&conn, &table, task, id, i % 3 != 2).await?;
                        committed += i64::from(seen.committed);
                        backends.extend(seen.backends);
                    }
                    // with_transaction as well: an Err inside rolls back.
                    let insert = &format!("INSERT INTO {table} (id, label) VALUES ($1, 'w')");
                    let id = task * 1000 + 500;
                    conn.with_transaction(|txn| async move {
                        txn.execute(insert.as_str(), &[&id]).await?;
                        Ok(())
                    })
                    .await
                    .map_err(|e| format!("task {task}, with_transaction: {e}"))?;
                    committed += 1;
                    let failed: Result<(), PgError> = conn
                        .with_transaction(|txn| async move {
                            txn.execute(insert.as_str(), &[&(id + 1)]).await?;
                            txn.query("SELECT 1/0").await?;
                            Ok(())
                        })
                        .await;
                    match failed {
                        Err(e) if e.code() == Some("22012") => {}
                        other => return Err(format!("task {task}: expected 22012, got {other:?}")),
                    }
                    Ok::<_, String>((committed, backends))
                })
            })
            .collect();
        let mut committed = 0;
        let mut backends = BTreeSet::new();
        for result in within(LIMIT, "16 connections' transactions", join_all(tasks)).await? {
            let (n, seen) = result??;
            committed += n;
            backends.extend(seen);
        }
        // 8 commits of 12 plus one with_transaction, per task.
        check_eq!(committed, i64::from(TASKS) * 9);
        check_eq!(count(&setup, &table).await?, i64::from(TASKS) * 9);
        // Exactly the committed rows, task by task.
        let per_task: Vec<i64> = setup
            .query(&format!(
                "SELECT count(*) FROM {table} GROUP BY id / 1000 ORDER BY id / 1000"
            ))
            .await?
            .iter()
            .map(|row| row.get(0))
            .collect::<Result<_, _>>()?;
        check_eq!(per_task, vec![9i64; TASKS as usize]);
        let rolled_back: i64 = setup
            .query_one(
                format!("SELECT count(*) FROM {table} WHERE id % 1000 IN (2, 5, 8, 11, 501)")
                    .as_str(),
                &[],
            )
            .await?
            .get(0)?;
        check_eq!(rolled_back, 0);
        // 16 clients were served by the pool's few server connections.
        check!(
            !backends.is_empty() && backends.len() <= POOL_SIZE,
            "{} server backends served the transactions: {backends:?}",
            backends.len()
        );
        drop_table(&setup, &table).await?;
        Ok(())
    })
}

#[test]
fn many_tasks_pipeline_on_one_shared_connection() -> TestResult {
    run(async {
        let conn = connect_bouncer().await?;
        let tasks: Vec<_> = (0..8i32)
            .map(|task| {
                let conn = conn.clone();
                spawn(async move {
                    // All 200 in flight at once, on the one connection the
                    // 8 tasks share.
                    let answers = join_all((0..200i32).map(|i| {
                        let conn = &conn;
                        async move {
                            let want = task * 10_000 + i;
                            let got: i32 = conn
                                .query_one("SELECT $1::int4", &[&want])
                                .await
                                .and_then(|row| row.get(0))
                                .map_err(|e| format!("task {task}, query {i}: {e}"))?;
                            Ok::<_, String>((want, got))
                        }
                    }))
                    .await;
                    let mut matched = 0u32;
                    for answer in answers {
                        let (want, got) = answer?;
                        if want != got {
                            return Err(format!("task {task}: asked {want}, got {got}"));
                        }
                        matched += 1;
                    }
                    Ok::<u32, String>(matched)
                })
            })
            .collect();
        let mut matched = 0;
        for result in within(LIMIT, "1600 pipelined queries", join_all(tasks)).await? {
            matched += result??;
        }
        check_eq!(matched, 1600);
        // Still in step afterwards.
        check_eq!(
            conn.query_one("SELECT 'done'::text", &[])
                .await?
                .get::<_, String>(0)?,
            "done"
        );
        Ok(())
    })
}

#[test]
fn explicit_pipelines_atomic_and_independent() -> TestResult {
    run(async {
        let conn = connect_bouncer().await?;
        let table = create_table(&conn, "pgb_batch").await?;
        let insert = format!("INSERT INTO {table} (id, label) VALUES ($1, $2)");

        // Atomic: one Sync, one transaction, so one server connection; the
        // last statement sees every insert before it.
        let mut batch = conn.pipeline().mode(PipelineMode::Atomic);
        for id in 0..500i32 {
            batch
                .push(insert.as_str(), &[&id, &format!("row {id}")])
                .await?;
        }
        batch
            .push(format!("SELECT count(*)::int4 FROM {table}").as_str(), &[])
            .await?;
        let results = within(LIMIT, "an atomic pipeline", batch.run()).await??;
        check_eq!(results.len(), 501);
        for result in &results[..500] {
            check_eq!(
                result.as_ref().map_err(Clone::clone)?.rows_affected(),
                Some(1)
            );
        }
        let seen: i32 = results[500].as_ref().map_err(Clone::clone)?.rows()[0].get(0)?;
        check_eq!(seen, 500);
        check_eq!(count(&conn, &table).await?, 500);

        // Atomic and failing: nothing applied.
        let mut batch = conn.pipeline().mode(PipelineMode::Atomic);
        for id in [1000i32, 1001, 1001, 1002] {
            batch.push(insert.as_str(), &[&id, &"dup"]).await?;
        }
        match within(LIMIT, "a failing atomic pipeline", batch.run()).await? {
            Err(PgError::Server(db)) => check!(db.is_unique_violation(), "got {db}"),
            other => return Err(format!("expected a unique violation, got {other:?}").into()),
        }
        check_eq!(count(&conn, &table).await?, 500);

        // Independent: a Sync each, each its own transaction (possibly on
        // different server connections); failures reported one by one.
        let mut batch = conn.pipeline();
        for id in [2000i32, 2001, 2001, 2002] {
            batch.push(insert.as_str(), &[&id, &"independent"]).await?;
        }
        batch.push("SELECT 1/0", &[]).await?;
        batch.push("SELECT 'after'::text", &[]).await?;
        let results = within(LIMIT, "an independent pipeline", batch.run()).await??;
        check_eq!(results.len(), 6);
        check!(results[0].is_ok() && results[1].is_ok() && results[3].is_ok());
        check_eq!(
            results[2].as_ref().err().and_then(PgError::code),
            Some("23505")
        );
        check_eq!(
            results[4].as_ref().err().and_then(PgError::code),
            Some("22012")
        );
        let after: String = results[5].as_ref().map_err(Clone::clone)?.rows()[0].get(0)?;
        check_eq!(after, "after");
        check_eq!(count(&conn, &table).await?, 503);

        // In a transaction: the whole batch on the transaction's connection.
        let txn = conn.transaction().await?;
        let mut batch = txn.pipeline().mode(PipelineMode::Atomic);
        for id in 3000..3010i32 {
            batch.push(insert.as_str(), &[&id, &"in txn"]).await?;
        }
        check_eq!(batch.run().await?.len(), 10);
        check_eq!(count(&txn, &table).await?, 513);
        txn.rollback().await?;
        check_eq!(count(&conn, &table).await?, 503);

        drop_table(&conn, &table).await?;
        Ok(())
    })
}

#[test]
fn a_server_error_leaves_the_connection_usable() -> TestResult {
    run(async {
        let conn = connect_bouncer().await?;
        let failed = expect_err(conn.query_one("SELECT 1/0", &[]).await, "1/0")?;
        check_eq!(failed.code(), Some("22012"));
        check_eq!(
            conn.query_one("SELECT $1::int4 + 1", &[&41i32])
                .await?
                .get::<_, i32>(0)?,
            42
        );

        // Pipelined: the failure in the middle touches only its own answer.
        let (a, b, c) = futures_util::join!(
            conn.query_one("SELECT $1::int4", &[&1i32]),
            conn.query_one("SELECT $1::int4 / 0", &[&2i32]),
            conn.query_one("SELECT $1::int4", &[&3i32])
        );
        check_eq!(a?.get::<_, i32>(0)?, 1);
        check_eq!(expect_err(b, "2 / 0")?.code(), Some("22012"));
        check_eq!(c?.get::<_, i32>(0)?, 3);

        // In a transaction: the error aborts it, ROLLBACK ends it, and the
        // server connection goes back to the pool clean.
        let txn = conn.transaction().await?;
        let failed = expect_err(txn.query("SELECT 1/0").await, "1/0 in a transaction")?;
        check_eq!(failed.code(), Some("22012"));
        let aborted = expect_err(
            txn.query_one("SELECT 1", &[]).await,
            "a query in an aborted transaction",
        )?;
        check_eq!(aborted.code(), Some("25P02"));
        txn.rollback().await?;
        for n in 0..20i32 {
            let row = conn.query_one("SELECT $1::int4", &[&n]).await?;
            check_eq!(row.get::<_, i32>(0)?, n);
        }
        // A syntax error (fails at Parse) and a missing table, then a query.
        let syntax = expect_err(conn.query("SELEC 1").await, "a syntax error")?;
        check_eq!(syntax.code(), Some("42601"));
        let missing = expect_err(
            conn.query_one("SELECT * FROM pgb_no_such_table WHERE 1 = $1", &[&1i32])
                .await,
            "a missing table",
        )?;
        check_eq!(missing.code(), Some("42P01"));
        check_eq!(
            conn.query_one("SELECT 'fine'::text", &[])
                .await?
                .get::<_, String>(0)?,
            "fine"
        );
        Ok(())
    })
}

#[test]
fn named_statements_collide_on_a_shared_server_connection() -> TestResult {
    run(async {
        // pgtest_single has one server connection, which every client of it
        // shares between transactions. With the default statement cache,
        // each client connection names its first statement the same way, so
        // the second client's Parse finds the first one's statement already
        // there: what transaction pooling does to named statements.
        let cached = bouncer_config_for(SINGLE_SERVER_DB)?;
        check!(cached.get_statement_cache_size() > 0);
        let first = Connection::connect(&cached).await?;
        let second = Connection::connect(&cached).await?;
        // The first may succeed, or already collide with a statement an
        // earlier run left on that server connection; either way the name
        // exists there afterwards.
        let _ = first.query_one("SELECT $1::int4", &[&1i32]).await;
        let collided = expect_err(
            second.query_one("SELECT $1::int4", &[&2i32]).await,
            "a second client's named statement on the shared server connection",
        )?;
        check_eq!(collided.code(), Some("42P05"));
        check!(
            collided.to_string().contains("already exists"),
            "got {collided}"
        );
        // Unnamed statements are still fine on that connection.
        check_eq!(
            second
                .query("SELECT 'unnamed'::text")
                .await?
                .rows()
                .first()
                .map(|row| row.get::<_, String>(0))
                .transpose()?,
            Some("unnamed".to_string())
        );

        // Without the cache, clients take turns on the same server
        // connection with no collision.
        let uncached = cached.statement_cache_size(0);
        let a = Connection::connect(&uncached).await?;
        let b = Connection::connect(&uncached).await?;
        for i in 0..20i32 {
            let j = i + 100;
            let (for_a, for_b): (&[&(dyn ToSql + Sync)], &[&(dyn ToSql + Sync)]) = (&[&i], &[&j]);
            let (x, y) = futures_util::join!(
                a.query_one("SELECT $1::int4", for_a),
                b.query_one("SELECT $1::int4", for_b)
            );
            check_eq!(x?.get::<_, i32>(0)?, i);
            check_eq!(y?.get::<_, i32>(0)?, i + 100);
        }
        // Both really share one backend.
        let pid_a = common::backend_pid(&a).await?;
        let pid_b = common::backend_pid(&b).await?;
        check_eq!(pid_a, pid_b);
        Ok(())
    })
}

#[test]
fn copy_in_through_the_bouncer() -> TestResult {
    run(async {
        let conn = connect_bouncer().await?;
        let table = create_table(&conn, "pgb_copy").await?;
        let mut copy = conn.copy_in(&format!("COPY {table} FROM STDIN")).await?;
        for i in 0..20_000i32 {
            copy.write(format!("{i}\trow {i}\n").as_bytes()).await?;
        }
        check_eq!(within(LIMIT, "COPY IN", copy.finish()).await??, 20_000);
        check_eq!(count(&conn, &table).await?, 20_000);
        let row = conn
            .query_one(
                format!("SELECT label FROM {table} WHERE id = $1").as_str(),
                &[&12_345i32],
            )
            .await?;
        check_eq!(row.get::<_, String>(0)?, "row 12345");

        // A second COPY into the same table, in a transaction with a
        // query after it, then rolled back.
        let txn = conn.transaction().await?;
        let mut copy = txn
            .copy_in(&format!("COPY {table} FROM STDIN (FORMAT csv)"))
            .await?;
        for i in 20_000..20_100i32 {
            copy.write(format!("{i},csv {i}\n").as_bytes()).await?;
        }
        check_eq!(copy.finish().await?, 100);
        check_eq!(count(&txn, &table).await?, 20_100);
        txn.rollback().await?;
        check_eq!(count(&conn, &table).await?, 20_000);

        drop_table(&conn, &table).await?;
        Ok(())
    })
}
