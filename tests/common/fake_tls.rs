//! The server side of TLS for the fake server: rustls' `ServerConnection`
//! driven by hand over the in-memory stream, so a scripted server can
//! finish a real handshake (with the test certificates of
//! scripts/lib/certs.sh) and then speak the protocol encrypted.
//!
//! Test-only simplifications: one caller at a time (the fake server is
//! used through `&mut`), and no cancel safety (the fake never drops a read
//! or write future half way).

#![cfg(feature = "tls")]

use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex, MutexGuard};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection};
use wasi_pg_client::transport::memory::MemoryTransport;
use wasi_pg_client::AsyncTransport;

use super::fake::FakeServer;

/// The directory scripts/lib/certs.sh made the test certificates in.
pub fn cert_dir() -> Result<String, String> {
    std::env::var("PGTEST_CERT_DIR").map_err(|_| {
        "PGTEST_CERT_DIR is not set: run scripts/test.sh, which makes the test certificates"
            .to_string()
    })
}

/// One PEM file of the test certificates.
pub fn pem(name: &str) -> Result<Vec<u8>, String> {
    let path = std::path::Path::new(&cert_dir()?).join(name);
    std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))
}

/// A server configuration presenting `<name>.crt` with `<name>.key`
/// (`server`, `selfsigned`, `expired`).
pub fn server_config(name: &str) -> Result<Arc<ServerConfig>, String> {
    let cert_pem = pem(&format!("{name}.crt"))?;
    let certs = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{name}.crt: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(&pem(&format!("{name}.key"))?)
        .map_err(|e| format!("{name}.key: {e}"))?;
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS server setup: {e}"))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| format!("TLS server setup with {name}.crt: {e}"))?;
    // No TLS 1.3 session tickets: they would be a server write after the
    // handshake that races a client which has already given up and left.
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

struct State {
    conn: ServerConnection,
    /// Ciphertext rustls could not take yet (its plaintext buffer was full).
    incoming: Vec<u8>,
}

impl State {
    fn feed(&mut self, mut ciphertext: &[u8]) -> Result<(), String> {
        while !ciphertext.is_empty() {
            match self.conn.read_tls(&mut ciphertext) {
                Ok(0) => break,
                Ok(_) => {
                    self.conn
                        .process_new_packets()
                        .map_err(|e| format!("TLS from the client: {e}"))?;
                }
                Err(_) if !self.conn.wants_read() => {
                    self.incoming.extend_from_slice(ciphertext);
                    break;
                }
                Err(e) => return Err(format!("TLS from the client: {e}")),
            }
        }
        Ok(())
    }

    /// The records rustls wants sent.
    fn outgoing(&mut self) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        while self.conn.wants_write() {
            self.conn.write_tls(&mut out)?;
        }
        Ok(out)
    }
}

/// The server end of a TLS session over the in-memory stream.
pub struct TlsServerStream {
    inner: MemoryTransport,
    state: Mutex<State>,
}

impl TlsServerStream {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn write_all(&self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            let n = self.inner.write(bytes).await?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::WriteZero, "nothing written"));
            }
            bytes = &bytes[n..];
        }
        Ok(())
    }

    /// Sends the records rustls has queued.
    async fn send_pending(&self) -> io::Result<()> {
        let out = self.lock().outgoing()?;
        self.write_all(&out).await
    }

    /// Runs the server side of the handshake over `inner`. Fails (after
    /// sending rustls' alert, if any) when the client breaks it off.
    pub async fn accept(
        inner: MemoryTransport,
        config: Arc<ServerConfig>,
    ) -> Result<TlsServerStream, String> {
        let conn = ServerConnection::new(config).map_err(|e| format!("TLS server setup: {e}"))?;
        let stream = TlsServerStream {
            inner,
            state: Mutex::new(State {
                conn,
                incoming: Vec::new(),
            }),
        };
        let mut scratch = vec![0u8; 16 * 1024];
        loop {
            stream
                .send_pending()
                .await
                .map_err(|e| format!("sending the TLS handshake: {e}"))?;
            let handshaking = stream.lock().conn.is_handshaking();
            if !handshaking {
                return Ok(stream);
            }
            let n = stream
                .inner
                .read(&mut scratch)
                .await
                .map_err(|e| format!("reading the TLS handshake: {e}"))?;
            if n == 0 {
                return Err("the client closed the stream during the TLS handshake".into());
            }
            let fed = stream.lock().feed(&scratch[..n]);
            if let Err(e) = fed {
                // Tell the client, as a real server would.
                let _ = stream.send_pending().await;
                return Err(format!("TLS handshake failed: {e}"));
            }
        }
    }
}

/// Reads the SSLRequest on `server`, answers 'S', runs the handshake
/// presenting `<cert>.crt`, and returns the fake server over TLS.
pub async fn accept_tls(
    mut server: FakeServer,
    cert: &str,
) -> Result<FakeServer<TlsServerStream>, String> {
    let config = server_config(cert)?;
    server.read_ssl_request().await?;
    server.send(b"S").await?;
    let stream = TlsServerStream::accept(server.into_stream()?, config).await?;
    Ok(FakeServer::new(stream))
}

impl AsyncTransport for TlsServerStream {
    async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut scratch = vec![0u8; 16 * 1024];
        loop {
            {
                let mut state = self.lock();
                match state.conn.reader().read(buf) {
                    // Ok(0): the client sent close_notify.
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    // Closed without close_notify: end of stream too.
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                    Err(e) => return Err(e),
                }
                if !state.incoming.is_empty() {
                    let held = std::mem::take(&mut state.incoming);
                    state.feed(&held).map_err(io::Error::other)?;
                    continue;
                }
            }
            let n = self.inner.read(&mut scratch).await?;
            if n == 0 {
                return Ok(0);
            }
            let fed = self.lock().feed(&scratch[..n]);
            // Whatever rustls answered (an alert, say) goes out.
            self.send_pending().await?;
            fed.map_err(io::Error::other)?;
        }
    }

    async fn write(&self, buf: &[u8]) -> io::Result<usize> {
        let n = self.lock().conn.writer().write(buf)?;
        self.send_pending().await?;
        if n == 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "rustls took no plaintext",
            ));
        }
        Ok(n)
    }

    async fn flush(&self) -> io::Result<()> {
        self.send_pending().await?;
        self.inner.flush().await
    }

    async fn shutdown(&self) -> io::Result<()> {
        self.lock().conn.send_close_notify();
        self.send_pending().await?;
        self.inner.shutdown().await
    }
}
