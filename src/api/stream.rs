//! `RowStream`: a query's rows one at a time, as they arrive.
//!
//! Memory stays bounded whatever the size of the result: the connection
//! actor hands rows over through a bounded channel and stops reading the
//! socket while it is full. Dropping a stream early discards the rest of
//! its rows without holding up the requests queued behind it.
//!
//! A stream that is held but not read blocks the socket for everything
//! pipelined behind it, as in every client that streams (tokio-postgres
//! #840). This client does not deadlock silently: while other requests
//! wait, the actor keeps reading and buffers the held stream's rows up to
//! [`STALLED_STREAM_LIMIT`] bytes; past that it fails the stream (its
//! `next()` returns an error saying so) and lets the other requests
//! through. Read streams promptly, or drop them.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use postgres_protocol::message::backend::Message;

use crate::api::response::{data_row, server_error, Responses};
use crate::api::row::{rows_affected, Column, Row};
use crate::protocol::describe;
use crate::protocol::framing::Backend;
use crate::PgError;

pub use crate::actors::connection::STALLED_STREAM_LIMIT;

/// Rows of one statement, read one at a time.
///
/// Use the inherent [`next`](RowStream::next), or the `futures::Stream`
/// implementation.
///
/// ```no_run
/// # async fn demo(conn: &wasi_pg_client::Connection) -> Result<(), wasi_pg_client::PgError> {
/// let mut stream = conn.query_stream("SELECT g FROM generate_series(1, 1000000) g").await?;
/// let mut sum = 0i64;
/// while let Some(row) = stream.next().await? {
///     sum += i64::from(row.get::<_, i32>(0)?);
/// }
/// # let _ = sum; Ok(()) }
/// ```
pub struct RowStream {
    responses: Responses,
    columns: Option<Arc<[Column]>>,
    command_tag: Option<String>,
    finished: bool,
}

impl std::fmt::Debug for RowStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowStream")
            .field("columns", &self.columns)
            .field("finished", &self.finished)
            .finish()
    }
}

impl RowStream {
    pub(crate) fn new(responses: Responses, columns: Option<Arc<[Column]>>) -> RowStream {
        RowStream {
            responses,
            columns,
            command_tag: None,
            finished: false,
        }
    }

    /// The next row; `Ok(None)` at the end. A server error (also one that
    /// happens after some rows) is an `Err`; the connection stays usable.
    pub async fn next(&mut self) -> Result<Option<Row>, PgError> {
        std::future::poll_fn(|cx| self.poll_row(cx)).await
    }

    fn poll_row(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Row>, PgError>> {
        if self.finished {
            return Poll::Ready(Ok(None));
        }
        loop {
            let message = match self.responses.poll_next_backend(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(self.fail(e))),
                Poll::Ready(Ok(None)) => {
                    self.finished = true;
                    return Poll::Ready(Ok(None));
                }
                Poll::Ready(Ok(Some(Backend::Row(raw)))) => {
                    return Poll::Ready(
                        data_row(raw, self.columns.as_ref(), false)
                            .map(Some)
                            .map_err(|e| self.fail(e)),
                    )
                }
                Poll::Ready(Ok(Some(Backend::Complete(tag)))) => {
                    self.command_tag = tag.as_str().ok().map(str::to_string);
                    continue;
                }
                Poll::Ready(Ok(Some(Backend::CopyData(_) | Backend::Ready))) => continue,
                Poll::Ready(Ok(Some(Backend::Other(message)))) => message,
            };
            match message {
                Message::RowDescription(body) => match describe::columns(&body) {
                    Ok(columns) => self.columns = Some(columns),
                    Err(e) => return Poll::Ready(Err(self.fail(e))),
                },
                Message::ErrorResponse(body) => {
                    return Poll::Ready(Err(self.fail(server_error(&body))))
                }
                Message::CopyInResponse(_) | Message::CopyOutResponse(_) => {
                    return Poll::Ready(Err(self.fail(PgError::Protocol(
                        "COPY cannot run through a row stream; use copy_in/copy_out".into(),
                    ))))
                }
                _ => {}
            }
        }
    }

    /// Ends the stream with `e`; the rest of the answer is discarded when
    /// the stream is dropped.
    fn fail(&mut self, e: PgError) -> PgError {
        self.finished = true;
        e
    }

    /// The result's columns (known once the first row or the end arrived).
    pub fn columns(&self) -> &[Column] {
        self.columns.as_deref().unwrap_or(&[])
    }

    /// The count the command reported, once the stream has ended.
    pub fn rows_affected(&self) -> Option<u64> {
        rows_affected(self.command_tag.as_deref()?)
    }
}

impl futures_core::Stream for RowStream {
    type Item = Result<Row, PgError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_row(cx).map(Result::transpose)
    }
}
