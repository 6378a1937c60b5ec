//! `Config::auto_reconnect`: a connection whose session breaks opens a new
//! one on the next call, with its session parameters and LISTENs restored;
//! what was in flight or open on the old session fails. The server ends
//! sessions with `pg_terminate_backend`, the same FATAL 57P01 and EOF a
//! restart sends.

mod common;

use std::time::Duration;

use common::{backend_pid, expect_err, run, scram_config, spawn, within, TestResult};
use wasi_pg_client::{classify_error, Connection, ErrorClass, PgError};

/// Generous: a hang shows as a failure, never as a stuck run.
const LIMIT: Duration = Duration::from_secs(20);

async fn reconnecting() -> Result<Connection, Box<dyn std::error::Error>> {
    Ok(Connection::connect(&scram_config()?.auto_reconnect(true)).await?)
}

/// Ends `conn`'s session from the server side and waits (bounded) until
/// the connection has seen it.
async fn end_session(conn: &Connection) -> Result<i32, Box<dyn std::error::Error>> {
    let old = backend_pid(conn).await?;
    terminate(old, conn).await?;
    Ok(old)
}

/// Ends backend `pid` (`conn`'s) and waits (bounded) until `conn` has seen
/// it.
async fn terminate(pid: i32, conn: &Connection) -> Result<(), Box<dyn std::error::Error>> {
    common::terminate_backend(pid).await?;
    for _ in 0..5_000 {
        if conn.is_closed() {
            return Ok(());
        }
        common::sleep(Duration::from_millis(2)).await;
    }
    Err("the connection never saw its session end".into())
}

#[test]
fn a_broken_connection_reconnects_and_restores_its_session() -> TestResult {
    run(async {
        let conn = reconnecting().await?;
        conn.set_param("application_name", "reconnect_test").await?;
        conn.set_param("search_path", "pg_catalog, public").await?;
        conn.listen("rc_waited").await?;
        let mut subscription = conn.subscribe("rc_subscribed").await?;
        let old = end_session(&conn).await?;

        let row = within(
            LIMIT,
            "the first call after the break",
            conn.query_one(
                "SELECT pg_backend_pid(), current_setting('application_name'), \
                 current_setting('search_path')",
                &[],
            ),
        )
        .await??;
        let now: i32 = row.get(0)?;
        check!(now != old, "still backend {old}");
        check_eq!(conn.backend_pid(), Some(now));
        check_eq!(row.get::<_, String>(1)?, "reconnect_test");
        check_eq!(row.get::<_, String>(2)?, "pg_catalog, public");
        check_eq!(conn.listened_channels(), vec!["rc_subscribed", "rc_waited"]);

        // The subscription is told once, then carries on, listening again.
        let e = expect_err(
            within(LIMIT, "the interruption", subscription.next()).await?,
            "the first delivery after the break",
        )?;
        check!(matches!(e, PgError::Interrupted(_)), "{e:?}");
        let admin = common::connect().await?;
        admin.notify("rc_subscribed", "after").await?;
        admin.notify("rc_waited", "also after").await?;
        let n = within(LIMIT, "a notification after", subscription.next())
            .await??
            .ok_or("the subscription ended")?;
        check_eq!(n.payload, "after");
        check_eq!(n.process_id, admin.backend_pid().ok_or("no pid")?);
        let mut waited = None;
        for _ in 0..2 {
            match within(LIMIT, "wait_for_notification", conn.wait_for_notification()).await? {
                Ok(n) => {
                    waited = Some(n);
                    break;
                }
                Err(PgError::Interrupted(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        check_eq!(waited.ok_or("nothing arrived")?.payload, "also after");
        Ok(())
    })
}

#[test]
fn calls_on_their_way_and_an_open_transaction_end_with_the_old_session() -> TestResult {
    run(async {
        let table = common::unique("rc_txn");
        let conn = reconnecting().await?;
        conn.query(&format!("CREATE TABLE {table} (n int)")).await?;
        let admin = common::connect().await?;

        // A statement running on the server when its session ends fails:
        // whether it ran is unknown, so it is not sent again.
        let old = backend_pid(&conn).await?;
        let running = spawn({
            let conn = conn.clone();
            async move { conn.query("SELECT pg_sleep(30)").await }
        });
        common::until_backend(&admin, old, "query = 'SELECT pg_sleep(30)'").await?;
        common::terminate_backend(old).await?;
        let e = expect_err(within(LIMIT, "the running query", running).await??, "it")?;
        check_eq!(classify_error(&e), ErrorClass::Broken);
        check!(backend_pid(&conn).await? != old);

        // A transaction open when its session ends cannot go on in the
        // next one: its statements and its commit fail, nothing lands.
        let txn = conn.transaction().await?;
        txn.execute(&format!("INSERT INTO {table} VALUES (1)"), &[])
            .await?;
        let in_txn = backend_pid(&txn).await?;
        terminate(in_txn, &conn).await?;
        let e = expect_err(
            txn.execute(&format!("INSERT INTO {table} VALUES (2)"), &[])
                .await,
            "a statement of a transaction whose session ended",
        )?;
        check!(matches!(e, PgError::Transaction(_)), "{e:?}");
        let e = expect_err(txn.commit().await, "committing it")?;
        check!(matches!(e, PgError::Transaction(_)), "{e:?}");
        check_eq!(common::count(&conn, &table).await?, 0);
        conn.query(&format!("DROP TABLE {table}")).await?;
        Ok(())
    })
}

#[test]
fn a_dead_transaction_never_runs_inside_the_next_sessions_transaction() -> TestResult {
    run(async {
        let table = common::unique("rc_lease");
        let conn = reconnecting().await?;
        conn.query(&format!("CREATE TABLE {table} (n int)")).await?;
        // The first transaction of the first session...
        let dead = conn.transaction().await?;
        let old = backend_pid(&dead).await?;
        // (Not `end_session`: the connection's own requests wait while the
        // transaction holds it.)
        terminate(old, &conn).await?;
        // ...and the first of the next one: their handles must never be
        // confused.
        let live = within(LIMIT, "a transaction after the break", conn.transaction()).await??;
        let e = expect_err(
            dead.execute(&format!("INSERT INTO {table} VALUES (1)"), &[])
                .await,
            "the dead transaction's statement",
        )?;
        check!(matches!(e, PgError::Transaction(_)), "{e:?}");
        check_eq!(common::count(&live, &table).await?, 0);
        live.rollback().await?;
        conn.query(&format!("DROP TABLE {table}")).await?;
        Ok(())
    })
}

#[test]
fn callers_that_find_it_broken_share_one_new_session() -> TestResult {
    run(async {
        let conn = reconnecting().await?;
        let old = end_session(&conn).await?;
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let conn = conn.clone();
            tasks.push(spawn(async move { backend_pid(&conn).await }));
        }
        let mut pids = Vec::new();
        for task in tasks {
            pids.push(within(LIMIT, "a caller", task).await???);
        }
        check!(
            pids.iter().all(|&p| p == pids[0] && p != old),
            "{pids:?} (old {old})"
        );
        Ok(())
    })
}

#[test]
fn without_auto_reconnect_or_after_close_it_stays_closed() -> TestResult {
    run(async {
        let plain = Connection::connect(&scram_config()?).await?;
        end_session(&plain).await?;
        let e = expect_err(
            plain.query("SELECT 1").await,
            "a call on a broken connection",
        )?;
        check_eq!(classify_error(&e), ErrorClass::Broken);
        check!(plain.is_closed());

        let conn = reconnecting().await?;
        let mut subscription = conn.subscribe("rc_closing").await?;
        conn.close().await?;
        let e = expect_err(conn.query("SELECT 1").await, "a call after close")?;
        check!(matches!(e, PgError::Closed(_)), "{e:?}");
        // A closed connection's subscriptions end; they are not interrupted.
        let end = within(LIMIT, "the subscription's end", subscription.next()).await??;
        check!(end.is_none(), "{end:?}");
        Ok(())
    })
}

#[test]
fn a_connection_over_a_callers_transport_never_reconnects() -> TestResult {
    run(async {
        // auto_reconnect is for connections that open their own sockets:
        // over a transport the caller opened, a break ends subscriptions
        // instead of leaving them waiting for a reconnection that cannot
        // come.
        let (client, mut server) = common::fake::pair(64 * 1024);
        let config = wasi_pg_client::Config::new()
            .user("alice")
            .ssl_mode(wasi_pg_client::SslMode::Disable)
            .auto_reconnect(true);
        let server_side = async move {
            server.accept_trust().await?;
            let (tag, _) = server.read_message().await?;
            if tag != b'Q' {
                return Err(format!(
                    "expected LISTEN as a simple query, got {:?}",
                    tag as char
                ));
            }
            let mut answer = common::fake::command_complete("LISTEN");
            answer.extend(common::fake::ready());
            server.send(&answer).await?;
            drop(server);
            Ok::<_, String>(())
        };
        let client_side = async {
            let (conn, task) = Connection::connect_with_transport(&config, client)
                .await
                .map_err(|e| e.to_string())?;
            let _actor = spawn(task);
            let mut subscription = conn.subscribe("cut").await.map_err(|e| e.to_string())?;
            let end = within(LIMIT, "the subscription's end", subscription.next())
                .await?
                .map_err(|e| e.to_string())?;
            Ok::<_, String>((end, conn))
        };
        let (server, client) = futures_util::future::join(server_side, client_side).await;
        server?;
        let (end, conn) = client?;
        check!(end.is_none(), "{end:?}");
        let e = expect_err(conn.query("SELECT 1").await, "a call after the break")?;
        check_eq!(classify_error(&e), ErrorClass::Broken);
        Ok(())
    })
}

#[test]
fn a_cancel_token_names_one_session() -> TestResult {
    run(async {
        let conn = reconnecting().await?;
        let observer = common::connect().await?;
        let stale = conn.cancel_token();
        let old = end_session(&conn).await?;
        let now = within(LIMIT, "the reconnection", backend_pid(&conn)).await??;
        check!(now != old, "still backend {old}");

        // The old token names the ended backend: the new session's query,
        // running while it is used, is left alone.
        let cancel_stale = async {
            common::until_backend(&observer, now, common::SLEEPING).await?;
            stale.cancel().await.map_err(|e| e.to_string())
        };
        let (slept, cancelled) = futures_util::join!(
            conn.query_one("SELECT pg_sleep(1)::text", &[]),
            cancel_stale
        );
        cancelled?;
        check!(slept.is_ok(), "{slept:?}");

        // A token taken now cancels on the new session.
        let fresh = conn.cancel_token();
        let cancel_fresh = async {
            common::until_backend(&observer, now, common::SLEEPING).await?;
            fresh.cancel().await.map_err(|e| e.to_string())
        };
        let (result, cancelled) =
            futures_util::join!(conn.query("SELECT pg_sleep(30)"), cancel_fresh);
        cancelled?;
        let e = result.err().ok_or("the sleep must be cancelled")?;
        check_eq!(e.code(), Some("57014"));
        Ok(())
    })
}
