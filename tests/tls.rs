//! TLS against the test cluster (ssl=on, certificates made by
//! scripts/lib/certs.sh): every sslmode, root certificates, client
//! certificates, SCRAM-SHA-256-PLUS.

mod common;

use common::{port, run, TestResult};
use wasi_pg_client::{ChannelBinding, Config, Connection, PemSource, PgError, RootCerts, SslMode};

fn cert_dir() -> Result<String, String> {
    std::env::var("PGTEST_CERT_DIR").map_err(|_| {
        "PGTEST_CERT_DIR is not set: run scripts/test.sh, which makes the test certificates \
         and starts a cluster with ssl=on"
            .to_string()
    })
}

fn cert_file(name: &str) -> Result<std::path::PathBuf, String> {
    Ok(std::path::Path::new(&cert_dir()?).join(name))
}

fn pem(name: &str) -> Result<Vec<u8>, String> {
    let path = cert_file(name)?;
    std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))
}

fn tls_config(
    host: &str,
    user: &str,
    password: Option<&str>,
    mode: SslMode,
) -> Result<Config, String> {
    let mut config = Config::new()
        .host(host)
        .port(port()?)
        .dbname(&common::dbname()?)
        .user(user)
        .ssl_mode(mode)
        .ssl_root_cert_pem(pem("ca.crt")?)
        .connect_timeout(std::time::Duration::from_secs(10));
    if let Some(p) = password {
        config = config.password(p);
    }
    Ok(config)
}

/// The SCRAM user over TLS, checked against the test CA.
fn scram(host: &str, mode: SslMode) -> Result<Config, String> {
    tls_config(host, "scram_user", Some("scram_secret"), mode)
}

/// The error a connection attempt must end with (`None` if it connected).
async fn refused(config: &Config) -> Option<PgError> {
    Connection::connect(config).await.err()
}

fn wrong_host() -> Result<String, String> {
    std::env::var("PGTEST_WRONG_HOST").map_err(|_| "PGTEST_WRONG_HOST is not set".to_string())
}

async fn encrypted(conn: &Connection) -> Result<bool, PgError> {
    conn.query_one(
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        &[],
    )
    .await?
    .get(0)
}

#[test]
fn verify_full_connects_encrypted_with_scram_plus() -> TestResult {
    run(async {
        // channel_binding=require succeeds only through SCRAM-SHA-256-PLUS.
        let config =
            scram("127.0.0.1", SslMode::VerifyFull)?.channel_binding(ChannelBinding::Require);
        let conn = Connection::connect(&config).await?;
        check!(encrypted(&conn).await?);
        check_eq!(conn.query_one("SELECT 7", &[]).await?.get::<_, i32>(0)?, 7);
        Ok(())
    })
}

#[test]
fn verify_full_by_host_name_and_root_file() -> TestResult {
    run(async {
        let config = scram("localhost", SslMode::VerifyFull)?
            .ssl_root_certs(RootCerts::Custom(PemSource::File(cert_file("ca.crt")?)));
        let conn = Connection::connect(&config).await?;
        check!(encrypted(&conn).await?);
        Ok(())
    })
}

#[test]
fn verify_full_refuses_a_certificate_for_another_host() -> TestResult {
    run(async {
        let config = scram(&wrong_host()?, SslMode::VerifyFull)?;
        let e = refused(&config).await.ok_or("a name mismatch must fail")?;
        check!(matches!(e, PgError::Tls(_)), "{e:?}");
        check!(e.to_string().contains("NotValidForName"), "{e}");
        Ok(())
    })
}

#[test]
fn verify_ca_accepts_a_certificate_for_another_host() -> TestResult {
    run(async {
        let config = scram(&wrong_host()?, SslMode::VerifyCa)?;
        let conn = Connection::connect(&config).await?;
        check!(encrypted(&conn).await?);
        Ok(())
    })
}

#[test]
fn verify_ca_refuses_a_server_from_another_ca() -> TestResult {
    run(async {
        let config = scram("127.0.0.1", SslMode::VerifyCa)?.ssl_root_cert_pem(pem("other_ca.crt")?);
        let e = refused(&config).await.ok_or("an unknown CA must fail")?;
        check!(matches!(e, PgError::Tls(_)), "{e:?}");
        Ok(())
    })
}

#[test]
fn default_roots_refuse_a_private_ca() -> TestResult {
    run(async {
        let config = scram("127.0.0.1", SslMode::VerifyFull)?.ssl_root_certs(RootCerts::WebPki);
        let e = refused(&config).await.ok_or("webpki roots must refuse")?;
        check!(matches!(e, PgError::Tls(_)), "{e:?}");
        Ok(())
    })
}

#[test]
fn require_encrypts_without_checking_the_certificate() -> TestResult {
    run(async {
        let config = scram(&wrong_host()?, SslMode::Require)?.ssl_root_certs(RootCerts::WebPki);
        let conn = Connection::connect(&config).await?;
        check!(encrypted(&conn).await?);
        Ok(())
    })
}

#[test]
fn require_with_a_root_certificate_checks_the_chain() -> TestResult {
    run(async {
        // libpq: sslmode=require with sslrootcert behaves like verify-ca.
        let config = scram("127.0.0.1", SslMode::Require)?.ssl_root_cert_pem(pem("other_ca.crt")?);
        let e = refused(&config).await.ok_or("must check the chain")?;
        check!(matches!(e, PgError::Tls(_)), "{e:?}");
        Ok(())
    })
}

#[test]
fn accept_invalid_certs_accepts_anything() -> TestResult {
    run(async {
        let config = scram(&wrong_host()?, SslMode::VerifyFull)?
            .ssl_root_cert_pem(pem("other_ca.crt")?)
            .accept_invalid_certs(true);
        let conn = Connection::connect(&config).await?;
        check!(encrypted(&conn).await?);
        Ok(())
    })
}

#[test]
fn prefer_encrypts_when_the_server_can() -> TestResult {
    run(async {
        let config = scram("127.0.0.1", SslMode::Prefer)?;
        let conn = Connection::connect(&config).await?;
        check!(encrypted(&conn).await?);
        Ok(())
    })
}

#[test]
fn disable_stays_plaintext_and_tls_only_users_are_refused() -> TestResult {
    run(async {
        let config = scram("127.0.0.1", SslMode::Disable)?;
        let conn = Connection::connect(&config).await?;
        check!(!encrypted(&conn).await?);
        let config = tls_config(
            "127.0.0.1",
            "tls_user",
            Some("tls_secret"),
            SslMode::Disable,
        )?;
        let e = refused(&config).await.ok_or("hostnossl reject")?;
        check_eq!(e.code(), Some("28000"));
        Ok(())
    })
}

#[test]
fn allow_falls_back_to_tls_when_plaintext_is_refused() -> TestResult {
    run(async {
        let config = scram("127.0.0.1", SslMode::Allow)?;
        let conn = Connection::connect(&config).await?;
        check!(!encrypted(&conn).await?, "allow tries plaintext first");
        let config = tls_config("127.0.0.1", "tls_user", Some("tls_secret"), SslMode::Allow)?;
        let conn = Connection::connect(&config).await?;
        check!(
            encrypted(&conn).await?,
            "then TLS when the server refuses plaintext"
        );
        Ok(())
    })
}

#[test]
fn client_certificate_authenticates_cert_user() -> TestResult {
    run(async {
        let config = tls_config("127.0.0.1", "cert_user", None, SslMode::VerifyFull)?
            .ssl_client_cert(
                PemSource::Pem(pem("client.crt")?),
                PemSource::File(cert_file("client.key")?),
            );
        let conn = Connection::connect(&config).await?;
        let user: String = conn
            .query_one("SELECT current_user::text", &[])
            .await?
            .get(0)?;
        check_eq!(user, "cert_user");
        Ok(())
    })
}

#[test]
fn a_wrong_client_key_is_a_clear_error() -> TestResult {
    run(async {
        let config = tls_config("127.0.0.1", "cert_user", None, SslMode::VerifyFull)?
            .ssl_client_cert(
                PemSource::Pem(pem("client.crt")?),
                PemSource::Pem(pem("wrong_client.key")?),
            );
        let e = refused(&config).await.ok_or("a mismatched key must fail")?;
        check!(matches!(e, PgError::Tls(_)), "{e:?}");
        check!(e.to_string().contains("ssl"), "{e}");
        let debug = format!("{config:?}");
        check!(
            !debug.contains("PRIVATE KEY"),
            "Debug shows key material: {debug}"
        );
        Ok(())
    })
}

#[test]
fn tls_pipelines_large_answers_both_ways() -> TestResult {
    run(async {
        let config = scram("127.0.0.1", SslMode::VerifyFull)?;
        let conn = Connection::connect(&config).await?;
        let payload: String = std::iter::repeat_n('t', 1 << 20).collect();
        let answers = futures_util::future::join_all((0..8).map(|_| {
            let conn = &conn;
            let payload = &payload;
            async move { conn.query_one("SELECT $1::text", &[payload]).await }
        }))
        .await;
        for answer in answers {
            check!(
                answer?.get::<_, String>(0)? == payload,
                "a 1 MiB echo came back different"
            );
        }
        Ok(())
    })
}

#[test]
fn direct_tls_against_postgresql_18() -> TestResult {
    run(async {
        let pg18_port: u16 = std::env::var("PGTEST_PG18_PORT")
            .map_err(|_| "PGTEST_PG18_PORT is not set: scripts/test.sh starts PostgreSQL 18")?
            .parse()?;
        let config = tls_config(
            "127.0.0.1",
            "tls_user",
            Some("tls_secret"),
            SslMode::VerifyFull,
        )?
        .port(pg18_port)
        .ssl_negotiation(wasi_pg_client::SslNegotiation::Direct);
        // `port` adds; keep only PostgreSQL 18's.
        let config = Config::from_uri(&format!(
            "postgresql://tls_user:tls_secret@127.0.0.1:{pg18_port}/pgtest?sslmode=verify-full&sslnegotiation=direct&channel_binding=require"
        ))?
        .ssl_root_certs(config.get_ssl_root_certs().clone());
        let conn = Connection::connect(&config).await?;
        check!(encrypted(&conn).await?);
        let version: String = conn
            .query_one("SHOW server_version_num", &[])
            .await?
            .get(0)?;
        check!(version.starts_with("18"), "{version}");
        let weak = config.ssl_mode(SslMode::Prefer);
        let e = refused(&weak)
            .await
            .ok_or("direct needs require or stronger")?;
        check!(e.to_string().contains("sslnegotiation=direct"), "{e}");
        Ok(())
    })
}

#[test]
fn cancel_stops_a_running_query_over_tls() -> TestResult {
    run(async {
        let config = scram("127.0.0.1", SslMode::VerifyFull)?;
        let conn = Connection::connect(&config).await?;
        let observer = Connection::connect(&config).await?;
        let pid = conn.backend_pid().ok_or("no backend pid")?;
        let token = conn.cancel_token();
        let started = std::time::Instant::now();
        let canceller = async {
            common::until_backend(&observer, pid, common::SLEEPING).await?;
            token.cancel().await.map_err(|e| e.to_string())
        };
        let (result, cancelled) = futures_util::join!(conn.query("SELECT pg_sleep(30)"), canceller);
        cancelled?;
        let e = result.err().ok_or("the sleep must be cancelled")?;
        check_eq!(e.code(), Some("57014"));
        // Cancelled, not finished: far below the 30 s it asked for.
        check!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );
        check_eq!(conn.query_one("SELECT 1", &[]).await?.get::<_, i32>(0)?, 1);
        Ok(())
    })
}

#[test]
fn cancelling_an_idle_connection_is_harmless() -> TestResult {
    run(async {
        let config = scram("127.0.0.1", SslMode::VerifyFull)?;
        let conn = Connection::connect(&config).await?;
        conn.cancel_token().cancel().await?;
        check_eq!(conn.query_one("SELECT 2", &[]).await?.get::<_, i32>(0)?, 2);
        // A token outlives its connection.
        let token = conn.cancel_token();
        conn.close().await?;
        token.cancel().await?;
        Ok(())
    })
}

#[test]
fn query_timeout_fails_the_call_and_cancels_on_the_server() -> TestResult {
    run(async {
        let config = scram("127.0.0.1", SslMode::VerifyFull)?;
        let conn = Connection::connect(&config).await?;
        let limited = conn.with_query_timeout(std::time::Duration::from_millis(200));
        let started = std::time::Instant::now();
        let e = limited
            .query("SELECT pg_sleep(30)")
            .await
            .err()
            .ok_or("the call must time out")?;
        check!(matches!(e, PgError::Timeout(_)), "{e:?}");
        // The server-side query was cancelled, so the connection answers
        // the next request long before the 30 s sleep would have ended.
        check_eq!(conn.query_one("SELECT 3", &[]).await?.get::<_, i32>(0)?, 3);
        check!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );
        // The Config form applies to every call on the connection.
        let config = config.query_timeout(std::time::Duration::from_millis(200));
        let conn = Connection::connect(&config).await?;
        let e = conn
            .query_params("SELECT pg_sleep($1)", &[&30f64])
            .await
            .err()
            .ok_or("must time out")?;
        check!(matches!(e, PgError::Timeout(_)), "{e:?}");
        Ok(())
    })
}

#[test]
fn system_roots_are_the_platforms_natively_and_refused_on_wasi() -> TestResult {
    run(async {
        let config = scram("127.0.0.1", SslMode::VerifyFull)?.ssl_root_certs(RootCerts::System);
        let e = refused(&config)
            .await
            .ok_or("the test CA is in no system store")?;
        if cfg!(target_arch = "wasm32") {
            check!(matches!(e, PgError::Config(_)), "{e:?}");
            check!(e.to_string().contains("no platform trust store"), "{e}");
        } else {
            // The platform's roots load, and do not vouch for the test CA
            // (or the machine has none, which says so).
            check!(matches!(e, PgError::Tls(_)), "{e:?}");
            check!(
                e.to_string().contains("UnknownIssuer") || e.to_string().contains("trust store"),
                "{e}"
            );
        }
        Ok(())
    })
}
