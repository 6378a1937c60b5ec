//! Opening a byte stream to one configured host: tokio natively (with
//! `tokio-transport`), WASI sockets on wasm32-wasip2.

use crate::api::config::Host;
use crate::PgError;

/// The platform's socket type.
#[cfg(target_arch = "wasm32")]
pub(crate) type Socket = super::wasi::WasiTcpStream;
/// The platform's socket type.
#[cfg(all(not(target_arch = "wasm32"), feature = "tokio-transport"))]
pub(crate) type Socket = super::tokio::TokioStream;
/// No socket type natively without `tokio-transport`.
#[cfg(all(not(target_arch = "wasm32"), not(feature = "tokio-transport")))]
pub(crate) type Socket = super::memory::MemoryTransport;

/// Connects to `host`:`port`.
pub(crate) async fn open(host: &Host, port: u16) -> Result<Socket, PgError> {
    let target = describe(host, port);
    #[cfg(target_arch = "wasm32")]
    {
        match host {
            // The WASI error already names the host, port and address tried.
            Host::Tcp(name) => super::wasi::connect(name, port)
                .await
                .map_err(|e| PgError::io("opening a WASI socket", e)),
            Host::Unix(_) => Err(PgError::Config(format!(
                "{target}: Unix-domain sockets are not available to WASI components; use a TCP host"
            ))),
        }
    }
    #[cfg(all(not(target_arch = "wasm32"), feature = "tokio-transport"))]
    {
        let io = |e| PgError::io(format!("connecting to {target}"), e);
        match host {
            Host::Tcp(name) => super::tokio::TokioStream::connect_tcp(name, port)
                .await
                .map_err(io),
            Host::Unix(dir) => {
                let path = dir.join(format!(".s.PGSQL.{port}"));
                super::tokio::TokioStream::connect_unix(&path)
                    .await
                    .map_err(io)
            }
        }
    }
    #[cfg(all(not(target_arch = "wasm32"), not(feature = "tokio-transport")))]
    {
        Err(PgError::Config(format!(
            "cannot connect to {target}: this native build has no socket transport; enable the \
             `tokio-transport` feature of wasi-pg-client, or bring your own stream with \
             Connection::connect_with_transport"
        )))
    }
}

/// `host:port` or the socket path, for messages.
pub(crate) fn describe(host: &Host, port: u16) -> String {
    match host {
        Host::Tcp(name) if name.contains(':') => format!("[{name}]:{port}"),
        Host::Tcp(name) => format!("{name}:{port}"),
        Host::Unix(dir) => format!("{}/.s.PGSQL.{port}", dir.display()),
    }
}
