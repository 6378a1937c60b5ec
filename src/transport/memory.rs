//! An in-memory duplex stream: two connected ends, each a bounded pipe per
//! direction. Tests put a fake server on one end to say what a real server
//! cannot be made to say (malformed bytes, cut connections).
//!
//! Runtime-neutral (wakers only), so the same tests run on tokio and wstd.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use super::AsyncTransport;

#[derive(Debug, Default)]
struct Pipe {
    bytes: VecDeque<u8>,
    capacity: usize,
    /// The writing end shut down or was dropped.
    write_closed: bool,
    /// The reading end was dropped.
    read_closed: bool,
    reader: Option<Waker>,
    writer: Option<Waker>,
}

#[derive(Debug, Default)]
struct SharedPipe(Mutex<Pipe>);

impl SharedPipe {
    fn lock(&self) -> MutexGuard<'_, Pipe> {
        crate::sync::lock(&self.0)
    }

    fn poll_read(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let mut pipe = self.lock();
        if pipe.bytes.is_empty() {
            if pipe.write_closed || buf.is_empty() {
                return Poll::Ready(Ok(0));
            }
            pipe.reader = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = buf.len().min(pipe.bytes.len());
        for (dst, src) in buf.iter_mut().zip(pipe.bytes.drain(..n)) {
            *dst = src;
        }
        if let Some(w) = pipe.writer.take() {
            w.wake();
        }
        Poll::Ready(Ok(n))
    }

    fn poll_write(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let mut pipe = self.lock();
        if pipe.read_closed {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the other end of the in-memory stream is gone",
            )));
        }
        if pipe.write_closed {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "write after shutdown",
            )));
        }
        let room = pipe.capacity - pipe.bytes.len();
        if room == 0 {
            pipe.writer = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = room.min(buf.len());
        pipe.bytes.extend(&buf[..n]);
        if let Some(w) = pipe.reader.take() {
            w.wake();
        }
        Poll::Ready(Ok(n))
    }

    fn close_write(&self) {
        let mut pipe = self.lock();
        pipe.write_closed = true;
        if let Some(w) = pipe.reader.take() {
            w.wake();
        }
    }

    fn close_read(&self) {
        let mut pipe = self.lock();
        pipe.read_closed = true;
        if let Some(w) = pipe.writer.take() {
            w.wake();
        }
    }
}

/// One end of an in-memory duplex stream; see [`duplex`].
#[derive(Debug)]
pub struct MemoryTransport {
    incoming: Arc<SharedPipe>,
    outgoing: Arc<SharedPipe>,
}

/// Creates two connected ends; each direction buffers at most `capacity`
/// bytes (a writer waits while the pipe is full, like a socket).
///
/// ```
/// let (client, server) = wasi_pg_client::transport::memory::duplex(64 * 1024);
/// # drop((client, server));
/// ```
pub fn duplex(capacity: usize) -> (MemoryTransport, MemoryTransport) {
    let capacity = capacity.max(1);
    let pipe = || {
        Arc::new(SharedPipe(Mutex::new(Pipe {
            capacity,
            ..Pipe::default()
        })))
    };
    let (a_to_b, b_to_a) = (pipe(), pipe());
    (
        MemoryTransport {
            incoming: b_to_a.clone(),
            outgoing: a_to_b.clone(),
        },
        MemoryTransport {
            incoming: a_to_b,
            outgoing: b_to_a,
        },
    )
}

impl AsyncTransport for MemoryTransport {
    async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        poll_fn(|cx| self.incoming.poll_read(cx, buf)).await
    }

    async fn write(&self, buf: &[u8]) -> io::Result<usize> {
        poll_fn(|cx| self.outgoing.poll_write(cx, buf)).await
    }

    /// `poll_write` moves bytes only when it returns `Ready`.
    fn write_is_cancel_safe(&self) -> bool {
        true
    }

    async fn flush(&self) -> io::Result<()> {
        Ok(())
    }

    async fn shutdown(&self) -> io::Result<()> {
        self.outgoing.close_write();
        Ok(())
    }
}

impl Drop for MemoryTransport {
    fn drop(&mut self) {
        self.outgoing.close_write();
        self.incoming.close_read();
    }
}
