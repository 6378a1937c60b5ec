//! Cursor streaming: rows in batches through a portal, under the
//! connection's lease.

mod common;

use common::{connect, run, TestResult};
use futures_util::future::join;

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
        check_eq!(conn.query_one("SELECT 1", &[]).await?.get::<_, i32>(0)?, 1);
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
        let (rows, answer) = join(drain, other.query_one("SELECT 77", &[])).await;
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
        check_eq!(conn.query_one("SELECT 2", &[]).await?.get::<_, i32>(0)?, 2);
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
        check_eq!(conn.query_one("SELECT 3", &[]).await?.get::<_, i32>(0)?, 3);
        Ok(())
    })
}
