//! TLS as a sans-I/O rustls layer over any [`AsyncTransport`]: tokio TCP,
//! Unix sockets, WASI TCP, the in-memory duplex.
//!
//! wstd's I/O is `async fn`, not poll-based, so tokio-rustls cannot be used;
//! rustls' `ClientConnection` is driven by hand (`read_tls` /
//! `process_new_packets` / `write_tls`). The connection state sits behind a
//! mutex held only between awaits, so a read and a write can be in progress
//! at once, as the connection actor needs.

use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex, MutexGuard};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use super::AsyncTransport;
use crate::api::tls_config::{PemSource, RootCerts};
use crate::{Config, PgError};

/// How the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verification {
    /// Encrypt only (`prefer`, `require` without a root certificate,
    /// `accept_invalid_certs`).
    None,
    /// The chain must lead to a trusted root; the name is not checked.
    Chain,
    /// Chain and host name.
    Full,
}

/// ALPN protocol name PostgreSQL 17+ requires for direct TLS.
pub(crate) const ALPN_POSTGRESQL: &[u8] = b"postgresql";

fn tls_error(what: &str, e: impl std::fmt::Display) -> PgError {
    PgError::Tls(format!("{what}: {e}"))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn root_store(roots: &RootCerts) -> Result<RootCertStore, PgError> {
    let mut store = RootCertStore::empty();
    match roots {
        RootCerts::WebPki => store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        RootCerts::System => system_roots(&mut store)?,
        RootCerts::Custom(source) => {
            let pem = source.load("sslrootcert")?;
            let mut found = 0;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| tls_error("sslrootcert is not valid PEM", e))?;
                store
                    .add(cert)
                    .map_err(|e| tls_error("sslrootcert holds an unusable certificate", e))?;
                found += 1;
            }
            if found == 0 {
                return Err(PgError::Tls("sslrootcert holds no certificate".into()));
            }
        }
    }
    Ok(store)
}

#[cfg(not(target_arch = "wasm32"))]
fn system_roots(store: &mut RootCertStore) -> Result<(), PgError> {
    let found = rustls_native_certs::load_native_certs();
    if found.certs.is_empty() {
        return Err(PgError::Tls(format!(
            "sslrootcert=system: no certificates in the platform's trust store ({:?})",
            found.errors
        )));
    }
    for cert in found.certs {
        // A store may hold certificates webpki cannot use; skip those.
        let _ = store.add(cert);
    }
    Ok(())
}

#[cfg(target_arch = "wasm32")]
fn system_roots(_store: &mut RootCertStore) -> Result<(), PgError> {
    Err(PgError::Config(
        "sslrootcert=system: WASI has no platform trust store; give the CA as PEM \
         (Config::ssl_root_cert_pem) or as a file in a preopened directory"
            .into(),
    ))
}

fn client_identity(
    cert: &PemSource,
    key: &PemSource,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), PgError> {
    let cert_pem = cert.load("sslcert")?;
    let certs = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error("sslcert is not valid PEM", e))?;
    if certs.is_empty() {
        return Err(PgError::Tls("sslcert holds no certificate".into()));
    }
    let key_pem = key.load("sslkey")?;
    // The key's own error text could quote key material; say only what.
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| {
        PgError::Tls("sslkey holds no usable private key (PEM: PKCS#8, PKCS#1 or SEC1)".into())
    })?;
    Ok((certs, key))
}

/// Builds the rustls configuration for one connection attempt.
pub(crate) fn client_config(
    config: &Config,
    verification: Verification,
    direct: bool,
) -> Result<Arc<ClientConfig>, PgError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error("TLS setup", e))?;
    let webpki = |config: &Config| {
        let roots = Arc::new(root_store(&config.root_certs)?);
        rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider())
            .build()
            .map_err(|e| tls_error("TLS setup", e))
    };
    let builder = match verification {
        Verification::Full => builder.with_webpki_verifier(webpki(config)?),
        Verification::Chain | Verification::None => {
            let chain = match verification {
                Verification::Chain => Some(webpki(config)?),
                _ => None,
            };
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(RelaxedVerifier {
                    chain,
                    provider: provider(),
                }))
        }
    };
    let mut tls = match &config.client_cert {
        Some((cert, key)) => {
            let (certs, key) = client_identity(cert, key)?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| tls_error("sslcert/sslkey cannot be used together", e))?
        }
        None => builder.with_no_client_auth(),
    };
    if direct {
        tls.alpn_protocols = vec![ALPN_POSTGRESQL.to_vec()];
    }
    Ok(Arc::new(tls))
}

/// The name the certificate is checked against.
pub(crate) fn server_name(host: &str) -> Result<ServerName<'static>, PgError> {
    ServerName::try_from(host.to_string())
        .map_err(|_| PgError::Config(format!("\"{host}\" is not a valid host name for TLS")))
}

/// The verifier for the modes webpki alone does not cover: `verify-ca`
/// (webpki's chain check without the name check) and no check at all. The
/// handshake signatures are verified either way, so the session is bound to
/// the presented certificate's key.
#[derive(Debug)]
struct RelaxedVerifier {
    /// `None`: accept any certificate.
    chain: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for RelaxedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

struct State {
    conn: ClientConnection,
    /// Ciphertext rustls produced that the transport has not taken yet.
    outgoing: Vec<u8>,
    /// Ciphertext read that rustls could not take yet: it holds at most
    /// 16 KiB of undelivered plaintext, and a 64 KiB read can carry more.
    incoming: Vec<u8>,
}

impl State {
    /// Hands ciphertext to rustls, keeping what it cannot take until its
    /// plaintext has been read.
    fn feed(&mut self, mut ciphertext: &[u8]) -> Result<(), rustls::Error> {
        while !ciphertext.is_empty() {
            match self.conn.read_tls(&mut ciphertext) {
                Ok(0) => break,
                Ok(_) => {
                    self.conn.process_new_packets()?;
                }
                Err(_) if !self.conn.wants_read() => {
                    self.incoming.extend_from_slice(ciphertext);
                    break;
                }
                Err(e) => return Err(rustls::Error::General(e.to_string())),
            }
        }
        Ok(())
    }
}

/// A TLS session over a transport.
pub(crate) struct TlsStream<T> {
    inner: T,
    state: Mutex<State>,
}

impl<T> std::fmt::Debug for TlsStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsStream")
    }
}

fn to_io(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl<T: AsyncTransport> TlsStream<T> {
    fn lock(&self) -> MutexGuard<'_, State> {
        crate::sync::lock(&self.state)
    }

    /// Runs the handshake over `inner`.
    pub(crate) async fn connect(
        inner: T,
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
    ) -> Result<TlsStream<T>, PgError> {
        let conn = ClientConnection::new(config, name).map_err(|e| tls_error("TLS setup", e))?;
        let stream = TlsStream {
            inner,
            state: Mutex::new(State {
                conn,
                outgoing: Vec::new(),
                incoming: Vec::new(),
            }),
        };
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let (handshaking, wants_read) = {
                let mut state = stream.lock();
                let state = &mut *state;
                while state.conn.wants_write() {
                    state
                        .conn
                        .write_tls(&mut state.outgoing)
                        .map_err(|e| tls_error("TLS handshake", e))?;
                }
                (state.conn.is_handshaking(), state.conn.wants_read())
            };
            stream
                .send_outgoing()
                .await
                .map_err(|e| PgError::io("sending the TLS handshake", e))?;
            if !handshaking {
                return Ok(stream);
            }
            if wants_read {
                let n = stream
                    .inner
                    .read(&mut buf)
                    .await
                    .map_err(|e| PgError::io("reading the TLS handshake", e))?;
                if n == 0 {
                    return Err(PgError::Tls(
                        "the server closed the connection during the TLS handshake".into(),
                    ));
                }
                stream.feed(&buf[..n]).map_err(|e| match e {
                    // Not a TLS record at all: the server sent something
                    // else (plaintext after agreeing to TLS, say).
                    rustls::Error::InvalidMessage(_) => PgError::Protocol(format!(
                        "the server sent data that is not TLS during the handshake ({e})"
                    )),
                    e => classify_handshake_error(e),
                })?;
            }
        }
    }

    fn feed(&self, ciphertext: &[u8]) -> Result<(), rustls::Error> {
        self.lock().feed(ciphertext)
    }

    /// Writes out the ciphertext rustls has produced. Progress is recorded
    /// after each completed write, so a cancelled call loses nothing.
    async fn send_outgoing(&self) -> io::Result<()> {
        loop {
            let chunk = {
                let state = self.lock();
                if state.outgoing.is_empty() {
                    return Ok(());
                }
                state.outgoing.clone()
            };
            let n = self.inner.write(&chunk).await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "the stream accepted no bytes",
                ));
            }
            self.lock().outgoing.drain(..n);
        }
    }

    /// The tls-server-end-point channel binding data (RFC 5929): the
    /// server certificate's hash, with the hash of its signature algorithm
    /// (SHA-256 for MD5 and SHA-1). `None` when the algorithm has no such
    /// hash (Ed25519) or no certificate was seen.
    pub(crate) fn server_end_point(&self) -> Option<Vec<u8>> {
        let state = self.lock();
        let cert = state.conn.peer_certificates()?.first()?;
        super::channel_binding::tls_server_end_point(cert.as_ref())
    }

    /// The ALPN protocol the server chose.
    pub(crate) fn alpn_protocol(&self) -> Option<Vec<u8>> {
        self.lock().conn.alpn_protocol().map(<[u8]>::to_vec)
    }
}

fn classify_handshake_error(e: rustls::Error) -> PgError {
    match e {
        rustls::Error::InvalidCertificate(cert) => {
            PgError::Tls(format!("the server's certificate was refused: {cert:?}"))
        }
        rustls::Error::AlertReceived(alert) => PgError::Tls(format!(
            "the server ended the TLS handshake ({alert:?}); if it asked for a client \
             certificate, check sslcert/sslkey"
        )),
        e => tls_error("TLS handshake failed", e),
    }
}

impl<T: AsyncTransport> AsyncTransport for TlsStream<T> {
    async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            {
                let mut state = self.lock();
                match state.conn.reader().read(buf) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    // The peer closed without close_notify: end of stream.
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                    Err(e) => return Err(e),
                }
                if !state.incoming.is_empty() {
                    let held = std::mem::take(&mut state.incoming);
                    state.feed(&held).map_err(to_io)?;
                    continue;
                }
            }
            // The caller's buffer doubles as the ciphertext scratch space:
            // no allocation per read.
            let n = self.inner.read(buf).await?;
            if n == 0 {
                return Ok(0);
            }
            let ciphertext = buf.get(..n).ok_or_else(|| {
                io::Error::other("the transport returned more bytes than were asked for")
            })?;
            self.feed(ciphertext).map_err(to_io)?;
        }
    }

    async fn write(&self, buf: &[u8]) -> io::Result<usize> {
        self.send_outgoing().await?;
        let n = {
            let mut state = self.lock();
            let state = &mut *state;
            let n = state.conn.writer().write(buf)?;
            while state.conn.wants_write() {
                state.conn.write_tls(&mut state.outgoing)?;
            }
            n
        };
        // If this is cancelled, the records stay queued and go out first
        // on the next write or flush: nothing accepted is lost, but the
        // caller never learns that `n` bytes were taken, so a write is not
        // cancel-safe here (the transport contract does not ask it to be).
        self.send_outgoing().await?;
        Ok(n)
    }

    async fn flush(&self) -> io::Result<()> {
        self.send_outgoing().await?;
        self.inner.flush().await
    }

    async fn shutdown(&self) -> io::Result<()> {
        {
            let mut state = self.lock();
            let state = &mut *state;
            state.conn.send_close_notify();
            while state.conn.wants_write() {
                state.conn.write_tls(&mut state.outgoing)?;
            }
        }
        self.send_outgoing().await?;
        self.inner.shutdown().await
    }
}
