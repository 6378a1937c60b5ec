//! Connecting and authenticating against the test cluster: every
//! authentication method it is set up with, URIs, and the failures users hit.

mod common;

use std::time::{Duration, Instant};

use common::{config_for, host, port, run, TestResult};
use wasi_pg_client::{classify_error, Config, Connection, ErrorClass, PgError};

async fn select_one(conn: &Connection) -> Result<i32, PgError> {
    conn.query_one("SELECT 1", &[]).await?.get(0)
}

#[test]
fn trust_user_connects() -> TestResult {
    run(async {
        let conn = Connection::connect(&config_for("trust_user", None)?).await?;
        check_eq!(select_one(&conn).await?, 1);
        check!(conn.backend_pid().is_some());
        conn.close().await?;
        Ok(())
    })
}

#[test]
fn scram_user_connects() -> TestResult {
    run(async {
        let conn = Connection::connect(&config_for("scram_user", Some("scram_secret"))?).await?;
        let user: String = conn
            .query_one("SELECT current_user::text", &[])
            .await?
            .get(0)?;
        check_eq!(user, "scram_user");
        Ok(())
    })
}

#[test]
fn wrong_password_is_28p01() -> TestResult {
    run(async {
        let e = Connection::connect(&config_for("scram_user", Some("wrong"))?)
            .await
            .err()
            .ok_or("a wrong password must fail")?;
        check_eq!(e.code(), Some("28P01"));
        check!(e.as_db_error().is_some_and(|db| db.is_auth_failure()));
        Ok(())
    })
}

#[test]
fn cleartext_user_needs_the_opt_in() -> TestResult {
    run(async {
        let e = Connection::connect(&config_for("pass_user", Some("pass_secret"))?)
            .await
            .err()
            .ok_or("cleartext over plaintext must be refused")?;
        check!(matches!(e, PgError::Auth(_)), "{e:?}");
        check!(e.to_string().contains("allow_insecure_auth"), "{e}");
        let config = config_for("pass_user", Some("pass_secret"))?.allow_insecure_auth(true);
        let conn = Connection::connect(&config).await?;
        check_eq!(select_one(&conn).await?, 1);
        Ok(())
    })
}

#[test]
fn md5_user_needs_the_feature_and_the_opt_in() -> TestResult {
    run(async {
        let e = Connection::connect(&config_for("md5_user", Some("md5_secret"))?)
            .await
            .err()
            .ok_or("MD5 over plaintext must be refused")?;
        check!(matches!(e, PgError::Auth(_)), "{e:?}");
        let opted_in = config_for("md5_user", Some("md5_secret"))?.allow_insecure_auth(true);
        if cfg!(feature = "md5-auth") {
            let conn = Connection::connect(&opted_in).await?;
            check_eq!(select_one(&conn).await?, 1);
        } else {
            let e = Connection::connect(&opted_in)
                .await
                .err()
                .ok_or("needs md5-auth")?;
            check!(e.to_string().contains("md5-auth"), "{e}");
        }
        Ok(())
    })
}

#[test]
fn uri_with_every_part_connects() -> TestResult {
    run(async {
        let uri = format!(
            "postgresql://scram_user:scram_secret@{}:{}/{}?sslmode=disable&application_name=uri%20test&connect_timeout=5",
            host()?,
            port()?,
            common::dbname()?
        );
        let conn = Connection::connect(&Config::from_uri(&uri)?).await?;
        check_eq!(
            conn.parameter("application_name").as_deref(),
            Some("uri test")
        );
        let conninfo = format!(
            "host={} port={} dbname={} user=scram_user password='scram_secret' sslmode=disable",
            host()?,
            port()?,
            common::dbname()?
        );
        let conn = Connection::connect(&Config::from_uri(&conninfo)?).await?;
        check_eq!(select_one(&conn).await?, 1);
        Ok(())
    })
}

#[test]
fn malformed_uri_names_the_bad_part() -> TestResult {
    for (uri, part) in [
        ("postgresql://u@h:99999/db", "99999"),
        ("postgresql://u@h/db?sslmode=sometimes", "sometimes"),
        ("postgresql://u@h/db?no_such_key=1", "no_such_key"),
        ("postgresql://u%zz@h/db", "%zz"),
    ] {
        match Config::from_uri(uri) {
            Err(PgError::Config(m)) => check!(m.contains(part), "{uri}: {m}"),
            other => return Err(format!("{uri}: expected a config error, got {other:?}").into()),
        }
    }
    Ok(())
}

#[test]
fn refused_port_fails_fast_as_io() -> TestResult {
    run(async {
        // A port nothing listens on: bind one, learn it, let it go.
        let port = free_port().await?;
        let config = config_for("trust_user", None)?;
        let config = Config::new()
            .host("127.0.0.1")
            .port(port)
            .user(config.get_user().unwrap_or("trust_user"))
            .ssl_mode(wasi_pg_client::SslMode::Disable);
        let e = Connection::connect(&config)
            .await
            .err()
            .ok_or("must fail")?;
        check!(matches!(e, PgError::Io { .. }), "{e:?}");
        check_eq!(classify_error(&e), ErrorClass::Broken);
        Ok(())
    })
}

#[test]
fn silent_server_times_out_within_connect_timeout() -> TestResult {
    run(async {
        // A listener that never answers: the TCP handshake completes in the
        // kernel, the startup reply never comes.
        let (listener, port) = silent_listener().await?;
        let config = Config::new()
            .host("127.0.0.1")
            .port(port)
            .user("trust_user")
            .ssl_mode(wasi_pg_client::SslMode::Disable)
            .connect_timeout(Duration::from_millis(300));
        let started = Instant::now();
        let e = Connection::connect(&config)
            .await
            .err()
            .ok_or("must time out")?;
        let elapsed = started.elapsed();
        drop(listener);
        check!(matches!(e, PgError::Timeout(_)), "{e:?}");
        check!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
        Ok(())
    })
}

#[test]
fn ipv6_loopback_connects() -> TestResult {
    run(async {
        if std::env::var("PGTEST_IPV6").as_deref() != Ok("1") {
            // The cluster script found no IPv6 loopback on this machine;
            // the literal must still parse and be tried.
            let config = Config::from_uri("postgresql://u@[::1]:1/db?sslmode=disable")?;
            check_eq!(config.get_hosts().len(), 1);
            return Ok(());
        }
        let config = Config::new()
            .host("::1")
            .port(port()?)
            .dbname(&common::dbname()?)
            .user("trust_user")
            .ssl_mode(wasi_pg_client::SslMode::Disable);
        let conn = Connection::connect(&config).await?;
        check_eq!(select_one(&conn).await?, 1);
        Ok(())
    })
}

#[test]
fn unix_socket_connects_natively() -> TestResult {
    run(async {
        let dir = std::env::var("PGTEST_SOCKET_DIR").map_err(|_| "PGTEST_SOCKET_DIR is not set")?;
        let config = Config::new()
            .host(&dir)
            .port(port()?)
            .dbname(&common::dbname()?)
            .user("trust_user")
            .ssl_mode(wasi_pg_client::SslMode::Disable);
        let result = Connection::connect(&config).await;
        if cfg!(target_arch = "wasm32") {
            let e = result.err().ok_or("WASI has no Unix sockets")?;
            check!(e.to_string().contains("Unix-domain sockets"), "{e}");
        } else {
            check_eq!(select_one(&result?).await?, 1);
        }
        Ok(())
    })
}

#[test]
fn hostname_is_resolved() -> TestResult {
    run(async {
        let config = Config::new()
            .host("localhost")
            .port(port()?)
            .dbname(&common::dbname()?)
            .user("scram_user")
            .password("scram_secret")
            .ssl_mode(wasi_pg_client::SslMode::Disable);
        let conn = Connection::connect(&config).await?;
        check_eq!(select_one(&conn).await?, 1);
        Ok(())
    })
}

#[cfg(not(target_arch = "wasm32"))]
async fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

#[cfg(not(target_arch = "wasm32"))]
async fn silent_listener() -> Result<(std::net::TcpListener, u16), String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let port = l.local_addr().map_err(|e| e.to_string())?.port();
    Ok((l, port))
}

#[cfg(target_arch = "wasm32")]
async fn free_port() -> Result<u16, String> {
    let (l, port) = silent_listener().await?;
    drop(l);
    Ok(port)
}

#[cfg(target_arch = "wasm32")]
async fn silent_listener() -> Result<(wstd::net::TcpListener, u16), String> {
    let l = wstd::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let port = l.local_addr().map_err(|e| e.to_string())?.port();
    Ok((l, port))
}
