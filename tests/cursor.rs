//! Cursor streaming: rows in batches through a portal, under the
//! connection's lease.

mod common;

use std::time::Duration;

use common::{connect, run, TestResult};
use futures_util::future::join;
use wasi_pg_client::Connection;

/// `SELECT n` on `conn` once a cursor is done with it, or a failure after
/// a generous limit: a cursor that kept its lease would leave it waiting
/// forever (a guard against a hang, never synchronisation).
async fn select_after_cursor(conn: &Connection, n: i32) -> Result<i32, Box<dyn std::error::Error>> {
    let sql = format!("SELECT {n}");
    let row = common::within(
        Duration::from_secs(10),
        "a query after the cursor",
        conn.query_one(&sql, &[]),
    )
    .await??;
    Ok(row.get(0)?)
}

#[test]
fn a_cursor_fetches_every_row_in_batches() -> TestResult {
    run(async {
        let conn = connect().await?;
        let mut cursor = conn
            .query_cursor_stream(
                "SELECT g FROM generate_series(1, $1) g",
                &[&10_000i32],
                1000,
            )
            .await?;
        let mut expected = 1;
        while let Some(row) = cursor.next().await? {
            check_eq!(row.get::<_, i32>(0)?, expected);
            expected += 1;
        }
        check_eq!(expected, 10_001);
        check_eq!(select_after_cursor(&conn, 1).await?, 1);
        Ok(())
    })
}

#[test]
fn other_handles_wait_for_the_cursor_then_proceed() -> TestResult {
    run(async {
        let conn = connect().await?;
        let other = conn.clone();
        let mut cursor = conn
            .query_cursor_stream("SELECT g FROM generate_series(1, 5000) g", &[], 100)
            .await?;
        check!(cursor.next().await?.is_some());
        let drain = async {
            let mut rows = 1;
            while cursor.next().await?.is_some() {
                rows += 1;
            }
            Ok::<_, wasi_pg_client::PgError>(rows)
        };
        // Sent while the cursor holds the lease: it waits, then runs.
        let (rows, answer) = common::within(
            Duration::from_secs(10),
            "the cursor and a query waiting for it",
            join(drain, other.query_one("SELECT 77", &[])),
        )
        .await?;
        check_eq!(rows?, 5000);
        check_eq!(answer?.get::<_, i32>(0)?, 77);
        Ok(())
    })
}

#[test]
fn dropping_a_cursor_early_releases_the_connection() -> TestResult {
    run(async {
        let conn = connect().await?;
        for _ in 0..3 {
            let mut cursor = conn
                .query_cursor_stream("SELECT g FROM generate_series(1, 100000) g", &[], 50)
                .await?;
            check!(cursor.next().await?.is_some());
        }
        check_eq!(select_after_cursor(&conn, 2).await?, 2);
        Ok(())
    })
}

#[test]
fn an_error_mid_cursor_is_an_err_and_the_connection_survives() -> TestResult {
    run(async {
        let conn = connect().await?;
        let mut cursor = conn
            .query_cursor_stream(
                "SELECT 100 / (50 - g) FROM generate_series(1, 100) g",
                &[],
                10,
            )
            .await?;
        let mut rows = 0;
        let error = loop {
            match cursor.next().await {
                Ok(Some(_)) => rows += 1,
                Ok(None) => return Err("the division by zero must surface".into()),
                Err(e) => break e,
            }
        };
        check_eq!(error.code(), Some("22012"));
        check!((40..50).contains(&rows), "{rows} rows before the error");
        check!(cursor.next().await?.is_none());
        check_eq!(select_after_cursor(&conn, 3).await?, 3);
        Ok(())
    })
}
