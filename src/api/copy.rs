//! COPY: bulk data into a table (`copy_in`) and out of one (`copy_out`).
//!
//! `COPY … FROM STDIN` switches the server to copy-in mode: until CopyDone
//! or CopyFail, it reads nothing but data. The data are messages with no
//! answer of their own, so they must not mix with other handles' requests:
//! a `CopyIn` holds the connection's lease (inside a transaction, a lease
//! on top of the transaction's, so even its other requests wait).
//! What is written goes out in chunks as it comes, one chunk at a time on
//! its way to the socket, so memory stays bounded however much is copied.
//!
//! `COPY … TO STDOUT` is one request whose answer is the data: a `CopyOut`
//! reads it like a row stream (the actor stops reading while the consumer
//! is behind), with no lease, since nothing else is sent meanwhile.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_channel::oneshot;
use postgres_protocol::message::backend::Message;

use crate::actors::connection::Ends;
use crate::api::response::{server_error, Responses};
use crate::protocol::framing::Backend;
use crate::protocol::frontend;
use crate::{Connection, PgError, Transaction};

/// Data gathered into one CopyData message before it is sent.
const COPY_CHUNK: usize = 64 * 1024;
/// A CopyData header: tag and length, the length filled in when sent.
const HEADER: [u8; 5] = [b'd', 0, 0, 0, 0];

/// A running `COPY … FROM STDIN`; see [`Connection::copy_in`].
///
/// Write the data with [`write`](CopyIn::write) (or forward a stream of
/// `Bytes` into it: it is a `futures::Sink<Bytes>`), then
/// [`finish`](CopyIn::finish). [`abort`](CopyIn::abort), or dropping it
/// unfinished, sends CopyFail: nothing is copied and the connection stays
/// usable.
pub struct CopyIn {
    conn: Connection,
    /// The copy's own lease (inside a transaction, on top of the
    /// transaction's: even the transaction's other requests wait for it).
    lease: u64,
    /// The answer to the COPY statement (it ends after CopyDone/CopyFail).
    responses: Responses,
    /// A CopyData message being filled: `HEADER` then data.
    chunk: BytesMut,
    /// Told when the last chunk sent reached the actor's write buffer.
    taken: Option<oneshot::Receiver<()>>,
    /// The error the server reported mid-copy (it ignores the rest).
    failed: Option<PgError>,
    /// CopyDone or CopyFail is on its way.
    ended: bool,
    released: bool,
}

impl std::fmt::Debug for CopyIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CopyIn")
            .field("buffered", &(self.chunk.len() - HEADER.len()))
            .field("ended", &self.ended)
            .finish()
    }
}

impl CopyIn {
    async fn start(conn: &Connection, sql: &str) -> Result<CopyIn, PgError> {
        let mut bytes = BytesMut::new();
        frontend::copy_query(sql, &mut bytes)?;
        let lease = conn.lease().await?;
        let view = conn.leased(lease);
        // Until the CopyIn exists (its Drop takes over), release the lease
        // however this ends: an error, or the caller giving up.
        let unclaimed = release_on_drop(conn, lease);
        let responses = view.request_in(bytes, Some(lease), Ends::CopyIn).await?;
        unclaimed.disarm();
        let mut copy = CopyIn {
            conn: view,
            lease,
            responses,
            chunk: BytesMut::from(&HEADER[..]),
            taken: None,
            failed: None,
            ended: false,
            released: false,
        };
        // From here on, Drop ends the copy and releases the lease.
        loop {
            match copy.responses.next().await? {
                Some(Message::CopyInResponse(_)) => return Ok(copy),
                Some(Message::ErrorResponse(body)) => copy.failed = Some(server_error(&body)),
                Some(_) => {}
                None => {
                    copy.ended = true;
                    copy.release();
                    return Err(copy.failed.take().unwrap_or_else(|| {
                        PgError::Protocol(
                            "copy_in needs a COPY … FROM STDIN statement; the server did not \
                             start a copy"
                                .into(),
                        )
                    }));
                }
            }
        }
    }

    /// Writes data: COPY's text, CSV or binary format, as the statement
    /// said. It is sent in chunks as they fill, waiting while the previous
    /// chunk is still on its way (backpressure). Fails at once with the
    /// server's error if the server already refused the data.
    pub async fn write(&mut self, mut data: &[u8]) -> Result<(), PgError> {
        self.check_writable()?;
        while !data.is_empty() {
            let room = COPY_CHUNK.saturating_sub(self.chunk.len() - HEADER.len());
            let (now, rest) = data.split_at(room.min(data.len()));
            self.chunk.extend_from_slice(now);
            data = rest;
            if self.chunk.len() - HEADER.len() >= COPY_CHUNK {
                poll_fn(|cx| self.poll_send_chunk(cx)).await?;
            }
        }
        Ok(())
    }

    /// Lets `encode` append to the chunk being filled (the typed writers
    /// encode rows straight into it), then sends the chunk once full.
    pub(crate) async fn write_with<F>(&mut self, encode: F) -> Result<(), PgError>
    where
        F: FnOnce(&mut BytesMut) -> Result<(), PgError>,
    {
        self.check_writable()?;
        encode(&mut self.chunk)?;
        if self.chunk.len() - HEADER.len() >= COPY_CHUNK {
            poll_fn(|cx| self.poll_send_chunk(cx)).await?;
        }
        Ok(())
    }

    /// [`write`](CopyIn::write) for an owned buffer.
    pub async fn send(&mut self, data: Bytes) -> Result<(), PgError> {
        self.write(&data).await
    }

    /// Sends what is buffered and CopyDone, and returns how many rows the
    /// server copied, or the error it reported (a malformed row, say:
    /// then nothing was copied).
    pub async fn finish(mut self) -> Result<u64, PgError> {
        let sent = poll_fn(|cx| self.poll_send_chunk(cx)).await;
        let mut done = BytesMut::new();
        frontend::copy_done(&mut done);
        self.end_with(done);
        let tag = self.read_to_end().await;
        sent?;
        let tag = tag?;
        Ok(tag
            .as_deref()
            .and_then(|t| t.strip_prefix("COPY "))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0))
    }

    /// Abandons the copy (CopyFail with `reason`): nothing is copied. The
    /// server's answer, an error quoting `reason`, is expected and not
    /// returned; other failures are.
    pub async fn abort(mut self, reason: &str) -> Result<(), PgError> {
        let mut fail = BytesMut::new();
        frontend::copy_fail(reason, &mut fail)?;
        self.end_with(fail);
        match self.read_to_end().await {
            Ok(_) => Ok(()),
            Err(PgError::Server(db)) if db.code() == "57014" => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn check_writable(&mut self) -> Result<(), PgError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.ended {
            return Err(PgError::Transaction("this copy has already ended".into()));
        }
        Ok(())
    }

    /// Sends the buffered chunk once the one before it has reached the
    /// actor's write buffer; notices an error the server sent meanwhile.
    fn poll_send_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), PgError>> {
        if let Some(taken) = self.taken.as_mut() {
            match Pin::new(taken).poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(result) => {
                    self.taken = None;
                    if result.is_err() {
                        return Poll::Ready(Err(self.conn.shared().gone()));
                    }
                }
            }
        }
        self.poll_early_error(cx);
        if let Some(e) = &self.failed {
            return Poll::Ready(Err(e.clone()));
        }
        let len = self.chunk.len() - HEADER.len();
        if len == 0 {
            return Poll::Ready(Ok(()));
        }
        let Ok(declared) = i32::try_from(len + 4) else {
            return Poll::Ready(Err(PgError::Encode("copy chunk too large".into())));
        };
        self.chunk[1..5].copy_from_slice(&declared.to_be_bytes());
        let chunk = std::mem::replace(
            &mut self.chunk,
            BytesMut::with_capacity(HEADER.len() + COPY_CHUNK),
        );
        self.chunk.extend_from_slice(&HEADER);
        let (tx, rx) = oneshot::channel();
        self.taken = Some(rx);
        Poll::Ready(self.conn.send_data(self.lease, chunk, Some(tx)))
    }

    /// Takes an ErrorResponse that arrived mid-copy, without waiting.
    fn poll_early_error(&mut self, cx: &mut Context<'_>) {
        while self.failed.is_none() {
            match self.responses.poll_next(cx) {
                Poll::Ready(Ok(Some(Message::ErrorResponse(body)))) => {
                    self.failed = Some(server_error(&body));
                }
                Poll::Ready(Ok(Some(_))) => {}
                Poll::Ready(Ok(None)) | Poll::Pending => return,
                Poll::Ready(Err(e)) => self.failed = Some(e),
            }
        }
    }

    /// Queues the copy's last message (CopyDone or CopyFail).
    fn end_with(&mut self, last: BytesMut) {
        if !self.ended {
            self.ended = true;
            // Nothing waits for it: the answer to the COPY says how it went.
            let _ = self.conn.send_data(self.lease, last, None);
        }
    }

    /// Reads the COPY's answer to its ReadyForQuery and releases the lease;
    /// the command tag, or the first error.
    async fn read_to_end(&mut self) -> Result<Option<String>, PgError> {
        let mut tag = None;
        let result = loop {
            match self.responses.next().await {
                // The copy's own count, not that of a statement after it.
                Ok(Some(Message::CommandComplete(body))) if tag.is_none() => {
                    tag = body
                        .tag()
                        .ok()
                        .filter(|t| t.starts_with("COPY "))
                        .map(str::to_string);
                }
                Ok(Some(Message::CopyInResponse(_))) => {
                    // A second COPY … FROM STDIN in the same string: nobody
                    // will send its data, so end it rather than wait.
                    let mut fail = BytesMut::new();
                    frontend::copy_fail("copy_in runs one COPY … FROM STDIN", &mut fail)?;
                    let _ = self.conn.send_data(self.lease, fail, None);
                }
                Ok(Some(Message::ErrorResponse(body))) => {
                    self.failed.get_or_insert_with(|| server_error(&body));
                }
                Ok(Some(_)) => {}
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        self.release();
        result?;
        match self.failed.take() {
            Some(e) => Err(e),
            None => Ok(tag),
        }
    }

    fn release(&mut self) {
        if !self.released {
            self.released = true;
            self.conn.release_lease(self.lease, None);
        }
    }
}

/// Releases a lease when dropped, unless disarmed.
struct LeaseRelease<'a> {
    conn: &'a Connection,
    lease: Option<u64>,
}

fn release_on_drop(conn: &Connection, lease: u64) -> LeaseRelease<'_> {
    LeaseRelease {
        conn,
        lease: Some(lease),
    }
}

impl LeaseRelease<'_> {
    fn disarm(mut self) {
        self.lease = None;
    }
}

impl Drop for LeaseRelease<'_> {
    fn drop(&mut self) {
        if let Some(lease) = self.lease {
            self.conn.release_lease(lease, None);
        }
    }
}

impl Drop for CopyIn {
    fn drop(&mut self) {
        if !self.ended {
            let mut fail = BytesMut::new();
            if frontend::copy_fail("the CopyIn was dropped before finish", &mut fail).is_ok() {
                self.end_with(fail);
            }
        }
        self.release();
    }
}

impl futures_sink::Sink<Bytes> for CopyIn {
    type Error = PgError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), PgError>> {
        let this = self.get_mut();
        this.check_writable()?;
        if this.chunk.len() - HEADER.len() >= COPY_CHUNK {
            return this.poll_send_chunk(cx);
        }
        Poll::Ready(Ok(()))
    }

    fn start_send(self: Pin<&mut Self>, item: Bytes) -> Result<(), PgError> {
        let this = self.get_mut();
        this.check_writable()?;
        this.chunk.extend_from_slice(&item);
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), PgError>> {
        self.get_mut().poll_send_chunk(cx)
    }

    /// Flushes; the copy stays open until [`CopyIn::finish`].
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), PgError>> {
        self.poll_flush(cx)
    }
}

/// The data of a `COPY … TO STDOUT`, chunk by chunk; see
/// [`Connection::copy_out`].
pub struct CopyOut {
    responses: Responses,
    done: bool,
}

impl std::fmt::Debug for CopyOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CopyOut").field("done", &self.done).finish()
    }
}

impl CopyOut {
    async fn start(conn: &Connection, sql: &str) -> Result<CopyOut, PgError> {
        let mut bytes = BytesMut::new();
        frontend::simple_query(sql, &mut bytes)?;
        let mut responses = conn.request(bytes).await?;
        let mut failed = None;
        loop {
            match responses.next().await? {
                Some(Message::CopyOutResponse(_)) => {
                    return Ok(CopyOut {
                        responses,
                        done: false,
                    })
                }
                Some(Message::ErrorResponse(body)) => {
                    failed.get_or_insert_with(|| server_error(&body));
                }
                Some(_) => {}
                None => {
                    return Err(failed.unwrap_or_else(|| {
                        PgError::Protocol(
                            "copy_out needs a COPY … TO STDOUT statement; the server did not \
                             start a copy"
                                .into(),
                        )
                    }))
                }
            }
        }
    }

    /// The next chunk of data (in COPY's text, CSV or binary format);
    /// `Ok(None)` at the end; the server's error if the copy failed.
    pub async fn next(&mut self) -> Result<Option<Bytes>, PgError> {
        poll_fn(|cx| self.poll_chunk(cx)).await
    }

    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>, PgError>> {
        let mut failed = None;
        while !self.done {
            match self.responses.poll_next_backend(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(Some(Backend::CopyData(data)))) => {
                    return Poll::Ready(Ok(Some(data)))
                }
                Poll::Ready(Ok(Some(Backend::Other(Message::ErrorResponse(body))))) => {
                    failed.get_or_insert_with(|| server_error(&body));
                }
                Poll::Ready(Ok(Some(_))) => {}
                Poll::Ready(Ok(None)) => self.done = true,
                Poll::Ready(Err(e)) => {
                    self.done = true;
                    return Poll::Ready(Err(e));
                }
            }
            if let Some(e) = failed.take() {
                // The rest of the answer (ReadyForQuery) is discarded by
                // the actor once this is dropped.
                self.done = true;
                return Poll::Ready(Err(e));
            }
        }
        Poll::Ready(Ok(None))
    }
}

impl futures_core::Stream for CopyOut {
    type Item = Result<Bytes, PgError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_chunk(cx).map(Result::transpose)
    }
}

impl Connection {
    /// Starts a `COPY … FROM STDIN` and returns the sink for its data.
    ///
    /// The copy holds the connection's lease until it finishes, aborts or
    /// is dropped: other handles' requests wait, in order.
    ///
    /// ```no_run
    /// # async fn demo(conn: &wasi_pg_client::Connection) -> Result<(), wasi_pg_client::PgError> {
    /// let mut copy = conn.copy_in("COPY items (id, name) FROM STDIN WITH (FORMAT csv)").await?;
    /// copy.write(b"1,apple\n2,pear\n").await?;
    /// let rows = copy.finish().await?;
    /// assert_eq!(rows, 2);
    /// # Ok(()) }
    /// ```
    pub async fn copy_in(&self, sql: &str) -> Result<CopyIn, PgError> {
        CopyIn::start(self, sql).await
    }

    /// Starts a `COPY … TO STDOUT` and returns its data as a stream of
    /// chunks.
    ///
    /// ```no_run
    /// # async fn demo(conn: &wasi_pg_client::Connection) -> Result<(), wasi_pg_client::PgError> {
    /// let mut out = conn.copy_out("COPY items TO STDOUT WITH (FORMAT csv)").await?;
    /// while let Some(chunk) = out.next().await? {
    ///     # let _ = chunk;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn copy_out(&self, sql: &str) -> Result<CopyOut, PgError> {
        CopyOut::start(self, sql).await
    }
}

impl Transaction {
    /// [`Connection::copy_in`] inside this transaction.
    pub async fn copy_in(&self, sql: &str) -> Result<CopyIn, PgError> {
        CopyIn::start(self.connection(), sql).await
    }

    /// [`Connection::copy_out`] inside this transaction.
    pub async fn copy_out(&self, sql: &str) -> Result<CopyOut, PgError> {
        CopyOut::start(self.connection(), sql).await
    }
}
