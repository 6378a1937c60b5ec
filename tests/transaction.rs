//! Transactions, savepoints, retry policies and session parameters against
//! the real server: what commits, what rolls back, who waits for whom.

mod common;

use std::time::Duration;

use common::{connect, expect_err, run, spawn, unique, TestResult};
use futures_channel::oneshot;
use futures_util::future::join;
use futures_util::poll;
use wasi_pg_client::{
    Connection, GenericClient, IsolationLevel, PgError, RetryPolicy, Transaction,
};

/// A DO block that fails the way a lost serialization race does.
const RAISE_40001: &str =
    "DO $$ BEGIN RAISE EXCEPTION 'forced serialization failure' USING ERRCODE = '40001'; END $$";

/// Creates a fresh table `(id int4 PRIMARY KEY, v int8)` named after
/// `prefix` (unique per process, target and call).
async fn create_table(conn: &Connection, prefix: &str) -> Result<String, PgError> {
    let table = unique(prefix);
    conn.simple_query(&format!(
        "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (id int4 PRIMARY KEY, v int8)"
    ))
    .await?;
    Ok(table)
}

async fn drop_table(conn: &Connection, table: &str) -> Result<(), PgError> {
    conn.simple_query(&format!("DROP TABLE IF EXISTS {table}"))
        .await
        .map(drop)
}

/// The ids in `table`, in order, as `db` sees them.
async fn ids(db: &impl GenericClient, table: &str) -> Result<Vec<i32>, PgError> {
    let result = db
        .query(&format!("SELECT id FROM {table} ORDER BY id"))
        .await?;
    result.iter().map(|row| row.get::<_, i32>(0)).collect()
}

async fn table_exists(conn: &Connection, table: &str) -> Result<bool, PgError> {
    conn.query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
        .await?
        .get(0)
}

/// A run-time parameter's current value, as `current_setting` reports it.
async fn setting(db: &impl GenericClient, name: &str) -> Result<String, PgError> {
    db.query_one("SELECT current_setting($1)", &[&name])
        .await?
        .get(0)
}

/// Whether the session is inside a transaction block: SAVEPOINT fails with
/// 25P01 outside one.
async fn in_transaction_block(conn: &Connection) -> Result<bool, PgError> {
    match conn.simple_query("SAVEPOINT wpg_probe").await {
        Ok(_) => {
            conn.simple_query("RELEASE SAVEPOINT wpg_probe").await?;
            Ok(true)
        }
        Err(e) if e.code() == Some("25P01") => Ok(false),
        Err(e) => Err(e),
    }
}

/// Awaits `fut`, or fails after a generous limit: a guard against a hang
/// (a request stuck behind a lease), never synchronisation.
async fn within<F: std::future::Future>(fut: F, what: &str) -> Result<F::Output, String> {
    common::within(Duration::from_secs(10), what, fut).await
}

#[test]
fn commit_persists_and_rollback_discards() -> TestResult {
    run(async {
        let conn = connect().await?;
        let observer = connect().await?;
        let table = create_table(&conn, "txn_commit").await?;
        let insert = format!("INSERT INTO {table} (id) VALUES ($1)");

        let txn = conn.transaction().await?;
        check!(!txn.is_savepoint());
        check_eq!(txn.attempt(), 1);
        check_eq!(txn.execute(insert.as_str(), &[&1i32]).await?, 1);
        check_eq!(ids(&txn, &table).await?, vec![1]);
        // Uncommitted: invisible to another session.
        check_eq!(ids(&observer, &table).await?, Vec::<i32>::new());
        txn.commit().await?;
        check_eq!(ids(&observer, &table).await?, vec![1]);
        check!(!in_transaction_block(&conn).await?);

        let txn = conn.transaction().await?;
        txn.execute(insert.as_str(), &[&2i32]).await?;
        check_eq!(ids(&txn, &table).await?, vec![1, 2]);
        txn.rollback().await?;
        check_eq!(ids(&observer, &table).await?, vec![1]);
        check_eq!(ids(&conn, &table).await?, vec![1]);
        check!(!in_transaction_block(&conn).await?);

        drop_table(&conn, &table).await?;
        Ok(())
    })
}

#[test]
fn build_transaction_options_reach_the_server() -> TestResult {
    run(async {
        let conn = connect().await?;
        let table = create_table(&conn, "txn_options").await?;
        let txn = conn
            .build_transaction()
            .isolation_level(IsolationLevel::Serializable)
            .read_only(true)
            .deferrable(true)
            .start()
            .await?;
        check_eq!(
            setting(&txn, "transaction_isolation").await?,
            "serializable"
        );
        check_eq!(setting(&txn, "transaction_read_only").await?, "on");
        check_eq!(setting(&txn, "transaction_deferrable").await?, "on");
        let refused = expect_err(
            txn.execute(format!("INSERT INTO {table} (id) VALUES (1)").as_str(), &[])
                .await,
            "an INSERT in a READ ONLY transaction",
        )?;
        check_eq!(refused.code(), Some("25006"));
        txn.rollback().await?;

        let txn = conn
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(false)
            .deferrable(false)
            .start()
            .await?;
        check_eq!(
            setting(&txn, "transaction_isolation").await?,
            "repeatable read"
        );
        check_eq!(setting(&txn, "transaction_read_only").await?, "off");
        txn.execute(format!("INSERT INTO {table} (id) VALUES (1)").as_str(), &[])
            .await?;
        txn.commit().await?;
        check_eq!(ids(&conn, &table).await?, vec![1]);
        // The options applied to that transaction only.
        check_eq!(
            setting(&conn, "transaction_isolation").await?,
            "read committed"
        );
        drop_table(&conn, &table).await?;
        Ok(())
    })
}

#[test]
fn with_transaction_commits_on_ok_and_rolls_back_on_err() -> TestResult {
    run(async {
        let conn = connect().await?;
        let observer = connect().await?;
        let table = create_table(&conn, "txn_with").await?;
        let insert = &format!("INSERT INTO {table} (id) VALUES ($1)");
        let count = &format!("SELECT count(*) FROM {table}");

        let value: i64 = conn
            .with_transaction(|txn| async move {
                txn.execute(insert.as_str(), &[&1i32]).await?;
                txn.execute(insert.as_str(), &[&2i32]).await?;
                txn.query_one(count.as_str(), &[]).await?.get(0)
            })
            .await?;
        check_eq!(value, 2);
        check_eq!(ids(&observer, &table).await?, vec![1, 2]);
        check!(!in_transaction_block(&conn).await?);

        // A server error inside: rolled back, and that error comes out.
        let failed: Result<(), PgError> = conn
            .with_transaction(|txn| async move {
                txn.execute(insert.as_str(), &[&3i32]).await?;
                txn.execute(insert.as_str(), &[&1i32]).await?;
                Ok(())
            })
            .await;
        check_eq!(expect_err(failed, "a duplicate key")?.code(), Some("23505"));
        check_eq!(ids(&observer, &table).await?, vec![1, 2]);
        check!(!in_transaction_block(&conn).await?);

        // The closure's own error: rolled back, returned as it is.
        let failed: Result<(), PgError> = conn
            .with_transaction(|txn| async move {
                txn.execute(insert.as_str(), &[&4i32]).await?;
                Err(PgError::Config("the caller's own error".into()))
            })
            .await;
        match expect_err(failed, "a closure returning Err")? {
            PgError::Config(m) => check_eq!(m, "the caller's own error"),
            other => return Err(format!("expected the closure's error, got {other:?}").into()),
        }
        check_eq!(ids(&observer, &table).await?, vec![1, 2]);

        // A closure that swallows a server error and returns Ok: the COMMIT
        // finds the transaction aborted, which must not pass as success.
        let swallowed: Result<(), PgError> = conn
            .with_transaction(|txn| async move {
                txn.execute(insert.as_str(), &[&5i32]).await?;
                let _ = txn.query("SELECT 1/0").await;
                Ok(())
            })
            .await;
        check!(
            matches!(swallowed, Err(PgError::Transaction(_))),
            "got {swallowed:?}"
        );
        check_eq!(ids(&observer, &table).await?, vec![1, 2]);
        check!(!in_transaction_block(&conn).await?);
        check_eq!(ids(&conn, &table).await?, vec![1, 2]);

        drop_table(&conn, &table).await?;
        Ok(())
    })
}

#[test]
fn other_handles_wait_for_a_transaction_and_run_after_its_commit() -> TestResult {
    run(async {
        let conn = connect().await?;
        let other = conn.clone();
        let table = create_table(&conn, "txn_wait").await?;
        let insert = format!("INSERT INTO {table} (id) VALUES ($1)");

        let txn = conn.transaction().await?;
        txn.execute(insert.as_str(), &[&1i32]).await?;
        // Sent while the transaction is open: they must wait for it.
        let mut read = std::pin::pin!(other.query_one("SELECT txid_current_if_assigned()", &[]));
        check!(poll!(read.as_mut()).is_pending());
        let mut next_txn = std::pin::pin!(other.transaction());
        check!(poll!(next_txn.as_mut()).is_pending());
        check_eq!(ids(&txn, &table).await?, vec![1]);
        txn.commit().await?;

        // The read was queued before the next transaction: it runs now,
        // not after that transaction (which this task has not even started
        // using). Outside the writing transaction, no transaction id.
        let row = within(read, "a read queued before the next transaction").await??;
        check_eq!(row.get::<_, Option<i64>>(0)?, None);
        let next_txn = next_txn.await?;
        next_txn.execute(insert.as_str(), &[&2i32]).await?;
        next_txn.commit().await?;
        check_eq!(ids(&conn, &table).await?, vec![1, 2]);
        drop_table(&conn, &table).await?;
        Ok(())
    })
}

#[test]
fn a_query_started_before_a_transaction_runs_before_it() -> TestResult {
    run(async {
        let conn = connect().await?;
        let other = conn.clone();
        let table = create_table(&conn, "txn_before").await?;
        // SQL this connection has not prepared yet: the INSERT's Prepare goes
        // out first, its execution only once the Prepare is answered.
        let insert = format!("INSERT INTO {table} (id) VALUES ($1)");
        let mut inserting = std::pin::pin!(other.execute(insert.as_str(), &[&1i32]));
        check!(poll!(inserting.as_mut()).is_pending());
        // The transaction is asked for between the two, while the INSERT's
        // task keeps running: the INSERT must still go before BEGIN, so the
        // transaction sees its row and its rollback does not undo it.
        let in_transaction = async {
            let txn = conn.transaction().await?;
            let seen = ids(&txn, &table).await?;
            txn.rollback().await?;
            Ok::<_, PgError>(seen)
        };
        let (inserted, seen) = within(
            join(inserting, in_transaction),
            "an INSERT started before a transaction",
        )
        .await?;
        check_eq!(inserted?, 1);
        check_eq!(seen?, vec![1]);
        check_eq!(ids(&conn, &table).await?, vec![1]);
        drop_table(&conn, &table).await?;
        Ok(())
    })
}

#[test]
fn a_transaction_dropped_in_another_task_rolls_back_and_lets_waiters_run() -> TestResult {
    run(async {
        let conn = connect().await?;
        let observer = connect().await?;
        let other = conn.clone();
        let table = create_table(&conn, "txn_dropped").await?;
        let insert = format!("INSERT INTO {table} (id) VALUES ($1)");

        let txn = conn.transaction().await?;
        txn.execute(insert.as_str(), &[&1i32]).await?;
        // Another handle's INSERT, queued while the transaction is open.
        let mut queued = std::pin::pin!(other.execute(insert.as_str(), &[&3i32]));
        check!(poll!(queued.as_mut()).is_pending());

        // Another task writes more, leaves a request in flight, and ends
        // without commit or rollback.
        let task_insert = insert.clone();
        let task = spawn(async move {
            txn.execute(task_insert.as_str(), &[&2i32]).await?;
            let mut in_flight = std::pin::pin!(txn.execute(task_insert.as_str(), &[&4i32]));
            let _ = poll!(in_flight.as_mut());
            Ok::<(), PgError>(())
        });
        task.await??;

        // The queued INSERT ran after the rollback, not inside it.
        check_eq!(queued.await?, 1);
        check_eq!(ids(&other, &table).await?, vec![3]);
        check_eq!(ids(&observer, &table).await?, vec![3]);
        check!(!in_transaction_block(&conn).await?);
        // The lease was released: a new transaction begins and commits.
        let txn = conn.transaction().await?;
        txn.execute(insert.as_str(), &[&5i32]).await?;
        txn.commit().await?;
        check_eq!(ids(&observer, &table).await?, vec![3, 5]);
        drop_table(&conn, &table).await?;
        Ok(())
    })
}

#[test]
fn savepoints_roll_back_commit_drop_and_nest() -> TestResult {
    run(async {
        let conn = connect().await?;
        let observer = connect().await?;
        let table = create_table(&conn, "txn_savepoint").await?;
        let insert = format!("INSERT INTO {table} (id) VALUES ($1)");
        let insert = insert.as_str();

        let txn = conn.transaction().await?;
        txn.execute(insert, &[&1i32]).await?;

        let sp = txn.savepoint("first").await?;
        check!(sp.is_savepoint());
        sp.execute(insert, &[&2i32]).await?;
        check_eq!(ids(&sp, &table).await?, vec![1, 2]);
        sp.rollback().await?;
        check_eq!(ids(&txn, &table).await?, vec![1]);

        let sp = txn.savepoint("second").await?;
        sp.execute(insert, &[&3i32]).await?;
        sp.commit().await?;
        check_eq!(ids(&txn, &table).await?, vec![1, 3]);

        // Dropped without commit or rollback: rolled back to, and the outer
        // transaction goes on.
        let sp = txn.savepoint("third").await?;
        sp.execute(insert, &[&4i32]).await?;
        drop(sp);
        txn.execute(insert, &[&5i32]).await?;
        check_eq!(ids(&txn, &table).await?, vec![1, 3, 5]);

        // An error inside a savepoint: rolling back to it recovers.
        let sp = txn.savepoint("failing").await?;
        sp.execute(insert, &[&6i32]).await?;
        let duplicate = expect_err(sp.execute(insert, &[&1i32]).await, "a duplicate key")?;
        check_eq!(duplicate.code(), Some("23505"));
        sp.rollback().await?;
        check_eq!(ids(&txn, &table).await?, vec![1, 3, 5]);

        // The same, dropped instead of rolled back.
        let sp = txn.savepoint("failing_dropped").await?;
        check!(sp.execute(insert, &[&1i32]).await.is_err());
        drop(sp);
        check_eq!(ids(&txn, &table).await?, vec![1, 3, 5]);

        // Nested auto-named savepoints.
        let outer = txn.transaction().await?;
        check!(outer.is_savepoint());
        outer.execute(insert, &[&7i32]).await?;
        let inner = outer.transaction().await?;
        check!(inner.is_savepoint());
        inner.execute(insert, &[&8i32]).await?;
        check_eq!(ids(&inner, &table).await?, vec![1, 3, 5, 7, 8]);
        inner.rollback().await?;
        let inner = outer.transaction().await?;
        inner.execute(insert, &[&9i32]).await?;
        inner.commit().await?;
        outer.commit().await?;
        check_eq!(ids(&txn, &table).await?, vec![1, 3, 5, 7, 9]);

        // A hostile name is an identifier, not SQL.
        let hostile = format!("a\"; DROP TABLE {table}; --");
        let sp = txn.savepoint(&hostile).await?;
        sp.execute(insert, &[&10i32]).await?;
        sp.rollback().await?;
        let sp = txn.savepoint(&hostile).await?;
        sp.execute(insert, &[&11i32]).await?;
        sp.commit().await?;
        check_eq!(ids(&txn, &table).await?, vec![1, 3, 5, 7, 9, 11]);
        // A savepoint that ends a quoted name early would have run the DROP
        // (or failed): SAVEPOINT accepts no other statement after it.
        check_eq!(
            txn.query_one("SELECT to_regclass($1) IS NOT NULL", &[&table.as_str()])
                .await?
                .get::<_, bool>(0)?,
            true
        );

        // Nothing is visible outside before the commit.
        check_eq!(ids(&observer, &table).await?, Vec::<i32>::new());
        txn.commit().await?;
        check_eq!(ids(&observer, &table).await?, vec![1, 3, 5, 7, 9, 11]);
        check!(table_exists(&conn, &table).await?);
        check!(!in_transaction_block(&conn).await?);
        drop_table(&conn, &table).await?;
        Ok(())
    })
}

/// One side of the write-skew race: reads the table's sum, waits (first
/// attempt only) until the other side has read too, then inserts a row
/// holding the sum it read.
async fn read_sum_then_insert(
    txn: Transaction,
    table: &str,
    id: i32,
    barrier: Option<(oneshot::Sender<()>, oneshot::Receiver<()>)>,
) -> Result<(u32, String), PgError> {
    let isolation = setting(&txn, "transaction_isolation").await?;
    let sum: i64 = txn
        .query_one(
            format!("SELECT coalesce(sum(v), 0)::int8 FROM {table}").as_str(),
            &[],
        )
        .await?
        .get(0)?;
    if let Some((read, other_read)) = barrier {
        if txn.attempt() != 1 {
            return Err(PgError::Config(
                "the barrier is for the first attempt".into(),
            ));
        }
        let _ = read.send(());
        other_read
            .await
            .map_err(|_| PgError::Config("the other side failed before reading".into()))?;
    }
    txn.execute(
        format!("INSERT INTO {table} (id, v) VALUES ($1, $2)").as_str(),
        &[&id, &sum],
    )
    .await?;
    Ok((txn.attempt(), isolation))
}

#[test]
fn conflicting_serializable_transactions_both_succeed_under_retry() -> TestResult {
    run(async {
        let setup = connect().await?;
        let table = create_table(&setup, "txn_serial").await?;
        setup
            .simple_query(&format!(
                "INSERT INTO {table} (id, v) VALUES (1, 1), (2, 2)"
            ))
            .await?;
        let a = connect().await?;
        let b = connect().await?;
        let policy = RetryPolicy::default()
            .max_attempts(10)
            .backoff(Duration::from_millis(1), Duration::from_millis(20));

        let (a_read, a_has_read) = oneshot::channel();
        let (b_read, b_has_read) = oneshot::channel();
        let mut a_barrier = Some((a_read, b_has_read));
        let mut b_barrier = Some((b_read, a_has_read));
        let table_ref = table.as_str();
        let (a_result, b_result) = join(
            a.build_transaction()
                .isolation_level(IsolationLevel::Serializable)
                .with_retry(&policy, |txn| {
                    read_sum_then_insert(txn, table_ref, 10, a_barrier.take())
                }),
            b.build_transaction()
                .isolation_level(IsolationLevel::Serializable)
                .with_retry(&policy, |txn| {
                    read_sum_then_insert(txn, table_ref, 20, b_barrier.take())
                }),
        )
        .await;
        let (a_attempts, a_isolation) = a_result?;
        let (b_attempts, b_isolation) = b_result?;
        check_eq!(a_isolation, "serializable");
        check_eq!(b_isolation, "serializable");
        check!(
            a_attempts > 1 || b_attempts > 1,
            "both read before either wrote, yet neither was retried ({a_attempts}, {b_attempts})"
        );

        // Serializable: as if one ran after the other, so the second saw the
        // first one's row (sums 3 and 6), never both the initial sum 3.
        let result = setup
            .query(&format!(
                "SELECT v FROM {table} WHERE id IN (10, 20) ORDER BY v"
            ))
            .await?;
        let sums = result
            .iter()
            .map(|row| row.get::<_, i64>(0))
            .collect::<Result<Vec<_>, _>>()?;
        check_eq!(sums, vec![3, 6]);
        drop_table(&setup, &table).await?;
        Ok(())
    })
}

#[test]
fn retries_exhausted_reports_attempts_and_the_last_error() -> TestResult {
    run(async {
        let conn = connect().await?;
        let observer = connect().await?;
        let table = create_table(&conn, "txn_exhaust").await?;
        let insert = &format!("INSERT INTO {table} (id) VALUES ($1)");
        let policy = RetryPolicy::default()
            .max_attempts(3)
            .backoff(Duration::from_millis(1), Duration::from_millis(2));

        let mut seen = Vec::new();
        let result: Result<(), PgError> = conn
            .with_transaction_retry(&policy, |txn| {
                seen.push(txn.attempt());
                async move {
                    let id = i32::try_from(txn.attempt()).unwrap_or(i32::MAX);
                    txn.execute(insert.as_str(), &[&id]).await?;
                    txn.simple_query(RAISE_40001).await?;
                    Ok(())
                }
            })
            .await;
        let error = expect_err(result, "work that always loses the race")?;
        check_eq!(error.code(), Some("40001"));
        match &error {
            PgError::RetriesExhausted { attempts, last } => {
                check_eq!(*attempts, 3);
                check_eq!(last.code(), Some("40001"));
                check!(matches!(**last, PgError::Server(_)), "last: {last:?}");
            }
            other => return Err(format!("expected RetriesExhausted, got {other:?}").into()),
        }
        check_eq!(seen, vec![1, 2, 3]);
        // Every attempt was rolled back.
        check_eq!(ids(&observer, &table).await?, Vec::<i32>::new());
        check!(!in_transaction_block(&conn).await?);

        // A permanent error: returned at once, after one attempt.
        conn.execute(insert.as_str(), &[&1i32]).await?;
        let mut calls = 0;
        let result: Result<(), PgError> = conn
            .with_transaction_retry(&policy, |txn| {
                calls += 1;
                async move {
                    txn.execute(insert.as_str(), &[&1i32]).await?;
                    Ok(())
                }
            })
            .await;
        let error = expect_err(result, "a duplicate key")?;
        check!(matches!(error, PgError::Server(_)), "got {error:?}");
        check_eq!(error.code(), Some("23505"));
        check_eq!(calls, 1);

        // The codes are the policy's to choose.
        let mut calls = 0;
        let result: Result<(), PgError> = conn
            .with_transaction_retry(
                &policy.clone().max_attempts(2).retry_on_codes(["23505"]),
                |txn| {
                    calls += 1;
                    async move {
                        txn.execute(insert.as_str(), &[&1i32]).await?;
                        Ok(())
                    }
                },
            )
            .await;
        match expect_err(result, "a duplicate key")? {
            PgError::RetriesExhausted { attempts, last } => {
                check_eq!(attempts, 2);
                check_eq!(last.code(), Some("23505"));
            }
            other => return Err(format!("expected RetriesExhausted, got {other:?}").into()),
        }
        check_eq!(calls, 2);
        check_eq!(ids(&observer, &table).await?, vec![1]);

        // RetryPolicy::run outside a transaction: retries until success.
        let mut seen = Vec::new();
        let value = policy
            .run(|attempt| {
                seen.push(attempt);
                let conn = &conn;
                async move {
                    if attempt < 3 {
                        conn.simple_query(RAISE_40001).await?;
                    }
                    Ok(attempt)
                }
            })
            .await?;
        check_eq!(value, 3);
        check_eq!(seen, vec![1, 2, 3]);
        check!(!in_transaction_block(&conn).await?);
        drop_table(&conn, &table).await?;
        Ok(())
    })
}

#[test]
fn set_param_binds_hostile_values_and_reset_param_restores_defaults() -> TestResult {
    run(async {
        let conn = connect().await?;
        let table = create_table(&conn, "txn_param").await?;
        let default_app = setting(&conn, "application_name").await?;
        let default_timeout = setting(&conn, "statement_timeout").await?;
        check_eq!(conn.session_params(), Vec::<(String, String)>::new());

        let value = format!("x'; DROP TABLE {table}; --");
        conn.set_param("application_name", &value).await?;
        check_eq!(setting(&conn, "application_name").await?, value);
        let shown = conn.query("SHOW application_name").await?;
        check_eq!(shown.rows()[0].get::<_, String>(0)?, value);
        check_eq!(conn.parameter("application_name"), Some(value.clone()));
        check!(table_exists(&conn, &table).await?);

        conn.set_param("statement_timeout", "4567ms").await?;
        check_eq!(setting(&conn, "statement_timeout").await?, "4567ms");
        let both = vec![
            ("application_name".to_string(), value.clone()),
            ("statement_timeout".to_string(), "4567ms".to_string()),
        ];
        check_eq!(conn.session_params(), both);

        // A hostile name: the server refuses it, nothing else runs, and it
        // is not remembered.
        let hostile = format!("application_name'; DROP TABLE {table}; --");
        let refused = expect_err(conn.set_param(&hostile, "y").await, "a hostile name")?;
        check_eq!(refused.code(), Some("42704"));
        let refused = expect_err(conn.reset_param(&hostile).await, "a hostile name")?;
        check_eq!(refused.code(), Some("42704"));
        check!(table_exists(&conn, &table).await?);
        check_eq!(setting(&conn, "application_name").await?, value);
        check_eq!(conn.session_params(), both);

        conn.reset_param("statement_timeout").await?;
        check_eq!(setting(&conn, "statement_timeout").await?, default_timeout);
        check_eq!(
            conn.session_params(),
            vec![("application_name".to_string(), value.clone())]
        );
        conn.reset_param("application_name").await?;
        check_eq!(setting(&conn, "application_name").await?, default_app);
        check_eq!(
            conn.parameter("application_name"),
            Some(default_app.clone())
        );
        check_eq!(conn.session_params(), Vec::<(String, String)>::new());

        drop_table(&conn, &table).await?;
        Ok(())
    })
}

#[test]
fn set_local_is_undone_when_the_transaction_ends() -> TestResult {
    run(async {
        let conn = connect().await?;
        let default_app = setting(&conn, "application_name").await?;
        let default_timeout = setting(&conn, "statement_timeout").await?;

        let txn = conn.transaction().await?;
        txn.set_local("statement_timeout", "2345ms").await?;
        txn.set_local("application_name", "local'; SELECT 1; --")
            .await?;
        check_eq!(setting(&txn, "statement_timeout").await?, "2345ms");
        check_eq!(
            setting(&txn, "application_name").await?,
            "local'; SELECT 1; --"
        );
        check_eq!(
            conn.parameter("application_name"),
            Some("local'; SELECT 1; --".to_string())
        );
        txn.commit().await?;

        check_eq!(setting(&conn, "statement_timeout").await?, default_timeout);
        check_eq!(setting(&conn, "application_name").await?, default_app);
        check_eq!(conn.parameter("application_name"), Some(default_app));
        // SET LOCAL is not a session setting to replay.
        check_eq!(conn.session_params(), Vec::<(String, String)>::new());
        Ok(())
    })
}

#[test]
fn an_aborted_transaction_refuses_statements_and_cannot_commit() -> TestResult {
    run(async {
        let conn = connect().await?;
        let observer = connect().await?;
        let table = create_table(&conn, "txn_aborted").await?;
        let insert = format!("INSERT INTO {table} (id) VALUES ($1)");
        let insert = insert.as_str();

        let txn = conn.transaction().await?;
        txn.execute(insert, &[&1i32]).await?;
        let error = expect_err(txn.query("SELECT 1/0").await, "a division by zero")?;
        check_eq!(error.code(), Some("22012"));
        let error = expect_err(
            txn.query_one("SELECT 1", &[]).await,
            "a statement after an error",
        )?;
        check_eq!(error.code(), Some("25P02"));
        let error = expect_err(
            txn.execute(insert, &[&2i32]).await,
            "an INSERT after an error",
        )?;
        check_eq!(error.code(), Some("25P02"));
        let commit = txn.commit().await;
        check!(
            matches!(commit, Err(PgError::Transaction(_))),
            "commit of an aborted transaction gave {commit:?}"
        );
        check!(!in_transaction_block(&conn).await?);
        check_eq!(ids(&observer, &table).await?, Vec::<i32>::new());
        check_eq!(conn.query_one("SELECT 7", &[]).await?.get::<_, i32>(0)?, 7);

        // Rolled back instead: the connection carries on normally.
        let txn = conn.transaction().await?;
        txn.execute(insert, &[&3i32]).await?;
        check!(txn.execute(insert, &[&3i32]).await.is_err());
        txn.rollback().await?;
        check!(!in_transaction_block(&conn).await?);
        check_eq!(ids(&conn, &table).await?, Vec::<i32>::new());
        let txn = conn.transaction().await?;
        txn.execute(insert, &[&4i32]).await?;
        txn.commit().await?;
        check_eq!(ids(&observer, &table).await?, vec![4]);
        drop_table(&conn, &table).await?;
        Ok(())
    })
}

#[test]
fn an_ended_transactions_clones_cannot_run_statements() -> TestResult {
    run(async {
        let conn = connect().await?;
        let observer = connect().await?;
        let table = create_table(&conn, "txn_clone").await?;
        let insert = format!("INSERT INTO {table} (id) VALUES ($1)");
        let insert = insert.as_str();

        let txn = conn.transaction().await?;
        let clone = txn.clone();
        clone.execute(insert, &[&1i32]).await?;
        txn.commit().await?;
        let error = expect_err(clone.execute(insert, &[&2i32]).await, "a committed clone")?;
        check!(matches!(error, PgError::Transaction(_)), "got {error:?}");
        let error = expect_err(clone.query("SELECT 1").await, "a committed clone")?;
        check!(matches!(error, PgError::Transaction(_)), "got {error:?}");
        check!(matches!(
            clone.savepoint("late").await,
            Err(PgError::Transaction(_))
        ));
        check!(matches!(
            clone.set_local("statement_timeout", "1s").await,
            Err(PgError::Transaction(_))
        ));
        check!(matches!(
            clone.clone().commit().await,
            Err(PgError::Transaction(_))
        ));
        check!(matches!(
            clone.clone().rollback().await,
            Err(PgError::Transaction(_))
        ));
        drop(clone);
        check!(!in_transaction_block(&conn).await?);
        check_eq!(ids(&observer, &table).await?, vec![1]);

        let txn = conn.transaction().await?;
        let clone = txn.clone();
        txn.rollback().await?;
        check!(matches!(
            clone.execute(insert, &[&3i32]).await,
            Err(PgError::Transaction(_))
        ));
        drop(clone);

        // A savepoint outliving its transaction: its handle is refused too
        // (the lease it was written for has ended).
        let txn = conn.transaction().await?;
        let sp = txn.savepoint("outliving").await?;
        sp.execute(insert, &[&5i32]).await?;
        txn.commit().await?;
        let error = expect_err(sp.execute(insert, &[&6i32]).await, "a stale savepoint")?;
        check!(matches!(error, PgError::Transaction(_)), "got {error:?}");
        let error = expect_err(sp.query("SELECT 1").await, "a stale savepoint")?;
        check!(matches!(error, PgError::Transaction(_)), "got {error:?}");
        let error = expect_err(
            sp.query_one(format!("SELECT count(*) FROM {table}").as_str(), &[])
                .await,
            "a stale savepoint",
        )?;
        check!(matches!(error, PgError::Transaction(_)), "got {error:?}");
        drop(sp);

        check!(!in_transaction_block(&conn).await?);
        check_eq!(ids(&conn, &table).await?, vec![1, 5]);
        check_eq!(ids(&observer, &table).await?, vec![1, 5]);
        drop_table(&conn, &table).await?;
        Ok(())
    })
}

#[test]
fn a_stale_savepoint_is_refused_while_a_newer_transaction_is_open() -> TestResult {
    run(async {
        let conn = connect().await?;
        let table = create_table(&conn, "txn_stale").await?;
        let insert = format!("INSERT INTO {table} (id) VALUES ($1)");
        let insert = insert.as_str();

        let first = conn.transaction().await?;
        let stale = first.savepoint("stale").await?;
        stale.execute(insert, &[&1i32]).await?;
        first.commit().await?;

        // The savepoint's transaction has ended; a newer one holds the
        // connection. The stale handle's statement must be refused, not
        // held until the newer transaction ends (this task would never end
        // it while waiting) and not run inside it.
        let newer = conn.transaction().await?;
        let late = within(
            stale.execute(insert, &[&2i32]),
            "a stale savepoint's INSERT",
        )
        .await;
        newer.execute(insert, &[&3i32]).await?;
        check_eq!(ids(&newer, &table).await?, vec![1, 3]);
        newer.commit().await?;
        let late = late?;
        check!(
            matches!(late, Err(PgError::Transaction(_))),
            "a stale savepoint's INSERT gave {late:?}"
        );
        drop(stale);
        check_eq!(ids(&conn, &table).await?, vec![1, 3]);
        check!(!in_transaction_block(&conn).await?);
        drop_table(&conn, &table).await?;
        Ok(())
    })
}

/// Written once for both: a connection or a transaction.
async fn insert_and_count(db: &impl GenericClient, table: &str, id: i32) -> Result<i64, PgError> {
    db.execute(
        format!("INSERT INTO {table} (id) VALUES ($1)").as_str(),
        &[&id],
    )
    .await?;
    db.query_one(format!("SELECT count(*) FROM {table}").as_str(), &[])
        .await?
        .get(0)
}

/// Inserts two rows atomically: in a transaction on a connection, in a
/// savepoint inside a transaction. The second row's id may collide.
async fn insert_pair(db: &impl GenericClient, table: &str, a: i32, b: i32) -> Result<(), PgError> {
    let inner = db.transaction().await?;
    let result = async {
        insert_and_count(&inner, table, a).await?;
        insert_and_count(&inner, table, b).await
    }
    .await;
    match result {
        Ok(_) => inner.commit().await,
        Err(e) => {
            inner.rollback().await?;
            Err(e)
        }
    }
}

#[test]
fn generic_code_runs_on_a_connection_and_in_a_transaction() -> TestResult {
    run(async {
        let conn = connect().await?;
        let observer = connect().await?;
        let table = create_table(&conn, "txn_generic").await?;

        check_eq!(insert_and_count(&conn, &table, 1).await?, 1);
        let txn = conn.transaction().await?;
        check_eq!(insert_and_count(&txn, &table, 2).await?, 2);
        check_eq!(ids(&observer, &table).await?, vec![1]);

        // Inside a transaction, the generic `transaction` is a savepoint.
        let nested = GenericClient::transaction(&txn).await?;
        check!(nested.is_savepoint());
        check_eq!(insert_and_count(&nested, &table, 3).await?, 3);
        nested.rollback().await?;
        let failed = insert_pair(&txn, &table, 4, 1).await;
        check_eq!(
            expect_err(failed, "a duplicate in the pair")?.code(),
            Some("23505")
        );
        insert_pair(&txn, &table, 5, 6).await?;
        check_eq!(ids(&txn, &table).await?, vec![1, 2, 5, 6]);
        txn.rollback().await?;
        check_eq!(ids(&observer, &table).await?, vec![1]);

        // On a connection it is a real transaction.
        let failed = insert_pair(&conn, &table, 7, 1).await;
        check_eq!(
            expect_err(failed, "a duplicate in the pair")?.code(),
            Some("23505")
        );
        insert_pair(&conn, &table, 8, 9).await?;
        check_eq!(ids(&observer, &table).await?, vec![1, 8, 9]);
        let outer = GenericClient::transaction(&conn).await?;
        check!(!outer.is_savepoint());
        outer.rollback().await?;
        check!(!in_transaction_block(&conn).await?);
        drop_table(&conn, &table).await?;
        Ok(())
    })
}

#[test]
fn a_cursor_inside_a_transaction_sees_its_rows_and_the_transaction_goes_on() -> TestResult {
    run(async {
        let conn = connect().await?;
        let observer = connect().await?;
        let table = create_table(&conn, "txn_cursor").await?;

        let txn = conn.transaction().await?;
        txn.execute(
            format!("INSERT INTO {table} (id) SELECT g FROM generate_series(1, 300) g").as_str(),
            &[],
        )
        .await?;
        let select = format!("SELECT id FROM {table} WHERE id > $1 ORDER BY id");
        let mut cursor = txn
            .query_cursor_stream(select.as_str(), &[&0i32], 25)
            .await?;
        let mut expected = 1;
        while let Some(row) = cursor.next().await? {
            check_eq!(row.get::<_, i32>(0)?, expected);
            expected += 1;
        }
        check_eq!(expected, 301);
        drop(cursor);

        txn.execute(
            format!("INSERT INTO {table} (id) VALUES (301)").as_str(),
            &[],
        )
        .await?;
        // A second cursor, dropped part-way: the transaction still goes on.
        let mut cursor = txn
            .query_cursor_stream(select.as_str(), &[&100i32], 10)
            .await?;
        check_eq!(
            cursor
                .next()
                .await?
                .map(|r| r.get::<_, i32>(0))
                .transpose()?,
            Some(101)
        );
        drop(cursor);
        let count: i64 = txn
            .query_one(format!("SELECT count(*) FROM {table}").as_str(), &[])
            .await?
            .get(0)?;
        check_eq!(count, 301);
        check_eq!(ids(&observer, &table).await?.len(), 0);
        txn.commit().await?;
        check_eq!(ids(&observer, &table).await?.len(), 301);
        check!(!in_transaction_block(&conn).await?);
        drop_table(&conn, &table).await?;
        Ok(())
    })
}
