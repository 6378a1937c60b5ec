//! Turning a fresh byte stream into the stream the connection runs on:
//! plaintext, or TLS per libpq's `sslmode` and `sslnegotiation`.
//!
//! Two old client bugs shape this: libpq processed plaintext bytes a server
//! (or a man in the middle) sent right after its 'S' answer
//! (CVE-2021-23222), and showed an ErrorResponse sent in answer to the
//! SSLRequest, which an attacker can forge before encryption
//! (CVE-2024-10977). Here exactly one byte is read as the answer, anything
//! that is not TLS afterwards fails the handshake, and an error answer is
//! reported without its text.

use std::io;

use super::AsyncTransport;
use crate::api::config::Host;
use crate::{Config, PgError, SslMode};

#[cfg(feature = "tls")]
use super::tls::{client_config, server_name, TlsStream, Verification, ALPN_POSTGRESQL};
#[cfg(feature = "tls")]
use crate::api::tls_config::{RootCerts, SslNegotiation};

/// The stream a connection runs on.
#[derive(Debug)]
pub(crate) enum MaybeTls<T> {
    /// Unencrypted.
    Plain(T),
    /// Encrypted with TLS (boxed: a rustls session is large, and wasm
    /// futures must stay small).
    #[cfg(feature = "tls")]
    Tls(Box<TlsStream<T>>),
}

impl<T: AsyncTransport> MaybeTls<T> {
    /// Whether the stream is encrypted.
    pub(crate) fn is_encrypted(&self) -> bool {
        !matches!(self, MaybeTls::Plain(_))
    }

    /// tls-server-end-point channel binding data, when TLS is on and the
    /// server certificate's signature algorithm defines it.
    pub(crate) fn channel_binding(&self) -> Option<Vec<u8>> {
        match self {
            MaybeTls::Plain(_) => None,
            #[cfg(feature = "tls")]
            MaybeTls::Tls(tls) => tls.server_end_point(),
        }
    }
}

impl<T: AsyncTransport> AsyncTransport for MaybeTls<T> {
    async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            MaybeTls::Plain(t) => t.read(buf).await,
            #[cfg(feature = "tls")]
            MaybeTls::Tls(t) => t.read(buf).await,
        }
    }
    async fn write(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            MaybeTls::Plain(t) => t.write(buf).await,
            #[cfg(feature = "tls")]
            MaybeTls::Tls(t) => t.write(buf).await,
        }
    }
    fn write_is_cancel_safe(&self) -> bool {
        match self {
            MaybeTls::Plain(t) => t.write_is_cancel_safe(),
            // Takes the bytes before its last await (see `TlsStream::write`).
            #[cfg(feature = "tls")]
            MaybeTls::Tls(_) => false,
        }
    }
    async fn flush(&self) -> io::Result<()> {
        match self {
            MaybeTls::Plain(t) => t.flush().await,
            #[cfg(feature = "tls")]
            MaybeTls::Tls(t) => t.flush().await,
        }
    }
    async fn shutdown(&self) -> io::Result<()> {
        match self {
            MaybeTls::Plain(t) => t.shutdown().await,
            #[cfg(feature = "tls")]
            MaybeTls::Tls(t) => t.shutdown().await,
        }
    }
}

/// What to try on this attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// `sslmode=allow`'s first try: plaintext without asking.
    PlainFirst,
    /// Everything else (and `allow`'s second try).
    AsConfigured,
}

/// Sets up the stream for one connection attempt to `host`.
pub(crate) async fn negotiate<T: AsyncTransport>(
    transport: T,
    config: &Config,
    host: &Host,
    attempt: Attempt,
) -> Result<MaybeTls<T>, PgError> {
    let mode = config.ssl_mode;
    // libpq ignores sslmode on Unix sockets: the kernel is the channel.
    if mode == SslMode::Disable || attempt == Attempt::PlainFirst || matches!(host, Host::Unix(_)) {
        return Ok(MaybeTls::Plain(transport));
    }
    #[cfg(feature = "tls")]
    {
        tls_negotiate(transport, config, host).await
    }
    #[cfg(not(feature = "tls"))]
    {
        if mode.requires_tls() {
            return Err(PgError::Tls(format!(
                "sslmode={} needs TLS: enable the `tls` feature of wasi-pg-client",
                ssl_mode_name(mode)
            )));
        }
        Ok(MaybeTls::Plain(transport))
    }
}

/// libpq's spelling of a mode, for messages.
pub(crate) fn ssl_mode_name(mode: SslMode) -> &'static str {
    match mode {
        SslMode::Disable => "disable",
        SslMode::Allow => "allow",
        SslMode::Prefer => "prefer",
        SslMode::Require => "require",
        SslMode::VerifyCa => "verify-ca",
        SslMode::VerifyFull => "verify-full",
    }
}

#[cfg(feature = "tls")]
fn verification(config: &Config) -> Verification {
    if config.accept_invalid_certs {
        return Verification::None;
    }
    match config.ssl_mode {
        SslMode::VerifyFull => Verification::Full,
        SslMode::VerifyCa => Verification::Chain,
        // libpq: `require` with a root certificate given checks the chain.
        SslMode::Require if matches!(config.root_certs, RootCerts::Custom(_)) => {
            Verification::Chain
        }
        _ => Verification::None,
    }
}

#[cfg(feature = "tls")]
async fn tls_negotiate<T: AsyncTransport>(
    transport: T,
    config: &Config,
    host: &Host,
) -> Result<MaybeTls<T>, PgError> {
    let mode = config.ssl_mode;
    let Host::Tcp(name) = host else {
        return Ok(MaybeTls::Plain(transport));
    };
    let direct = config.ssl_negotiation == SslNegotiation::Direct;
    if direct && !mode.requires_tls() {
        return Err(PgError::Config(format!(
            "sslnegotiation=direct needs sslmode=require or stronger (got {}): a server that \
             does not speak TLS first cannot fall back",
            ssl_mode_name(mode)
        )));
    }
    if !direct {
        let mut request = bytes::BytesMut::new();
        postgres_protocol::message::frontend::ssl_request(&mut request);
        super::write_all(&transport, &request)
            .await
            .map_err(|e| PgError::io("sending the TLS request", e))?;
        let mut answer = [0u8; 1];
        let n = transport
            .read(&mut answer)
            .await
            .map_err(|e| PgError::io("reading the answer to the TLS request", e))?;
        match (n, answer[0]) {
            (0, _) => {
                return Err(PgError::Closed(
                    "the server closed the connection after the TLS request".into(),
                ))
            }
            (_, b'S') => {}
            (_, b'N') if mode.requires_tls() => {
                return Err(PgError::Tls(format!(
                    "the server does not accept TLS connections, and sslmode={} requires TLS",
                    ssl_mode_name(mode)
                )))
            }
            (_, b'N') => return Ok(MaybeTls::Plain(transport)),
            (_, b'E') => {
                return Err(PgError::Protocol(
                    "the server answered the TLS request with an error; its text is not shown, \
                     because anyone on the path could have written it (it came before \
                     encryption). The server may be too old for TLS or be misconfigured"
                        .into(),
                ))
            }
            (_, other) => {
                return Err(PgError::Protocol(format!(
                    "the server answered the TLS request with byte 0x{other:02x}, not S or N"
                )))
            }
        }
    }
    let tls_config = client_config(config, verification(config), direct)?;
    let stream = TlsStream::connect(transport, tls_config, server_name(name)?).await?;
    if direct && stream.alpn_protocol().as_deref() != Some(ALPN_POSTGRESQL) {
        return Err(PgError::Tls(
            "direct TLS: the server did not agree to ALPN \"postgresql\" (PostgreSQL 17+ does)"
                .into(),
        ));
    }
    Ok(MaybeTls::Tls(Box::new(stream)))
}
