//! Byte streams the connection actor talks through.
//!
//! The actor reads and writes at the same time (it must keep reading while a
//! large pipeline goes out, or client and server can both block on full
//! buffers), so every method takes `&self`: a read future and a write future
//! may be alive together. Implementations use their platform's split halves
//! (tokio's `try_read`/`try_write`, WASI's separate input and output streams).

use std::future::Future;
use std::io;

#[cfg(feature = "tls")]
pub(crate) mod channel_binding;
pub(crate) mod connect;
pub mod memory;
pub(crate) mod negotiate;
#[cfg(feature = "tls")]
pub(crate) mod tls;
#[cfg(all(not(target_arch = "wasm32"), feature = "tokio-transport"))]
pub(crate) mod tokio;
#[cfg(target_arch = "wasm32")]
pub(crate) mod wasi;

/// A bidirectional byte stream to a PostgreSQL server.
///
/// Contract the connection actor relies on:
/// - `read` and `write` may be in progress at the same time (both take `&self`);
/// - `read` is cancel-safe: dropping its future before it completes loses no
///   bytes;
/// - `write` need not be cancel-safe: the actor drives every write it starts
///   to completion, and drops an unfinished one only when the connection is
///   torn down (this crate's TLS stream, for one, has taken the bytes before
///   its last await);
/// - `read` returning `Ok(0)` means the peer closed the stream;
/// - bytes accepted by `write` go to the peer without a `flush` (the actor
///   never waits for one between requests: under wasmtime that wait cost a
///   reactor round trip per request); `flush` waits until they are handed
///   over.
///
/// The trait is public so tests and unusual environments can bring their own
/// stream; it may still evolve before 1.0.
pub trait AsyncTransport: Send + Sync + 'static {
    /// Reads some bytes into `buf`, returning how many (0 at end of stream).
    fn read(&self, buf: &mut [u8]) -> impl Future<Output = io::Result<usize>> + Send;
    /// Writes some of `buf`, returning how many bytes were accepted.
    fn write(&self, buf: &[u8]) -> impl Future<Output = io::Result<usize>> + Send;
    /// Flushes buffered bytes to the peer.
    fn flush(&self) -> impl Future<Output = io::Result<()>> + Send;
    /// Shuts the write side down; the peer sees end of stream.
    fn shutdown(&self) -> impl Future<Output = io::Result<()>> + Send;
    /// Whether a `write` future dropped unfinished is certain to have
    /// written nothing (true of a stream that moves bytes only in the poll
    /// that returns `Ready`). The actor then tries each write once in
    /// place, and boxes a future only to wait for room: one allocation
    /// fewer per request. Default `false`, always safe.
    fn write_is_cancel_safe(&self) -> bool {
        false
    }
}

/// Writes all of `buf` (no flush: see the trait's contract).
pub(crate) async fn write_all<T: AsyncTransport>(t: &T, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        let n = t.write(buf).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "the stream accepted no bytes",
            ));
        }
        buf = &buf[n..];
    }
    Ok(())
}
