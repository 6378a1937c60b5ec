//! Row streams: order, errors mid-stream, early drops, backpressure, and a
//! held stream that must not deadlock the requests behind it.

mod common;

use common::{connect, run, TestResult};
use futures_util::StreamExt;
use wasi_pg_client::PgError;

#[test]
fn a_large_result_streams_in_order() -> TestResult {
    run(async {
        let conn = connect().await?;
        let mut stream = conn
            .query_stream("SELECT g, md5(g::text) FROM generate_series(1, 200000) g")
            .await?;
        let mut expected = 1i32;
        while let Some(row) = stream.next().await? {
            check_eq!(row.get::<_, i32>(0)?, expected);
            check_eq!(row.get::<_, &str>(1)?.len(), 32);
            expected += 1;
        }
        check_eq!(expected, 200_001);
        check_eq!(stream.rows_affected(), Some(200_000));
        check_eq!(stream.columns()[1].name(), "md5");
        Ok(())
    })
}

#[test]
fn parameterized_stream_is_a_futures_stream() -> TestResult {
    run(async {
        let conn = connect().await?;
        let stream = conn
            .query_params_stream("SELECT g FROM generate_series(1, $1) g", &[&1000i32])
            .await?;
        let rows: Vec<_> = stream.collect().await;
        check_eq!(rows.len(), 1000);
        let last = rows.into_iter().last().ok_or("no rows")??;
        check_eq!(last.get::<_, i32>(0)?, 1000);
        Ok(())
    })
}

#[test]
fn an_error_mid_stream_is_an_err_and_the_connection_survives() -> TestResult {
    run(async {
        let conn = connect().await?;
        let mut stream = conn
            .query_stream("SELECT 100 / (50 - g) FROM generate_series(1, 100) g")
            .await?;
        let mut rows = 0;
        let error = loop {
            match stream.next().await {
                Ok(Some(_)) => rows += 1,
                Ok(None) => return Err("the division by zero must surface".into()),
                Err(e) => break e,
            }
        };
        check_eq!(error.code(), Some("22012"));
        check!(rows < 50, "{rows} rows before the error");
        check!(
            stream.next().await?.is_none(),
            "a failed stream stays ended"
        );
        check_eq!(conn.query_one("SELECT 1", &[]).await?.get::<_, i32>(0)?, 1);
        Ok(())
    })
}

#[test]
fn dropping_a_stream_early_does_not_stall_the_connection() -> TestResult {
    run(async {
        let conn = connect().await?;
        for _ in 0..3 {
            let mut stream = conn
                .query_stream("SELECT g, repeat('x', 200) FROM generate_series(1, 100000) g")
                .await?;
            check!(stream.next().await?.is_some());
        }
        check_eq!(conn.query_one("SELECT 5", &[]).await?.get::<_, i32>(0)?, 5);
        Ok(())
    })
}

#[test]
fn a_slow_consumer_makes_the_server_wait_instead_of_growing_memory() -> TestResult {
    run(async {
        let conn = connect().await?;
        let observer = connect().await?;
        let pid = conn.backend_pid().ok_or("no backend pid")?;
        let mut stream = conn
            .query_stream("SELECT g, md5(g::text) FROM generate_series(1, 1000000) g")
            .await?;
        check!(stream.next().await?.is_some());
        // The client has stopped reading: the server is blocked sending the
        // rest of the ~45 MB result, and the actor holds a few chunks of it.
        common::server_waits_for_the_reader(&observer, &conn, pid).await?;
        // Reading on, one row at a time, keeps it that small to the end.
        let mut count = 1;
        while stream.next().await?.is_some() {
            count += 1;
        }
        check_eq!(count, 1_000_000);
        common::actor_held_little_throughout(&conn)?;
        Ok(())
    })
}

#[test]
fn a_held_stream_does_not_deadlock_the_requests_behind_it() -> TestResult {
    run(async {
        let conn = connect().await?;
        // Small enough to buffer: the other request passes, the held stream
        // still yields everything afterwards.
        let mut small = conn
            .query_stream("SELECT g FROM generate_series(1, 50000) g")
            .await?;
        check_eq!(
            conn.query_one("SELECT 42", &[]).await?.get::<_, i32>(0)?,
            42
        );
        let mut count = 0;
        while small.next().await?.is_some() {
            count += 1;
        }
        check_eq!(count, 50_000);

        // Far over the limit: the other request still passes, and the held
        // stream ends with an error that says why.
        let mut big = conn
            .query_stream("SELECT g, repeat('y', 100) FROM generate_series(1, 1000000) g")
            .await?;
        check!(big.next().await?.is_some());
        check_eq!(
            conn.query_one("SELECT 43", &[]).await?.get::<_, i32>(0)?,
            43
        );
        let error = loop {
            match big.next().await {
                Ok(Some(_)) => {}
                Ok(None) => return Err("the held stream must be ended with an error".into()),
                Err(e) => break e,
            }
        };
        check!(matches!(error, PgError::Decode(_)), "{error:?}");
        check!(error.to_string().contains("was not read"), "{error}");
        check_eq!(
            conn.query_one("SELECT 44", &[]).await?.get::<_, i32>(0)?,
            44
        );
        Ok(())
    })
}
