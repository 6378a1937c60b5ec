//! One connection shared by many tasks: requests pipeline through the actor
//! and every caller gets its own answer.

mod common;

use std::future::Future;

use common::fake;
use common::{connect, run, spawn, TestResult};
use futures_util::future::{join, join_all};
use wasi_pg_client::{Config, Connection};

#[test]
fn fifty_tasks_share_one_connection() -> TestResult {
    run(async {
        let conn = connect().await?;
        let tasks: Vec<_> = (0..50i32)
            .map(|task| {
                let conn = conn.clone();
                spawn(async move {
                    for i in 0..20i32 {
                        let want = task * 1000 + i;
                        let row = conn
                            .query_params(
                                "SELECT $1::int4 AS n, $2::text AS s",
                                &[&want, &want.to_string()],
                            )
                            .await
                            .map_err(|e| e.to_string())?;
                        let n: i32 = row.rows()[0].get(0).map_err(|e| e.to_string())?;
                        let s: String = row.rows()[0].get(1).map_err(|e| e.to_string())?;
                        if n != want || s != want.to_string() {
                            return Err(format!("task {task} asked {want}, got {n}/{s}"));
                        }
                    }
                    Ok::<u32, String>(20)
                })
            })
            .collect();
        let mut answered = 0;
        for result in join_all(tasks).await {
            answered += result??;
        }
        check_eq!(answered, 1000);
        Ok(())
    })
}

#[test]
fn large_requests_and_large_answers_both_ways_at_once() -> TestResult {
    run(async {
        // Each request carries 1 MiB and its answer brings it back: far more
        // than the socket buffers hold, so the actor must read while it
        // writes or both sides block (pgjdbc #194).
        let conn = connect().await?;
        let payloads: Vec<String> = (0..24u8)
            .map(|i| std::iter::repeat_n(char::from(b'a' + i % 26), 1 << 20).collect())
            .collect();
        let answers = join_all(payloads.iter().map(|p| {
            let conn = &conn;
            async move { conn.query_one("SELECT $1::text", &[p]).await }
        }))
        .await;
        for (p, answer) in payloads.iter().zip(answers) {
            let got: String = answer?.get(0)?;
            check!(got == *p, "a 1 MiB echo came back different");
        }
        Ok(())
    })
}

#[test]
fn one_failure_does_not_poison_the_pipeline() -> TestResult {
    run(async {
        let conn = connect().await?;
        let (a, b, c) = futures_util::join!(
            conn.query_one("SELECT 1", &[]),
            conn.query_one("SELECT 1/0", &[]),
            conn.query_one("SELECT 3", &[])
        );
        check_eq!(a?.get::<_, i32>(0)?, 1);
        check_eq!(
            b.err().and_then(|e| e.code().map(String::from)).as_deref(),
            Some("22012")
        );
        check_eq!(c?.get::<_, i32>(0)?, 3);
        Ok(())
    })
}

#[test]
fn an_abandoned_request_does_not_stall_the_others() -> TestResult {
    run(async {
        let conn = connect().await?;
        {
            // Start a big answer and drop it after the first poll: the
            // actor discards its rows.
            let mut big = Box::pin(
                conn.query("SELECT g, repeat('x', 100) FROM generate_series(1, 200000) g"),
            );
            std::future::poll_fn(|cx| {
                let _ = big.as_mut().poll(cx);
                std::task::Poll::Ready(())
            })
            .await;
        }
        let row = conn.query_one("SELECT 42", &[]).await?;
        check_eq!(row.get::<_, i32>(0)?, 42);
        Ok(())
    })
}

#[test]
fn dropping_the_last_handle_sends_terminate() -> TestResult {
    run(async {
        let (client, mut server) = fake::pair(64 * 1024);
        let server_side = async move {
            server.accept_trust().await?;
            let (tag, _) = server.read_message().await?;
            if tag != b'X' {
                return Err(format!("expected Terminate, got {:?}", char::from(tag)));
            }
            // And then the stream ends: the actor is gone.
            match server.read_message().await {
                Err(_) => Ok(()),
                Ok((tag, _)) => Err(format!("unexpected {:?} after Terminate", char::from(tag))),
            }
        };
        let client_side = async {
            let config = Config::new()
                .user("alice")
                .ssl_mode(wasi_pg_client::SslMode::Disable);
            let (conn, task) = Connection::connect_with_transport(&config, client)
                .await
                .map_err(|e| e.to_string())?;
            let actor = spawn(task);
            let clone = conn.clone();
            drop(conn);
            drop(clone);
            actor.await
        };
        let (server, client) = join(server_side, client_side).await;
        server?;
        client?;
        Ok(())
    })
}
