//! `CursorStream`: a query's rows fetched `fetch_size` at a time through a
//! portal, so neither side holds more than one batch.
//!
//! The portal lives in the implicit transaction of the cursor's requests,
//! which end with Flush instead of Sync; another handle's Sync would end
//! that transaction and the portal with it. So the cursor holds the
//! connection's lease while it is open: other handles' requests wait, in
//! order, and go out once the cursor ends or is dropped. Inside a
//! transaction the cursor runs under the transaction's lease instead. (So a
//! task that holds an open cursor must not await another request on the
//! same connection before it finishes or drops the cursor: that request
//! waits for the cursor.)

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::BytesMut;
use postgres_protocol::message::backend::Message;

use crate::actors::connection::Ends;
use crate::api::connection::Reservation;
use crate::api::response::{data_row, server_error, Responses};
use crate::api::row::{Column, Row};
use crate::protocol::framing::Backend;
use crate::protocol::frontend;
use crate::{Connection, PgError};

type Pending = Pin<Box<dyn Future<Output = Result<Responses, PgError>> + Send>>;

enum Batch {
    /// Rows of the current Execute.
    Reading(Responses),
    /// The next Execute (or the closing Sync) is on its way.
    Sending(Pending),
    Finished,
}

/// Rows fetched through a portal, `fetch_size` per round trip; see
/// [`Connection::query_cursor_stream`].
pub struct CursorStream {
    conn: Connection,
    lease: u64,
    /// The cursor took the lease itself (rather than running inside a
    /// transaction's), so it releases it when done.
    owns_lease: bool,
    portal: String,
    fetch_size: i32,
    columns: Arc<[Column]>,
    batch: Batch,
    /// The portal is open on the server (Close + Sync still owed).
    open: bool,
    /// An error to report once the closing Sync has been answered.
    failed: Option<PgError>,
}

impl std::fmt::Debug for CursorStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CursorStream")
            .field("portal", &self.portal)
            .field("fetch_size", &self.fetch_size)
            .finish()
    }
}

impl CursorStream {
    pub(crate) async fn open(
        conn: &Connection,
        statement: &crate::Statement,
        params: &[&(dyn crate::ToSql + Sync)],
        fetch_size: usize,
        reservation: Reservation,
    ) -> Result<CursorStream, PgError> {
        let fetch_size = i32::try_from(fetch_size.max(1)).unwrap_or(i32::MAX);
        let mut bytes = BytesMut::new();
        // Encoded before the lease is taken, so a bad parameter costs
        // nothing. One name serves every cursor: the lease lets only one be
        // open on a connection at a time.
        let portal = "wpg_cursor".to_string();
        frontend::cursor_open(
            &portal,
            &statement.0.name,
            &statement.0.sql,
            &statement.0.params,
            params,
            fetch_size,
            &mut bytes,
        )?;
        let (lease, owns_lease) = match conn.current_lease() {
            Some(lease) => (lease, false),
            None => (conn.lease_settling(reservation).await?, true),
        };
        let mut cursor = CursorStream {
            conn: conn.clone(),
            lease,
            owns_lease,
            portal,
            fetch_size,
            columns: statement.0.columns.clone(),
            batch: Batch::Finished,
            open: true,
            failed: None,
        };
        let responses = cursor
            .conn
            .request_in(bytes, Some(lease), Ends::Execute)
            .await?;
        cursor.batch = Batch::Reading(responses);
        Ok(cursor)
    }

    /// The next row; `Ok(None)` at the end (the lease is released then).
    pub async fn next(&mut self) -> Result<Option<Row>, PgError> {
        std::future::poll_fn(|cx| self.poll_row(cx)).await
    }

    /// The result's columns.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// Sends a request under the cursor's lease; `last`: its last one,
    /// which ends the lease if the cursor took it.
    fn send(&mut self, bytes: BytesMut, ends: Ends, last: bool) {
        let conn = self.conn.clone();
        let lease = self.lease;
        let ends_lease = last && self.owns_lease;
        self.batch = Batch::Sending(Box::pin(async move {
            if ends_lease {
                conn.request_ending_lease(bytes, lease).await
            } else {
                conn.request_in(bytes, Some(lease), ends).await
            }
        }));
    }

    /// Close + Sync: the cursor's last request.
    fn close(&mut self) -> Result<(), PgError> {
        let mut bytes = BytesMut::new();
        frontend::cursor_close(&self.portal, &mut bytes)?;
        self.open = false;
        self.send(bytes, Ends::SYNC, true);
        Ok(())
    }

    fn poll_row(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Row>, PgError>> {
        loop {
            match &mut self.batch {
                Batch::Finished => {
                    return Poll::Ready(match self.failed.take() {
                        Some(e) => Err(e),
                        None => Ok(None),
                    })
                }
                Batch::Sending(pending) => match pending.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(responses)) => self.batch = Batch::Reading(responses),
                    Poll::Ready(Err(e)) => {
                        self.batch = Batch::Finished;
                        self.open = false;
                        return Poll::Ready(Err(e));
                    }
                },
                Batch::Reading(responses) => {
                    let message = match responses.poll_next_backend(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Err(e)) => {
                            self.batch = Batch::Finished;
                            self.open = false;
                            return Poll::Ready(Err(e));
                        }
                        Poll::Ready(Ok(Some(Backend::Row(raw)))) => {
                            return Poll::Ready(data_row(raw, Some(&self.columns), false).map(Some))
                        }
                        Poll::Ready(Ok(Some(Backend::CopyData(_)))) => continue,
                        Poll::Ready(Ok(Some(backend))) => Some(backend),
                        Poll::Ready(Ok(None)) => None,
                    };
                    match message {
                        Some(Backend::Other(Message::PortalSuspended)) => {
                            let mut bytes = BytesMut::new();
                            frontend::cursor_fetch(&self.portal, self.fetch_size, &mut bytes)?;
                            self.send(bytes, Ends::Execute, false);
                        }
                        Some(
                            Backend::Complete(_) | Backend::Other(Message::EmptyQueryResponse),
                        ) => {
                            self.close()?;
                        }
                        Some(Backend::Other(Message::ErrorResponse(body))) => {
                            // The server skips everything up to a Sync.
                            self.failed = Some(server_error(&body));
                            self.close()?;
                        }
                        Some(Backend::Ready) | None if !self.open => {
                            // Its lease, if its own, ended with the Close.
                            self.batch = Batch::Finished;
                            self.lease = 0;
                        }
                        _ => {}
                    }
                }
            }
        }
    }
}

impl futures_core::Stream for CursorStream {
    type Item = Result<Row, PgError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_row(cx).map(Result::transpose)
    }
}

impl Drop for CursorStream {
    fn drop(&mut self) {
        // Lease 0 was released already (lease numbers start at 1).
        if self.lease == 0 {
            return;
        }
        // Close + Sync even if a close was already on its way: closing a
        // closed portal is harmless, and the Sync ends the implicit
        // transaction before anyone else's request goes out.
        let mut bytes = BytesMut::new();
        let last = frontend::cursor_close(&self.portal, &mut bytes)
            .ok()
            .map(|()| bytes);
        if self.owns_lease {
            self.conn.release_lease(self.lease, last);
        } else if let Some(bytes) = last {
            self.conn.send_detached(self.lease, bytes);
        }
    }
}
