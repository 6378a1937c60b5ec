//! TLS downgrades and authentication downgrades, played by an in-memory
//! fake server that can do what a real one will not: answer the TLS
//! request with plaintext or an error, refuse TLS, present an expired or
//! self-signed certificate, hide SCRAM-SHA-256-PLUS, skip authentication.
//!
//! The fake's TLS uses the certificates scripts/lib/certs.sh makes
//! (PGTEST_CERT_DIR); no PostgreSQL server is involved.

#![cfg(feature = "tls")]

mod common;

use common::fake::{self, empty_extended_answer, error_response, message, FakeServer};
use common::fake_tls::{accept_tls, pem, server_config, TlsServerStream};
use common::{run, spawn, TestResult};
use futures_util::future::join;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use sha2::{Digest, Sha256};
use wasi_pg_client::{
    AsyncTransport, ChannelBinding, Config, Connection, PgError, SslMode, SslNegotiation,
};

const CAPACITY: usize = 64 * 1024;

/// A plaintext config (`sslmode=disable`).
fn plain_config() -> Config {
    Config::new()
        .user("alice")
        .password("wonderland")
        .ssl_mode(SslMode::Disable)
}

/// A config trusting only the test CA, for host `localhost`.
fn tls_config(mode: SslMode) -> Result<Config, String> {
    Ok(Config::new()
        .host("localhost")
        .user("alice")
        .password("wonderland")
        .ssl_mode(mode)
        .ssl_root_cert_pem(pem("ca.crt")?))
}

/// Connects and drops the result at once (an unexpected connection's actor
/// never runs, and dropping it closes the client's end, so the fake is
/// never left waiting).
async fn try_connect<T: AsyncTransport>(config: &Config, client: T) -> Result<(), PgError> {
    Connection::connect_with_transport(config, client)
        .await
        .map(drop)
}

/// A connection that must work: connect, one query, close, and the actor
/// finished.
async fn use_connection<T: AsyncTransport>(config: &Config, client: T) -> Result<(), String> {
    let (conn, task) = Connection::connect_with_transport(config, client)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let actor = spawn(task);
    conn.query("SELECT 1")
        .await
        .map_err(|e| format!("query: {e}"))?;
    conn.close().await.map_err(|e| format!("close: {e}"))?;
    actor.await
}

/// The fake's side of [`use_connection`]: trust startup, one query, then
/// the client's Terminate.
async fn serve_one_query<S: AsyncTransport>(server: &mut FakeServer<S>) -> Result<(), String> {
    server.accept_trust().await?;
    server.read_until_sync().await?;
    server.send(&empty_extended_answer()).await?;
    let (tag, _) = server.read_message().await?;
    if tag != b'X' {
        return Err(format!("expected Terminate, got {:?}", tag as char));
    }
    Ok(())
}

/// An Authentication message: `code` and what follows it.
fn auth(code: u32, extra: &[u8]) -> Vec<u8> {
    let mut body = code.to_be_bytes().to_vec();
    body.extend_from_slice(extra);
    message(b'R', &body)
}

/// AuthenticationSASL offering `mechanisms`.
fn sasl(mechanisms: &[&str]) -> Vec<u8> {
    let mut list = Vec::new();
    for m in mechanisms {
        list.extend_from_slice(m.as_bytes());
        list.push(0);
    }
    list.push(0);
    auth(10, &list)
}

fn cleartext() -> Vec<u8> {
    auth(3, b"")
}

fn md5() -> Vec<u8> {
    auth(5, b"salt")
}

fn scram_only() -> Vec<u8> {
    sasl(&["SCRAM-SHA-256"])
}

fn scram_and_plus() -> Vec<u8> {
    sasl(&["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"])
}

fn auth_failed() -> Vec<u8> {
    error_response("28P01", "password authentication failed for user \"alice\"")
}

/// What a scripted startup came to.
struct Outcome {
    /// The client's result.
    client: Result<(), PgError>,
    /// The message the client sent after `first`; `None` if it closed the
    /// stream instead.
    sent: Option<(u8, Vec<u8>)>,
}

/// The fake reads the StartupMessage, sends `first`; if the client answers,
/// the fake sends `then`.
async fn script<S: AsyncTransport>(
    server: &mut FakeServer<S>,
    first: &[u8],
    then: &[u8],
) -> Result<Option<(u8, Vec<u8>)>, String> {
    server.read_startup().await?;
    server.send(first).await?;
    let sent = server.read_message().await.ok();
    if sent.is_some() {
        server.send(then).await?;
    }
    Ok(sent)
}

/// A scripted startup over plaintext (no SSLRequest expected).
async fn plain_startup(config: Config, first: Vec<u8>, then: Vec<u8>) -> Result<Outcome, String> {
    let (client, mut server) = fake::pair(CAPACITY);
    let server_side = async move {
        let sent = script(&mut server, &first, &then).await?;
        Ok::<_, String>((server, sent))
    };
    let (server, client) = join(server_side, try_connect(&config, client)).await;
    let (_server, sent) = server.map_err(|e| format!("fake: {e}; client: {client:?}"))?;
    Ok(Outcome { client, sent })
}

/// A scripted startup over TLS, the fake presenting `<cert>.crt`.
async fn tls_startup(
    config: Config,
    cert: &str,
    first: Vec<u8>,
    then: Vec<u8>,
) -> Result<Outcome, String> {
    let (client, server) = fake::pair(CAPACITY);
    let server_side = async move {
        let mut server = accept_tls(server, cert).await?;
        let sent = script(&mut server, &first, &then).await?;
        Ok::<_, String>((server, sent))
    };
    let (server, client) = join(server_side, try_connect(&config, client)).await;
    let (_server, sent) = server.map_err(|e| format!("fake: {e}; client: {client:?}"))?;
    Ok(Outcome { client, sent })
}

/// The fake answers the SSLRequest with `answer` (one write) and then
/// records everything the client sends until it closes the stream.
async fn ssl_answer(config: Config, answer: Vec<u8>) -> Result<(PgError, Vec<u8>), String> {
    let (client, mut server) = fake::pair(CAPACITY);
    let server_side = async move {
        server.read_ssl_request().await?;
        server.send(&answer).await?;
        server.read_to_end().await
    };
    let (received, client) = join(server_side, try_connect(&config, client)).await;
    let received = received.map_err(|e| format!("fake: {e}; client: {client:?}"))?;
    let e = client
        .err()
        .ok_or("the client must refuse this answer to the TLS request")?;
    Ok((e, received))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A SASLInitialResponse body: (mechanism, client-first-message).
fn parse_sasl_initial(body: &[u8]) -> Result<(String, Vec<u8>), String> {
    let nul = body
        .iter()
        .position(|&b| b == 0)
        .ok_or("the mechanism is not NUL-terminated")?;
    let mechanism = String::from_utf8(body[..nul].to_vec()).map_err(|e| e.to_string())?;
    let rest = &body[nul + 1..];
    let len: [u8; 4] = rest
        .get(..4)
        .and_then(|l| l.try_into().ok())
        .ok_or("no data length")?;
    let len = i32::from_be_bytes(len);
    let data = rest.get(4..).ok_or("no data")?.to_vec();
    if usize::try_from(len).ok() != Some(data.len()) {
        return Err(format!(
            "declared length {len}, {} bytes follow",
            data.len()
        ));
    }
    Ok((mechanism, data))
}

/// The mechanism and client-first-message the client sent, which must be a
/// SASLInitialResponse.
fn initial_response(sent: Option<(u8, Vec<u8>)>) -> Result<(String, String), String> {
    let (tag, body) = sent.ok_or("the client sent no SASLInitialResponse")?;
    if tag != b'p' {
        return Err(format!("expected a 'p' message, got {:?}", tag as char));
    }
    let (mechanism, data) = parse_sasl_initial(&body)?;
    Ok((mechanism, String::from_utf8_lossy(&data).into_owned()))
}

// ---- the answer to the SSLRequest ----

#[test]
fn plaintext_right_after_s_is_refused_before_tls() -> TestResult {
    run(async {
        // CVE-2021-23222: bytes after 'S' (in the same packet) were written
        // by whoever is on the path; they must not be read as the server's.
        for trailing in [
            b"garbage".to_vec(),
            error_response("28000", "EVIL-TEXT-1234"),
            fake::trust_answer(),
        ] {
            for mode in [SslMode::Prefer, SslMode::Require, SslMode::VerifyFull] {
                let mut answer = b"S".to_vec();
                answer.extend_from_slice(&trailing);
                let (e, received) = ssl_answer(tls_config(mode)?, answer).await?;
                check!(matches!(e, PgError::Protocol(_)), "{mode:?}: {e:?}");
                check!(e.to_string().contains("not TLS"), "{mode:?}: {e}");
                check!(!e.to_string().contains("EVIL-TEXT-1234"), "{mode:?}: {e}");
                // The client started TLS (a handshake record) and never
                // fell back to a plaintext StartupMessage.
                check_eq!(received.first().copied(), Some(0x16u8));
                check!(
                    !contains(&received, b"user\0alice"),
                    "{mode:?}: the startup went out in plaintext"
                );
            }
        }
        Ok(())
    })
}

#[test]
fn error_answer_to_the_tls_request_is_not_shown() -> TestResult {
    run(async {
        // CVE-2024-10977: an ErrorResponse before encryption may be forged;
        // its text must not reach the user.
        let evil = error_response(
            "28000",
            "EVIL-TEXT-1234: your session expired, log in at http://evil.example",
        );
        for mode in [SslMode::Prefer, SslMode::Require, SslMode::VerifyFull] {
            let (e, received) = ssl_answer(tls_config(mode)?, evil.clone()).await?;
            check!(matches!(e, PgError::Protocol(_)), "{mode:?}: {e:?}");
            check!(
                e.to_string()
                    .contains("answered the TLS request with an error"),
                "{mode:?}: {e}"
            );
            check!(!e.to_string().contains("EVIL-TEXT-1234"), "{mode:?}: {e}");
            check!(
                !format!("{e:?}").contains("EVIL-TEXT-1234"),
                "{mode:?}: {e:?}"
            );
            check!(
                received.is_empty(),
                "{mode:?}: the client sent {received:?}"
            );
        }
        Ok(())
    })
}

#[test]
fn n_answer_is_refused_when_tls_is_required() -> TestResult {
    run(async {
        for mode in [SslMode::Require, SslMode::VerifyCa, SslMode::VerifyFull] {
            let (e, received) = ssl_answer(tls_config(mode)?, b"N".to_vec()).await?;
            check!(matches!(e, PgError::Tls(_)), "{mode:?}: {e:?}");
            check!(
                e.to_string().contains("does not accept TLS connections"),
                "{mode:?}: {e}"
            );
            check!(
                received.is_empty(),
                "{mode:?}: the client sent {received:?}"
            );
        }
        Ok(())
    })
}

#[test]
fn n_answer_with_prefer_continues_in_plaintext() -> TestResult {
    run(async {
        let config = tls_config(SslMode::Prefer)?;
        let (client, mut server) = fake::pair(CAPACITY);
        let server_side = async move {
            server.read_ssl_request().await?;
            server.send(b"N").await?;
            serve_one_query(&mut server).await
        };
        let (server, client) = join(server_side, use_connection(&config, client)).await;
        server.map_err(|e| format!("fake: {e}; client: {client:?}"))?;
        client?;
        Ok(())
    })
}

#[test]
fn prefer_downgraded_to_plaintext_still_protects_the_password() -> TestResult {
    run(async {
        // A man in the middle answers 'N' and asks for the password in
        // cleartext: refused, as on any unencrypted connection.
        let (client, mut server) = fake::pair(CAPACITY);
        let server_side = async move {
            server.read_ssl_request().await?;
            server.send(b"N").await?;
            script(&mut server, &cleartext(), &auth_failed()).await
        };
        let (sent, client) = join(
            server_side,
            try_connect(&tls_config(SslMode::Prefer)?, client),
        )
        .await;
        let sent = sent.map_err(|e| format!("fake: {e}; client: {client:?}"))?;
        let e = client
            .err()
            .ok_or("cleartext over the fallback must fail")?;
        check!(matches!(e, PgError::Auth(_)), "{e:?}");
        check!(e.to_string().contains("allow_insecure_auth"), "{e}");
        check!(sent.is_none(), "the password went out: {sent:?}");

        // channel_binding=require cannot be met without TLS: nothing is
        // sent after the 'N'.
        let config = tls_config(SslMode::Prefer)?.channel_binding(ChannelBinding::Require);
        let (e, received) = ssl_answer(config, b"N".to_vec()).await?;
        check!(matches!(e, PgError::Auth(_)), "{e:?}");
        check!(e.to_string().contains("channel_binding=require"), "{e}");
        check!(received.is_empty(), "the client sent {received:?}");
        Ok(())
    })
}

// ---- channel_binding=require over TLS ----

#[test]
fn channel_binding_require_refuses_every_unbound_method() -> TestResult {
    run(async {
        let config = || {
            Ok::<_, String>(
                tls_config(SslMode::VerifyFull)?.channel_binding(ChannelBinding::Require),
            )
        };
        let cases: [(&str, Vec<u8>); 4] = [
            ("SCRAM-SHA-256 only", scram_only()),
            ("cleartext", cleartext()),
            ("MD5", md5()),
            ("no authentication", fake::trust_answer()),
        ];
        for (what, first) in cases {
            let outcome = tls_startup(config()?, "server", first, auth_failed()).await?;
            let e = outcome
                .client
                .err()
                .ok_or(format!("{what}: channel_binding=require must refuse"))?;
            check!(matches!(e, PgError::Auth(_)), "{what}: {e:?}");
            check!(
                e.to_string().contains("channel_binding=require"),
                "{what}: {e}"
            );
            // Nothing answered the request: no SASLInitialResponse, no
            // password.
            check!(
                outcome.sent.is_none(),
                "{what}: the client sent {:?}",
                outcome.sent
            );
        }
        Ok(())
    })
}

#[test]
fn channel_binding_require_refuses_a_scram_exchange_cut_short() -> TestResult {
    run(async {
        // The client binds (SCRAM-SHA-256-PLUS); the server then claims
        // success without ever proving it knows the password.
        let mut ok = fake::auth_ok();
        ok.extend(fake::ready());
        let config = tls_config(SslMode::VerifyFull)?.channel_binding(ChannelBinding::Require);
        let outcome = tls_startup(config, "server", scram_and_plus(), ok).await?;
        let (mechanism, first) = initial_response(outcome.sent)?;
        check_eq!(mechanism.as_str(), "SCRAM-SHA-256-PLUS");
        check!(first.starts_with("p=tls-server-end-point,,"), "{first}");
        let e = outcome
            .client
            .err()
            .ok_or("a SCRAM exchange cut short must fail")?;
        check!(matches!(e, PgError::Auth(_)), "{e:?}");
        check!(e.to_string().contains("without its final message"), "{e}");
        Ok(())
    })
}

// ---- the GS2 header (RFC 5802) ----

#[test]
fn scram_gs2_flags_say_what_the_client_could_bind() -> TestResult {
    run(async {
        // TLS, server hides -PLUS: "y" (the client could bind; a server that
        // does support binding then detects the downgrade).
        let outcome = tls_startup(
            tls_config(SslMode::VerifyFull)?,
            "server",
            scram_only(),
            auth_failed(),
        )
        .await?;
        let (mechanism, first) = initial_response(outcome.sent)?;
        check_eq!(mechanism.as_str(), "SCRAM-SHA-256");
        check!(first.starts_with("y,,n=,r="), "{first}");
        let e = outcome
            .client
            .err()
            .ok_or("the fake refused the password")?;
        check!(matches!(e, PgError::Server(_)), "{e:?}");

        // TLS, server offers both: -PLUS with tls-server-end-point.
        let outcome = tls_startup(
            tls_config(SslMode::VerifyFull)?,
            "server",
            scram_and_plus(),
            auth_failed(),
        )
        .await?;
        let (mechanism, first) = initial_response(outcome.sent)?;
        check_eq!(mechanism.as_str(), "SCRAM-SHA-256-PLUS");
        check!(
            first.starts_with("p=tls-server-end-point,,n=,r="),
            "{first}"
        );

        // TLS with channel_binding=disable: never binds, says "n".
        let outcome = tls_startup(
            tls_config(SslMode::VerifyFull)?.channel_binding(ChannelBinding::Disable),
            "server",
            scram_and_plus(),
            auth_failed(),
        )
        .await?;
        let (mechanism, first) = initial_response(outcome.sent)?;
        check_eq!(mechanism.as_str(), "SCRAM-SHA-256");
        check!(first.starts_with("n,,n=,r="), "{first}");

        // Plaintext: nothing to bind to, "n", even when -PLUS is offered.
        for first_request in [scram_only(), scram_and_plus()] {
            let outcome = plain_startup(plain_config(), first_request, auth_failed()).await?;
            let (mechanism, first) = initial_response(outcome.sent)?;
            check_eq!(mechanism.as_str(), "SCRAM-SHA-256");
            check!(first.starts_with("n,,n=,r="), "{first}");
        }
        Ok(())
    })
}

/// Standard base64 with padding (RFC 4648), as SCRAM uses.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// One attribute (`c`, `r`, ...) of a SCRAM message.
fn attribute<'a>(message: &'a str, name: &str) -> Result<&'a str, String> {
    message
        .split(',')
        .find_map(|a| a.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
        .ok_or(format!("no {name}= in {message:?}"))
}

/// The fake runs SCRAM up to the client-final-message (it cannot check the
/// proof: it does not know the password's verifier) and returns the
/// mechanism and the client-final-message.
async fn scram_until_client_final<S: AsyncTransport>(
    server: &mut FakeServer<S>,
    offered: &[u8],
) -> Result<(String, String), String> {
    server.read_startup().await?;
    server.send(offered).await?;
    let (mechanism, client_first) = initial_response(Some(server.read_message().await?))?;
    let nonce = format!("{}fakeservernonce", attribute(&client_first, "r")?);
    let server_first = format!("r={nonce},s={},i=4096", base64(b"sixteen byte salt"));
    server.send(&auth(11, server_first.as_bytes())).await?;
    let (tag, body) = server.read_message().await?;
    if tag != b'p' {
        return Err(format!("expected a SASLResponse, got {:?}", tag as char));
    }
    let client_final = String::from_utf8(body).map_err(|e| e.to_string())?;
    if attribute(&client_final, "r")? != nonce {
        return Err(format!("the client changed the nonce: {client_final}"));
    }
    server.send(&auth_failed()).await?;
    Ok((mechanism, client_final))
}

#[test]
fn scram_binds_to_the_certificate_the_server_presented() -> TestResult {
    run(async {
        // RFC 5802/5929: the client-final-message's c= is the base64 of the
        // GS2 header plus, with -PLUS, the SHA-256 of the server's
        // certificate (server.crt is signed with ecdsa-with-SHA256).
        let cert = CertificateDer::from_pem_slice(&pem("server.crt")?)
            .map_err(|e| format!("server.crt: {e}"))?;
        let mut bound = b"p=tls-server-end-point,,".to_vec();
        bound.extend_from_slice(&Sha256::digest(cert.as_ref()));
        let cases = [
            (scram_and_plus(), "SCRAM-SHA-256-PLUS", bound),
            (scram_only(), "SCRAM-SHA-256", b"y,,".to_vec()),
        ];
        for (offered, mechanism, binding) in cases {
            let config = tls_config(SslMode::VerifyFull)?;
            let (client, server) = fake::pair(CAPACITY);
            let server_side = async move {
                let mut server = accept_tls(server, "server").await?;
                scram_until_client_final(&mut server, &offered).await
            };
            let (server, client) = join(server_side, try_connect(&config, client)).await;
            let (chosen, client_final) =
                server.map_err(|e| format!("fake: {e}; client: {client:?}"))?;
            check_eq!(chosen.as_str(), mechanism);
            check_eq!(attribute(&client_final, "c")?, base64(&binding).as_str());
            let e = client.err().ok_or("the fake refused the password")?;
            check!(matches!(e, PgError::Server(_)), "{e:?}");
        }

        // Plaintext: "n,,", nothing bound.
        let (client, mut server) = fake::pair(CAPACITY);
        let (server, client) = join(
            scram_until_client_final(&mut server, &scram_and_plus()),
            try_connect(&plain_config(), client),
        )
        .await;
        let (chosen, client_final) =
            server.map_err(|e| format!("fake: {e}; client: {client:?}"))?;
        check_eq!(chosen.as_str(), "SCRAM-SHA-256");
        check_eq!(attribute(&client_final, "c")?, base64(b"n,,").as_str());
        Ok(())
    })
}

// ---- require_auth ----

#[test]
fn require_auth_refuses_methods_not_listed() -> TestResult {
    run(async {
        let mut ok = fake::auth_ok();
        ok.extend(fake::ready());
        let cases: [(&str, Vec<u8>, Vec<u8>); 6] = [
            ("scram-sha-256", cleartext(), auth_failed()),
            ("!password", cleartext(), auth_failed()),
            ("password", md5(), auth_failed()),
            ("scram-sha-256", fake::trust_answer(), auth_failed()),
            ("!none", fake::trust_answer(), auth_failed()),
            ("none", cleartext(), auth_failed()),
        ];
        for (spec, first, then) in cases {
            let config = plain_config()
                .allow_insecure_auth(true)
                .require_auth(spec)?;
            let outcome = plain_startup(config, first, then).await?;
            let e = outcome
                .client
                .err()
                .ok_or(format!("require_auth={spec} must refuse"))?;
            check!(matches!(e, PgError::Auth(_)), "{spec}: {e:?}");
            check!(e.to_string().contains("require_auth"), "{spec}: {e}");
            check!(
                outcome.sent.is_none(),
                "{spec}: the client sent {:?}",
                outcome.sent
            );
        }

        // require_auth=scram-sha-256: a SCRAM exchange the server ends
        // early with AuthenticationOk is no SCRAM authentication.
        let config = plain_config().require_auth("scram-sha-256")?;
        let outcome = plain_startup(config, scram_only(), ok).await?;
        let (mechanism, _) = initial_response(outcome.sent)?;
        check_eq!(mechanism.as_str(), "SCRAM-SHA-256");
        let e = outcome
            .client
            .err()
            .ok_or("a SCRAM exchange cut short must fail")?;
        check!(matches!(e, PgError::Auth(_)), "{e:?}");
        check!(e.to_string().contains("without its final message"), "{e}");
        Ok(())
    })
}

#[test]
fn require_auth_none_accepts_trust() -> TestResult {
    run(async {
        let config = plain_config().require_auth("none")?;
        let (client, mut server) = fake::pair(CAPACITY);
        let (server, client) = join(
            serve_one_query(&mut server),
            use_connection(&config, client),
        )
        .await;
        server.map_err(|e| format!("fake: {e}; client: {client:?}"))?;
        client?;
        Ok(())
    })
}

// ---- the server's certificate ----

/// The fake presents `<cert>.crt`; the client must refuse it during the
/// handshake. Returns the client's error.
async fn certificate_refused(config: Config, cert: &str) -> Result<PgError, String> {
    let (client, server) = fake::pair(CAPACITY);
    let server_side = async move { accept_tls(server, cert).await.map(drop) };
    let (server, client) = join(server_side, try_connect(&config, client)).await;
    let e = client.err().ok_or(format!("{cert}.crt must be refused"))?;
    if server.is_ok() {
        return Err(format!(
            "{cert}.crt: the fake's handshake completed although the client refused ({e})"
        ));
    }
    Ok(e)
}

#[test]
fn expired_certificate_is_refused() -> TestResult {
    run(async {
        for mode in [SslMode::VerifyFull, SslMode::VerifyCa, SslMode::Require] {
            let e = certificate_refused(tls_config(mode)?, "expired").await?;
            check!(matches!(e, PgError::Tls(_)), "{mode:?}: {e:?}");
            check!(e.to_string().contains("Expired"), "{mode:?}: {e}");
        }
        Ok(())
    })
}

#[test]
fn self_signed_certificate_is_refused_when_verifying() -> TestResult {
    run(async {
        // Require with a root certificate given checks the chain (libpq).
        for mode in [SslMode::VerifyFull, SslMode::VerifyCa, SslMode::Require] {
            let e = certificate_refused(tls_config(mode)?, "selfsigned").await?;
            check!(matches!(e, PgError::Tls(_)), "{mode:?}: {e:?}");
            check!(e.to_string().contains("UnknownIssuer"), "{mode:?}: {e}");
        }
        Ok(())
    })
}

#[test]
fn self_signed_certificate_is_accepted_by_require_without_a_root() -> TestResult {
    run(async {
        // sslmode=require without sslrootcert encrypts without checking.
        let config = Config::new()
            .host("localhost")
            .user("alice")
            .ssl_mode(SslMode::Require);
        let (client, server) = fake::pair(CAPACITY);
        let server_side = async move {
            let mut server = accept_tls(server, "selfsigned").await?;
            serve_one_query(&mut server).await
        };
        let (server, client) = join(server_side, use_connection(&config, client)).await;
        server.map_err(|e| format!("fake: {e}; client: {client:?}"))?;
        client?;
        Ok(())
    })
}

#[test]
fn verify_full_accepts_the_ca_signed_certificate() -> TestResult {
    run(async {
        // The control for the refusals above: same fake, good certificate.
        let config = tls_config(SslMode::VerifyFull)?;
        let (client, server) = fake::pair(CAPACITY);
        let server_side = async move {
            let mut server = accept_tls(server, "server").await?;
            serve_one_query(&mut server).await
        };
        let (server, client) = join(server_side, use_connection(&config, client)).await;
        server.map_err(|e| format!("fake: {e}; client: {client:?}"))?;
        client?;
        Ok(())
    })
}

// ---- direct TLS (sslnegotiation=direct) ----

#[test]
fn direct_tls_requires_the_postgresql_alpn() -> TestResult {
    run(async {
        // PostgreSQL 17+ agrees to ALPN "postgresql"; a TLS server that
        // does not (some other service on the port) must be refused
        // before the startup goes out.
        let config = tls_config(SslMode::VerifyFull)?.ssl_negotiation(SslNegotiation::Direct);
        let (client, server) = fake::pair(CAPACITY);
        let server_side = async move {
            // TLS from the first byte: no SSLRequest.
            let tls =
                TlsServerStream::accept(server.into_stream()?, server_config("server")?).await?;
            FakeServer::new(tls).read_to_end().await
        };
        let (received, client) = join(server_side, try_connect(&config, client)).await;
        let received = received.map_err(|e| format!("fake: {e}; client: {client:?}"))?;
        let e = client
            .err()
            .ok_or("a server without the ALPN must be refused")?;
        check!(matches!(e, PgError::Tls(_)), "{e:?}");
        check!(e.to_string().contains("ALPN"), "{e}");
        check!(received.is_empty(), "the client sent {received:?}");

        // The same server agreeing to "postgresql" works.
        let mut with_alpn = (*server_config("server")?).clone();
        with_alpn.alpn_protocols = vec![b"postgresql".to_vec()];
        let (client, server) = fake::pair(CAPACITY);
        let server_side = async move {
            let tls =
                TlsServerStream::accept(server.into_stream()?, std::sync::Arc::new(with_alpn))
                    .await?;
            serve_one_query(&mut FakeServer::new(tls)).await
        };
        let (server, client) = join(server_side, use_connection(&config, client)).await;
        server.map_err(|e| format!("fake: {e}; client: {client:?}"))?;
        client?;
        Ok(())
    })
}
