//! The explicit pipeline: a batch of statements in one write, independent
//! (a Sync each) or atomic (one Sync, all-or-nothing).

mod common;

use common::{connect, count, run, unique, TestResult};
use wasi_pg_client::{Connection, PgError, PipelineMode};

async fn table(conn: &Connection, prefix: &str) -> Result<String, PgError> {
    let name = unique(prefix);
    conn.simple_query(&format!(
        "CREATE TABLE {name} (id int4 PRIMARY KEY, label text NOT NULL)"
    ))
    .await?;
    Ok(name)
}

#[test]
fn an_atomic_pipeline_applies_every_statement_in_order() -> TestResult {
    run(async {
        let conn = connect().await?;
        let name = table(&conn, "batch_atomic").await?;
        let insert = format!("INSERT INTO {name} (id, label) VALUES ($1, $2)");
        let mut batch = conn.pipeline().mode(PipelineMode::Atomic);
        for id in 0..2000i32 {
            batch
                .push(insert.as_str(), &[&id, &format!("row {id}")])
                .await?;
        }
        batch
            .push(format!("SELECT count(*)::int4 FROM {name}").as_str(), &[])
            .await?;
        check_eq!(batch.len(), 2001);
        let results = batch.run().await?;
        check_eq!(results.len(), 2001);
        for result in &results[..2000] {
            check_eq!(
                result.as_ref().map_err(Clone::clone)?.rows_affected(),
                Some(1)
            );
        }
        // The last statement saw all the inserts before it.
        let seen: i32 = results[2000].as_ref().map_err(Clone::clone)?.rows()[0].get(0)?;
        check_eq!(seen, 2000);
        check_eq!(count(&conn, &name).await?, 2000);
        // One statement cached for 2000 executions.
        Ok(())
    })
}

#[test]
fn an_atomic_pipeline_that_fails_applies_nothing() -> TestResult {
    run(async {
        let conn = connect().await?;
        let name = table(&conn, "batch_atomic_fail").await?;
        let insert = format!("INSERT INTO {name} (id, label) VALUES ($1, $2)");
        let mut batch = conn.pipeline().mode(PipelineMode::Atomic);
        for id in [1i32, 2, 2, 3] {
            batch.push(insert.as_str(), &[&id, &"x"]).await?;
        }
        match batch.run().await {
            Err(PgError::Server(db)) => check!(db.is_unique_violation(), "got {db}"),
            other => return Err(format!("expected a unique violation, got {other:?}").into()),
        }
        check_eq!(count(&conn, &name).await?, 0);
        // The connection is in step and usable.
        check_eq!(
            conn.query_one("SELECT 7::int4", &[])
                .await?
                .get::<_, i32>(0)?,
            7
        );
        Ok(())
    })
}

#[test]
fn an_independent_pipeline_reports_each_failure_and_runs_the_rest() -> TestResult {
    run(async {
        let conn = connect().await?;
        let name = table(&conn, "batch_independent").await?;
        let insert = format!("INSERT INTO {name} (id, label) VALUES ($1, $2)");
        let mut batch = conn.pipeline();
        for id in [1i32, 2, 2, 3] {
            batch.push(insert.as_str(), &[&id, &"x"]).await?;
        }
        batch.push("SELECT 1/0", &[]).await?;
        batch.push("SELECT 'after'::text", &[]).await?;
        let results = batch.run().await?;
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
        check_eq!(count(&conn, &name).await?, 3);
        Ok(())
    })
}

#[test]
fn a_bad_parameter_fails_at_push_and_leaves_the_pipeline_intact() -> TestResult {
    run(async {
        let conn = connect().await?;
        let mut batch = conn.pipeline();
        batch.push("SELECT $1::int4", &[&1i32]).await?;
        let wrong_count = batch.push("SELECT $1::int4", &[]).await;
        check!(
            matches!(wrong_count, Err(PgError::Encode(_))),
            "got {wrong_count:?}"
        );
        let wrong_type = batch.push("SELECT $1::int4", &[&"text"]).await;
        check!(
            matches!(wrong_type, Err(PgError::Encode(_))),
            "got {wrong_type:?}"
        );
        check_eq!(batch.len(), 1);
        let results = batch.run().await?;
        check_eq!(results.len(), 1);
        let one: i32 = results[0].as_ref().map_err(Clone::clone)?.rows()[0].get(0)?;
        check_eq!(one, 1);
        check!(conn.pipeline().run().await?.is_empty());
        Ok(())
    })
}

#[test]
fn a_pipeline_inside_a_transaction_runs_under_its_lease() -> TestResult {
    run(async {
        let conn = connect().await?;
        let name = table(&conn, "batch_txn").await?;
        let insert = format!("INSERT INTO {name} (id, label) VALUES ($1, $2)");
        let txn = conn.transaction().await?;
        let mut batch = txn.pipeline().mode(PipelineMode::Atomic);
        for id in 0..10i32 {
            batch.push(insert.as_str(), &[&id, &"in txn"]).await?;
        }
        check_eq!(batch.run().await?.len(), 10);
        let inside: i64 = txn
            .query_one(&format!("SELECT count(*) FROM {name}"), &[])
            .await?
            .get(0)?;
        check_eq!(inside, 10);
        txn.rollback().await?;
        check_eq!(count(&conn, &name).await?, 0);
        Ok(())
    })
}

#[test]
fn a_pipeline_without_a_statement_cache_uses_unnamed_statements() -> TestResult {
    run(async {
        let config = common::config()?.statement_cache_size(0);
        let conn = Connection::connect(&config).await?;
        let mut batch = conn.pipeline().mode(PipelineMode::Atomic);
        for i in 0..100i32 {
            // Two texts alternating: each execution parses its own again.
            let sql = if i % 2 == 0 {
                "SELECT $1::int4 * 2"
            } else {
                "SELECT $1::int4 + 1000"
            };
            batch.push(sql, &[&i]).await?;
        }
        let results = batch.run().await?;
        for (i, result) in (0i32..).zip(&results) {
            let got: i32 = result.as_ref().map_err(Clone::clone)?.rows()[0].get(0)?;
            check_eq!(got, if i % 2 == 0 { i * 2 } else { i + 1000 });
        }
        Ok(())
    })
}
