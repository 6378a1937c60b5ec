//! Native transports on tokio: TCP and Unix-domain sockets.
//!
//! The socket is split into its read and write halves so a read and a write
//! can be in progress together. Each half sits behind a mutex held only for
//! one `poll_*` call (never across an await). Polling tokio's own
//! `poll_read` matters: after a short read it marks the socket drained, so
//! the next read waits for epoll instead of trying a `recv` that would only
//! say EWOULDBLOCK (one wasted syscall per round trip with
//! `readable()` + `try_read`).

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Mutex;

use crate::sync::lock;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use super::AsyncTransport;

type Reader = Box<dyn AsyncRead + Send + Unpin>;
type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// A connected native socket.
pub(crate) struct TokioStream {
    reader: Mutex<Reader>,
    writer: Mutex<Writer>,
}

impl std::fmt::Debug for TokioStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokioStream")
    }
}

impl TokioStream {
    pub(crate) async fn connect_tcp(host: &str, port: u16) -> io::Result<TokioStream> {
        let stream = TcpStream::connect((host, port)).await?;
        stream.set_nodelay(true)?;
        let (reader, writer) = stream.into_split();
        Ok(TokioStream::new(Box::new(reader), Box::new(writer)))
    }

    pub(crate) async fn connect_unix(path: &std::path::Path) -> io::Result<TokioStream> {
        let (reader, writer) = UnixStream::connect(path).await?.into_split();
        Ok(TokioStream::new(Box::new(reader), Box::new(writer)))
    }

    fn new(reader: Reader, writer: Writer) -> TokioStream {
        TokioStream {
            reader: Mutex::new(reader),
            writer: Mutex::new(writer),
        }
    }
}

// Cancel safety (also `write_is_cancel_safe`): tokio's poll_read and
// poll_write move bytes only in the poll that returns Ready, so a dropped
// future read or wrote nothing.
impl AsyncTransport for TokioStream {
    async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        poll_fn(|cx| {
            let mut buf = ReadBuf::new(buf);
            let mut reader = lock(&self.reader);
            Pin::new(&mut **reader)
                .poll_read(cx, &mut buf)
                .map_ok(|()| buf.filled().len())
        })
        .await
    }

    async fn write(&self, buf: &[u8]) -> io::Result<usize> {
        poll_fn(|cx| Pin::new(&mut **lock(&self.writer)).poll_write(cx, buf)).await
    }

    fn write_is_cancel_safe(&self) -> bool {
        true
    }

    async fn flush(&self) -> io::Result<()> {
        poll_fn(|cx| Pin::new(&mut **lock(&self.writer)).poll_flush(cx)).await
    }

    async fn shutdown(&self) -> io::Result<()> {
        let result = poll_fn(|cx| Pin::new(&mut **lock(&self.writer)).poll_shutdown(cx)).await;
        match result {
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
            other => other,
        }
    }
}
